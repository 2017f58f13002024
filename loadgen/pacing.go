package loadgen

import (
	"math"
	"sync/atomic"
	"time"
)

// schedule computes open-loop send times: message k of the connection in
// slot idx of n is due at t0 + (k*n + idx) * tick.
type schedule struct {
	t0   int64
	tick float64 // ns between two sends of one worker
	n    uint64
}

func (s schedule) due(k uint64, idx int) int64 {
	return s.t0 + int64(float64(k*s.n+uint64(idx))*s.tick)
}

// dueBefore counts the messages of slot idx due before end.
func (s schedule) dueBefore(end int64, idx int) uint64 {
	slots := math.Ceil(float64(end-s.t0)/s.tick - float64(idx))
	if slots <= 0 {
		return 0
	}
	return uint64(math.Ceil(slots / float64(s.n)))
}

// limiter spreads connects over time: at most rate per second after a
// burst, shared by every worker.
type limiter struct {
	start   int64
	rate    float64
	burst   int64
	claimed atomic.Int64
}

func newLimiter(rate float64) *limiter {
	return &limiter{start: now(), rate: rate, burst: max(1, int64(rate/50))}
}

// take claims one connect if the rate allows it at t; otherwise it returns
// how long to wait.
func (l *limiter) take(t int64) (bool, time.Duration) {
	for {
		c := l.claimed.Load()
		allowed := l.burst + int64(float64(t-l.start)*l.rate/1e9)
		if c >= allowed {
			next := l.start + int64(float64(c-l.burst+1)*1e9/l.rate)
			return false, time.Duration(max(next-t, int64(time.Millisecond)/10))
		}
		if l.claimed.CompareAndSwap(c, c+1) {
			return true, 0
		}
	}
}
