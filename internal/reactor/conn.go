//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"switchboard/internal/engine"
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
	out     outbox
	pending int  // bytes queued and not yet written
	sched   bool // the loop will flush this conn soon: queued, or in a callback
	wclosed bool // Write refuses: closing, closed, or write half shut
	closed  bool
	value   any

	// req holds close requests from any goroutine, set under mu but read
	// without it by the loop between messages.
	req atomic.Uint32

	// Owned by the loop.
	l            *loop
	ln           *listener
	fd           int32
	st           uint16
	timer        [numTimers]int32 // heap position + 1; 0 = not armed
	in           []byte           // leftover of a partial frame, or nil
	scanned      int              // bytes of in already searched for a frame boundary
	lastRead     int64            // loop clock at the last read that returned data
	lastProgress int64            // loop clock at the last write progress while stuck
	raddr, laddr netip.AddrPort
	proxied      net.Addr // client address from the PROXY header, if any
}

// Close requests (conn.req).
const (
	reqClose      = 1 << iota // Close: drop output, close now
	reqCloseWrite             // CloseWrite: flush, shut down the write half
	reqSlow                   // a Write passed WriteLimit
)

// Loop-owned state bits (conn.st).
const (
	stRdOn   = 1 << iota // read interest registered
	stWrOn               // write interest registered
	stPaused             // reading paused: output above the high-water mark
	stEOF                // the peer shut down its write half
	stLinger             // close as soon as the output is flushed
	stShutWr             // shut down the write half once the output is flushed
	stWrShut             // write half shut down
	stDrain              // server draining: input is read and dropped
	stProxy              // waiting for the PROXY header
	stOpened             // OnOpen has run
	stClosed
)

// kickLocked makes sure the loop will look at c, from any goroutine. It
// runs with c.mu held and returns whether the caller must post c to the
// loop after unlocking (posting under c.mu would nest the loop's queue lock
// inside it for no benefit).
func (c *conn) kickLocked() bool {
	if c.sched {
		return false
	}
	c.sched = true
	return true
}

// Write frames msg into the outbox. On the loop's own goroutine, inside a
// callback, c.sched is already set: the write is a copy into a pooled
// chunk under an uncontended mutex, and the loop flushes once after the
// callback batch. From another goroutine the first write after a flush
// posts c to the loop.
func (c *conn) Write(msg []byte) error {
	s := c.l.s
	need := len(msg) + s.overhead
	c.mu.Lock()
	if c.wclosed {
		c.mu.Unlock()
		return engine.ErrConnClosed
	}
	if c.pending+len(msg) > s.writeLimit {
		// Over the limit whatever the framing adds: refuse before
		// reserving room for it.
		return c.slowLocked()
	}
	t := c.out.room(need)
	before := len(t.b)
	b, err := s.codec.Append(t.b, msg)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	added := len(b) - before
	if c.pending+added > s.writeLimit {
		return c.slowLocked()
	}
	t.b = b
	c.pending += added
	s.stats.MessagesOut.Add(1)
	post := c.kickLocked()
	c.mu.Unlock()
	if post {
		c.l.post(task{kind: taskKick, c: c})
	}
	return nil
}

// slowLocked refuses a Write that would pass WriteLimit and has the loop
// close the connection for it. It unlocks c.mu.
func (c *conn) slowLocked() error {
	c.wclosed = true
	c.req.Or(reqSlow)
	post := c.kickLocked()
	c.mu.Unlock()
	if post {
		c.l.post(task{kind: taskKick, c: c})
	}
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
	c.wclosed = true
	c.req.Or(r)
	post := c.kickLocked()
	c.mu.Unlock()
	if post {
		c.l.post(task{kind: taskKick, c: c})
	}
	return nil
}

// LocalAddr is built on demand: storing a net.Addr per connection would
// cost an allocation and two words even for connections nobody asks.
func (c *conn) LocalAddr() net.Addr {
	if c.ln.unix {
		return c.ln.addr
	}
	return net.TCPAddrFromAddrPort(c.laddr)
}

// RemoteAddr is the PROXY header's client address when there was one.
func (c *conn) RemoteAddr() net.Addr {
	if c.proxied != nil {
		return c.proxied
	}
	if c.ln.unix {
		return &net.UnixAddr{Net: "unix"}
	}
	return net.TCPAddrFromAddrPort(c.raddr)
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

// outbox is a list of chunks: appending never moves queued bytes, and a
// flush hands several chunks to one writev. Chunks come from pools and
// return there once written, so a connection with nothing pending holds no
// buffer at all.
type outbox struct {
	head, tail *chunk
	off        int // bytes of head already written
}

type chunk struct {
	b    []byte
	next *chunk
}

const (
	smallChunk = 4 << 10
	largeChunk = engine.ReadBufferSize
)

// The pools hold *chunk, so Put does not allocate.
var (
	smallChunks = sync.Pool{New: func() any { return &chunk{b: make([]byte, 0, smallChunk)} }}
	largeChunks = sync.Pool{New: func() any { return &chunk{b: make([]byte, 0, largeChunk)} }}
)

// room returns a chunk with at least need bytes free at its end, appending
// one if the tail is short. The first chunk is small, since most replies
// are; later ones are large, since a backlog tends to keep growing. A frame
// bigger than a large chunk gets a chunk of its own size, not pooled.
func (o *outbox) room(need int) *chunk {
	if t := o.tail; t != nil && cap(t.b)-len(t.b) >= need {
		return t
	}
	var k *chunk
	switch {
	case o.head == nil && need <= smallChunk:
		k = smallChunks.Get().(*chunk)
	case need <= largeChunk:
		k = largeChunks.Get().(*chunk)
	default:
		k = &chunk{b: make([]byte, 0, need)}
	}
	if o.tail == nil {
		o.head = k
	} else {
		o.tail.next = k
	}
	o.tail = k
	return k
}

// consume drops n written bytes from the front, releasing emptied chunks.
func (o *outbox) consume(n int) {
	for n > 0 {
		h := o.head
		left := len(h.b) - o.off
		if n < left {
			o.off += n
			return
		}
		n -= left
		o.popHead()
	}
	// Chunks emptied exactly, or left empty by a Write that failed
	// after reserving room, are dropped too.
	for o.head != nil && len(o.head.b) == o.off {
		o.popHead()
	}
}

func (o *outbox) popHead() {
	h := o.head
	o.head = h.next
	if o.head == nil {
		o.tail = nil
	}
	o.off = 0
	freeChunk(h)
}

// release frees every chunk, written or not.
func (o *outbox) release() {
	for o.head != nil {
		o.popHead()
	}
}

func freeChunk(k *chunk) {
	k.next = nil
	k.b = k.b[:0]
	switch cap(k.b) {
	case smallChunk:
		smallChunks.Put(k)
	case largeChunk:
		largeChunks.Put(k)
	}
}
