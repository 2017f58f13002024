// Package inbuf holds the buffers an event loop keeps partial frames in
// between reads: free lists of two sizes, owned by one loop, so taking and
// returning one costs no synchronisation (unlike a sync.Pool) and no
// allocation once the lists are warm. Both the readiness reactor and the
// io_uring engine hand them to framing.Splitter.
package inbuf

import "switchboard/internal/engine"

// ReadRoom is the least free space a partial frame's buffer offers a
// read; smaller reads would cost more system calls than copies.
const ReadRoom = 16 << 10

// FreeLists are a loop's buffers for partial frames (framing.Buffers).
// Only the loop touches its connections' input, so they need no
// synchronisation, unlike a sync.Pool.
type FreeLists struct{ small, large [][]byte }

// The two sizes: small for the usual leftover of a short frame, large for
// one read's worth behind a partial frame. Larger requests are made fresh
// and not kept.
const (
	Small   = 4 << 10
	Large   = engine.ReadBufferSize + ReadRoom
	maxFree = 64
)

// Get returns an empty buffer of at least n bytes' capacity.
func (f *FreeLists) Get(n int) []byte {
	switch {
	case n <= Small:
		return pop(&f.small, Small)
	case n <= Large:
		return pop(&f.large, Large)
	}
	return make([]byte, 0, n)
}

// pop takes a buffer off list, or makes one of size when it is empty.
func pop(list *[][]byte, size int) []byte {
	if k := len(*list); k > 0 {
		b := (*list)[k-1]
		*list = (*list)[:k-1]
		return b
	}
	return make([]byte, 0, size)
}

// Put keeps b for a later Get if it is one of the two sizes and the list
// has room; anything else is left to the collector.
func (f *FreeLists) Put(b []byte) {
	switch cap(b) {
	case Small:
		if len(f.small) < maxFree {
			f.small = append(f.small, b[:0])
		}
	case Large:
		if len(f.large) < maxFree/8 {
			f.large = append(f.large, b[:0])
		}
	}
}
