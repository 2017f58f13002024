// Package timerheap is an event loop's timers: a binary min-heap keyed by
// deadline, in which each item (a connection) has at most one entry per
// kind and remembers where it is, so arming, moving and cancelling cost
// O(log n) and nothing ever scans every connection (the O(N) timer list
// Redis's ae.c admits to is what this replaces). It does no locking; one
// loop owns one heap.
//
// Items keep their positions themselves, in an int32 per kind that the
// heap is handed a pointer to: 0 means not armed, i+1 means entry i. So
// an engine's connection type needs no method or interface to be timed,
// and a second engine package can use the same heap for its own type.
package timerheap

// Heap is a timer heap of items of type T. The zero value is empty.
type Heap[T any] []Entry[T]

// Entry is one armed timer.
type Entry[T any] struct {
	When int64 // deadline, on the owner's clock
	Item T
	Kind uint8
	slot *int32
}

func (h Heap[T]) less(i, j int) bool { return h[i].When < h[j].When }

func (h Heap[T]) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	*h[i].slot = int32(i + 1)
	*h[j].slot = int32(j + 1)
}

func (h Heap[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h Heap[T]) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h.swap(i, m)
		i = m
	}
}

// Set arms item's timer of kind at when, or moves it there if armed. slot
// is where item keeps that timer's position; it must stay the same for as
// long as the timer is armed.
func (h *Heap[T]) Set(item T, kind uint8, slot *int32, when int64) {
	if i := int(*slot) - 1; i >= 0 {
		old := (*h)[i].When
		(*h)[i].When = when
		if when < old {
			h.up(i)
		} else {
			h.down(i)
		}
		return
	}
	*h = append(*h, Entry[T]{When: when, Item: item, Kind: kind, slot: slot})
	i := len(*h) - 1
	*slot = int32(i + 1)
	h.up(i)
}

// Stop disarms the timer whose position slot holds, if armed.
func (h *Heap[T]) Stop(slot *int32) {
	i := int(*slot) - 1
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = Entry[T]{}
	*h = (*h)[:last]
	*slot = 0
	if i != last {
		h.down(i)
		h.up(i)
	}
}

// Next is the earliest deadline, or -1 with no timer armed.
func (h Heap[T]) Next() int64 {
	if len(h) == 0 {
		return -1
	}
	return h[0].When
}
