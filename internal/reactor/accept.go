//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/sockfd"
)

// Accepting: taking connections off a listener, placing each on a loop,
// and opening it there.

const (
	// acceptBatch bounds accepts per readiness so a connection storm
	// cannot starve the loop's established connections.
	acceptBatch = 64
	// acceptPause is how long accepting stops after running out of
	// descriptors with no spare to shed the backlog with.
	acceptPause = 100 * time.Millisecond
)

func (l *loop) accept(li *listener) {
	if li.paused || l.draining || l.closing {
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
				l.s.stats.CountAcceptError(err)
				l.outOfDescriptors(li, err)
				return
			default:
				l.s.stats.CountAcceptError(err)
				l.warnf("accept failed", "listener", li.Addr, "err", err)
				return
			}
		}
		l.newConn(fd, sa, li)
	}
}

// outOfDescriptors sheds one pending connection with the spare descriptor
// so the listener stops being readable, or, with no spare to use, stops
// accepting for a moment. Either way the loop never spins on EMFILE.
func (l *loop) outOfDescriptors(li *listener, err error) {
	l.warnf("accept failed: out of descriptors; shedding connections", "listener", li.Addr, "err", err)
	if l.spare >= 0 {
		unix.Close(l.spare)
		fd, _, aerr := sockfd.Accept(li.Fd)
		if aerr == nil {
			sockfd.Reset(fd)
			l.s.stats.Rejected.Add(1)
		}
		l.spare = sockfd.OpenSpare()
		if aerr == nil || aerr == unix.EAGAIN {
			return
		}
	}
	li.paused = true
	li.resumeAfter = l.now + int64(acceptPause)
	l.p.Modify(li.Fd, false, false)
}

// warnf logs at most one warning a second per loop: accept failures come
// in storms.
func (l *loop) warnf(msg string, args ...any) {
	if l.now-l.lastWarn < int64(time.Second) && l.lastWarn != 0 {
		return
	}
	l.lastWarn = l.now
	l.s.log.Warn(msg, args...)
}

func (l *loop) newConn(fd int, sa unix.Sockaddr, li *listener) {
	s := l.s
	if n := s.nconns.Add(1); s.cfg.MaxConns > 0 && n > int64(s.cfg.MaxConns) {
		s.nconns.Add(-1)
		sockfd.Reset(fd)
		s.stats.Rejected.Add(1)
		s.log.Debug("connection refused: limit reached", "remote", sockfd.AddrPort(sa), "max_conns", s.cfg.MaxConns)
		return
	}
	c := &conn{fd: int32(fd), ln: li, opened: l.now}
	c.idle.Store(s.idle)
	if !li.Unix {
		c.raddr = sockfd.AddrPort(sa)
		if !s.perIP.Acquire(c.raddr.Addr()) {
			s.nconns.Add(-1)
			sockfd.Reset(fd)
			s.stats.Rejected.Add(1)
			s.stats.RejectedPerIP.Add(1)
			s.log.Debug("connection refused: per-address limit reached", "remote", c.raddr, "max_conns_per_ip", s.cfg.MaxConnsPerIP)
			return
		}
		_, c.laddr = li.ConnAddrs(fd, sa)
		if s.cfg.NoDelay {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		if s.cfg.KeepAlive > 0 {
			sockfd.SetKeepAlive(fd, s.cfg.KeepAlive)
		}
	}
	t := l.place()
	c.l = t
	if t == l {
		l.adopt(c)
		return
	}
	if !t.post(task{kind: taskAdopt, c: c}) {
		// t has drained and stopped since place chose it, while this
		// loop, not yet told to drain, still accepts: it takes c itself
		// (served, or drained if it is draining by now). A reset here
		// would lose a request the client may have sent already.
		t.load.Add(-1)
		l.load.Add(1)
		c.l = l
		l.adopt(c)
	}
}

// place picks the loop for a new connection. With a listener per loop
// (SO_REUSEPORT) the kernel has already spread them, so the accepting loop
// keeps it. Otherwise it goes to the loop with the fewest connections,
// preferring this one on a tie, which saves a hand-over.
func (l *loop) place() *loop {
	s := l.s
	best := l
	if !s.local {
		bl := l.load.Load()
		l.rr++
		for i := range s.loops {
			o := s.loops[(l.rr+i)%len(s.loops)]
			if ld := o.load.Load(); ld < bl {
				best, bl = o, ld
			}
		}
	}
	best.load.Add(1)
	return best
}

// refuse closes a connection that was accepted but cannot be served.
func (l *loop) refuse(c *conn, reason any) {
	s := l.s
	sockfd.Reset(int(c.fd))
	c.l.load.Add(-1)
	s.nconns.Add(-1)
	s.perIP.Release(c.raddr.Addr())
	s.stats.Rejected.Add(1)
	s.log.Warn("connection refused", "remote", c.RemoteAddr(), "reason", reason)
}

// adopt registers a connection with this loop and opens it, or, with a
// PROXY header expected, waits for that first (connstate.Header).
func (l *loop) adopt(c *conn) {
	s := l.s
	if l.closing {
		l.refuse(c, "server closing")
		return
	}
	fd := int(c.fd)
	if err := l.p.Add(fd, true, false); err != nil {
		l.refuse(c, err)
		return
	}
	if fd >= len(l.conns) {
		n := max(2*len(l.conns), fd+1, 64)
		conns := make([]*conn, n)
		copy(conns, l.conns)
		l.conns = conns
	}
	l.conns[fd] = c
	l.n++
	s.stats.Accepted.Add(1)
	s.stats.Active.Add(1)
	c.flags = connReadOn
	c.lastRead = l.now
	if l.draining {
		// Accepted as Shutdown began (the last accept before an upgrade's
		// hand-over, say): the handler never hears of it, and it drains as
		// drain drained the others — FIN, input read and dropped, closed at
		// the peer's FIN or the linger deadline. A reset here would lose
		// the request the client may already have sent; a clean EOF it can
		// retry.
		c.mu.Lock()
		c.writeRefused = true
		c.mu.Unlock()
		if c.state.Drain() {
			l.arm(c, timerIdle, l.lingerDeadline())
		}
		l.afterDispatch(c, 0)
		return
	}
	if s.cfg.ProxyProtocol {
		c.state = connstate.Header
		l.arm(c, timerIdle, l.now+s.headerWait)
		return
	}
	if s.tls != nil {
		l.startTLS(c, nil)
		return
	}
	if idle := c.idle.Load(); idle > 0 {
		l.arm(c, timerIdle, l.now+idle)
	}
	c.mu.Lock()
	c.sched = true
	c.mu.Unlock()
	if l.open(c) {
		l.afterDispatch(c, 0)
	}
}

// open runs OnOpen. The caller has set c.sched and flushes afterwards,
// unless open returns false: OnOpen panicked and c is closed.
func (l *loop) open(c *conn) (ok bool) {
	c.state = connstate.Open
	c.flags |= connOpened
	defer func() {
		if v := recover(); v != nil {
			l.closeConn(c, engine.Recovered(l.s.log, l.s.stats, c.RemoteAddr(), "OnOpen", v))
			ok = false
		}
	}()
	l.s.h.OnOpen(c)
	return true
}
