//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

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

	req atomic.Uint32 // reqClose | reqCloseWrite | reqSlow

	// Owned by the loop.
	l            *loop
	ln           *listener
	fd           int32
	state        connstate.State
	flags        uint8
	timer        [numTimers]int32    // heap position + 1; 0 = not armed
	in           framing.Accumulator // a partial frame between reads, else empty
	lastRead     int64               // loop clock at the last read that returned data
	lastProgress int64               // loop clock at the last write progress while stuck
	frameStart   int64               // loop clock when the frame now partial began (connFrame)
	raddr, laddr netip.AddrPort
	proxied      net.Addr // client address from the PROXY header, if any
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
	t := c.out.Reserve(len(msg) + s.overhead)
	b, err := s.codec.Append(t, msg)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	if pending+len(b)-len(t) > s.writeLimit {
		return c.slowLocked()
	}
	c.out.Commit(b)
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

// Context returns the value last stored with SetContext.
func (c *conn) Context() any {
	c.mu.Lock()
	v := c.value
	c.mu.Unlock()
	return v
}

// SetContext stores one value with the connection.
func (c *conn) SetContext(v any) {
	c.mu.Lock()
	c.value = v
	c.mu.Unlock()
}
