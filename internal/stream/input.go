package stream

import (
	"errors"
	"io"
	"time"

	"switchboard/internal/engine"
	"switchboard/internal/proxyproto"
)

// The input side of a connection: the read loop, deadlines, half-close,
// delivery of frames, drain and the PROXY header.

// run is the read loop. Its error is the close reason; nil for an orderly
// end.
func (c *conn) run() error {
	cfg := &c.s.cfg
	if cfg.ProxyProtocol {
		if err := c.readProxyHeader(); err != nil {
			return err
		}
	}
	if c.tc != nil || cfg.TLS != nil {
		if done, err := c.handshake(); done || err != nil {
			return err
		}
	}
	c.opened = true
	if err := c.onOpen(); err != nil {
		return err
	}
	c.flush()

	for {
		// Decode and hand over every complete frame read so far, then
		// flush the replies in one go.
		delivered := 0
		if c.in.Buffered() > 0 {
			var err error
			if delivered, err = c.deliver(false); err != nil {
				c.flushAll()
				return err
			}
			c.flushBatch()
		}
		split := c.splitter()
		c.in.Done(split)

		c.waitBelowHighWater()
		c.setReadDeadline(delivered > 0)
		// Checked after setting the deadline: Shutdown closes draining
		// before it moves the deadline into the past, so one of the two
		// is seen.
		if c.s.isDraining() {
			return c.drain()
		}
		n, err := c.rw.Read(c.in.Room(split))
		c.in.Commit(n)
		cfg.Stats.BytesIn.Add(int64(n))
		c.bytesIn.Add(int64(n))
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return c.finish()
		}
		if isTimeout(err) {
			if c.s.isDraining() {
				// Interrupted by Shutdown: a read that raced in still counts.
				continue
			}
			if !c.frameStart.IsZero() && time.Since(c.frameStart) >= cfg.FrameTimeout {
				return engine.FrameTimedOut(cfg.FrameTimeout)
			}
			if c.idle.Load() == 0 {
				// Not the frame's deadline, and no idle timeout: a
				// SetIdleTimeout(0) raced with a deadline set before it.
				// Forget the deadline cached, so the next read sets one.
				c.deadline = time.Unix(1, 0)
				continue
			}
			return engine.ErrIdleTimeout
		}
		return err
	}
}

// setReadDeadline sets the next read's deadline: the idle timeout from
// now, or, while a frame is partial, the frame timeout from the frame's
// start if that is sooner. A partial frame is a new one when frames were
// delivered before it in this batch (the codec's), or the handler has
// begun one (PartialFrame). Without either timeout it touches nothing, so
// the steady state of a server without them costs no timer work.
func (c *conn) setReadDeadline(delivered bool) {
	cfg := &c.s.cfg
	var d time.Time
	var now time.Time
	if idle := time.Duration(c.idle.Load()); idle > 0 {
		now = time.Now()
		d = now.Add(idle)
	}
	if cfg.FrameTimeout > 0 {
		codecPartial := c.in.Buffered() > 0
		begun := c.frameBegun.Swap(false)
		if codecPartial || c.partial.Load() {
			if c.frameStart.IsZero() || begun || (codecPartial && delivered) {
				if now.IsZero() {
					now = time.Now()
				}
				c.frameStart = now
			}
			if fd := c.frameStart.Add(cfg.FrameTimeout); d.IsZero() || fd.Before(d) {
				d = fd
			}
		} else {
			c.frameStart = time.Time{}
		}
	}
	if d != c.deadline {
		c.deadline = d
		c.nc.SetReadDeadline(d)
	}
}

// finish handles the peer's EOF: whatever is left is the last frame (the eof
// codec's whole message) or a truncated one, and replies go out before the
// connection closes. A HalfCloser hears of the FIN and keeps the
// connection writable until it closes it, or the half-close wait ends.
func (c *conn) finish() error {
	_, err := c.deliver(true)
	if err != nil || c.s.cfg.OnPeerClose == nil {
		c.flushAll()
		return err
	}
	c.mu.Lock()
	keep := !c.closed && !c.wantCloseW
	c.mu.Unlock()
	if !keep {
		c.flushAll()
		return nil
	}
	if err := c.callback("OnPeerClose", func() { c.s.cfg.OnPeerClose(c) }); err != nil {
		return err
	}
	c.flush()
	return c.halfOpen()
}

// halfOpen waits, after the peer's FIN, for the handler to close the
// connection (CloseWrite: once its output is flushed) or for the
// half-close wait to end. Shutdown ends it as CloseWrite would.
func (c *conn) halfOpen() error {
	expired := false
	t := time.AfterFunc(c.s.cfg.HalfCloseTimeout, func() {
		c.mu.Lock()
		expired = true
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer t.Stop()
	c.mu.Lock()
	for !c.closed && !c.wantCloseW && !expired && !c.s.isDraining() {
		c.cond.Wait()
	}
	closed := c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return nil
	case expired:
		return engine.ErrHalfCloseTimeout
	}
	c.flushAll()
	return nil
}

// deliver hands every complete frame buffered to the handler. Replies
// queue up meanwhile; the caller flushes them in one go. A SetCodec from
// one message applies before the next is decoded.
//
// A panic in the handler is recovered here, once per batch, and becomes
// the connection's close reason (ErrPanic); only this connection ends.
func (c *conn) deliver(atEOF bool) (delivered int, err error) {
	h := c.s.h
	c.cb.Lock()
	c.setDispatch(true)
	defer func() {
		c.setDispatch(false)
		c.cb.Unlock()
		if delivered > 0 {
			c.s.cfg.Stats.MessagesIn.Add(int64(delivered))
			c.msgsIn.Add(int64(delivered))
		}
		if v := recover(); v != nil {
			err = engine.Recovered(c.s.cfg.Logger, c.s.cfg.Stats, c.RemoteAddr(), "OnMessage", v)
		}
	}()
	for {
		frame, ok, err := c.in.Next(c.splitter(), atEOF)
		if err != nil || !ok {
			return delivered, err
		}
		h.OnMessage(c, frame)
		delivered++
	}
}

// drain ends a connection during Shutdown: replies to messages already
// handled are flushed, then our FIN goes out and we wait (bounded) for the
// peer's, so it reads a clean prefix and EOF instead of a reset.
func (c *conn) drain() error {
	c.flushAll()
	c.mu.Lock()
	closed := c.closed
	c.wantCloseW, c.wclosed = true, true
	c.mu.Unlock()
	if closed {
		return nil
	}
	c.shutWrite()
	c.nc.SetReadDeadline(c.s.lingerDeadline())
	_, err := io.Copy(io.Discard, c.nc)
	if err != nil && isTimeout(err) {
		return engine.ErrShutdown
	}
	return nil
}

// readProxyHeader reads until a whole PROXY header has arrived, within
// the header timeout, and records the client address it carries. Bytes
// after it stay buffered for the frame loop.
func (c *conn) readProxyHeader() error {
	split := c.s.split
	wait := c.s.cfg.ProxyHeaderTimeout()
	c.nc.SetReadDeadline(time.Now().Add(wait))
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		h, n, err := proxyproto.Parse(c.in.Bytes())
		if err != nil {
			return err
		}
		if n > 0 {
			if !h.Local && h.Src != nil {
				c.remote = h.Src
			}
			c.in.Skip(n)
			return nil
		}
		if c.in.Buffered() >= engine.MaxProxyHeader {
			return engine.ProxyHeaderTooLong()
		}
		m, err := c.nc.Read(c.in.Room(split))
		c.in.Commit(m)
		// Counted as the frame loop counts: the header and whatever came
		// with it are bytes received.
		c.s.cfg.Stats.BytesIn.Add(int64(m))
		c.bytesIn.Add(int64(m))
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return engine.ProxyHeaderEOF()
		case isTimeout(err):
			return engine.ProxyHeaderLate(wait)
		default:
			return err
		}
	}
}
