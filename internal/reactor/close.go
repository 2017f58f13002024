//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
)

// Closing and draining: one connection now, every connection gracefully
// (Shutdown), or every connection now (Close, Shutdown's deadline).

// closeConn closes c now, once, and reports err to OnClose.
func (l *loop) closeConn(c *conn, err error) {
	if c.state == connstate.Closed {
		return
	}
	s := l.s
	c.state = connstate.Closed
	c.mu.Lock()
	c.closed, c.writeRefused = true, true
	if c.tls != nil {
		l.closeTLS(c)
	}
	c.out.Release()
	engine.CancelContext(c.ctx)
	cst := c.st
	c.mu.Unlock()
	l.pending -= c.reported
	c.reported = 0
	if c.flags&connPaused != 0 {
		c.flags &^= connPaused
		l.paused--
	}
	for k := range uint8(numTimers) {
		l.disarm(c, k)
	}
	l.stopAfters(c)
	fd := int(c.fd)
	l.p.Delete(fd)
	unix.Close(fd)
	l.conns[fd] = nil
	c.in.Reset(l.splitOf(c))
	l.n--
	l.load.Add(-1)
	s.nconns.Add(-1)
	s.stats.Active.Add(-1)
	s.perIP.Release(c.raddr.Addr())
	// Clamped: the accepting loop's clock may be a little ahead of this
	// loop's, read earlier in its iteration.
	engine.Closed(&s.cfg, engine.ConnInfo{
		Remote: c.RemoteAddr(), Local: c.LocalAddr(),
		Duration: time.Duration(max(l.now-c.opened, 0)), Stats: cst, Err: err,
	})
	// A connection refused for its PROXY header never reached the
	// handler, so it gets no OnClose either.
	if c.flags&connOpened != 0 {
		l.onClose(c, err)
	}
}

// onClose runs OnClose; a panic in it is recovered, logged and counted,
// and the loop carries on (the connection is closed already).
func (l *loop) onClose(c *conn, err error) {
	defer func() {
		if v := recover(); v != nil {
			engine.Recovered(l.s.log, l.s.stats, c.RemoteAddr(), "OnClose", v)
		}
	}()
	l.s.h.OnClose(c, err)
}

// drain starts a graceful shutdown on this loop: no more accepts, input is
// read and dropped, output is flushed, then FIN, and each connection closes
// when the peer's FIN arrives or the linger wait ends.
func (l *loop) drain() {
	if l.draining || l.closing {
		return
	}
	l.draining = true
	l.stopTick()
	l.closeListeners()
	for _, c := range l.conns {
		if c == nil || c.state == connstate.Closed {
			continue
		}
		if c.tls != nil && !c.tls.Ready {
			// The handler has not heard of it: nothing to finish.
			l.closeConn(c, nil)
			continue
		}
		c.mu.Lock()
		c.writeRefused = true
		c.mu.Unlock()
		// The idle timer becomes the linger timer once our FIN is out;
		// until then the write timeout and Shutdown's deadline bound it.
		l.disarm(c, timerIdle)
		c.in.Reset(l.splitOf(c))
		if c.state.Drain() {
			l.arm(c, timerIdle, l.lingerDeadline())
		}
		l.afterDispatch(c, 0)
	}
}

// closeAll closes every connection now (Close, or Shutdown's deadline).
func (l *loop) closeAll() {
	if l.closing {
		return
	}
	draining := l.draining
	l.closing = true
	l.stopTick()
	l.closeListeners()
	var err error
	if draining {
		err = engine.ErrShutdown
	}
	for _, c := range l.conns {
		if c != nil {
			l.closeConn(c, err)
		}
	}
}

// lingerDeadline is when a draining connection that has sent its FIN gives
// up waiting for the peer's: engine.LingerWait from now, or Shutdown's
// deadline if sooner.
func (l *loop) lingerDeadline() int64 {
	s := l.s
	s.mu.Lock()
	deadline := s.deadline
	s.mu.Unlock()
	d := l.now + int64(engine.LingerWait)
	if deadline > 0 {
		d = min(d, deadline)
	}
	return d
}

func (l *loop) closeListeners() {
	for _, li := range l.lns {
		l.p.Delete(li.Fd)
		unix.Close(li.Fd)
	}
	l.lns = nil
}
