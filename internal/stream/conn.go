package stream

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/outbox"
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
	s  *server
	nc net.Conn // the socket: deadlines, shutdown, close
	// rw carries the plaintext: nc itself, or tc over it.
	rw     net.Conn
	tc     *tls.Conn // nil without TLS
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
	start    time.Time // accept, for the connection's duration

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
	reported  int64         // pending output last added to Stats.PendingBytes
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
	c := &conn{s: s, nc: nc, rw: nc, remote: nc.RemoteAddr(), start: time.Now()}
	c.cond.L = &c.mu
	if s.cfg.TLS != nil && !s.cfg.ProxyProtocol {
		c.tc = tls.Server(nc, s.cfg.TLS)
		c.rw = c.tc
	}
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
		c.s.cfg.Stats.Paused.Add(1)
		for !c.closed && c.out.Len() > c.s.lowWater && !c.s.isDraining() {
			c.cond.Wait()
		}
		c.s.cfg.Stats.Paused.Add(-1)
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
	c.reportPendingLocked()
	st := engine.ConnStats{
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut,
		MessagesIn: c.msgsIn.Load(), MessagesOut: c.msgsOut,
	}
	c.mu.Unlock()
	engine.Closed(&c.s.cfg, engine.ConnInfo{
		Remote: c.RemoteAddr(), Local: c.LocalAddr(),
		Duration: time.Since(c.start), Stats: st, Err: err,
	})
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
