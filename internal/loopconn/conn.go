//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

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

// Loop-owned flags the core reads and writes (Conn.Flags). An engine
// numbers its own from EngineFlag up, in the same word.
const (
	FlagPaused uint16 = 1 << iota // reading paused: output above the high-water mark
	FlagOpened                    // OnOpen has run
	FlagFrame                     // a frame is started and not complete (since frameStart)
	// EngineFlag is the first flag an engine may use for itself.
	EngineFlag
)

// Requests other goroutines (and the handler) make of the loop (Conn.req).
// They are set under Mu and read without it by the loop between messages;
// the loop acts on them in BeginFlush.
const (
	reqClose      = 1 << iota // Close: drop output, close now
	reqCloseWrite             // CloseWrite: flush, then shut the write half
	reqSlow                   // a Write passed WriteLimit: close with ErrSlowConsumer
	reqPartial                // the handler holds a partial frame of its own (PartialFrame)
	reqFrameBegun             // PartialFrame(true) since the loop last looked: a new frame
	reqIdle                   // SetIdleTimeout: re-arm the idle timer
	reqCodec                  // SetCodec: decode what follows with codecs.next
)

// Conn is one connection, the value handlers get as an engine.Conn. Most
// of it belongs to the owning loop and is touched only on that loop's
// goroutine; the part under Mu is what other goroutines reach through
// Write, Close, CloseWrite and the context value.
//
// It is kept small because an idle connection costs exactly this struct
// and a table slot: no read buffer (input is decoded in place, and only a
// partial frame's leftover gets a buffer of its own, returned when empty)
// and no output buffer (chunks come from a pool on the first Write and go
// back once flushed).
//
// A Conn is never reused for a new descriptor, so a stale reference held
// by a handler can only ever see ErrConnClosed, never write into a
// stranger's connection that happens to get the same descriptor number.
type Conn[IO any] struct {
	// Mu guards Out, St and the request side of the connection.
	Mu sync.Mutex
	// Out is the framed output not yet sent, under Mu.
	Out          outbox.Outbox
	sched        bool // the loop will look at this conn soon: queued, or in a callback
	writeRefused bool // Write returns ErrConnClosed: closing, closed, or write half shut
	closed       bool // Close and CloseWrite return ErrConnClosed too
	value        any
	ctx          *engine.ConnContext // made on the first Context call
	codecs       *connCodecs         // made by SetCodec or SetReplyCodec; nil: the server's
	// St counts the connection's traffic, under Mu.
	St engine.ConnStats

	req  atomic.Uint32 // reqClose | reqCloseWrite | reqSlow | ...
	idle atomic.Int64  // idle timeout, ns (0: none); the server's unless SetIdleTimeout

	// Owned by the loop.

	// L is the loop that owns the connection.
	L  *Loop[IO]
	ln *sockfd.Listener
	// Fd is the connection's descriptor.
	Fd int32
	// State is where the connection is in its life.
	State connstate.State
	// Flags are the core's (Flag*) and the engine's own.
	Flags uint16
	// Timer holds the positions of the connection's timers in L.Timers.
	Timer [NumTimers]int32
	// In is the frame loop's state: a partial frame between reads, else
	// empty.
	In     framing.Accumulator
	split  *framing.Splitter // after SetCodec; nil: the loop's
	afters *after[IO]        // armed AfterFuncs, linked through next
	// LastRead is the loop clock at the last read that returned data.
	LastRead int64
	// LastProgress is the loop clock at the last write progress while
	// output was outstanding.
	LastProgress int64
	frameStart   int64 // loop clock when the frame now partial began (FlagFrame)
	reported     int64 // pending output last added to Stats.PendingBytes
	opened       int64 // loop clock at accept, for the connection's duration
	raddr, laddr netip.AddrPort
	proxied      net.Addr // client address from the PROXY header, if any

	// IO is the engine's own state for the connection.
	IO IO
}

// connCodecs are a connection's own codecs, kept apart so that the
// connections that never change codec carry one nil pointer for them.
type connCodecs struct {
	reply framing.Codec // frames Writes; nil: the server's
	next  framing.Codec // SetCodec waiting for the loop (reqCodec)
}

// codecsLocked returns c.codecs, making it if need be. Under Mu.
func (c *Conn[IO]) codecsLocked() *connCodecs {
	if c.codecs == nil {
		c.codecs = new(connCodecs)
	}
	return c.codecs
}

// kickUnlock makes sure the loop will look at c, from any goroutine, and
// releases c.Mu, which the caller holds. The post to the loop comes after
// unlocking: under Mu it would nest the loop's queue lock inside it for
// no benefit.
func (c *Conn[IO]) kickUnlock() {
	post := !c.sched
	c.sched = true
	c.Mu.Unlock()
	if post {
		c.L.Post(Task[IO]{Kind: TaskKick, C: c})
	}
}

// Write frames msg into the outbox. On the loop's own goroutine, inside a
// callback, c.sched is already set: the write is a copy into a pooled
// chunk under an uncontended mutex, and the loop flushes once after the
// callback batch. From another goroutine the first write after a flush
// posts c to the loop.
func (c *Conn[IO]) Write(msg []byte) error {
	s := c.L.S
	c.Mu.Lock()
	if c.writeRefused {
		c.Mu.Unlock()
		return engine.ErrConnClosed
	}
	pending := c.Out.Len()
	if pending+len(msg) > s.WriteLimit {
		// Over the limit whatever the framing adds: refuse before
		// reserving room for it.
		return c.slowLocked()
	}
	codec, overhead := s.Reply, s.overhead
	if c.codecs != nil && c.codecs.reply != nil {
		codec = c.codecs.reply
		overhead = codec.Overhead()
	}
	t := c.Out.Reserve(len(msg) + overhead)
	b, err := codec.Append(t, msg)
	if err != nil {
		c.Mu.Unlock()
		return err
	}
	if pending+len(b)-len(t) > s.WriteLimit {
		return c.slowLocked()
	}
	c.Out.Commit(b)
	c.St.MessagesOut++
	s.Stats.MessagesOut.Add(1)
	c.kickUnlock()
	return nil
}

// slowLocked refuses a Write that would pass WriteLimit and has the loop
// close the connection for it. It unlocks c.Mu.
func (c *Conn[IO]) slowLocked() error {
	c.writeRefused = true
	c.req.Or(reqSlow)
	c.kickUnlock()
	return engine.ErrSlowConsumer
}

// Close drops unsent output and closes the connection; OnClose follows
// with a nil error.
func (c *Conn[IO]) Close() error { return c.request(reqClose) }

// CloseWrite flushes the output, then shuts down the write half; reading
// goes on until the peer closes.
func (c *Conn[IO]) CloseWrite() error { return c.request(reqCloseWrite) }

func (c *Conn[IO]) request(r uint32) error {
	c.Mu.Lock()
	if c.closed {
		c.Mu.Unlock()
		return engine.ErrConnClosed
	}
	c.writeRefused = true
	c.req.Or(r)
	c.kickUnlock()
	return nil
}

// PartialFrame marks (or clears) a frame the handler is assembling itself,
// for the frame timeout; the loop reads the mark after the batch.
func (c *Conn[IO]) PartialFrame(started bool) {
	if started {
		c.req.Or(reqPartial | reqFrameBegun)
	} else {
		c.req.And(^uint32(reqPartial))
	}
}

// LocalAddr is built on demand (sockfd.Listener.LocalAddr says why).
func (c *Conn[IO]) LocalAddr() net.Addr { return c.ln.LocalAddr(c.laddr) }

// RemoteAddr is the PROXY header's client address when there was one.
func (c *Conn[IO]) RemoteAddr() net.Addr {
	if c.proxied != nil {
		return c.proxied
	}
	return c.ln.RemoteAddr(c.raddr)
}

// Value returns the value last stored with SetValue.
func (c *Conn[IO]) Value() any {
	c.Mu.Lock()
	v := c.value
	c.Mu.Unlock()
	return v
}

// SetValue stores one value with the connection.
func (c *Conn[IO]) SetValue(v any) {
	c.Mu.Lock()
	c.value = v
	c.Mu.Unlock()
}

// Context is made on first use and cancelled by Loop.Close.
func (c *Conn[IO]) Context() context.Context {
	c.Mu.Lock()
	ctx := engine.GetContext(&c.ctx, c.closed)
	c.Mu.Unlock()
	return ctx
}

// Stats is kept under Mu, where the loop already is when it counts:
// Write, the flush, and the start and end of each input batch.
func (c *Conn[IO]) Stats() engine.ConnStats {
	c.Mu.Lock()
	st := c.St
	c.Mu.Unlock()
	return st
}

// SetIdleTimeout stores the timeout and has the loop re-arm the idle
// timer after the callback batch (or at once, from another goroutine).
func (c *Conn[IO]) SetIdleTimeout(d time.Duration) {
	c.idle.Store(int64(max(d, 0)))
	c.Mu.Lock()
	if c.closed {
		c.Mu.Unlock()
		return
	}
	c.req.Or(reqIdle)
	c.kickUnlock()
}

// IdleTimeout is the connection's idle timeout in nanoseconds, 0 for
// none.
func (c *Conn[IO]) IdleTimeout() int64 { return c.idle.Load() }

// SetCodec takes effect at the next message boundary: the loop checks
// reqCodec between messages, so bytes already received are decoded with
// the new codec. Replies use it from the next Write on.
func (c *Conn[IO]) SetCodec(codec framing.Codec) {
	if codec == nil {
		return
	}
	c.Mu.Lock()
	cs := c.codecsLocked()
	cs.reply, cs.next = codec, codec
	c.req.Or(reqCodec)
	if c.closed {
		c.Mu.Unlock()
		return
	}
	c.kickUnlock()
}

// SetReplyCodec changes how later Writes are framed.
func (c *Conn[IO]) SetReplyCodec(codec framing.Codec) {
	if codec == nil {
		return
	}
	c.Mu.Lock()
	c.codecsLocked().reply = codec
	c.Mu.Unlock()
}

// Closing reports whether Close was called or a Write passed the limit:
// the loop closes c once the callback batch ends, and delivers nothing
// more.
func (c *Conn[IO]) Closing() bool { return c.req.Load()&(reqClose|reqSlow) != 0 }

// CountIn adds n bytes received to c's Stats: for an engine that counts
// them apart from Deliver, as over TLS, where they are the plaintext
// decrypted.
func (c *Conn[IO]) CountIn(n int) {
	if n != 0 {
		c.Mu.Lock()
		c.St.BytesIn += int64(n)
		c.Mu.Unlock()
	}
}

// BeginCallbacks marks c as in a callback batch, so that its Writes do
// not post it to the loop: the batch's end flushes.
func (c *Conn[IO]) BeginCallbacks() {
	c.Mu.Lock()
	c.sched = true
	c.Mu.Unlock()
}

// RefuseWrites makes later Writes fail with ErrConnClosed: the write half
// is going (a drain).
func (c *Conn[IO]) RefuseWrites() {
	c.Mu.Lock()
	c.writeRefused = true
	c.Mu.Unlock()
}

// Raddr is the socket's peer address (not the PROXY header's).
func (c *Conn[IO]) Raddr() netip.AddrPort { return c.raddr }
