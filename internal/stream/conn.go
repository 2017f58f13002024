package stream

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/proxyproto"
)

const (
	// initialReadBuf keeps idle connections cheap; the buffer grows only
	// while a frame larger than it is being assembled.
	initialReadBuf = 16 << 10
	// writeChunk bounds one write call so the write deadline measures a
	// lack of progress, not the time to send the whole backlog.
	writeChunk = 256 << 10
)

type conn struct {
	s      *server
	nc     net.Conn
	remote net.Addr
	// Only the reader goroutine touches these two.
	opened bool                // OnOpen was called
	in     framing.Accumulator // bytes read and not yet decoded

	mu         sync.Mutex
	cond       sync.Cond // signalled when pending output shrinks or the conn closes
	value      any
	out        []byte // framed output not yet handed to a write call
	spare      []byte // the buffer a write call is sending from
	pending    int    // bytes queued or being written
	flushing   bool   // someone owns the write side now
	dispatch   bool   // the reader is inside the handler; it flushes after
	wantCloseW bool   // CloseWrite requested: shut down once flushed
	wclosed    bool
	closed     bool
	closeErr   error
}

func newConn(s *server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, remote: nc.RemoteAddr()}
	c.cond.L = &c.mu
	return c
}

func (c *conn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

func (c *conn) Context() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value
}

func (c *conn) SetContext(v any) {
	c.mu.Lock()
	c.value = v
	c.mu.Unlock()
}

func (c *conn) Write(msg []byte) error {
	c.mu.Lock()
	if c.closed || c.wantCloseW {
		c.mu.Unlock()
		return engine.ErrConnClosed
	}
	before := len(c.out)
	out, err := c.s.cfg.Codec.Append(c.out, msg)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	added := len(out) - before
	if c.pending+added > c.s.writeLimit {
		c.out = out[:before]
		c.mu.Unlock()
		c.closeWith(engine.ErrSlowConsumer)
		return engine.ErrSlowConsumer
	}
	c.out = out
	c.pending += added
	c.kickLocked()
	c.mu.Unlock()
	return nil
}

func (c *conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return engine.ErrConnClosed
	}
	c.wantCloseW = true
	c.kickLocked()
	return nil
}

func (c *conn) Close() error {
	if !c.closeWith(nil) {
		return engine.ErrConnClosed
	}
	return nil
}

// kickLocked makes sure queued output will be written: the reader flushes
// after its handler batch, otherwise a flusher goroutine is started.
func (c *conn) kickLocked() {
	if c.flushing || c.dispatch || c.closed {
		return
	}
	c.flushing = true
	c.s.conwg.Add(1)
	go func() {
		defer c.s.conwg.Done()
		c.flushOwned()
	}()
}

// flush writes everything queued, on the caller's goroutine, unless
// another goroutine owns the write side already.
func (c *conn) flush() {
	c.mu.Lock()
	if c.flushing || c.closed {
		c.mu.Unlock()
		return
	}
	c.flushing = true
	c.mu.Unlock()
	c.flushOwned()
}

// flushAll writes everything queued and waits for a concurrent flusher to
// finish, so the caller may close the socket without losing output.
func (c *conn) flushAll() {
	for {
		c.flush()
		c.mu.Lock()
		for c.flushing && !c.closed {
			c.cond.Wait()
		}
		done := c.closed || len(c.out) == 0
		c.mu.Unlock()
		if done {
			return
		}
	}
}

// flushOwned runs with c.flushing set and clears it when done.
func (c *conn) flushOwned() {
	c.mu.Lock()
	for !c.closed && len(c.out) > 0 {
		// Swap buffers so writers append to one while the other is sent.
		c.out, c.spare = c.spare[:0], c.out
		buf := c.spare
		c.mu.Unlock()
		err := c.writeAll(buf)
		c.mu.Lock()
		if err != nil {
			c.flushing = false
			c.cond.Broadcast()
			c.mu.Unlock()
			c.closeWith(err)
			return
		}
	}
	if !c.closed && c.wantCloseW && !c.wclosed {
		c.wclosed = true
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	c.flushing = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *conn) writeAll(buf []byte) error {
	wt := c.s.cfg.WriteTimeout
	for len(buf) > 0 {
		chunk := buf[:min(len(buf), writeChunk)]
		if wt > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(wt))
		}
		n, err := c.nc.Write(chunk)
		c.s.cfg.Stats.BytesOut.Add(int64(n))
		buf = buf[n:]
		c.mu.Lock()
		c.pending -= n
		if c.pending <= c.s.lowWater {
			c.cond.Broadcast()
		}
		c.mu.Unlock()
		if err != nil {
			if isTimeout(err) {
				return engine.ErrWriteTimeout
			}
			return err
		}
	}
	return nil
}

// closeWith closes the socket once, reporting whether this call did; the
// reader reports err to OnClose.
func (c *conn) closeWith(err error) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.closeErr = err
	c.cond.Broadcast()
	c.mu.Unlock()
	c.nc.Close()
	return true
}

// interruptRead wakes a reader blocked in Read so it can drain.
func (c *conn) interruptRead() {
	c.nc.SetReadDeadline(time.Unix(1, 0))
	c.mu.Lock()
	c.cond.Broadcast()
	c.mu.Unlock()
}

// waitBelowHighWater pauses reading while the outbox is above the
// high-water mark, until it drains to the low-water mark. The kernel's
// receive buffer then fills and TCP flow control stops the peer.
func (c *conn) waitBelowHighWater() {
	c.mu.Lock()
	if c.pending > c.s.cfg.MaxPending {
		for !c.closed && c.pending > c.s.lowWater && !c.s.isDraining() {
			c.cond.Wait()
		}
	}
	c.mu.Unlock()
}

func (c *conn) setDispatch(on bool) {
	c.mu.Lock()
	c.dispatch = on
	c.mu.Unlock()
}

// serve runs the connection's reader until the connection ends, then calls
// OnClose.
func (c *conn) serve() {
	err := c.run()
	c.mu.Lock()
	if c.closed {
		err = c.closeErr
	}
	c.mu.Unlock()
	c.closeWith(err)
	// Wait out a flusher so OnClose is the handler's last event.
	c.mu.Lock()
	for c.flushing {
		c.cond.Wait()
	}
	c.mu.Unlock()
	c.s.cfg.Stats.CountClose(err)
	engine.LogClose(c.s.cfg.Logger, c.RemoteAddr(), err)
	if c.opened {
		// A connection refused before OnOpen (a bad PROXY header) never
		// reached the handler, so it hears nothing of its end either.
		c.s.h.OnClose(c, err)
	}
	c.s.untrack(c)
}

// run is the read loop. Its error is the close reason; nil for an orderly
// end.
func (c *conn) run() error {
	cfg := &c.s.cfg
	split := c.s.split
	if cfg.ProxyProtocol {
		if err := c.readProxyHeader(); err != nil {
			return err
		}
	}
	c.opened = true
	c.setDispatch(true)
	c.s.h.OnOpen(c)
	c.setDispatch(false)
	c.flush()

	for {
		// Decode and hand over every complete frame read so far, then
		// flush the replies in one go.
		if c.in.Buffered() > 0 {
			if err := c.deliver(false); err != nil {
				c.flushAll()
				return err
			}
			c.flush()
		}
		c.in.Done(split)

		c.waitBelowHighWater()
		if cfg.IdleTimeout > 0 {
			c.nc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		}
		// Checked after setting the deadline: Shutdown closes draining
		// before it moves the deadline into the past, so one of the two
		// is seen.
		if c.s.isDraining() {
			return c.drain()
		}
		n, err := c.nc.Read(c.in.Room(split))
		c.in.Commit(n)
		cfg.Stats.BytesIn.Add(int64(n))
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
			return engine.ErrIdleTimeout
		}
		return err
	}
}

// finish handles the peer's EOF: whatever is left is the last frame (the eof
// codec's whole message) or a truncated one, and replies go out before the
// connection closes.
func (c *conn) finish() error {
	err := c.deliver(true)
	c.flushAll()
	return err
}

// deliver hands every complete frame buffered to the handler. Replies
// queue up meanwhile; the caller flushes them in one go.
func (c *conn) deliver(atEOF bool) error {
	h, split := c.s.h, c.s.split
	c.setDispatch(true)
	defer c.setDispatch(false)
	for {
		frame, ok, err := c.in.Next(split, atEOF)
		if err != nil || !ok {
			return err
		}
		h.OnMessage(c, frame)
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
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
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
