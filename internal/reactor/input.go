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
	delivered, err := l.dispatch(c, c.state.AtEOF())
	if err != nil {
		l.closeConn(c, err)
		return
	}
	c.in.Done(l.split)
	if l.s.frameTO > 0 {
		l.frameCheck(c, delivered > 0)
	}
	l.afterDispatch(c)
}

// dispatch hands every complete frame to OnMessage. Its error is a
// framing error, or ErrPanic: a panic in the handler is recovered here,
// once per batch (an open-coded defer costs next to nothing per message),
// and closes only this connection.
func (l *loop) dispatch(c *conn, atEOF bool) (delivered int, err error) {
	defer func() {
		// Counted once per batch: a shared atomic per message would cost
		// every loop a contended cache line.
		if delivered > 0 {
			l.s.stats.MessagesIn.Add(int64(delivered))
		}
		if v := recover(); v != nil {
			err = engine.Recovered(l.s.log, l.s.stats, c.RemoteAddr(), "OnMessage", v)
		}
	}()
	h := l.s.h
	for c.req.Load()&(reqClose|reqSlow) == 0 {
		frame, ok, err := c.in.Next(l.split, atEOF)
		if err != nil || !ok {
			return delivered, err
		}
		h.OnMessage(c, frame)
		delivered++
	}
	return delivered, nil
}

// header parses the PROXY header from what c has received, and opens the
// connection once it is complete. It returns false while the header is
// incomplete, or when it closed c (a bad header, a panic in OnOpen).
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
	return l.open(c)
}
