package engine

import (
	"net/netip"
	"sync"
)

// AddrLimiter counts open connections per client IP address for
// Config.MaxConnsPerIP. One is shared by every accepting goroutine or loop
// of an engine (with SO_REUSEPORT each loop accepts for itself, and a
// connection may close on another loop than the one that accepted it), so
// it takes a mutex: one uncontended lock and a map update per accept and
// per close, beside system calls that cost a thousand times more. The map
// holds only addresses with connections open, so a scan of many
// addresses leaves nothing behind.
type AddrLimiter struct {
	max int32
	mu  sync.Mutex
	n   map[netip.Addr]int32
}

// NewAddrLimiter returns a limiter admitting max connections per address,
// or nil when max is 0 (no limit), which Acquire and Release accept.
func NewAddrLimiter(max int) *AddrLimiter {
	if max <= 0 {
		return nil
	}
	return &AddrLimiter{max: int32(max), n: make(map[netip.Addr]int32)}
}

// Acquire counts a new connection from a, unless a already has the
// maximum open; it reports whether the connection may stay. An invalid
// address (a Unix socket's) is always admitted and not counted.
func (l *AddrLimiter) Acquire(a netip.Addr) bool {
	if l == nil || !a.IsValid() {
		return true
	}
	a = a.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[a] >= l.max {
		return false
	}
	l.n[a]++
	return true
}

// Release uncounts a connection from a that Acquire admitted.
func (l *AddrLimiter) Release(a netip.Addr) {
	if l == nil || !a.IsValid() {
		return
	}
	a = a.Unmap()
	l.mu.Lock()
	if k := l.n[a] - 1; k > 0 {
		l.n[a] = k
	} else {
		delete(l.n, a)
	}
	l.mu.Unlock()
}

// Open is the number of addresses with connections open now.
func (l *AddrLimiter) Open() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.n)
}
