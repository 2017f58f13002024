//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/inbuf"
	"switchboard/internal/proxyproto"
	"switchboard/internal/rawio"
)

// Input: one read per readiness, frames decoded in place and handed to the
// handler. The frame loop itself is framing.Accumulator's; this file
// decides where each read lands and what the connection's state makes of
// it.

// minReadRoom is the least free space a partial frame's buffer offers a
// read; smaller reads would cost more system calls than copies.
const minReadRoom = inbuf.ReadRoom

func (l *loop) readable(c *conn) {
	// A partial frame is waiting: read straight behind it rather than
	// into the loop buffer and copy. Otherwise read into the loop buffer
	// and decode from there.
	held := c.in.Buffered() > 0
	buf := l.buf
	if held {
		buf = c.in.Room(l.split)
	}
	n, err := rawio.Read(int(c.fd), buf)
	switch {
	case n > 0:
		l.bytesIn += int64(n)
		c.lastRead = l.now
		if l.draining {
			return // input after Shutdown is read and dropped
		}
		if held {
			c.in.Commit(n)
		} else {
			c.in.Feed(l.split, l.buf[:n])
		}
		l.input(c)
	case n == 0 && err == nil:
		l.eof(c)
	case err == unix.EAGAIN || err == unix.EINTR:
	default:
		l.closeConn(c, os.NewSyscallError("read", err))
	}
}

// eof handles the peer's FIN: what is left is decoded with atEOF (the eof
// codec's whole message, or a truncated frame), replies are flushed, and
// the connection closes once they are out (connstate.Finishing).
func (l *loop) eof(c *conn) {
	switch {
	case l.draining:
		l.closeConn(c, nil)
	case c.state == connstate.Header:
		l.closeConn(c, engine.ProxyHeaderEOF())
	default:
		c.state.PeerEOF()
		l.input(c)
	}
}

// input decodes and delivers every complete frame c.in holds, keeps a
// partial frame's bytes, and flushes. In connstate.Header the PROXY header
// comes first.
func (l *loop) input(c *conn) {
	c.mu.Lock()
	c.sched = true
	c.mu.Unlock()
	if c.state == connstate.Header && !l.header(c) {
		c.in.Done(l.split)
		if c.state != connstate.Closed {
			l.afterDispatch(c)
		}
		return
	}
	h := l.s.h
	atEOF := c.state.AtEOF()
	for c.req.Load()&(reqClose|reqSlow) == 0 {
		frame, ok, err := c.in.Next(l.split, atEOF)
		if err != nil {
			l.closeConn(c, err)
			return
		}
		if !ok {
			break
		}
		h.OnMessage(c, frame)
	}
	c.in.Done(l.split)
	l.afterDispatch(c)
}

// header parses the PROXY header from what c has received, and opens the
// connection once it is complete. It returns false while the header is
// incomplete, or when it closed c for a bad one.
func (l *loop) header(c *conn) bool {
	s := l.s
	h, n, err := proxyproto.Parse(c.in.Bytes())
	if err != nil {
		l.closeConn(c, err)
		return false
	}
	if n == 0 {
		if c.in.Buffered() >= engine.MaxProxyHeader {
			l.closeConn(c, engine.ProxyHeaderTooLong())
		}
		return false
	}
	c.in.Skip(n)
	if !h.Local && h.Src != nil {
		c.proxied = h.Src
	}
	if s.idle > 0 {
		l.arm(c, timerIdle, l.now+s.idle)
	} else {
		l.disarm(c, timerIdle)
	}
	l.open(c)
	return true
}
