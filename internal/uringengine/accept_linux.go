package uringengine

import (
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/sockfd"
	"switchboard/internal/uring"
)

// Accepting: one multishot accept per listener posts a completion per
// connection. It ends on any error; after running out of descriptors the
// loop sheds a pending connection with its spare descriptor (as the
// reactor does) and arms it again, or, with no spare, backs off first.

// acceptPause is how long accepting stops after a failure that shedding
// could not cure, so that an accept failing at once cannot spin the loop.
const acceptPause = 100 * time.Millisecond

func (l *loop) armAccept(li *listener) {
	sqe := l.sqe()
	sqe.PrepAccept(li.Fd, true, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	sqe.SetUserData(userData(udAccept, 0, uint32(li.idx)))
	li.armed = true
	li.resumeAfter = 0
	l.inflight++
}

func (l *loop) accepted(cqe *uring.CQE, li *listener) {
	if !cqe.More() {
		li.armed = false
		l.inflight--
	}
	if cqe.Res >= 0 {
		fd := int(cqe.Res)
		if l.closing {
			sockfd.Reset(fd)
			return
		}
		if overLimit(fd) {
			// io_uring took the descriptor limit when the accept was
			// prepared; it has been lowered since. Honour the current
			// one: shed this connection as accept(2) would have failed,
			// and re-arm the accept so it takes the limit afresh.
			sockfd.Reset(fd)
			l.s.stats.CountAcceptError(unix.EMFILE)
			l.s.stats.Rejected.Add(1)
			l.warnf("accept failed: out of descriptors; shedding connections", "listener", li.Addr, "err", unix.EMFILE)
			if li.armed {
				sqe := l.sqe()
				sqe.PrepCancel(userData(udAccept, 0, uint32(li.idx)), true)
				sqe.SetUserData(userData(udCancel, 0, 0))
				sqe.SetFlags(uring.SQECQESkipSuccess)
			}
			return
		}
		// While draining, a connection the kernel accepted before the
		// accept was cancelled is still taken, and closed gracefully
		// (adopt).
		l.newConn(fd, li)
	} else {
		switch err := unix.Errno(-cqe.Res); err {
		case unix.ECANCELED:
		case unix.EINTR, unix.ECONNABORTED, unix.EPROTO, unix.EAGAIN:
			// The connection died in the queue; the next is taken when
			// the accept is armed again.
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			l.s.stats.CountAcceptError(err)
			l.outOfDescriptors(li, err)
		default:
			l.s.stats.CountAcceptError(err)
			l.warnf("accept failed", "listener", li.Addr, "err", err)
			li.resumeAfter = l.now + int64(acceptPause)
		}
	}
	if !li.armed && !li.closed && !l.draining && !l.closing && li.resumeAfter == 0 {
		l.armAccept(li)
	}
}

// outOfDescriptors sheds one pending connection with the spare
// descriptor and arms the accept again at once, for the next; when
// nothing was pending, or there is no spare, it stops accepting for a
// moment. Unlike accept(2), io_uring's accept takes a descriptor before it
// looks for a connection, so it fails with EMFILE with none pending, and
// arming it again at once would spin.
func (l *loop) outOfDescriptors(li *listener, err error) {
	l.warnf("accept failed: out of descriptors; shedding connections", "listener", li.Addr, "err", err)
	if l.spare >= 0 {
		unix.Close(l.spare)
		fd, _, aerr := sockfd.Accept(li.Fd)
		if aerr == nil {
			sockfd.Reset(fd)
			l.s.stats.Rejected.Add(1)
		}
		l.spare = sockfd.OpenSpare()
		if aerr == nil {
			return
		}
	}
	li.resumeAfter = l.now + int64(acceptPause)
}

// warnf logs at most one warning a second per loop: accept failures come
// in storms.
func (l *loop) warnf(msg string, args ...any) {
	if l.now-l.lastWarn < int64(time.Second) && l.lastWarn != 0 {
		return
	}
	l.lastWarn = l.now
	l.s.log.Warn(msg, args...)
}

func (l *loop) newConn(fd int, li *listener) {
	s := l.s
	if n := s.nconns.Add(1); s.cfg.MaxConns > 0 && n > int64(s.cfg.MaxConns) {
		s.nconns.Add(-1)
		sockfd.Reset(fd)
		s.stats.Rejected.Add(1)
		s.log.Debug("connection refused: limit reached", "max_conns", s.cfg.MaxConns)
		return
	}
	c := &conn{fd: int32(fd), ln: li, msg: -1, opened: l.now}
	c.idle.Store(s.idle)
	if !li.Unix {
		// A multishot accept cannot return addresses (each completion
		// would need its own sockaddr buffer); one getpeername per
		// connection asks instead.
		if sa, err := unix.Getpeername(fd); err == nil {
			c.raddr, c.laddr = li.ConnAddrs(fd, sa)
		}
		if !s.perIP.Acquire(c.raddr.Addr()) {
			s.nconns.Add(-1)
			sockfd.Reset(fd)
			s.stats.Rejected.Add(1)
			s.stats.RejectedPerIP.Add(1)
			s.log.Debug("connection refused: per-address limit reached", "remote", c.raddr, "max_conns_per_ip", s.cfg.MaxConnsPerIP)
			return
		}
		if s.cfg.NoDelay {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		if s.cfg.KeepAlive > 0 {
			sockfd.SetKeepAlive(fd, s.cfg.KeepAlive)
		}
	}
	t := l.place()
	c.l = t
	if t == l {
		l.adopt(c)
		return
	}
	if !t.post(task{kind: taskAdopt, c: c}) {
		l.refuse(c, "server closing")
	}
}

// place picks the loop for a new connection: the accepting loop when
// every loop has its own listener (SO_REUSEPORT spread them already),
// else the loop with the fewest connections, this one on a tie.
func (l *loop) place() *loop {
	s := l.s
	best := l
	if !s.local {
		bl := l.load.Load()
		l.rr++
		for i := range s.loops {
			o := s.loops[(l.rr+i)%len(s.loops)]
			if ld := o.load.Load(); ld < bl {
				best, bl = o, ld
			}
		}
	}
	best.load.Add(1)
	return best
}

// refuse closes a connection that was accepted but cannot be served.
func (l *loop) refuse(c *conn, reason any) {
	s := l.s
	sockfd.Reset(int(c.fd))
	c.l.load.Add(-1)
	s.nconns.Add(-1)
	s.perIP.Release(c.raddr.Addr())
	s.stats.Rejected.Add(1)
	s.log.Warn("connection refused", "remote", c.RemoteAddr(), "reason", reason)
}

// adopt gives c a slot, arms its receive and opens it. While the loop
// drains, c is not opened: it gets our FIN at once, its input is dropped
// and it closes on the peer's FIN or at the end of the linger wait, the
// way a served connection ends in a drain. A multishot accept takes
// connections off the backlog ahead of the loop, so there may be several
// that were accepted in the kernel but not yet seen when Shutdown came;
// resetting them would lose what their clients had sent.
func (l *loop) adopt(c *conn) {
	s := l.s
	if l.closing {
		l.refuse(c, "server closing")
		return
	}
	if k := len(l.freeSlots); k > 0 {
		c.slot = l.freeSlots[k-1]
		l.freeSlots = l.freeSlots[:k-1]
		l.gens[c.slot]++
		c.gen = l.gens[c.slot]
		l.conns[c.slot] = c
	} else {
		c.slot = uint32(len(l.conns))
		l.conns = append(l.conns, c)
		l.gens = append(l.gens, 0)
	}
	l.n++
	s.stats.Accepted.Add(1)
	s.stats.Active.Add(1)
	c.lastRead = l.now
	l.armRecv(c)
	if l.draining {
		c.state.Drain()
		c.mu.Lock()
		c.writeRefused = true
		c.mu.Unlock()
		l.settle(c, 0)
		return
	}
	if s.cfg.ProxyProtocol {
		c.state = connstate.Header
		l.arm(c, timerIdle, l.now+int64(s.cfg.ProxyHeaderTimeout()))
		return
	}
	if s.tls != nil {
		l.startTLS(c, nil)
		return
	}
	if idle := c.idle.Load(); idle > 0 {
		l.arm(c, timerIdle, l.now+idle)
	}
	c.mu.Lock()
	c.sched = true
	c.mu.Unlock()
	if l.open(c) {
		l.afterDispatch(c, 0)
	}
}

// open runs OnOpen. The caller has set c.sched and dispatches afterwards,
// unless open returns false: OnOpen panicked and c is closed.
func (l *loop) open(c *conn) (ok bool) {
	c.state = connstate.Open
	c.flags |= connOpened
	defer func() {
		if v := recover(); v != nil {
			l.closeConn(c, engine.Recovered(l.s.log, l.s.stats, c.RemoteAddr(), "OnOpen", v))
			ok = false
		}
	}()
	l.s.h.OnOpen(c)
	return true
}

// overLimit reports whether fd is at or above the process's descriptor
// limit as it is now (one prlimit per accepted connection).
func overLimit(fd int) bool {
	var rl unix.Rlimit
	return unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && uint64(fd) >= rl.Cur
}
