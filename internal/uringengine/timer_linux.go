package uringengine

import (
	"time"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
)

// Timers are a per-loop internal/timerheap of connections, moved lazily
// as in the reactor: receiving data only stores the loop's clock in
// conn.lastRead, and the idle entry is pushed down to the real deadline
// when it reaches the top. The write timer is lazier than the reactor's:
// every reply here is pending until its send completes, so the timer is
// armed when output appears and not disarmed when it drains; when it
// fires with nothing outstanding it lapses, and otherwise it moves to
// the last progress (a send started or completed) plus the timeout. The enter's own timeout (EXT_ARG) is the wait
// until the first deadline, so no timeout requests are armed in the ring.

const (
	timerIdle  = iota // idle timeout; the PROXY header deadline; the linger wait; the half-close wait
	timerWrite        // write timeout: pending output made no progress
	timerFrame        // frame timeout: a started frame is not complete
	numTimers
)

func (l *loop) arm(c *conn, kind uint8, when int64) {
	l.timers.Set(c, kind, &c.timer[kind], when)
}

func (l *loop) disarm(c *conn, kind uint8) { l.timers.Stop(&c.timer[kind]) }

// frameCheck runs after each batch of input when the frame timeout is on,
// as the reactor's does: a frame started (the accumulator or the handler
// holds part of one) starts the clock unless it runs already for the
// same frame; a frame complete stops it, lazily (the entry is found stale
// when it comes up).
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

// runTimers fires what is due: accept back-offs that have ended; idle,
// PROXY-header, linger, half-close, write and frame timeouts; then the
// handler's timers.
func (l *loop) runTimers() {
	s := l.s
	for _, li := range l.lns {
		if !li.armed && !li.closed && li.resumeAfter > 0 && l.now >= li.resumeAfter && !l.draining && !l.closing {
			l.armAccept(li)
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
			if c.flags&(connPaused|connSending) != 0 {
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
			if c.flags&(connSending|connDirty|connSendWait) == 0 {
				// Nothing outstanding: the timer lapsed (settle does not
				// disarm it when the output empties).
				l.disarm(c, timerWrite)
				continue
			}
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
				l.arm(c, timerFrame, due)
				continue
			}
			l.closeConn(c, engine.FrameTimedOut(time.Duration(s.frameTO)))
		}
	}
	l.runAfters()
}

// rearmIdle applies SetIdleTimeout: the idle timer counts from the last
// receive with the new timeout, or stops. In Header, PeerShut and while
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
