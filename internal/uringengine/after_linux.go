package uringengine

import (
	"time"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
)

// Handler timers: Conn.AfterFunc and the server's tick. They live in a
// second heap per loop (loop.afters), beside the connections' own timers,
// and fire on the loop: a callback serialised with the connection's
// others, with no goroutine per timer. A connection keeps its armed
// AfterFuncs in a list, so closing it takes them out of the heap at once
// rather than leaving them to hold it until they are due.

// afterFunc is one armed AfterFunc, or the tick (c == nil).
type afterFunc struct {
	c    *conn
	f    func()
	when int64
	slot int32      // heap position + 1
	next *afterFunc // c's other armed AfterFuncs
}

// armAfter puts a on the heap and on its connection's list, unless the
// connection has closed already.
func (l *loop) armAfter(a *afterFunc) {
	c := a.c
	if c.state == connstate.Closed || c.l != l {
		return
	}
	a.next, c.afters = c.afters, a
	l.afters.Set(a, 0, &a.slot, a.when)
}

// unlinkAfter takes a off its connection's list.
func unlinkAfter(a *afterFunc) {
	for p := &a.c.afters; *p != nil; p = &(*p).next {
		if *p == a {
			*p = a.next
			return
		}
	}
}

// stopAfters disarms every AfterFunc c has; c is closing.
func (l *loop) stopAfters(c *conn) {
	for a := c.afters; a != nil; a = a.next {
		l.afters.Stop(&a.slot)
	}
	c.afters = nil
}

// onTick runs the server's tick; a panic in it is logged and counted
// like a handler's, and ends the ticking (0).
func (l *loop) onTick() (d time.Duration) {
	defer func() {
		if v := recover(); v != nil {
			engine.Recovered(l.s.log, l.s.stats, nil, "OnTick", v)
			d = 0
		}
	}()
	return l.s.cfg.OnTick()
}

// startTick arms the server's tick on this loop, due now.
func (l *loop) startTick() {
	l.tick = &afterFunc{when: l.now}
	l.afters.Set(l.tick, 0, &l.tick.slot, l.now)
}

// stopTick ends the tick: Shutdown or Close began.
func (l *loop) stopTick() {
	if l.tick != nil {
		l.afters.Stop(&l.tick.slot)
	}
}

// runAfters runs the handler timers that are due.
func (l *loop) runAfters() {
	s := l.s
	for len(l.afters) > 0 && l.afters[0].When <= l.now {
		a := l.afters[0].Item
		l.afters.Stop(&a.slot)
		if a.c == nil {
			if l.draining || l.closing {
				continue
			}
			if d := l.onTick(); d > 0 {
				a.when = s.clock() + int64(max(d, time.Microsecond))
				l.afters.Set(a, 0, &a.slot, a.when)
			}
			continue
		}
		c := a.c
		unlinkAfter(a)
		if c.state == connstate.Closed {
			continue
		}
		c.mu.Lock()
		c.sched = true
		c.mu.Unlock()
		if err := l.guard(c, "AfterFunc", func(engine.Conn) { a.f() }); err != nil {
			l.closeConn(c, err)
			continue
		}
		if c.state != connstate.Closed {
			l.afterDispatch(c, 0)
		}
	}
}
