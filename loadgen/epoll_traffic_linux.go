//go:build linux

package loadgen

import (
	"math"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/rawio"
)

func (w *eworker) trafficPhase(tl *timeline) {
	c := w.d.c
	w.tl = tl
	w.traffic = true
	// A worker with only idle connections still runs to the end, to see
	// any of them closed.
	w.sending = true
	if c.Rate > 0 && len(w.active) > 0 {
		// This worker's share of the rate, one connection after another.
		w.sched = schedule{t0: tl.t0, tick: 1e9 * float64(c.Conns) / (c.Rate * float64(len(w.active))), n: uint64(len(w.active))}
		if err := w.startTicker(); err != nil {
			w.st.connError(now(), "timerfd: %v", err)
			return
		}
	}
	openLoop := c.Rate > 0 && len(w.active) > 0
	t := now()
	if openLoop {
		w.runSlots(t)
	} else {
		for _, ec := range w.active {
			if ec.state == stateOpen {
				w.fill(ec, t)
				w.flush(ec)
			}
		}
	}
	for {
		var timeout time.Duration = -1
		switch {
		case !w.sending:
			timeout = time.Duration(max(w.drainEnd-t, 0))
		case tl.me != math.MaxInt64:
			timeout = time.Duration(max(tl.me-t, 0))
		}
		for _, ev := range w.wait(timeout) {
			idx := int(ev.Fd)
			switch {
			case idx == evWake:
				w.aborted = true
			case idx == evTimer:
				// One read per tick, however many messages it sends.
				var buf [8]byte
				unix.Read(w.tfd, buf[:])
			default:
				ec := w.conns[idx]
				t = now()
				if ec.state == stateConnecting {
					// A reconnect completing.
					w.finishConnect(ec, t)
					if ec.state == stateOpen {
						w.fill(ec, t)
						w.flush(ec)
					}
					continue
				}
				if ec.state != stateOpen {
					continue
				}
				if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
					w.readConn(ec, t)
				}
				if ev.Events&unix.EPOLLOUT != 0 && ec.state == stateOpen {
					w.flush(ec)
				}
			}
		}
		t = now()
		if w.aborted {
			return
		}
		if w.sending && openLoop {
			w.runSlots(t)
		}
		if w.sending && (t >= tl.me || (c.Requests > 0 && w.quota == 0 && t >= tl.ms) || (w.live == 0 && len(w.active) > 0)) {
			w.sending = false
			w.drainEnd = t + int64(c.DrainTimeout)
			w.st.sendEnd = min(t, tl.me)
			if openLoop {
				w.st.behind += w.backlog(w.st.sendEnd)
			}
		}
		w.st.publish()
		if !w.sending {
			if w.inflight == 0 {
				return
			}
			if t >= w.drainEnd {
				var lost int64
				for _, ec := range w.active {
					if ec.state == stateOpen {
						lost += int64(ec.f.inflight())
					}
				}
				w.st.unanswered += lost
				w.st.noteErr(t, "%d replies had not come %v after sending stopped", lost, c.DrainTimeout)
				return
			}
		}
	}
}

// fill queues as many messages on ec as its pipeline, the schedule and the
// request quota allow at t. A message counts when it is sent inside the
// measured window; in open loop its latency runs from when it was due, so
// one sent late because the server fell behind carries the wait.
func (w *eworker) fill(ec *econn, t int64) {
	if !w.sending {
		return
	}
	c := w.d.c
	f := ec.f
	tl := w.tl
	if t >= tl.me {
		if c.Rate == 0 {
			return
		}
		// Open loop, the last pass just after the end: what was due
		// before it still goes, as sent in the window.
		t = tl.me - 1
	}
	for f.inflight() < f.pipe {
		at := t
		if c.Rate > 0 {
			if at = w.sched.due(f.sent.Load(), ec.idx); at > t {
				return
			}
		}
		measured := t >= tl.ms
		if measured && c.Requests > 0 {
			if w.quota == 0 {
				return
			}
			w.quota--
		}
		ec.out = f.appendNext(ec.out, at, measured)
		w.inflight++
	}
}

// readConn reads what one read returns, verifies it and sends what the
// replies allow.
func (w *eworker) readConn(ec *econn, t int64) {
	buf := w.rbuf
	if ec.f != nil {
		buf = ec.f.recvBuf(w.rbuf)
	}
	n, err := rawio.Read(ec.fd, buf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	switch {
	case (err != nil || n == 0) && ec.idle:
		w.st.connError(t, "idle connection %d: %v", ec.id, closedBy(err))
		w.kill(ec)
		return
	case err == nil && n == 0 && w.traffic && !w.d.c.CloseIsError && ec.f.recvd.Load() > ec.base:
		w.reconnect(ec, t)
		return
	case err != nil || n == 0:
		w.st.connError(t, "connection %d: %v after %d replies", ec.id, closedBy(err), ec.f.recvd.Load()-ec.base)
		w.kill(ec)
		return
	case ec.idle || !w.traffic:
		w.st.connError(t, "connection %d: %d bytes before any request", ec.id, n)
		w.kill(ec)
		return
	}
	f := ec.f
	before := f.recvd.Load()
	err = f.consume(buf, n, w.st, t)
	w.inflight -= int64(f.recvd.Load() - before)
	if err != nil {
		w.st.connError(t, "connection %d: %v", ec.id, err)
		w.kill(ec)
		return
	}
	w.fill(ec, t)
	w.flush(ec)
}

// flush writes ec's queued output, asking for EPOLLOUT when the socket
// buffer is full.
func (w *eworker) flush(ec *econn) {
	for ec.outOff < len(ec.out) {
		n, err := rawio.Write(ec.fd, ec.out[ec.outOff:])
		switch err {
		case nil:
			ec.outOff += n
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if !ec.wantOut {
				ec.wantOut = true
				w.modify(ec, unix.EPOLLIN|unix.EPOLLOUT)
			}
			return
		}
		w.st.connError(now(), "connection %d: write: %v", ec.id, err)
		w.kill(ec)
		return
	}
	ec.out, ec.outOff = ec.out[:0], 0
	if ec.wantOut {
		ec.wantOut = false
		w.modify(ec, unix.EPOLLIN)
	}
}

func (w *eworker) modify(ec *econn, events uint32) {
	ev := unix.EpollEvent{Events: events, Fd: int32(ec.pos)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, ec.fd, &ev); err != nil {
		w.st.connError(now(), "connection %d: epoll_ctl: %v", ec.id, err)
		w.kill(ec)
	}
}
