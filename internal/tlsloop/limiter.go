package tlsloop

import (
	"fmt"
	"sync"
)

// Limiter bounds how many handshakes run at once, across the connections
// that share it (one per server, say). A connection that finds every slot
// taken waits in a first-come, first-served queue, holding no goroutine,
// until a slot frees or its handshake timeout expires; the timeout counts
// the wait. A handshake's CPU is spent once it has a slot, so a flood of
// connections cannot start more key exchanges at once than the limit.
type Limiter struct {
	max int

	mu         sync.Mutex
	running    int
	head, tail *Conn // waiting connections, oldest first
	waiting    int
}

// NewLimiter returns a Limiter allowing n concurrent handshakes (n >= 1).
func NewLimiter(n int) (*Limiter, error) {
	if n < 1 {
		return nil, fmt.Errorf("tlsloop: handshake limit %d, want at least 1", n)
	}
	return &Limiter{max: n}, nil
}

// Running returns how many handshakes hold a slot, and Waiting how many
// wait for one.
func (l *Limiter) Running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running
}

// Waiting returns how many connections wait for a slot.
func (l *Limiter) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting
}

// acquire takes a slot for c (run), or queues c, unless c's handshake
// timer has already fired (expired), in which case it does neither.
func (l *Limiter) acquire(c *Conn) (run, expired bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.w.wasExpired() {
		return false, true
	}
	if l.running < l.max && l.head == nil {
		l.running++
		return true, false
	}
	c.queued = true
	c.qprev, c.qnext = l.tail, nil
	if l.tail != nil {
		l.tail.qnext = c
	} else {
		l.head = c
	}
	l.tail = c
	l.waiting++
	return false, false
}

// release frees a slot, handing it to the oldest waiting connection.
func (l *Limiter) release() {
	l.mu.Lock()
	next := l.head
	if next == nil {
		l.running--
		l.mu.Unlock()
		return
	}
	l.unlink(next)
	l.mu.Unlock()
	go next.granted()
}

// expire is c's handshake timer firing: it takes c out of the queue and
// reports true if c was waiting; otherwise it marks c's wire expired, so
// that a running handshake gives up, and acquire does not queue c later.
// Both under mu, so the timer cannot fall between acquire's check and c
// joining the queue.
func (l *Limiter) expire(c *Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.queued {
		l.unlink(c)
		return true
	}
	c.w.expire()
	return false
}

// remove takes c out of the queue, reporting whether it was there (a
// connection that has been granted a slot, or never waited, is not).
func (l *Limiter) remove(c *Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.queued {
		return false
	}
	l.unlink(c)
	return true
}

func (l *Limiter) unlink(c *Conn) {
	if c.qprev != nil {
		c.qprev.qnext = c.qnext
	} else {
		l.head = c.qnext
	}
	if c.qnext != nil {
		c.qnext.qprev = c.qprev
	} else {
		l.tail = c.qprev
	}
	c.qprev, c.qnext, c.queued = nil, nil, false
	l.waiting--
}
