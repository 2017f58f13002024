package uringengine

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/framing"
	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/inbuf"
	"switchboard/internal/proxyproto"
	"switchboard/internal/uring"
)

// Input: one multishot receive per connection, armed with buffer select,
// so the kernel picks a buffer from the loop's ring only when bytes
// arrive. A completion hands the loop one buffer (or, with a bundle,
// several consecutive ones); each is fed to the connection's
// framing.Accumulator, which decodes every complete frame where it lies
// in the kernel's buffer and copies only a partial frame's bytes into a
// buffer of its own; then the buffer is recycled at once, and the next
// enter gives it back to the kernel. Backpressure cancels the receive;
// bytes already received meanwhile are kept, undecoded, until the output
// drains.

// wantRecv reports whether c should have a receive armed: more input can
// come, and reading is not paused (draining connections read on, to drop
// input and see the peer's FIN).
func (l *loop) wantRecv(c *conn) bool {
	return c.state.Reading() && (c.flags&connPaused == 0 || l.draining) && c.flags&connTLSHold == 0
}

func (l *loop) armRecv(c *conn) {
	sqe := l.sqe()
	sqe.PrepRecv(int(c.fd), bufGroup, true, l.bundle)
	sqe.SetUserData(userData(udRecv, c.gen, c.slot))
	c.flags |= connRecv
	c.flags &^= connCancel
	l.inflight++
}

// scheduleRearm has the receive armed again before the next enter.
func (l *loop) scheduleRearm(c *conn) {
	if c.flags&connRearm == 0 {
		c.flags |= connRearm
		l.rearm = append(l.rearm, c)
	}
}

// cancelRecv asks the kernel to end c's receive (backpressure).
func (l *loop) cancelRecv(c *conn) {
	if c.flags&(connRecv|connCancel) != connRecv {
		return
	}
	sqe := l.sqe()
	sqe.PrepCancel(userData(udRecv, c.gen, c.slot), false)
	sqe.SetUserData(userData(udCancel, 0, 0))
	sqe.SetFlags(uring.SQECQESkipSuccess)
	c.flags |= connCancel
}

// received handles a receive completion; c is nil when its connection has
// closed since. Every buffer a completion carries goes through the buffer
// ring's accounting and back to the kernel whatever became of c.
func (l *loop) received(cqe *uring.CQE, c *conn) {
	if !cqe.More() {
		l.inflight--
		if c != nil {
			c.flags &^= connRecv | connCancel
		}
	}
	if _, ok := cqe.Buffer(); ok {
		l.cur = c
		if _, err := l.br.Bundle(cqe, l.onBuf); err != nil {
			// The ring's accounting is lost: nothing received from here
			// on could be trusted to be in order.
			l.s.fail(err)
			l.closeAll()
			return
		}
		l.cur = nil
	} else if c != nil {
		switch {
		case cqe.Res == 0 && c.tls != nil:
			l.eofTLS(c)
			return
		case cqe.Res == 0:
			l.eof(c)
			return
		case cqe.Res == -int32(unix.ENOBUFS), cqe.Res == -int32(unix.ECANCELED):
			// Every buffer was out (armed again once this iteration's
			// are recycled), or backpressure cancelled it.
		case cqe.Res < 0:
			l.closeConn(c, os.NewSyscallError("recv", unix.Errno(-cqe.Res)))
			return
		}
	}
	if c != nil && c.state != connstate.Closed && c.flags&connRecv == 0 && l.wantRecv(c) {
		l.scheduleRearm(c)
	}
}

// buffer takes one received buffer for l.cur, then recycles it. Bytes
// that arrive for a connection already closed (the rest of a bundle after
// a framing error, completions still queued) go straight back and are
// not counted as taken in: no connection ever held them.
func (l *loop) buffer(id uint16, data []byte) {
	c := l.cur
	switch {
	case c == nil || c.state == connstate.Closed || len(data) == 0:
		l.br.Recycle(id)
		return
	}
	l.bytesIn += int64(len(data))
	switch {
	case l.draining:
		c.lastRead = l.now // input after Shutdown is received and dropped
	case c.tls != nil:
		l.bufferTLS(c, data)
	case c.flags&connPaused != 0 || len(c.held) > 0:
		// Received after the pause began, before the cancellation took
		// (the rest of a bundle, or more completions in the same batch):
		// kept undecoded until the output drains, then decoded a
		// buffer's worth at a time, as if it had just arrived.
		c.lastRead = l.now
		c.held = append(c.held, data...)
	default:
		c.lastRead = l.now
		c.in.Feed(l.splitOf(c), data)
		l.input(c, len(data))
	}
	l.br.Recycle(id)
}

// eof handles the peer's FIN: what is left is decoded with atEOF and
// handed over. Then, for a HalfCloser handler, OnPeerClose runs and the
// connection stays writable within the half-close wait
// (connstate.PeerShut); otherwise the replies flush and it closes once
// they are out (connstate.Finishing).
func (l *loop) eof(c *conn) {
	switch {
	case l.draining:
		l.closeConn(c, nil)
	case c.state == connstate.Header:
		l.closeConn(c, engine.ProxyHeaderEOF())
	case !c.state.Reading():
		// A FIN reported again: nothing new.
	default:
		if c.flags&connPaused != 0 || len(c.held) > 0 {
			// Held input is decoded first, when the output drains.
			c.flags |= connEOFHeld
			return
		}
		l.peerEOF(c)
	}
}

// peerEOF moves c past the peer's FIN and decodes the rest with atEOF.
func (l *loop) peerEOF(c *conn) {
	s := l.s
	c.state.PeerEOF(s.cfg.OnPeerClose != nil)
	if c.state == connstate.PeerShut {
		// The idle entry becomes the half-close wait: nothing more will
		// be received, so idleness means nothing now.
		l.arm(c, timerIdle, l.now+int64(s.cfg.HalfCloseTimeout))
	}
	l.input(c, 0)
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
// them new), keeps a partial frame's bytes, and dispatches. In
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

// switchCodec applies SetCodec between two messages, as the reactor's
// does: what c holds is decoded from here on with a frame loop of the new
// codec sharing the loop's buffers, and the scan of a partial frame
// starts over.
func (l *loop) switchCodec(c *conn) *framing.Splitter {
	c.mu.Lock()
	var codec framing.Codec
	if c.codecs != nil {
		codec, c.codecs.next = c.codecs.next, nil
	}
	c.req.And(^uint32(reqCodec))
	c.mu.Unlock()
	if codec != nil {
		c.split = framing.NewSplitter(codec, framing.SplitterOptions{Room: inbuf.ReadRoom, Buffers: l.free})
		c.in.Skip(0)
	}
	return l.splitOf(c)
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

// dispatch hands every complete frame to OnMessage. Its error is a
// framing error, or ErrPanic: a panic in the handler is recovered here,
// once per batch, and closes only this connection.
func (l *loop) dispatch(c *conn, atEOF bool) (delivered int, err error) {
	defer func() {
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

// header parses the PROXY header from what c has received, and opens the
// connection once it is complete.
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
		c.in.Reset(l.splitOf(c))
		return false
	}
	if idle := c.idle.Load(); idle > 0 {
		l.arm(c, timerIdle, l.now+idle)
	} else {
		l.disarm(c, timerIdle)
	}
	return l.open(c)
}

// resume decodes what was held during a pause, a buffer's worth at a
// time, until it is all decoded or the output has paused reading again;
// then the peer's FIN, if it came behind it.
func (l *loop) resume(c *conn) {
	if t := c.tls; t != nil {
		// The ciphertext waited in the TLS state; its FIN, if it came,
		// ends the stream where Read finds it.
		if !l.draining && t.Held() {
			l.inputTLS(c)
		}
		return
	}
	for c.state != connstate.Closed && c.flags&connPaused == 0 && c.heldOff < len(c.held) {
		n := min(bufSize, len(c.held)-c.heldOff)
		chunk := c.held[c.heldOff : c.heldOff+n]
		c.heldOff += n
		c.in.Feed(l.splitOf(c), chunk)
		l.input(c, n)
	}
	if c.heldOff == len(c.held) {
		c.held, c.heldOff = nil, 0
	}
	if c.state != connstate.Closed && c.flags&(connPaused|connEOFHeld) == connEOFHeld && c.held == nil {
		c.flags &^= connEOFHeld
		l.peerEOF(c)
	}
}
