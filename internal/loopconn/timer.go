//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"time"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
)

// Timers are a per-loop internal/timerheap of connections, keyed by
// deadline, with at most one entry per kind per connection.
//
// Deadlines move lazily: receiving data only stores the loop's coarse
// clock in Conn.LastRead. When the idle entry reaches the top of the
// heap, the loop recomputes the real deadline and either closes the
// connection or pushes the entry down to it. A busy connection so costs
// one heap fix per idle period, not one per message.
//
// The write timer may be left armed when the output drains (the
// completion engine does, since nearly every message's send completes
// and arming and disarming each time would be two heap operations): when
// it fires with none of the engine's outstanding flags set it lapses.

// The kinds of a connection's timers.
const (
	TimerIdle  = iota // idle timeout; the PROXY header deadline; the linger wait; the half-close wait
	TimerWrite        // write timeout: pending output made no progress
	TimerFrame        // frame timeout: a started frame is not complete
	NumTimers
)

// Arm sets c's timer of kind to fire at when, or moves it there.
func (l *Loop[IO]) Arm(c *Conn[IO], kind uint8, when int64) {
	l.Timers.Set(c, kind, &c.Timer[kind], when)
}

// Disarm cancels c's timer of kind, if armed.
func (l *Loop[IO]) Disarm(c *Conn[IO], kind uint8) { l.Timers.Stop(&c.Timer[kind]) }

// ArmWrite starts the write timeout for output that has just become
// pending, unless it runs already. The loop clock dates from before
// this batch's callbacks, which may have run a while; output getting
// stuck is rare enough to afford a fresh reading, so the timeout never
// fires early.
func (l *Loop[IO]) ArmWrite(c *Conn[IO]) {
	if l.S.WriteTO <= 0 || c.Timer[TimerWrite] != 0 {
		return
	}
	l.Now = l.S.Clock()
	c.LastProgress = l.Now
	l.Arm(c, TimerWrite, l.Now+l.S.WriteTO)
}

// NextTimer is the earliest deadline of the loop's timers, or -1 with
// none armed.
func (l *Loop[IO]) NextTimer() int64 {
	next := l.Timers.Next()
	if a := l.afters.Next(); a >= 0 && (next < 0 || a < next) {
		next = a
	}
	return next
}

// frameCheck runs after each batch of input when the frame timeout is on:
// a frame started (the accumulator or the handler holds part of one)
// starts the clock, unless it runs already for the same frame; a frame
// complete stops it. The partial frame is a new one when the batch
// delivered frames before it (the codec's), or the handler has begun one
// (PartialFrame(true)). An armed entry is left in the heap when the frame
// completes, and found stale when it comes up, so a steady stream of
// frames that each span a few reads costs a flag per batch and a heap
// entry per timeout period.
func (l *Loop[IO]) frameCheck(c *Conn[IO], delivered bool) {
	r := c.req.Load()
	if r&reqFrameBegun != 0 {
		c.req.And(^uint32(reqFrameBegun))
	}
	codecPartial := c.Held() > 0
	if !codecPartial && r&reqPartial == 0 {
		c.Flags &^= FlagFrame
		return
	}
	if c.Flags&FlagFrame != 0 && r&reqFrameBegun == 0 && !(codecPartial && delivered) {
		return // the same frame, still partial
	}
	c.Flags |= FlagFrame
	c.frameStart = c.LastRead
	if c.Timer[TimerFrame] == 0 {
		l.Arm(c, TimerFrame, c.frameStart+l.S.FrameTO)
	}
}

// RunTimers fires what is due: idle, PROXY-header, linger, half-close,
// write and frame timeouts; then the handler's timers.
func (l *Loop[IO]) RunTimers() {
	s := l.S
	for len(l.Timers) > 0 && l.Timers[0].When <= l.Now {
		t := l.Timers[0]
		c := t.Item
		switch t.Kind {
		case TimerIdle:
			if l.Draining {
				l.Close(c, engine.ErrShutdown) // the linger wait is over
				continue
			}
			if c.State == connstate.Header {
				l.Close(c, engine.ProxyHeaderLate(time.Duration(t.When-c.LastRead)))
				continue
			}
			if c.State == connstate.PeerShut {
				l.Close(c, engine.ErrHalfCloseTimeout)
				continue
			}
			idle := c.idleTimeout()
			if idle <= 0 {
				l.Disarm(c, TimerIdle) // SetIdleTimeout(0) since it was armed
				continue
			}
			due := c.LastRead + idle
			if c.Flags&(FlagPaused|l.outstanding) != 0 {
				// Not reading because its own output is stuck: that is
				// the write timeout's business.
				due = l.Now + idle
			}
			if due > l.Now {
				l.Arm(c, TimerIdle, due)
				continue
			}
			l.Close(c, engine.ErrIdleTimeout)
		case TimerWrite:
			if c.Flags&l.outstanding == 0 {
				l.Disarm(c, TimerWrite) // nothing outstanding: it lapsed
				continue
			}
			if due := c.LastProgress + s.WriteTO; due > l.Now {
				l.Arm(c, TimerWrite, due)
				continue
			}
			l.Close(c, engine.ErrWriteTimeout)
		case TimerFrame:
			l.Disarm(c, TimerFrame)
			if c.Flags&FlagFrame == 0 || l.Draining {
				continue // the frame completed; the next one re-arms
			}
			if due := c.frameStart + s.FrameTO; due > l.Now {
				l.Arm(c, TimerFrame, due) // a later frame than the one armed for
				continue
			}
			l.Close(c, engine.FrameTimedOut(time.Duration(s.FrameTO)))
		}
	}
	l.runAfters()
}

// rearmIdle applies SetIdleTimeout: the idle timer counts from the last
// read with the new timeout, or stops. In Header, PeerShut and while
// draining the idle entry is another deadline, which it leaves alone.
// Under c.Mu (BeginFlush).
func (l *Loop[IO]) rearmIdle(c *Conn[IO]) {
	if l.Draining || c.State == connstate.Header || c.State == connstate.PeerShut || c.State == connstate.Closed {
		return
	}
	if idle := c.idleTimeoutLocked(); idle > 0 {
		l.Arm(c, TimerIdle, c.LastRead+idle)
	} else {
		l.Disarm(c, TimerIdle)
	}
}

// ArmIdle starts c's idle timer from now with its idle timeout, or stops
// it with none: c has just opened.
func (l *Loop[IO]) ArmIdle(c *Conn[IO]) {
	if idle := c.idleTimeout(); idle > 0 {
		l.Arm(c, TimerIdle, l.Now+idle)
	} else {
		l.Disarm(c, TimerIdle)
	}
}
