package loadgen

import "math/bits"

// partialBufs is an epoll worker's free list of buffers for partial
// replies (framing.Buffers), by power-of-two size from 4 KiB to 1 MiB. A
// partial reply is common with large or pipelined messages, and without
// the list each would cost the garbage collector two buffers (the copy
// out of the worker's read buffer, then the room to read the rest). The
// worker owns its connections, so the list needs no lock; each size keeps
// at most partialFreeBytes, so a burst of partial replies does not pin
// its memory for the rest of the run.
type partialBufs struct{ free [partialClasses][][]byte }

const (
	partialMinShift  = 12 // 4 KiB, the smallest size
	partialClasses   = 9  // up to 1 MiB; larger buffers are made and dropped
	partialFreeBytes = 2 << 20
)

// partialClass returns the size class that holds n bytes, and whether
// there is one.
func partialClass(n int) (int, bool) {
	c := max(bits.Len(uint(max(n, 1)-1))-partialMinShift, 0)
	return c, c < partialClasses
}

// Get implements framing.Buffers.
func (p *partialBufs) Get(n int) []byte {
	c, ok := partialClass(n)
	if !ok {
		return make([]byte, 0, n)
	}
	if l := p.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		p.free[c] = l[:len(l)-1]
		return b
	}
	return make([]byte, 0, 1<<(c+partialMinShift))
}

// Put implements framing.Buffers; it drops a buffer of no class's exact
// size, and one its class has no room left for.
func (p *partialBufs) Put(b []byte) {
	c, ok := partialClass(cap(b))
	if !ok || cap(b) != 1<<(c+partialMinShift) || len(p.free[c]) >= max(partialFreeBytes>>(c+partialMinShift), 2) {
		return
	}
	p.free[c] = append(p.free[c], b[:0])
}
