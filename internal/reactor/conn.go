//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/framing"
	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/outbox"
)

// A connection's life is a connstate.State (conn.state), whose package
// documents the states and transitions; only the loop changes it, and
// other goroutines ask for changes through conn.req. Draining is the
// loop's (loop.draining): Shutdown applies to all its connections at once.
//
// Beside the state, loop-owned flags: which interest is registered with
// the poller (connReadOn, connWriteOn), whether reading is paused for
// backpressure (connPaused), and connOpened, set once OnOpen has run, so
// a connection refused in connstate.Header never gets an OnClose.

// Loop-owned flags (conn.flags).
const (
	connReadOn  = 1 << iota // read interest registered
	connWriteOn             // write interest registered
	connPaused              // reading paused: output above the high-water mark
	connOpened              // OnOpen has run
	connFrame               // a frame is started and not complete (since frameStart)
)

// Requests other goroutines (and the handler) make of the loop (conn.req).
// They are set under mu and read without it by the loop between messages;
// the loop acts on them in afterDispatch.
const (
	reqClose      = 1 << iota // Close: drop output, close now
	reqCloseWrite             // CloseWrite: flush, then shut the write half
	reqSlow                   // a Write passed WriteLimit: close with ErrSlowConsumer
	reqPartial                // the handler holds a partial frame of its own (PartialFrame)
	reqFrameBegun             // PartialFrame(true) since the loop last looked: a new frame
	reqIdle                   // SetIdleTimeout: re-arm the idle timer
	reqCodec                  // SetCodec: decode what follows with conn.codecs.next
)

// conn is one connection. Most of it belongs to the owning loop and is
// touched only on that loop's goroutine; the part under mu is what other
// goroutines reach through Write, Close, CloseWrite and the context value.
//
// It is kept small because an idle connection costs exactly this struct and
// an fd-table slot: no read buffer (input is decoded in place from the
// loop's buffer, and only a partial frame's leftover gets a buffer of its
// own, returned when empty) and no output buffer (chunks come from a pool
// on the first Write and go back once flushed).
//
// A conn is never reused for a new descriptor, so a stale reference held by
// a handler can only ever see ErrConnClosed, never write into a stranger's
// connection that happens to get the same descriptor number.
type conn struct {
	mu sync.Mutex
	// Under mu.
	out          outbox.Outbox
	sched        bool // the loop will flush this conn soon: queued, or in a callback
	writeRefused bool // Write returns ErrConnClosed: closing, closed, or write half shut
	closed       bool // Close and CloseWrite return ErrConnClosed too
	value        any
	ctx          *engine.ConnContext // made on the first Context call
	codecs       *connCodecs         // made by SetCodec or SetReplyCodec; nil: the server's
	st           engine.ConnStats

	req  atomic.Uint32 // reqClose | reqCloseWrite | reqSlow | reqIdle | reqCodec
	idle atomic.Int64  // idle timeout, ns (0: none); the server's unless SetIdleTimeout

	// Owned by the loop.
	l            *loop
	ln           *listener
	fd           int32
	state        connstate.State
	flags        uint8
	timer        [numTimers]int32    // heap position + 1; 0 = not armed
	in           framing.Accumulator // a partial frame between reads, else empty
	split        *framing.Splitter   // after SetCodec; nil: the loop's
	afters       *afterFunc          // armed AfterFuncs, linked through next
	lastRead     int64               // loop clock at the last read that returned data
	lastProgress int64               // loop clock at the last write progress while stuck
	frameStart   int64               // loop clock when the frame now partial began (connFrame)
	opened       int64               // loop clock at accept, for the connection's duration
	reported     int64               // pending output last added to Stats.PendingBytes
	raddr, laddr netip.AddrPort
	proxied      net.Addr // client address from the PROXY header, if any
	tls          *tlsConn // the TLS layer, nil without TLS (tls.go)
}

// connCodecs are a connection's own codecs, kept apart so that the
// connections that never change codec carry one nil pointer for them.
type connCodecs struct {
	reply framing.Codec // frames Writes; nil: the server's
	next  framing.Codec // SetCodec waiting for the loop (reqCodec)
}

// codecsLocked returns c.codecs, making it if need be. Under mu.
func (c *conn) codecsLocked() *connCodecs {
	if c.codecs == nil {
		c.codecs = new(connCodecs)
	}
	return c.codecs
}

// kickUnlock makes sure the loop will look at c, from any goroutine, and
// releases c.mu, which the caller holds. The post to the loop comes after
// unlocking: under c.mu it would nest the loop's queue lock inside it for
// no benefit.
func (c *conn) kickUnlock() {
	post := !c.sched
	c.sched = true
	c.mu.Unlock()
	if post {
		c.l.post(task{kind: taskKick, c: c})
	}
}

// Write frames msg into the outbox. On the loop's own goroutine, inside a
// callback, c.sched is already set: the write is a copy into a pooled
// chunk under an uncontended mutex, and the loop flushes once after the
// callback batch. From another goroutine the first write after a flush
// posts c to the loop.
func (c *conn) Write(msg []byte) error {
	s := c.l.s
	c.mu.Lock()
	if c.writeRefused {
		c.mu.Unlock()
		return engine.ErrConnClosed
	}
	pending := c.out.Len()
	if pending+len(msg) > s.writeLimit {
		// Over the limit whatever the framing adds: refuse before
		// reserving room for it.
		return c.slowLocked()
	}
	codec, overhead := s.reply, s.overhead
	if c.codecs != nil && c.codecs.reply != nil {
		codec = c.codecs.reply
		overhead = codec.Overhead()
	}
	t := c.out.Reserve(len(msg) + overhead)
	b, err := codec.Append(t, msg)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	if pending+len(b)-len(t) > s.writeLimit {
		return c.slowLocked()
	}
	c.out.Commit(b)
	c.st.MessagesOut++
	s.stats.MessagesOut.Add(1)
	c.kickUnlock()
	return nil
}

// slowLocked refuses a Write that would pass WriteLimit and has the loop
// close the connection for it. It unlocks c.mu.
func (c *conn) slowLocked() error {
	c.writeRefused = true
	c.req.Or(reqSlow)
	c.kickUnlock()
	return engine.ErrSlowConsumer
}

// Close drops unsent output and closes the connection; OnClose follows
// with a nil error.
func (c *conn) Close() error { return c.request(reqClose) }

// CloseWrite flushes the output, then shuts down the write half; reading
// goes on until the peer closes.
func (c *conn) CloseWrite() error { return c.request(reqCloseWrite) }

func (c *conn) request(r uint32) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return engine.ErrConnClosed
	}
	c.writeRefused = true
	c.req.Or(r)
	c.kickUnlock()
	return nil
}

// PartialFrame marks (or clears) a frame the handler is assembling itself,
// for the frame timeout; the loop reads the mark after the batch.
func (c *conn) PartialFrame(started bool) {
	if started {
		c.req.Or(reqPartial | reqFrameBegun)
	} else {
		c.req.And(^uint32(reqPartial))
	}
}

// LocalAddr is built on demand (sockfd.Listener.LocalAddr says why).
func (c *conn) LocalAddr() net.Addr { return c.ln.LocalAddr(c.laddr) }

// RemoteAddr is the PROXY header's client address when there was one.
func (c *conn) RemoteAddr() net.Addr {
	if c.proxied != nil {
		return c.proxied
	}
	return c.ln.RemoteAddr(c.raddr)
}

// Value returns the value last stored with SetValue.
func (c *conn) Value() any {
	c.mu.Lock()
	v := c.value
	c.mu.Unlock()
	return v
}

// SetValue stores one value with the connection.
func (c *conn) SetValue(v any) {
	c.mu.Lock()
	c.value = v
	c.mu.Unlock()
}

// Context is made on first use and cancelled by closeConn.
func (c *conn) Context() context.Context {
	c.mu.Lock()
	ctx := engine.GetContext(&c.ctx, c.closed)
	c.mu.Unlock()
	return ctx
}

// Stats is kept under mu, where the loop already is when it counts:
// Write, the flush, and the start and end of each input batch.
func (c *conn) Stats() engine.ConnStats {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	return st
}

// SetIdleTimeout stores the timeout and has the loop re-arm the idle
// timer after the callback batch (or at once, from another goroutine).
func (c *conn) SetIdleTimeout(d time.Duration) {
	c.idle.Store(int64(max(d, 0)))
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.req.Or(reqIdle)
	c.kickUnlock()
}

// AfterFunc hands the loop a timer for its heap: nothing runs until it
// is due, and no goroutine waits for it.
func (c *conn) AfterFunc(d time.Duration, f func()) {
	a := &afterFunc{c: c, f: f, when: c.l.s.clock() + int64(max(d, 0))}
	c.l.post(task{kind: taskAfter, a: a})
}

// SetCodec takes effect at the next message boundary: the loop checks
// reqCodec between messages, so bytes already received are decoded with
// the new codec. Replies use it from the next Write on.
func (c *conn) SetCodec(codec framing.Codec) {
	if codec == nil {
		return
	}
	c.mu.Lock()
	cs := c.codecsLocked()
	cs.reply, cs.next = codec, codec
	c.req.Or(reqCodec)
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.kickUnlock()
}

// SetReplyCodec changes how later Writes are framed.
func (c *conn) SetReplyCodec(codec framing.Codec) {
	if codec == nil {
		return
	}
	c.mu.Lock()
	c.codecsLocked().reply = codec
	c.mu.Unlock()
}
