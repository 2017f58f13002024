//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"time"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
)

// Handler timers: Conn.AfterFunc and the server's tick. They live in a
// second heap per loop (Loop.afters), beside the connections' own timers,
// and fire on the loop: a callback serialised with the connection's
// others, with no goroutine per timer. A connection keeps its armed
// AfterFuncs in a list, so closing it takes them out of the heap at once
// rather than leaving them to hold it until they are due.

// after is one armed AfterFunc, or the tick (c == nil).
type after[IO any] struct {
	c    *Conn[IO]
	f    func()
	when int64
	slot int32      // heap position + 1
	next *after[IO] // c's other armed AfterFuncs
}

// AfterFunc hands the loop a timer for its heap: nothing runs until it
// is due, and no goroutine waits for it.
func (c *Conn[IO]) AfterFunc(d time.Duration, f func()) {
	a := &after[IO]{c: c, f: f, when: c.L.S.Clock() + int64(max(d, 0))}
	c.L.Post(Task[IO]{Kind: TaskAfter, a: a})
}

// armAfter puts a on the heap and on its connection's list, unless the
// connection has closed already.
func (l *Loop[IO]) armAfter(a *after[IO]) {
	c := a.c
	if c.State == connstate.Closed || c.L != l {
		return
	}
	r := c.loopRare()
	a.next, r.afters = r.afters, a
	l.afters.Set(a, 0, &a.slot, a.when)
}

// unlink takes a off its connection's list.
func (a *after[IO]) unlink() {
	for p := &a.c.rare.afters; *p != nil; p = &(*p).next {
		if *p == a {
			*p = a.next
			return
		}
	}
}

// stopAfters disarms every AfterFunc of the connection whose side
// struct r is; it is closing.
func (l *Loop[IO]) stopAfters(r *rare[IO]) {
	for a := r.afters; a != nil; a = a.next {
		l.afters.Stop(&a.slot)
	}
	r.afters = nil
}

// onTick runs the server's tick; a panic in it is logged and counted
// like a handler's, and ends the ticking (0).
func (l *Loop[IO]) onTick() (d time.Duration) {
	defer func() {
		if v := recover(); v != nil {
			engine.Recovered(l.S.Log, l.S.Stats, nil, "OnTick", v)
			d = 0
		}
	}()
	return l.S.Cfg.OnTick()
}

// StartTick arms the server's tick on this loop, due now, if the server
// has one and this is its first loop.
func (l *Loop[IO]) StartTick() {
	if l.ID != 0 || l.S.Cfg.OnTick == nil {
		return
	}
	l.Now = l.S.Clock()
	l.tick = &after[IO]{when: l.Now}
	l.afters.Set(l.tick, 0, &l.tick.slot, l.Now)
}

// stopTick ends the tick: Shutdown or Close began.
func (l *Loop[IO]) stopTick() {
	if l.tick != nil {
		l.afters.Stop(&l.tick.slot)
	}
}

// runAfters runs the handler timers that are due.
func (l *Loop[IO]) runAfters() {
	s := l.S
	for len(l.afters) > 0 && l.afters[0].When <= l.Now {
		a := l.afters[0].Item
		l.afters.Stop(&a.slot)
		if a.c == nil {
			if l.Draining || l.Closing {
				continue
			}
			if d := l.onTick(); d > 0 {
				a.when = s.Clock() + int64(max(d, time.Microsecond))
				l.afters.Set(a, 0, &a.slot, a.when)
			}
			continue
		}
		c := a.c
		a.unlink()
		if c.State == connstate.Closed {
			continue
		}
		c.BeginCallbacks()
		if err := l.Guard(c, "AfterFunc", func(engine.Conn) { a.f() }); err != nil {
			l.Close(c, err)
			continue
		}
		if c.State != connstate.Closed {
			l.Eng.Flush(c, 0)
		}
	}
}
