//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import "golang.org/x/sys/unix"

// Closing: the core (loopconn.Loop.Close, Drain, CloseAll) does what is
// the same on every engine; these are the reactor's parts of it.

// ReleaseLocked drops c's output as it closes: its TLS state (with a
// close_notify when the stream is at a record boundary) and its outbox.
func (l *loop) ReleaseLocked(c *conn) {
	if c.Flags&connTLS != 0 {
		l.closeTLS(c)
	}
	c.Out.Release()
}

// CloseIO stops watching c's descriptor and closes it.
func (l *loop) CloseIO(c *conn) {
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
