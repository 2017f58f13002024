// Package outbox is a connection's queue of framed output for the event
// loop engines: a list of pooled chunks that replies are appended to and a
// flush takes from the front, several chunks to one writev (or one
// vectored send). It does no I/O and no locking; the engine holds the
// connection's lock around it.
//
// Appending never moves queued bytes, so a writer on another goroutine can
// queue behind a flush in progress, and a connection with nothing pending
// holds no chunk at all: they come from pools on the first write and go
// back once written.
package outbox

import "sync"

// Outbox is one connection's pending output. The zero value is empty.
// Every connection of an event loop carries one, idle or not, so it is
// three words: how much of the head chunk is written lives in the chunk.
type Outbox struct {
	head, tail *chunk
	n          int // bytes queued and not yet written
}

type chunk struct {
	b    []byte
	next *chunk
	off  int // bytes of b already written, when this is the head
}

// Chunk sizes. The first chunk is small, since most replies are; later
// ones are large, since a backlog tends to keep growing.
const (
	SmallChunk = 4 << 10
	LargeChunk = 64 << 10
)

// The pools hold *chunk, so Put does not allocate.
var (
	smallChunks = sync.Pool{New: func() any { return &chunk{b: make([]byte, 0, SmallChunk)} }}
	largeChunks = sync.Pool{New: func() any { return &chunk{b: make([]byte, 0, LargeChunk)} }}
)

// Len is the number of bytes queued and not yet written.
func (o *Outbox) Len() int { return o.n }

// Reserve returns the buffer to append the next message to, with at least
// need bytes free after its length: the last chunk if it has the room, a
// new one otherwise. A frame bigger than a large chunk gets a chunk of its
// own size, not pooled. Append to it and pass the result to Commit; a
// caller that changes its mind simply does not.
func (o *Outbox) Reserve(need int) []byte {
	if t := o.tail; t != nil && cap(t.b)-len(t.b) >= need {
		return t.b
	}
	var k *chunk
	switch {
	case o.head == nil && need <= SmallChunk:
		k = smallChunks.Get().(*chunk)
	case need <= LargeChunk:
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
	return k.b
}

// Commit queues what was appended to the buffer Reserve returned; b is
// that buffer, grown within its capacity.
func (o *Outbox) Commit(b []byte) {
	o.n += len(b) - len(o.tail.b)
	o.tail.b = b
}

// Head returns the unwritten bytes of the first chunk, and whether more
// chunks follow it (then Gather collects them for one vectored write).
func (o *Outbox) Head() (b []byte, more bool) {
	if o.head == nil {
		return nil, false
	}
	return o.head.b[o.head.off:], o.head.next != nil
}

// Gather appends the unwritten bytes of up to max chunks to bufs, in
// order, and returns it with their total length.
func (o *Outbox) Gather(bufs [][]byte, max int) ([][]byte, int) {
	total := 0
	for k := o.head; k != nil && max > 0; k = k.next {
		b := k.b
		if k == o.head {
			b = b[k.off:]
		}
		bufs = append(bufs, b)
		total += len(b)
		max--
	}
	return bufs, total
}

// Consume drops n written bytes from the front, releasing emptied chunks.
func (o *Outbox) Consume(n int) {
	o.n -= n
	for n > 0 {
		h := o.head
		left := len(h.b) - h.off
		if n < left {
			h.off += n
			return
		}
		n -= left
		o.popHead()
	}
	// Chunks emptied exactly, or left empty by a message Reserve made
	// room for and nobody committed, are dropped too.
	for o.head != nil && len(o.head.b) == o.head.off {
		o.popHead()
	}
}

// Release frees every chunk, written or not, and empties the queue.
func (o *Outbox) Release() {
	for o.head != nil {
		o.popHead()
	}
	o.n = 0
}

func (o *Outbox) popHead() {
	h := o.head
	o.head = h.next
	if o.head == nil {
		o.tail = nil
	}
	h.off = 0
	h.next = nil
	h.b = h.b[:0]
	switch cap(h.b) {
	case SmallChunk:
		smallChunks.Put(h)
	case LargeChunk:
		largeChunks.Put(h)
	}
}
