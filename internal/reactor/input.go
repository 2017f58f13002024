//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/rawio"
)

// Input: one read per readiness, frames decoded in place and handed to the
// handler. The frame loop itself is framing.Accumulator's, and what a batch
// of input means (the PROXY header, OnMessage, the frame timeout, the
// peer's FIN) is loopconn's; this file decides where each read lands.

func (l *loop) readable(c *conn) {
	if c.Flags&connTLS != 0 {
		l.readableTLS(c)
		return
	}
	// A partial frame is waiting: read straight behind it rather than
	// into the loop buffer and copy. Otherwise read into the loop buffer
	// and decode from there.
	held := c.Held() > 0
	buf := l.buf
	if held {
		buf = c.In.Room(l.SplitOf(c))
	}
	n, err := rawio.Read(int(c.Fd), buf)
	switch {
	case n > 0:
		l.BytesIn += int64(n)
		c.LastRead = l.Now
		if l.Draining {
			return // input after Shutdown is read and dropped
		}
		if held {
			c.In.Commit(n)
		} else {
			l.In(c).Feed(l.SplitOf(c), l.buf[:n])
		}
		l.input(c, n)
	case n == 0 && err == nil:
		l.eof(c)
	case err == unix.EAGAIN || err == unix.EINTR:
	default:
		l.Close(c, os.NewSyscallError("read", err))
	}
}

// input delivers what c.In holds (n bytes of it new) and flushes.
func (l *loop) input(c *conn, n int) {
	if msgs, ok := l.Deliver(c, n); ok {
		l.Flush(c, msgs)
	}
}

// eof handles the peer's FIN: what is left is decoded with atEOF (the eof
// codec's whole message, or a truncated frame) and handed over
// (loopconn.Loop.PeerEOF says what follows).
func (l *loop) eof(c *conn) {
	if l.EOF(c) {
		l.PeerEOF(c)
		l.input(c, 0)
	}
}
