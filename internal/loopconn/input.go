//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"switchboard/framing"
	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/inbuf"
	"switchboard/internal/proxyproto"
)

// A callback batch: the engine has fed c.In (Accumulator.Feed, or
// Room/Commit behind a held partial frame) and calls Deliver, which
// decodes and hands over every complete frame; then the engine flushes
// (BeginFlush and its own send). Nothing in between is an indirect call.

// Deliver decodes and delivers every complete frame c.In holds (n bytes
// of them new) and keeps a partial frame's bytes; in connstate.Header the
// PROXY header comes first. It returns the messages delivered for the
// engine's flush, or ok false when c has closed (the flush is not to
// follow).
func (l *Loop[IO]) Deliver(c *Conn[IO], n int) (msgs int64, ok bool) {
	l.In(c) // at the peer's FIN there may be nothing fed
	c.Mu.Lock()
	c.shared |= sharedSched
	c.St.BytesIn += int64(n)
	c.Mu.Unlock()
	if c.State == connstate.Header && !l.header(c) {
		l.EndInput(c)
		return 0, c.State != connstate.Closed
	}
	atEOF := c.State.AtEOF()
	delivered, err := l.Dispatch(c, atEOF)
	if err != nil {
		// Counted before closing: the connection log reports them.
		c.Mu.Lock()
		c.St.MessagesIn += int64(delivered)
		c.Mu.Unlock()
		l.Close(c, err)
		return 0, false
	}
	l.EndInput(c)
	l.FrameCheck(c, delivered > 0)
	if atEOF && c.State == connstate.PeerShut && !c.Closing() {
		if err := l.Guard(c, "OnPeerClose", l.S.Cfg.OnPeerClose); err != nil {
			l.Close(c, err)
			return 0, false
		}
	}
	return int64(delivered), true
}

// FrameCheck is the frame timeout's look at c after a batch of input
// (delivered: it delivered frames), when the timeout is on.
func (l *Loop[IO]) FrameCheck(c *Conn[IO], delivered bool) {
	if l.S.FrameTO > 0 {
		l.frameCheck(c, delivered)
	}
}

// switchCodec applies SetCodec between two messages: what c holds is
// decoded from here on with a frame loop of the new codec, which shares
// the loop's buffers (so a held partial frame's buffer goes back to the
// same free list), and the scan of a partial frame starts over, since
// the old codec's progress means nothing to the new one.
func (l *Loop[IO]) switchCodec(c *Conn[IO]) *framing.Splitter {
	c.Mu.Lock()
	r := c.rareLocked()
	codec := r.next
	r.next = nil
	c.req.And(^uint32(reqCodec))
	c.Mu.Unlock()
	if codec != nil {
		r.split = framing.NewSplitter(codec, framing.SplitterOptions{Room: inbuf.ReadRoom, Buffers: l.Free})
		c.Flags |= flagSplit
		if c.In != nil {
			c.In.Skip(0)
		}
	}
	return l.SplitOf(c)
}

// Dispatch hands every complete frame in c.In (Loop.In) to OnMessage, atEOF
// deciding what a truncated one means. Its error is a framing error, or
// ErrPanic: a panic in the handler is recovered here, once per batch (an
// open-coded defer costs next to nothing per message), and closes only
// this connection.
func (l *Loop[IO]) Dispatch(c *Conn[IO], atEOF bool) (delivered int, err error) {
	defer func() {
		// Counted once per batch: a shared atomic per message would cost
		// every loop a contended cache line.
		if delivered > 0 {
			l.S.Stats.MessagesIn.Add(int64(delivered))
		}
		if v := recover(); v != nil {
			err = engine.Recovered(l.S.Log, l.S.Stats, c.RemoteAddr(), "OnMessage", v)
		}
	}()
	h := l.S.H
	split := l.SplitOf(c)
	for {
		r := c.req.Load()
		if r&(reqClose|reqSlow) != 0 {
			break
		}
		if r&reqCodec != 0 {
			split = l.switchCodec(c)
		}
		frame, ok, err := c.In.Next(split, atEOF)
		if err != nil || !ok {
			return delivered, err
		}
		h.OnMessage(c, frame)
		delivered++
	}
	return delivered, nil
}

// Guard runs a callback other than OnMessage (OnPeerClose, an AfterFunc)
// with the same panic isolation as Dispatch: a panic closes c alone, with
// ErrPanic.
func (l *Loop[IO]) Guard(c *Conn[IO], name string, f func(engine.Conn)) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = engine.Recovered(l.S.Log, l.S.Stats, c.RemoteAddr(), name, v)
		}
	}()
	f(c)
	return nil
}

// header parses the PROXY header from what c has received, and opens the
// connection once it is complete (or starts its TLS handshake). It
// returns false while the header is incomplete, or when it closed c (a
// bad header, a panic in OnOpen).
func (l *Loop[IO]) header(c *Conn[IO]) bool {
	h, n, err := proxyproto.Parse(c.In.Bytes())
	if err != nil {
		l.Close(c, err)
		return false
	}
	if n == 0 {
		if c.In.Buffered() >= engine.MaxProxyHeader {
			l.Close(c, engine.ProxyHeaderTooLong())
		}
		return false
	}
	c.In.Skip(n)
	if !h.Local && h.Src != nil {
		c.Mu.Lock()
		c.rareLocked().proxied = h.Src
		c.Mu.Unlock()
	}
	if l.tls != nil {
		// What follows the header is the TLS stream. It was counted in
		// with the header; the engine counts it again as the plaintext
		// it decrypts to, as it does the rest of the stream.
		rest := c.In.Bytes()
		c.CountIn(-len(rest))
		l.tls.StartTLS(c, rest)
		c.In.Reset(l.Split)
		return true
	}
	l.ArmIdle(c)
	return l.Open(c)
}

// Open runs OnOpen. The caller has called BeginCallbacks and flushes
// afterwards, unless Open returns false: OnOpen panicked and c is closed.
func (l *Loop[IO]) Open(c *Conn[IO]) (ok bool) {
	c.State = connstate.Open
	c.Flags |= FlagOpened
	defer func() {
		if v := recover(); v != nil {
			l.Close(c, engine.Recovered(l.S.Log, l.S.Stats, c.RemoteAddr(), "OnOpen", v))
			ok = false
		}
	}()
	l.S.H.OnOpen(c)
	return true
}

// EOF handles the peer's FIN as far as it does not depend on the engine:
// draining, or in Header, c closes; a FIN seen again is nothing new. It
// reports whether the engine should go on to PeerEOF (perhaps after
// decoding input it holds back first).
func (l *Loop[IO]) EOF(c *Conn[IO]) bool {
	switch {
	case l.Draining:
		l.Close(c, nil)
	case c.State == connstate.Header:
		l.Close(c, engine.ProxyHeaderEOF())
	case !c.State.Reading():
		// A hang-up reported again after the FIN: nothing new.
	default:
		return true
	}
	return false
}

// PeerEOF moves c past the peer's FIN. For a HalfCloser handler it goes
// to connstate.PeerShut, staying writable within the half-close wait;
// otherwise to connstate.Finishing, closing once its replies are out.
// The engine then delivers the rest with atEOF (Deliver with no new
// bytes).
func (l *Loop[IO]) PeerEOF(c *Conn[IO]) {
	s := l.S
	c.State.PeerEOF(s.Cfg.OnPeerClose != nil)
	if c.State == connstate.PeerShut {
		// The idle entry becomes the half-close wait: nothing more
		// will be read, so idleness means nothing now.
		l.Arm(c, TimerIdle, l.Now+int64(s.Cfg.HalfCloseTimeout))
	}
}

// BeginFlush starts the engine's flush after a callback batch (msgs of
// them messages, counted here, where the lock is taken anyway) or a kick
// from another goroutine: it applies what the handler asked (an idle
// timeout, a codec, CloseWrite) and closes c if it asked that. It returns
// with c.Mu held for the engine's flush, or false, unlocked, when c has
// closed.
func (l *Loop[IO]) BeginFlush(c *Conn[IO], msgs int64) bool {
	c.Mu.Lock()
	c.shared &^= sharedSched
	c.St.MessagesIn += msgs
	l.foldMessages(c)
	r := c.req.Load()
	if r&reqIdle != 0 {
		c.req.And(^uint32(reqIdle))
		l.rearmIdle(c)
	}
	if r&reqCodec != 0 && c.State != connstate.Closed && c.Held() == 0 {
		// Nothing held to decode: the next read uses the new codec. (With
		// bytes held, input switches before decoding them.)
		c.Mu.Unlock()
		l.switchCodec(c)
		c.Mu.Lock()
	}
	if r&(reqClose|reqSlow) != 0 {
		c.Mu.Unlock()
		var err error
		if r&reqSlow != 0 {
			err = engine.ErrSlowConsumer
		}
		l.Close(c, err)
		return false
	} else if r&reqCloseWrite != 0 {
		c.State.CloseWrite()
	}
	return true
}
