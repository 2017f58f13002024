//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"time"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
)

// Timers are a per-loop internal/timerheap of connections, keyed by
// deadline, with at most one entry per kind per connection.
//
// Deadlines move lazily: receiving data only stores the loop's coarse
// clock in conn.lastRead. When the idle entry reaches the top of the heap,
// the loop recomputes the real deadline and either closes the connection
// or pushes the entry down to it. A busy connection so costs one heap fix
// per idle period, not one per message.

const (
	timerIdle  = iota // idle timeout; the PROXY header deadline; the linger wait
	timerWrite        // write timeout: pending output made no progress
	numTimers
)

// arm sets c's timer of kind to fire at when, or moves it there.
func (l *loop) arm(c *conn, kind uint8, when int64) {
	l.timers.Set(c, kind, &c.timer[kind], when)
}

// disarm cancels c's timer of kind, if armed.
func (l *loop) disarm(c *conn, kind uint8) { l.timers.Stop(&c.timer[kind]) }

// runTimers fires what is due: accept pauses that have ended, and idle,
// PROXY-header, linger and write timeouts.
func (l *loop) runTimers() {
	s := l.s
	for _, li := range l.lns {
		if li.paused && l.now >= li.resumeAfter {
			li.paused = false
			l.p.Modify(li.Fd, true, false)
		}
	}
	for len(l.timers) > 0 && l.timers[0].When <= l.now {
		t := l.timers[0]
		c := t.Item
		switch t.Kind {
		case timerIdle:
			if l.draining {
				l.closeConn(c, engine.ErrShutdown) // the linger wait is over
				continue
			}
			if c.state == connstate.Header {
				l.closeConn(c, engine.ProxyHeaderLate(time.Duration(t.When-c.lastRead)))
				continue
			}
			due := c.lastRead + s.idle
			if c.flags&(connPaused|connWriteOn) != 0 {
				// Not reading because its own output is stuck: that is
				// the write timeout's business.
				due = l.now + s.idle
			}
			if due > l.now {
				l.arm(c, timerIdle, due)
				continue
			}
			l.closeConn(c, engine.ErrIdleTimeout)
		case timerWrite:
			if due := c.lastProgress + s.writeTO; due > l.now {
				l.arm(c, timerWrite, due)
				continue
			}
			l.closeConn(c, engine.ErrWriteTimeout)
		}
	}
}
