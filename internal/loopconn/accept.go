//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/sockfd"
	"switchboard/internal/tlsloop"
)

// The accept policy, the same for a descriptor from accept4 and one from
// a multishot accept: the connection and per-address limits, socket
// options, the loop a connection goes to, and how it opens there.

// Admit makes the connection for fd, accepted on listener ln (its index:
// Server.AddListener) from sa, or refuses
// it (a reset, counted) over MaxConns or the per-address limit and
// returns nil. A nil sa is asked of the kernel, once the connection limit
// has let it through: a multishot accept cannot return addresses (each
// completion would need its own sockaddr buffer), so the completion
// engine pays one getpeername per connection instead.
func (l *Loop[IO]) Admit(fd int, ln uint16, sa unix.Sockaddr) *Conn[IO] {
	s := l.S
	if n := s.NConns.Add(1); s.Cfg.MaxConns > 0 && n > int64(s.Cfg.MaxConns) {
		s.NConns.Add(-1)
		sockfd.Reset(fd)
		s.Stats.Rejected.Add(1)
		s.Log.Debug("connection refused: limit reached", "max_conns", s.Cfg.MaxConns)
		return nil
	}
	c := &Conn[IO]{L: l, Fd: int32(fd), opened: l.Now}
	c.lnfam = ln
	if !s.lns[ln].Unix {
		if sa == nil {
			sa, _ = unix.Getpeername(fd)
		}
		if sa != nil {
			c.setPeer(sockfd.AddrPort(sa))
		}
		if !s.PerIP.Acquire(c.raddr().Addr()) {
			s.NConns.Add(-1)
			sockfd.Reset(fd)
			s.Stats.Rejected.Add(1)
			s.Stats.RejectedPerIP.Add(1)
			s.Log.Debug("connection refused: per-address limit reached", "remote", c.raddr(), "max_conns_per_ip", s.Cfg.MaxConnsPerIP)
			return nil
		}
		if s.Cfg.NoDelay {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		if s.Cfg.KeepAlive > 0 {
			sockfd.SetKeepAlive(fd, s.Cfg.KeepAlive)
		}
	}
	return c
}

// Place gives c to a loop: this one (Engine.Adopt now) or another,
// through its queue. With a listener per loop (SO_REUSEPORT) the kernel
// has already spread the connections, so the accepting loop keeps it.
// Otherwise it goes to the loop with the fewest connections, preferring
// this one on a tie, which saves a hand-over.
func (l *Loop[IO]) Place(c *Conn[IO]) {
	s := l.S
	best := l
	if !s.local {
		bl := l.Load.Load()
		l.rr++
		for i := range s.loops {
			o := s.loops[(l.rr+i)%len(s.loops)]
			if ld := o.Load.Load(); ld < bl {
				best, bl = o, ld
			}
		}
	}
	best.Load.Add(1)
	c.L = best
	if best == l {
		l.Eng.Adopt(c)
		return
	}
	if !best.Post(Task[IO]{Kind: TaskAdopt, C: c}) {
		// best has drained and stopped since it was picked, while this
		// loop, not yet told to drain, still accepts (one listener, an
		// upgrade's Shutdown reaching the loops one by one): this loop
		// takes c itself, served, or drained if it is draining by now. A
		// reset would lose a request the client may have sent already.
		best.Load.Add(-1)
		l.Load.Add(1)
		c.L = l
		l.Eng.Adopt(c)
	}
}

// Refuse closes a connection that was accepted but cannot be served.
func (l *Loop[IO]) Refuse(c *Conn[IO], reason any) {
	s := l.S
	sockfd.Reset(int(c.Fd))
	c.L.Load.Add(-1)
	s.NConns.Add(-1)
	s.PerIP.Release(c.raddr().Addr())
	s.Stats.Rejected.Add(1)
	s.Log.Warn("connection refused", "remote", c.RemoteAddr(), "reason", reason)
}

// Adopted counts c, now in the engine's table, as open on this loop.
func (l *Loop[IO]) Adopted(c *Conn[IO]) {
	l.N++
	l.S.Stats.Accepted.Add(1)
	l.S.Stats.Active.Add(1)
	c.LastRead = l.Now
}

// StartSession begins the handshake of s, c's TLS session (kept in c.IO
// by the engine), from a TLSEngine's StartTLS: c waits in
// connstate.Header, unknown to the handler and without its idle timer
// (the handshake timeout is tlsloop's), and s reports through ev.
func (l *Loop[IO]) StartSession(c *Conn[IO], s *tlsloop.Session, ev *TLSEvents[IO], cfg *tlsloop.Config, rest []byte) {
	*ev = TLSEvents[IO]{C: c, Session: s}
	c.State = connstate.Header
	l.Disarm(c, TimerIdle)
	s.Start(cfg, ev, rest)
}

// OpenTLS opens c once its TLS handshake has succeeded: counted, idle
// from now, then OnOpen as Start runs it. It returns false when OnOpen
// panicked and closed c; otherwise the engine decrypts what came with the
// client's last flight and flushes.
func (l *Loop[IO]) OpenTLS(c *Conn[IO]) bool {
	l.S.Stats.Handshakes.Add(1)
	c.LastRead = l.Now
	l.ArmIdle(c)
	c.BeginCallbacks()
	return l.Open(c)
}

// Start opens c once the engine has it reading: it drains at once while
// the loop drains (DrainAdopted), waits for its PROXY header
// (connstate.Header, with the header deadline) or its TLS handshake, or
// runs OnOpen and flushes what it wrote.
func (l *Loop[IO]) Start(c *Conn[IO]) {
	s := l.S
	switch {
	case l.Draining:
		l.DrainAdopted(c)
	case s.Cfg.ProxyProtocol:
		c.State = connstate.Header
		l.Arm(c, TimerIdle, l.Now+s.HeaderWait)
	case l.tls != nil:
		l.tls.StartTLS(c, nil)
	default:
		l.ArmIdle(c)
		c.BeginCallbacks()
		if l.Open(c) {
			l.Eng.Flush(c, 0)
		}
	}
}
