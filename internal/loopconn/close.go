//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"net/netip"
	"time"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
)

// Closing and draining: one connection now, every connection gracefully
// (Shutdown), or every connection now (Close, Shutdown's deadline).

// Close closes c now, once, and reports err to OnClose: the engine
// releases the descriptor (Engine.ReleaseLocked, Engine.CloseIO), and the
// core does the rest, the same on every engine: timers, counters, the
// per-address limit, the connection log, OnClose.
func (l *Loop[IO]) Close(c *Conn[IO], err error) {
	if c.State == connstate.Closed {
		return
	}
	s := l.S
	c.State = connstate.Closed
	c.Mu.Lock()
	var local netip.AddrPort
	if s.Cfg.OnConnClose != nil {
		local = c.localLocked() // while the descriptor is still open
	}
	c.shared |= sharedClosed | sharedWriteRefused
	l.Eng.ReleaseLocked(c)
	r := c.rare
	if r != nil {
		engine.CancelContext(r.ctx)
	}
	cst := c.St
	l.foldMessages(c)
	c.Mu.Unlock()
	l.pending -= int64(c.reported)
	c.reported = 0
	if c.Flags&FlagPaused != 0 {
		c.Flags &^= FlagPaused
		l.paused--
	}
	for k := range uint8(NumTimers) {
		l.Disarm(c, k)
	}
	if r != nil {
		l.stopAfters(r)
	}
	l.Eng.CloseIO(c)
	l.resetIn(c)
	l.N--
	l.Load.Add(-1)
	s.NConns.Add(-1)
	// Its traffic is in Stats before its close is: a reader who has seen
	// it close (Active, the close counters) sees every message it sent.
	l.AddStats()
	s.Stats.Active.Add(-1)
	s.PerIP.Release(c.raddr().Addr())
	// Clamped: the accepting loop's clock may be a little ahead of this
	// loop's, read earlier in its iteration.
	engine.Closed(&s.Cfg, engine.ConnInfo{
		Remote: c.RemoteAddr(), Local: c.listener().LocalAddr(local),
		Duration: time.Duration(max(l.Now-c.opened, 0)), Stats: cst, Err: err,
	})
	// A connection refused for its PROXY header never reached the
	// handler, so it gets no OnClose either.
	if c.Flags&FlagOpened != 0 {
		l.onClose(c, err)
	}
}

// onClose runs OnClose; a panic in it is recovered, logged and counted,
// and the loop carries on (the connection is closed already).
func (l *Loop[IO]) onClose(c *Conn[IO], err error) {
	defer func() {
		if v := recover(); v != nil {
			engine.Recovered(l.S.Log, l.S.Stats, c.RemoteAddr(), "OnClose", v)
		}
	}()
	l.S.H.OnClose(c, err)
}

// Drain starts a graceful shutdown on this loop: no more accepts, input is
// read and dropped, output is flushed, then FIN, and each connection closes
// when the peer's FIN arrives or the linger wait ends.
func (l *Loop[IO]) Drain() {
	if l.Draining || l.Closing {
		return
	}
	l.Draining = true
	l.stopTick()
	l.Eng.CloseListeners()
	for _, c := range l.Conns {
		if c == nil || c.State == connstate.Closed {
			continue
		}
		if l.tls != nil && c.handshakePending() {
			// The handler has not heard of it: nothing to finish.
			l.Close(c, nil)
			continue
		}
		if !l.Eng.DrainConn(c) {
			continue
		}
		// The idle timer becomes the linger timer once our FIN is out;
		// until then the write timeout and Shutdown's deadline bound it.
		l.Disarm(c, TimerIdle)
		l.resetIn(c)
		l.drainConn(c)
	}
}

// DrainAdopted drains c, accepted as Shutdown began (the last accept
// before an upgrade's hand-over, say, or one a multishot accept took off
// the backlog ahead of the loop): the handler never hears of it, and it
// drains as Drain drained the others — FIN, input read and dropped,
// closed at the peer's FIN or the linger deadline. A reset here would
// lose the request the client may already have sent; a clean EOF it can
// retry.
func (l *Loop[IO]) DrainAdopted(c *Conn[IO]) { l.drainConn(c) }

func (l *Loop[IO]) drainConn(c *Conn[IO]) {
	c.RefuseWrites()
	if c.State.Drain() {
		l.Arm(c, TimerIdle, l.LingerDeadline())
	}
	l.Eng.Flush(c, 0)
}

// CloseAll closes every connection now (Close, or Shutdown's deadline).
func (l *Loop[IO]) CloseAll() {
	if l.Closing {
		return
	}
	draining := l.Draining
	l.Closing = true
	l.stopTick()
	l.Eng.CloseListeners()
	var err error
	if draining {
		err = engine.ErrShutdown
	}
	for _, c := range l.Conns {
		if c != nil {
			l.Close(c, err)
		}
	}
}

// LingerDeadline is when a draining connection that has sent its FIN
// gives up waiting for the peer's: engine.LingerWait from now, or
// Shutdown's deadline if sooner.
func (l *Loop[IO]) LingerDeadline() int64 {
	s := l.S
	s.Mu.Lock()
	deadline := s.deadline
	s.Mu.Unlock()
	d := l.Now + int64(engine.LingerWait)
	if deadline > 0 {
		d = min(d, deadline)
	}
	return d
}

// FINSent is the engine's report that c's FIN has gone: draining, the
// wait for the peer's is bounded from now.
func (l *Loop[IO]) FINSent(c *Conn[IO]) {
	if l.Draining {
		l.Arm(c, TimerIdle, l.LingerDeadline())
	}
}
