//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/sockfd"
)

// Accepting: taking connections off a listener with accept4. The policy
// (limits, placement, how a connection opens) is loopconn's.

const (
	// acceptBatch bounds accepts per readiness so a connection storm
	// cannot starve the loop's established connections.
	acceptBatch = 64
	// acceptPause is how long accepting stops after running out of
	// descriptors with no spare to shed the backlog with.
	acceptPause = 100 * time.Millisecond
)

func (l *loop) accept(li *listener) {
	if li.paused || l.Draining || l.Closing {
		return
	}
	for range acceptBatch {
		fd, sa, err := sockfd.Accept(li.Fd)
		if err != nil {
			switch err {
			case unix.EAGAIN:
				return
			case unix.EINTR, unix.ECONNABORTED, unix.EPROTO:
				continue // the connection died in the queue; take the next
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				l.s.Stats.CountAcceptError(err)
				l.outOfDescriptors(li, err)
				return
			default:
				l.s.Stats.CountAcceptError(err)
				l.Warnf("accept failed", "listener", li.Addr, "err", err)
				return
			}
		}
		if c := l.Admit(fd, li.id, sa); c != nil {
			l.Place(c)
		}
	}
}

// outOfDescriptors sheds one pending connection with the spare descriptor
// so the listener stops being readable, or, with no spare to use, stops
// accepting for a moment. Either way the loop never spins on EMFILE.
func (l *loop) outOfDescriptors(li *listener, err error) {
	if aerr := l.Shed(li.Fd, li.Addr, err); aerr == nil || aerr == unix.EAGAIN {
		return
	}
	li.paused = true
	li.resumeAfter = l.Now + int64(acceptPause)
	l.p.Modify(li.Fd, false, false)
}

// Adopt registers a connection with this loop and opens it
// (loopconn.Loop.Start).
func (l *loop) Adopt(c *conn) {
	if l.Closing {
		l.Refuse(c, "server closing")
		return
	}
	fd := int(c.Fd)
	if err := l.p.Add(fd, true, false); err != nil {
		l.Refuse(c, err)
		return
	}
	if fd >= len(l.Conns) {
		// The table is indexed by descriptor, which every loop's
		// connections share, so each loop's spans them all: grown by an
		// eighth rather than doubled, it costs 9 bytes per descriptor
		// per loop rather than up to 16 (an idle connection is the
		// core's 176 bytes plus these).
		n := max(len(l.Conns)+len(l.Conns)/8, fd+1+fd/8, 64)
		conns := make([]*conn, n)
		copy(conns, l.Conns)
		l.Conns = conns
	}
	l.Conns[fd] = c
	l.Adopted(c)
	c.Flags = connReadOn
	l.Start(c)
}
