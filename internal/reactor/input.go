//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/framing"
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
	if c.tls != nil {
		l.readableTLS(c)
		return
	}
	// A partial frame is waiting: read straight behind it rather than
	// into the loop buffer and copy. Otherwise read into the loop buffer
	// and decode from there.
	held := c.in.Buffered() > 0
	buf := l.buf
	if held {
		buf = c.in.Room(l.splitOf(c))
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
			c.in.Feed(l.splitOf(c), l.buf[:n])
		}
		l.input(c, n)
	case n == 0 && err == nil:
		l.eof(c)
	case err == unix.EAGAIN || err == unix.EINTR:
	default:
		l.closeConn(c, os.NewSyscallError("read", err))
	}
}

// eof handles the peer's FIN: what is left is decoded with atEOF (the eof
// codec's whole message, or a truncated frame) and handed over. Then, for
// a HalfCloser handler, OnPeerClose runs and the connection stays
// writable within the half-close wait (connstate.PeerShut); otherwise the
// replies flush and it closes once they are out (connstate.Finishing).
func (l *loop) eof(c *conn) {
	s := l.s
	switch {
	case l.draining:
		l.closeConn(c, nil)
	case c.state == connstate.Header:
		l.closeConn(c, engine.ProxyHeaderEOF())
	case !c.state.Reading():
		// A hang-up reported again after the FIN: nothing new.
	default:
		c.state.PeerEOF(s.cfg.OnPeerClose != nil)
		if c.state == connstate.PeerShut {
			// The idle entry becomes the half-close wait: nothing more
			// will be read, so idleness means nothing now.
			l.arm(c, timerIdle, l.now+int64(s.cfg.HalfCloseTimeout))
		}
		l.input(c, 0)
	}
}

// splitOf is the frame loop c decodes with: the loop's, unless the
// handler switched codecs.
func (l *loop) splitOf(c *conn) *framing.Splitter {
	if c.split != nil {
		return c.split
	}
	return l.split
}

// input decodes and delivers every complete frame c.in holds (n bytes of
// them new), keeps a partial frame's bytes, and flushes. In
// connstate.Header the PROXY header comes first.
func (l *loop) input(c *conn, n int) {
	c.mu.Lock()
	c.sched = true
	c.st.BytesIn += int64(n)
	c.mu.Unlock()
	if c.state == connstate.Header && !l.header(c) {
		c.in.Done(l.splitOf(c))
		if c.state != connstate.Closed {
			l.afterDispatch(c, 0)
		}
		return
	}
	atEOF := c.state.AtEOF()
	delivered, err := l.dispatch(c, atEOF)
	if err != nil {
		// Counted before closing: the connection log reports them.
		c.mu.Lock()
		c.st.MessagesIn += int64(delivered)
		c.mu.Unlock()
		l.closeConn(c, err)
		return
	}
	c.in.Done(l.splitOf(c))
	if l.s.frameTO > 0 {
		l.frameCheck(c, delivered > 0)
	}
	if atEOF && c.state == connstate.PeerShut && c.req.Load()&(reqClose|reqSlow) == 0 {
		if err := l.guard(c, "OnPeerClose", l.s.cfg.OnPeerClose); err != nil {
			l.closeConn(c, err)
			return
		}
	}
	l.afterDispatch(c, int64(delivered))
}

// switchCodec applies SetCodec between two messages: what c holds is
// decoded from here on with a frame loop of the new codec, which shares
// the loop's buffers (so a held partial frame's buffer goes back to the
// same free list), and the scan of a partial frame starts over, since
// the old codec's progress means nothing to the new one.
func (l *loop) switchCodec(c *conn) *framing.Splitter {
	c.mu.Lock()
	var codec framing.Codec
	if c.codecs != nil {
		codec, c.codecs.next = c.codecs.next, nil
	}
	c.req.And(^uint32(reqCodec))
	c.mu.Unlock()
	if codec != nil {
		c.split = framing.NewSplitter(codec, framing.SplitterOptions{Room: minReadRoom, Buffers: l.free})
		c.in.Skip(0)
	}
	return l.splitOf(c)
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
	split := l.splitOf(c)
	for {
		r := c.req.Load()
		if r&(reqClose|reqSlow) != 0 {
			break
		}
		if r&reqCodec != 0 {
			split = l.switchCodec(c)
		}
		frame, ok, err := c.in.Next(split, atEOF)
		if err != nil || !ok {
			return delivered, err
		}
		h.OnMessage(c, frame)
		delivered++
	}
	return delivered, nil
}

// guard runs a callback other than OnMessage (OnPeerClose, an AfterFunc)
// with the same panic isolation as dispatch: a panic closes c alone, with
// ErrPanic.
func (l *loop) guard(c *conn, name string, f func(engine.Conn)) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = engine.Recovered(l.s.log, l.s.stats, c.RemoteAddr(), name, v)
		}
	}()
	f(c)
	return nil
}

// header parses the PROXY header from what c has received, and opens the
// connection once it is complete. It returns false while the header is
// incomplete, or when it closed c (a bad header, a panic in OnOpen).
func (l *loop) header(c *conn) bool {
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
	if l.s.tls != nil {
		// What follows the header is the TLS stream.
		l.startTLS(c, c.in.Bytes())
		c.in.Reset(l.split)
		return true
	}
	if idle := c.idle.Load(); idle > 0 {
		l.arm(c, timerIdle, l.now+idle)
	} else {
		l.disarm(c, timerIdle)
	}
	return l.open(c)
}
