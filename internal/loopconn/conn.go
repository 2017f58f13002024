//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/framing"
	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/outbox"
)

// Loop-owned flags the core reads and writes (Conn.Flags). An engine
// numbers its own from EngineFlag up, in the same word.
const (
	FlagPaused uint16 = 1 << iota // reading paused: output above the high-water mark
	FlagOpened                    // OnOpen has run
	FlagFrame                     // a frame is started and not complete (since frameStart)
	flagSplit                     // rare.split is the connection's frame loop (SetCodec)
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
	reqCodec                  // SetCodec: decode what follows with rare.next
	reqOwnIdle                // SetIdleTimeout has set rare.idle: the server's is not the one
)

// Conn is one connection, the value handlers get as an engine.Conn. Most
// of it belongs to the owning loop and is touched only on that loop's
// goroutine; the part under Mu is what other goroutines reach through
// Write, Close, CloseWrite and the context value.
//
// An idle connection costs exactly this struct and a table slot: no read
// buffer (input is decoded in place, and only a partial frame's leftover
// gets a buffer of its own, returned when empty) and no output buffer
// (chunks come from a pool on the first Write and go back once flushed).
// So it is laid out for size: what every connection uses is here, in
// order of alignment so that nothing is padding (176 bytes, a Go size
// class, with either engine's IO), and what few connections use
// (SetValue, Context, SetCodec, AfterFunc, SetIdleTimeout, a PROXY
// header, a wildcard listener's local address, TLS) is in a side struct
// made on first use (rare.go).
//
// A Conn is never reused for a new descriptor, so a stale reference held
// by a handler can only ever see ErrConnClosed, never write into a
// stranger's connection that happens to get the same descriptor number.
type Conn[IO any] struct {
	// Out is the framed output not yet sent, under Mu.
	Out outbox.Outbox
	// St counts the connection's traffic, under Mu.
	St engine.ConnStats
	// L is the loop that owns the connection.
	L    *Loop[IO]
	rare *rare[IO] // made on first use, never replaced (rare.go)
	// In is the frame loop's state during a batch of input (Loop.In) and
	// while a partial frame is held between batches; nil otherwise, so an
	// idle connection carries a pointer rather than the 40 bytes of an
	// Accumulator.
	In *framing.Accumulator
	// LastRead is the loop clock at the last read that returned data.
	LastRead int64
	// LastProgress is the loop clock at the last write progress while
	// output was outstanding.
	LastProgress int64
	frameStart   int64 // loop clock when the frame now partial began (FlagFrame)
	opened       int64 // loop clock at accept, for the connection's duration

	// Mu guards Out, St, shared and rare's shared fields.
	Mu  sync.Mutex
	req atomic.Uint32 // reqClose | reqCloseWrite | reqSlow | ...
	// Fd is the connection's descriptor.
	Fd int32
	// Timer holds the positions of the connection's timers in L.Timers.
	Timer [NumTimers]int32
	// msgsFolded is the low 32 bits of St.MessagesOut the loop has
	// counted (under Mu); 32 bits keep the struct in its size class, and
	// fewer than 2^32 Writes come between two folds.
	msgsFolded uint32
	// reported is the pending output last added to Stats.PendingBytes,
	// saturated at 2 GiB (only a MaxPending over 1 GiB reaches it): four
	// bytes, beside msgsFolded, keep the struct in its size class.
	reported int32

	// IO is the engine's own state for the connection. It sits between
	// the four-byte fields and the small ones, so four bytes of it cost
	// nothing.
	IO IO

	// Flags are the core's (Flag*) and the engine's own; the loop's.
	Flags  uint16
	peer   // the peer's address, written once at accept (peer.go)
	State  connstate.State
	shared uint8 // sharedSched | sharedWriteRefused | sharedClosed, under Mu
}

// Bits of Conn.shared, under Mu.
const (
	// The loop will look at this conn soon: queued, or in a callback.
	sharedSched uint8 = 1 << iota
	// Write returns ErrConnClosed: closing, closed, or write half shut.
	sharedWriteRefused
	// Close and CloseWrite return ErrConnClosed too.
	sharedClosed
)

// kickUnlock makes sure the loop will look at c, from any goroutine, and
// releases c.Mu, which the caller holds. The post to the loop comes after
// unlocking: under Mu it would nest the loop's queue lock inside it for
// no benefit.
func (c *Conn[IO]) kickUnlock() {
	post := c.shared&sharedSched == 0
	c.shared |= sharedSched
	c.Mu.Unlock()
	if post {
		c.L.Post(Task[IO]{Kind: TaskKick, C: c})
	}
}

// Write frames msg into the outbox. On the loop's own goroutine, inside a
// callback, the conn is marked scheduled already: the write is a copy
// into a pooled chunk under an uncontended mutex, and the loop flushes
// once after the callback batch. From another goroutine the first write
// after a flush posts c to the loop.
func (c *Conn[IO]) Write(msg []byte) error {
	s := c.L.S
	c.Mu.Lock()
	if c.shared&sharedWriteRefused != 0 {
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
	if c.rare != nil && c.rare.reply != nil {
		codec = c.rare.reply
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
	// Counted here, under the lock, and into Stats by the loop
	// (foldMessages): a shared atomic per Write would be a cache line
	// every loop writes.
	c.St.MessagesOut++
	c.kickUnlock()
	return nil
}

// slowLocked refuses a Write that would pass WriteLimit and has the loop
// close the connection for it. It unlocks c.Mu.
func (c *Conn[IO]) slowLocked() error {
	c.shared |= sharedWriteRefused
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
	if c.shared&sharedClosed != 0 {
		c.Mu.Unlock()
		return engine.ErrConnClosed
	}
	c.shared |= sharedWriteRefused
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

// Value returns the value last stored with SetValue.
func (c *Conn[IO]) Value() any {
	c.Mu.Lock()
	var v any
	if c.rare != nil {
		v = c.rare.value
	}
	c.Mu.Unlock()
	return v
}

// SetValue stores one value with the connection.
func (c *Conn[IO]) SetValue(v any) {
	c.Mu.Lock()
	c.rareLocked().value = v
	c.Mu.Unlock()
}

// Context is made on first use and cancelled by Loop.Close.
func (c *Conn[IO]) Context() context.Context {
	c.Mu.Lock()
	ctx := engine.GetContext(&c.rareLocked().ctx, c.shared&sharedClosed != 0)
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
	c.Mu.Lock()
	c.rareLocked().idle = int64(max(d, 0))
	c.req.Or(reqOwnIdle)
	if c.shared&sharedClosed != 0 {
		c.Mu.Unlock()
		return
	}
	c.req.Or(reqIdle)
	c.kickUnlock()
}

// idleTimeout is c's idle timeout in nanoseconds, 0 for none: the
// server's, without a lock, unless SetIdleTimeout gave c its own.
func (c *Conn[IO]) idleTimeout() int64 {
	if c.req.Load()&reqOwnIdle == 0 {
		return c.L.S.Idle
	}
	c.Mu.Lock()
	d := c.rare.idle
	c.Mu.Unlock()
	return d
}

// idleTimeoutLocked is idleTimeout with c.Mu held.
func (c *Conn[IO]) idleTimeoutLocked() int64 {
	if c.req.Load()&reqOwnIdle == 0 {
		return c.L.S.Idle
	}
	return c.rare.idle
}

// SetCodec takes effect at the next message boundary: the loop checks
// reqCodec between messages, so bytes already received are decoded with
// the new codec. Replies use it from the next Write on.
func (c *Conn[IO]) SetCodec(codec framing.Codec) {
	if codec == nil {
		return
	}
	c.Mu.Lock()
	r := c.rareLocked()
	r.reply, r.next = codec, codec
	c.req.Or(reqCodec)
	if c.shared&sharedClosed != 0 {
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
	c.rareLocked().reply = codec
	c.Mu.Unlock()
}

// Held is how many bytes of a partial frame c holds between batches.
func (c *Conn[IO]) Held() int {
	if c.In == nil {
		return 0
	}
	return c.In.Buffered()
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
	c.shared |= sharedSched
	c.Mu.Unlock()
}

// RefuseWrites makes later Writes fail with ErrConnClosed: the write half
// is going (a drain).
func (c *Conn[IO]) RefuseWrites() {
	c.Mu.Lock()
	c.shared |= sharedWriteRefused
	c.Mu.Unlock()
}
