package uringengine

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
	"switchboard/internal/sockfd"
)

// A connection's life is a connstate.State (conn.state), the same machine
// the reactor's connections move through; only the loop changes it, and
// other goroutines ask for changes through conn.req.
//
// Beside the state, loop-owned flags say which requests the connection
// has in the kernel and what the loop has promised to do with it before
// the next io_uring_enter.
const (
	connRecv     = 1 << iota // a multishot receive is armed (until a completion without F_MORE)
	connCancel               // a cancellation of that receive is on its way
	connSending              // a send is in flight: its bytes are still the outbox's
	connDirty                // on l.dirty: start a send before the next enter
	connRearm                // on l.rearm: arm the receive before the next enter
	connSendWait             // on l.sendWait: waiting for a free sendmsg header
	connPaused               // reading paused: output above the high-water mark
	connOpened               // OnOpen has run
	connEOFHeld              // the peer's FIN came behind held input, not yet decoded
	connFrame                // a frame is started and not complete (since frameStart)
	connTLSHold              // TLS: no receive until the handshake moves on, or ever after the FIN (tls_linux.go)
)

// Requests other goroutines (and the handler) make of the loop (conn.req).
const (
	reqClose      = 1 << iota // Close: drop output, close now
	reqCloseWrite             // CloseWrite: flush, then shut the write half
	reqSlow                   // a Write passed WriteLimit: close with ErrSlowConsumer
	reqPartial                // the handler holds a partial frame of its own (PartialFrame)
	reqFrameBegun             // PartialFrame(true) since the loop last looked: a new frame
	reqIdle                   // SetIdleTimeout: re-arm the idle timer
	reqCodec                  // SetCodec: decode what follows with conn.codecs.next
)

// conn is one connection. The part under mu is what other goroutines
// reach through Write, Close, CloseWrite and the context value; the rest
// is the loop's.
//
// An idle connection costs this struct, a slot in its loop's table and
// one armed receive in the kernel: no buffer of any kind. A conn is never
// reused, and completions find it through its slot and a generation
// number, so a completion that arrives after the connection closed (its
// receive's cancellation, say) is recognised as stale.
type conn struct {
	mu sync.Mutex
	// Under mu.
	out          outbox.Outbox
	sched        bool // the loop will look at this conn soon: queued, or in a callback
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
	slot         uint32
	gen          uint32
	state        connstate.State
	flags        uint16
	msg          int32               // the sendmsg header in flight, or -1 for a plain send
	timer        [numTimers]int32    // heap position + 1; 0 = not armed
	in           framing.Accumulator // a partial frame between receives, else empty
	split        *framing.Splitter   // after SetCodec; nil: the loop's
	afters       *afterFunc          // armed AfterFuncs, linked through next
	held         []byte              // received while paused, not yet decoded (held[heldOff:])
	heldOff      int
	lastRead     int64 // loop clock at the last receive with data
	lastProgress int64 // loop clock at the last send progress
	frameStart   int64 // loop clock when the frame now partial began (connFrame)
	raddr, laddr netip.AddrPort
	opened       int64    // loop clock at accept, for the connection's duration
	proxied      net.Addr // client address from the PROXY header, if any
	tls          *tlsConn // the TLS layer, nil without TLS (tls_linux.go)
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

// listener is a listening socket with its multishot accept.
type listener struct {
	sockfd.Listener
	idx         int   // position in l.lns, carried in the accept's user data
	armed       bool  // the multishot accept is in the kernel
	resumeAfter int64 // re-arm no earlier than this (after a failure), 0 = now
	closed      bool
}

// kickUnlock makes sure the loop will look at c, from any goroutine, and
// releases c.mu, which the caller holds; the post comes after unlocking,
// so the loop's queue lock never nests inside c.mu.
func (c *conn) kickUnlock() {
	post := !c.sched
	c.sched = true
	c.mu.Unlock()
	if post {
		c.l.post(task{kind: taskKick, c: c})
	}
}

// Write frames msg into the outbox. Inside a callback on the loop c.sched
// is already set, so the write is a copy into a pooled chunk under an
// uncontended mutex, sent with the rest of the batch before the loop's
// next io_uring_enter. From another goroutine the first write after a
// send posts c to the loop.
func (c *conn) Write(msg []byte) error {
	s := c.l.s
	c.mu.Lock()
	if c.writeRefused {
		c.mu.Unlock()
		return engine.ErrConnClosed
	}
	pending := c.out.Len()
	if pending+len(msg) > s.writeLimit {
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

// CloseWrite flushes the output, then shuts down the write half
// (IORING_OP_SHUTDOWN); reading goes on until the peer closes.
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
// Write, the send completion, and the start and end of each input batch.
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
