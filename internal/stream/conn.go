package stream

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
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
	// Only the reader goroutine touches these three.
	opened bool                // OnOpen was called
	in     framing.Accumulator // bytes read and not yet decoded
	split  *framing.Splitter   // after SetCodec; nil: the server's

	// cb is held across every handler callback, so an AfterFunc firing on
	// its timer's goroutine never overlaps the reader's calls; cbDone is
	// set under it once OnClose has run (or will never run).
	cb     sync.Mutex
	cbDone bool

	idle     atomic.Int64 // idle timeout, ns; the server's unless SetIdleTimeout
	codecReq atomic.Bool  // SetCodec waiting for the reader (nextCodec)
	bytesIn  atomic.Int64 // the reader's counts, for Stats
	msgsIn   atomic.Int64

	mu         sync.Mutex
	cond       sync.Cond // signalled when pending output shrinks or the conn closes
	value      any
	ctx        *engine.ConnContext // made on the first Context call
	reply      framing.Codec       // nil: the server's reply codec
	nextCodec  framing.Codec
	bytesOut   int64
	msgsOut    int64
	timers     []*time.Timer // armed AfterFuncs, stopped at close
	peerShut   bool          // the peer's FIN came and the handler keeps the conn
	out        []byte        // framed output not yet handed to a write call
	spare      []byte        // the buffer a write call is sending from
	pending    int           // bytes queued or being written
	flushing   bool          // someone owns the write side now
	dispatch   bool          // the reader is inside the handler; it flushes after
	wantCloseW bool          // CloseWrite requested: shut down once flushed
	wclosed    bool
	closed     bool
	closeErr   error
}

func newConn(s *server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, remote: nc.RemoteAddr()}
	c.cond.L = &c.mu
	c.idle.Store(int64(max(s.cfg.IdleTimeout, 0)))
	return c
}

func (c *conn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

func (c *conn) Value() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value
}

func (c *conn) SetValue(v any) {
	c.mu.Lock()
	c.value = v
	c.mu.Unlock()
}

func (c *conn) Context() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	return engine.GetContext(&c.ctx, c.closed)
}

func (c *conn) Stats() engine.ConnStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return engine.ConnStats{
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut,
		MessagesIn: c.msgsIn.Load(), MessagesOut: c.msgsOut,
	}
}

// SetIdleTimeout takes effect at the reader's next read, or at once when
// the reader is blocked in one (moving its deadline).
func (c *conn) SetIdleTimeout(d time.Duration) {
	d = max(d, 0)
	c.idle.Store(int64(d))
	if d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
	if c.s.isDraining() {
		// The deadline just set may have undone Shutdown's interruption.
		c.interruptRead()
	}
}

// AfterFunc runs f on a timer's goroutine, under the callback lock, so it
// never overlaps the reader's callbacks; timers still armed at close are
// stopped.
func (c *conn) AfterFunc(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(max(d, 0), func() {
		c.mu.Lock()
		for i, x := range c.timers {
			if x == t {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		c.callback(f)
	})
	c.timers = append(c.timers, t)
}

// callback runs f as a handler callback from outside the reader: not
// after OnClose, and with the replies it writes flushed here.
func (c *conn) callback(f func()) {
	c.cb.Lock()
	if c.cbDone {
		c.cb.Unlock()
		return
	}
	c.setDispatch(true)
	f()
	c.setDispatch(false)
	c.cb.Unlock()
	c.flush()
}

// SetCodec: the reader switches between two messages (codecReq), so bytes
// already read are decoded with the new codec; replies use it at once.
func (c *conn) SetCodec(codec framing.Codec) {
	if codec == nil {
		return
	}
	c.mu.Lock()
	c.reply, c.nextCodec = codec, codec
	c.mu.Unlock()
	c.codecReq.Store(true)
}

func (c *conn) SetReplyCodec(codec framing.Codec) {
	if codec == nil {
		return
	}
	c.mu.Lock()
	c.reply = codec
	c.mu.Unlock()
}

// splitter is the frame loop the reader decodes with, after applying a
// pending SetCodec: a new one for the new codec, with the server's
// buffering, and the scan of a held partial frame starting over.
func (c *conn) splitter() *framing.Splitter {
	if c.codecReq.Load() {
		c.mu.Lock()
		codec := c.nextCodec
		c.nextCodec = nil
		c.codecReq.Store(false)
		c.mu.Unlock()
		if codec != nil {
			c.split = framing.NewSplitter(codec, framing.SplitterOptions{Initial: initialReadBuf, Keep: initialReadBuf})
			c.in.Skip(0)
		}
	}
	if c.split != nil {
		return c.split
	}
	return c.s.split
}

func (c *conn) Write(msg []byte) error {
	c.mu.Lock()
	if c.closed || c.wantCloseW {
		c.mu.Unlock()
		return engine.ErrConnClosed
	}
	before := len(c.out)
	codec := c.s.cfg.ReplyCodec
	if c.reply != nil {
		codec = c.reply
	}
	out, err := codec.Append(c.out, msg)
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
	c.msgsOut++
	c.s.cfg.Stats.MessagesOut.Add(1)
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
		c.bytesOut += int64(n)
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
	engine.CancelContext(c.ctx)
	for _, t := range c.timers {
		t.Stop()
	}
	c.timers = nil
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
	c.cb.Lock()
	c.cbDone = true
	if c.opened {
		// A connection refused before OnOpen (a bad PROXY header) never
		// reached the handler, so it hears nothing of its end either.
		c.s.h.OnClose(c, err)
	}
	c.cb.Unlock()
	c.s.untrack(c)
}

// run is the read loop. Its error is the close reason; nil for an orderly
// end.
func (c *conn) run() error {
	cfg := &c.s.cfg
	if cfg.ProxyProtocol {
		if err := c.readProxyHeader(); err != nil {
			return err
		}
	}
	c.opened = true
	c.cb.Lock()
	c.setDispatch(true)
	c.s.h.OnOpen(c)
	c.setDispatch(false)
	c.cb.Unlock()
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
		split := c.splitter()
		c.in.Done(split)

		c.waitBelowHighWater()
		if idle := time.Duration(c.idle.Load()); idle > 0 {
			c.nc.SetReadDeadline(time.Now().Add(idle))
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
			if c.idle.Load() == 0 {
				// SetIdleTimeout(0) raced with a deadline set before it.
				continue
			}
			return engine.ErrIdleTimeout
		}
		return err
	}
}

// finish handles the peer's EOF: whatever is left is the last frame (the eof
// codec's whole message) or a truncated one, and replies go out before the
// connection closes. A HalfCloser hears of the FIN and keeps the
// connection writable until it closes it, or the half-close wait ends.
func (c *conn) finish() error {
	err := c.deliver(true)
	if err != nil || c.s.cfg.OnPeerClose == nil {
		c.flushAll()
		return err
	}
	c.mu.Lock()
	keep := !c.closed && !c.wantCloseW
	c.peerShut = keep
	c.mu.Unlock()
	if !keep {
		c.flushAll()
		return nil
	}
	c.cb.Lock()
	c.setDispatch(true)
	c.s.cfg.OnPeerClose(c)
	c.setDispatch(false)
	c.cb.Unlock()
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
func (c *conn) deliver(atEOF bool) error {
	h := c.s.h
	c.cb.Lock()
	defer c.cb.Unlock()
	c.setDispatch(true)
	defer c.setDispatch(false)
	var n int64
	defer func() { c.msgsIn.Add(n) }()
	for {
		frame, ok, err := c.in.Next(c.splitter(), atEOF)
		if err != nil || !ok {
			return err
		}
		n++
		h.OnMessage(c, frame)
		c.s.cfg.Stats.MessagesIn.Add(1)
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
