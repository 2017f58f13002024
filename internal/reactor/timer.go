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
	timerIdle  = iota // idle timeout; the PROXY header deadline; the linger wait; the half-close wait
	timerWrite        // write timeout: pending output made no progress
	timerFrame        // frame timeout: a started frame is not complete
	numTimers
)

// arm sets c's timer of kind to fire at when, or moves it there.
func (l *loop) arm(c *conn, kind uint8, when int64) {
	l.timers.Set(c, kind, &c.timer[kind], when)
}

// disarm cancels c's timer of kind, if armed.
func (l *loop) disarm(c *conn, kind uint8) { l.timers.Stop(&c.timer[kind]) }

// frameCheck runs after each batch of input when the frame timeout is on:
// a frame started (the accumulator or the handler holds part of one)
// starts the clock, unless it runs already for the same frame; a frame
// complete stops it. The partial frame is a new one when the batch
// delivered frames before it (the codec's), or the handler has begun one
// (PartialFrame(true)). An armed entry is left in the heap when the frame
// completes, and found stale when it comes up, so a steady stream of
// frames that each span a few reads costs a flag per batch and a heap
// entry per timeout period.
func (l *loop) frameCheck(c *conn, delivered bool) {
	r := c.req.Load()
	if r&reqFrameBegun != 0 {
		c.req.And(^uint32(reqFrameBegun))
	}
	codecPartial := c.in.Buffered() > 0
	if !codecPartial && r&reqPartial == 0 {
		c.flags &^= connFrame
		return
	}
	if c.flags&connFrame != 0 && r&reqFrameBegun == 0 && !(codecPartial && delivered) {
		return // the same frame, still partial
	}
	c.flags |= connFrame
	c.frameStart = c.lastRead
	if c.timer[timerFrame] == 0 {
		l.arm(c, timerFrame, c.frameStart+l.s.frameTO)
	}
}

// runTimers fires what is due: accept pauses that have ended; idle,
// PROXY-header, linger, half-close, write and frame timeouts; then the
// handler's timers.
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
			if c.state == connstate.PeerShut {
				l.closeConn(c, engine.ErrHalfCloseTimeout)
				continue
			}
			idle := c.idle.Load()
			if idle <= 0 {
				l.disarm(c, timerIdle) // SetIdleTimeout(0) since it was armed
				continue
			}
			due := c.lastRead + idle
			if c.flags&(connPaused|connWriteOn) != 0 {
				// Not reading because its own output is stuck: that is
				// the write timeout's business.
				due = l.now + idle
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
		case timerFrame:
			l.disarm(c, timerFrame)
			if c.flags&connFrame == 0 || l.draining {
				continue // the frame completed; the next one re-arms
			}
			if due := c.frameStart + s.frameTO; due > l.now {
				l.arm(c, timerFrame, due) // a later frame than the one armed for
				continue
			}
			l.closeConn(c, engine.FrameTimedOut(time.Duration(s.frameTO)))
		}
	}
	l.runAfters()
}

// rearmIdle applies SetIdleTimeout: the idle timer counts from the last
// read with the new timeout, or stops. In Header, PeerShut and while
// draining the idle entry is another deadline, which it leaves alone.
func (l *loop) rearmIdle(c *conn) {
	if l.draining || c.state == connstate.Header || c.state == connstate.PeerShut || c.state == connstate.Closed {
		return
	}
	if idle := c.idle.Load(); idle > 0 {
		l.arm(c, timerIdle, c.lastRead+idle)
	} else {
		l.disarm(c, timerIdle)
	}
}
