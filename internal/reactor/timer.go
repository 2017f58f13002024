//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

// Timers are a binary min-heap per loop, keyed by deadline. Each connection
// has at most one entry per kind and remembers its position, so arming,
// moving and cancelling cost O(log n) and nothing ever scans every
// connection (the O(N) timer list Redis's ae.c admits to is what this
// replaces).
//
// Deadlines move lazily: receiving data only stores the loop's coarse
// clock in conn.lastRead. When the idle entry reaches the top of the heap,
// the loop recomputes the real deadline and either closes the connection
// or pushes the entry down to it. A busy connection so costs one heap fix
// per idle period, not one per message.

const (
	timerIdle  = iota // idle timeout, or the PROXY header deadline
	timerWrite        // write timeout: pending output made no progress
	numTimers
)

type timer struct {
	when int64 // loop clock, ns
	c    *conn
	kind uint8
}

type timerHeap []timer

func (h timerHeap) less(i, j int) bool { return h[i].when < h[j].when }

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].c.timer[h[i].kind] = int32(i + 1)
	h[j].c.timer[h[j].kind] = int32(j + 1)
}

func (h timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h timerHeap) down(i int) {
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

// set arms c's timer of kind at when, or moves it there if armed.
func (h *timerHeap) set(c *conn, kind uint8, when int64) {
	if i := int(c.timer[kind]) - 1; i >= 0 {
		old := (*h)[i].when
		(*h)[i].when = when
		if when < old {
			h.up(i)
		} else {
			h.down(i)
		}
		return
	}
	*h = append(*h, timer{when: when, c: c, kind: kind})
	i := len(*h) - 1
	c.timer[kind] = int32(i + 1)
	h.up(i)
}

// stop disarms c's timer of kind, if armed.
func (h *timerHeap) stop(c *conn, kind uint8) {
	i := int(c.timer[kind]) - 1
	if i < 0 {
		return
	}
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = timer{}
	*h = (*h)[:last]
	c.timer[kind] = 0
	if i != last {
		h.down(i)
		h.up(i)
	}
}

// next is the earliest deadline, or -1 with no timer armed.
func (h timerHeap) next() int64 {
	if len(h) == 0 {
		return -1
	}
	return h[0].when
}
