package uringengine

import (
	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/uring"
	"time"
)

// Closing and draining: one connection now, every connection gracefully
// (Shutdown), or every connection now (Close, Shutdown's deadline).

// closeConn closes c now, once, and reports err to OnClose. The kernel is
// asked to cancel c's requests and then close the descriptor, in that
// order (a hard link, so that nothing to cancel does not stop the close);
// a send still in flight keeps c's slot and outbox until it completes.
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
		c.out.Release() // plaintext is never in flight over TLS
	} else if c.flags&connSending == 0 {
		c.out.Release()
	}
	engine.CancelContext(c.ctx)
	cst := c.st
	c.mu.Unlock()
	for k := range uint8(numTimers) {
		l.disarm(c, k)
	}
	l.stopAfters(c)
	fd := int(c.fd)
	sqe := l.sqe()
	sqe.PrepCancelFd(fd)
	sqe.SetUserData(userData(udCancel, 0, 0))
	sqe.SetFlags(uring.SQEIOHardlink | uring.SQECQESkipSuccess)
	sqe = l.sqe()
	sqe.PrepClose(fd)
	sqe.SetUserData(userData(udCancel, 0, 0))
	sqe.SetFlags(uring.SQECQESkipSuccess)
	c.in.Reset(l.splitOf(c))
	c.held = nil
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
	if c.flags&(connSending|connSendWait) == 0 {
		l.retire(c)
	}
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

// retire frees a closed connection's slot once nothing of it is in
// flight; completions still to come for it carry an older generation.
func (l *loop) retire(c *conn) {
	c.mu.Lock()
	c.out.Release()
	if c.tls != nil {
		c.tls.Out.Release()
	}
	c.mu.Unlock()
	if l.conns[c.slot] == c {
		l.conns[c.slot] = nil
		l.freeSlots = append(l.freeSlots, c.slot)
	}
}

// drain starts a graceful shutdown on this loop: no more accepts, input is
// received and dropped, output is flushed, then FIN, and each connection
// closes when the peer's FIN arrives or the linger wait ends.
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
		l.disarm(c, timerIdle)
		c.in.Reset(l.splitOf(c))
		c.held, c.heldOff = nil, 0
		if c.flags&connEOFHeld != 0 {
			c.flags &^= connEOFHeld
			c.state.PeerEOF(false)
		}
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

// closeListeners cancels each listener's accept, then closes the loop's
// duplicate of its descriptor (the net.Listener is closed by Serve).
func (l *loop) closeListeners() {
	for _, li := range l.lns {
		if li.closed {
			continue
		}
		li.closed = true
		sqe := l.sqe()
		sqe.PrepCancel(userData(udAccept, 0, uint32(li.idx)), true)
		sqe.SetUserData(userData(udCancel, 0, 0))
		sqe.SetFlags(uring.SQEIOHardlink | uring.SQECQESkipSuccess)
		sqe = l.sqe()
		sqe.PrepClose(li.Fd)
		sqe.SetUserData(userData(udCancel, 0, 0))
		sqe.SetFlags(uring.SQECQESkipSuccess)
	}
}
