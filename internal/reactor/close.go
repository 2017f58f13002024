//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"golang.org/x/sys/unix"

	"switchboard/internal/loopconn"
)

// Closing: the core (loopconn.Loop.Close, Drain, CloseAll) does what is
// the same on every engine; these are the reactor's parts of it.

// ReleaseLocked drops c's output as it closes: its TLS state (with a
// close_notify when the stream is at a record boundary) and its outbox.
func (l *loop) ReleaseLocked(c *conn) {
	if c.IO.tls != nil {
		l.closeTLS(c)
	}
	c.Out.Release()
}

// CloseIO takes c's pending output out of the counters, stops watching
// its descriptor and closes it.
func (l *loop) CloseIO(c *conn) {
	l.pending -= c.IO.reported
	c.IO.reported = 0
	if c.Flags&loopconn.FlagPaused != 0 {
		c.Flags &^= loopconn.FlagPaused
		l.paused--
	}
	fd := int(c.Fd)
	l.p.Delete(fd)
	unix.Close(fd)
	l.Conns[fd] = nil
}

// DrainConn has nothing of c's input to drop: the reactor reads only as
// it decodes.
func (l *loop) DrainConn(*conn) bool { return true }

// CloseListeners stops accepting: the loop's listeners leave the poller
// and their duplicated descriptors close (the net.Listeners are Serve's).
func (l *loop) CloseListeners() {
	for _, li := range l.lns {
		l.p.Delete(li.Fd)
		unix.Close(li.Fd)
	}
	l.lns = nil
}
