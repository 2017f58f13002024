package stream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/outbox"
	"switchboard/internal/proxyproto"
)

const (
	// initialReadBuf keeps idle connections cheap; the buffer grows only
	// while a frame larger than it is being assembled.
	initialReadBuf = 16 << 10
	// writeChunks bounds one (vectored) write call, four large chunks, so
	// the write deadline measures a lack of progress, not the time to send
	// the whole backlog.
	writeChunks = 4
)

type conn struct {
	s      *server
	nc     net.Conn
	remote net.Addr
	ip     netip.Addr // counted in the server's per-address limit, if valid
	// Only the reader goroutine touches these.
	opened     bool                // OnOpen was called
	in         framing.Accumulator // bytes read and not yet decoded
	frameStart time.Time           // when the frame now partial began; zero if none
	deadline   time.Time           // the read deadline last set
	split      *framing.Splitter   // after SetCodec; nil: the server's

	// cb is held across every handler callback, so an AfterFunc firing on
	// its timer's goroutine never overlaps the reader's calls; cbDone is
	// set under it once OnClose has run (or will never run).
	cb     sync.Mutex
	cbDone bool

	idle     atomic.Int64 // idle timeout, ns; the server's unless SetIdleTimeout
	codecReq atomic.Bool  // SetCodec waiting for the reader (nextCodec)
	bytesIn  atomic.Int64 // the reader's counts, for Stats
	msgsIn   atomic.Int64

	partial    atomic.Bool // the handler holds a partial frame of its own (PartialFrame)
	frameBegun atomic.Bool // PartialFrame(true) since the reader last looked: a new frame

	mu        sync.Mutex
	cond      sync.Cond // signalled when pending output shrinks or the conn closes
	value     any
	ctx       *engine.ConnContext // made on the first Context call
	reply     framing.Codec       // nil: the server's reply codec
	nextCodec framing.Codec
	bytesOut  int64
	msgsOut   int64
	timers    []*time.Timer // armed AfterFuncs, stopped at close
	// out is the framed output not yet written, in pooled chunks
	// (internal/outbox, as on the event loops): memory follows the
	// backlog as it is now, not the largest it ever was, and a write in
	// progress sends from chunks that writers keep appending behind.
	out outbox.Outbox
	// iov is the flusher's scratch list of chunks for one write.
	iov        [][]byte
	flushing   bool // someone owns the write side now
	dispatch   bool // the reader is inside the handler; it flushes after
	wantCloseW bool // CloseWrite requested: shut down once flushed
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

// PartialFrame marks (or clears) a frame the handler is assembling itself,
// for the frame timeout.
func (c *conn) PartialFrame(started bool) {
	c.partial.Store(started)
	if started {
		c.frameBegun.Store(true)
	}
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
		if err := c.callback("AfterFunc", f); err != nil {
			c.closeWith(err)
			return
		}
		c.flush()
	})
	c.timers = append(c.timers, t)
}

// callback runs f as a handler callback (an AfterFunc, OnPeerClose):
// never after OnClose, under the callback lock, and with a panic in it
// recovered, counted and returned as the connection's close reason.
func (c *conn) callback(name string, f func()) (err error) {
	c.cb.Lock()
	defer c.cb.Unlock()
	if c.cbDone {
		return nil
	}
	c.setDispatch(true)
	defer func() {
		c.setDispatch(false)
		if v := recover(); v != nil {
			err = engine.Recovered(c.s.cfg.Logger, c.s.cfg.Stats, c.RemoteAddr(), name, v)
		}
	}()
	f()
	return nil
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
	pending := c.out.Len()
	if pending+len(msg) > c.s.writeLimit {
		// Over the limit whatever the framing adds.
		return c.slowLocked()
	}
	codec, overhead := c.s.cfg.ReplyCodec, c.s.overhead
	if c.reply != nil {
		codec, overhead = c.reply, c.reply.Overhead()
	}
	t := c.out.Reserve(len(msg) + overhead)
	b, err := codec.Append(t, msg)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	if pending+len(b)-len(t) > c.s.writeLimit {
		return c.slowLocked()
	}
	c.out.Commit(b)
	c.msgsOut++
	c.s.cfg.Stats.MessagesOut.Add(1)
	c.kickLocked()
	c.mu.Unlock()
	return nil
}

// slowLocked refuses a Write that would pass the write limit and closes
// the connection for it. It unlocks c.mu.
func (c *conn) slowLocked() error {
	c.mu.Unlock()
	c.closeWith(engine.ErrSlowConsumer)
	return engine.ErrSlowConsumer
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
		done := c.closed || c.out.Len() == 0
		c.mu.Unlock()
		if done {
			return
		}
	}
}

// flushOwned runs with c.flushing set and clears it when done.
func (c *conn) flushOwned() {
	c.mu.Lock()
	for !c.closed && c.out.Len() > 0 {
		// The chunks gathered are not touched by writers, who append
		// behind them, nor released until written (or the flusher is
		// done: see serve), so the write runs without the lock.
		var n int
		c.iov, n = c.out.Gather(c.iov[:0], writeChunks)
		c.mu.Unlock()
		written, err := c.writeBufs(c.iov, n)
		clear(c.iov)
		c.mu.Lock()
		c.out.Consume(written)
		c.bytesOut += int64(written)
		if c.out.Len() <= c.s.lowWater {
			c.cond.Broadcast()
		}
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

// writeBufs writes n bytes from bufs in one vectored write (net.Buffers
// uses writev on TCP), with a fresh write deadline, and returns how many
// were written.
func (c *conn) writeBufs(bufs [][]byte, n int) (int, error) {
	if wt := c.s.cfg.WriteTimeout; wt > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(wt))
	}
	var written int64
	var err error
	if len(bufs) == 1 {
		var k int
		k, err = c.nc.Write(bufs[0])
		written = int64(k)
	} else {
		nb := net.Buffers(bufs)
		written, err = nb.WriteTo(c.nc)
	}
	c.s.cfg.Stats.BytesOut.Add(written)
	if err == nil && int(written) < n {
		err = io.ErrShortWrite
	}
	if err != nil && isTimeout(err) {
		err = engine.ErrWriteTimeout
	}
	return int(written), err
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
	if c.out.Len() > c.s.cfg.MaxPending {
		for !c.closed && c.out.Len() > c.s.lowWater && !c.s.isDraining() {
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
	// Wait out a flusher so OnClose is the handler's last event, and so
	// no write still reads the chunks given back here.
	c.mu.Lock()
	for c.flushing {
		c.cond.Wait()
	}
	c.out.Release()
	c.mu.Unlock()
	c.s.cfg.Stats.CountClose(err)
	engine.LogClose(c.s.cfg.Logger, c.RemoteAddr(), err)
	c.cb.Lock()
	c.cbDone = true
	if c.opened {
		// A connection refused before OnOpen (a bad PROXY header) never
		// reached the handler, so it hears nothing of its end either.
		c.onClose(err)
	}
	c.cb.Unlock()
	c.s.untrack(c)
}

// onOpen runs OnOpen, turning a panic into the connection's close reason.
func (c *conn) onOpen() (err error) {
	c.cb.Lock()
	c.setDispatch(true)
	defer func() {
		c.setDispatch(false)
		c.cb.Unlock()
		if v := recover(); v != nil {
			err = engine.Recovered(c.s.cfg.Logger, c.s.cfg.Stats, c.RemoteAddr(), "OnOpen", v)
		}
	}()
	c.s.h.OnOpen(c)
	return nil
}

// onClose runs OnClose; a panic in it is recovered, logged and counted
// (the connection is closed already).
func (c *conn) onClose(err error) {
	defer func() {
		if v := recover(); v != nil {
			engine.Recovered(c.s.cfg.Logger, c.s.cfg.Stats, c.RemoteAddr(), "OnClose", v)
		}
	}()
	c.s.h.OnClose(c, err)
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
			c.flush()
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
			if !c.frameStart.IsZero() && time.Since(c.frameStart) >= cfg.FrameTimeout {
				return engine.FrameTimedOut(cfg.FrameTimeout)
			}
			if c.idle.Load() == 0 && c.frameStart.IsZero() {
				// SetIdleTimeout(0) raced with a deadline set before it.
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
