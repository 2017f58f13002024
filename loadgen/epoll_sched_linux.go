//go:build linux

package loadgen

import (
	"math"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tickFloor is the shortest period of the open-loop ticker. At higher
// per-worker rates one tick sends every message that has come due since
// the last, so the timer costs one wake-up per tick, never one per
// message; a message sent up to a tick late carries that delay in its
// latency, which is measured from when it was due.
const tickFloor = 50 * time.Microsecond

// startTicker arms the worker's timerfd once, as a periodic timer in step
// with the schedule: a whole number of slots per period, the first period
// ending at the first slot.
func (w *eworker) startTicker() error {
	var err error
	if w.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: evTimer}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.tfd, &ev); err != nil {
		return err
	}
	period := int64(math.Ceil(float64(tickFloor)/w.sched.tick) * w.sched.tick)
	period = max(period, 1)
	first := max(w.sched.t0-now(), 1)
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(first), Interval: unix.NsecToTimespec(period)}
	return unix.TimerfdSettime(w.tfd, 0, &spec, nil)
}

// runSlots walks the open-loop schedule up to t, giving each due slot's
// connection the chance to send. When more slots are due than the worker
// has connections (it fell behind, or a tick covers many slots), each
// connection is visited once instead: fill sends all that is due on it.
func (w *eworker) runSlots(t int64) {
	t = min(t, w.tl.me-1)
	if t < w.sched.t0 {
		return
	}
	last := uint64(float64(t-w.sched.t0) / w.sched.tick) // the latest slot due by t
	if last < w.slot {
		return
	}
	if last-w.slot+1 >= w.sched.n {
		for _, ec := range w.active {
			if ec.state == stateOpen {
				w.fill(ec, t)
				w.flush(ec)
			}
		}
		w.slot = last + 1
		return
	}
	for ; w.slot <= last; w.slot++ {
		ec := w.active[w.slot%w.sched.n]
		if ec.state == stateOpen {
			w.fill(ec, t)
			w.flush(ec)
		}
	}
}

// backlog counts the messages that came due on the worker's open
// connections before end and were never sent: the schedule the server, or
// the load generator, could not keep.
func (w *eworker) backlog(end int64) int64 {
	var n int64
	for _, ec := range w.active {
		if ec.state == stateOpen {
			n += int64(w.sched.dueBefore(end, ec.idx)) - int64(ec.f.sent.Load())
		}
	}
	return max(n, 0)
}

// sendProxyHeader queues and sends the PROXY header that opens ec.
func (w *eworker) sendProxyHeader(ec *econn) {
	c := w.d.c
	var src, dst net.Addr
	if c.tcpAddr != nil {
		dst = c.tcpAddr
		if c.proxySrc != nil {
			src = c.proxySrc
		} else if sa, err := unix.Getsockname(ec.fd); err == nil {
			src = sockaddrTCP(sa)
		}
	}
	ec.out, _ = AppendProxyHeader(ec.out[:0], c.ProxyHeader, src, dst) // validated already
	ec.outOff = 0
	w.flush(ec)
}

// sockaddrTCP converts a socket address to a *net.TCPAddr (nil for other
// families).
func sockaddrTCP(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// reconnect replaces a connection the server closed cleanly: a keep-alive
// limit, not a failure. What it had in flight will never be answered and
// is counted as abandoned.
func (w *eworker) reconnect(ec *econn, t int64) {
	f := ec.f
	lost := f.inflight()
	w.st.reconnects++
	w.st.abandoned += int64(lost)
	w.inflight -= int64(lost)
	if w.d.c.Requests > 0 {
		// The measured ones among them go back to the quota, which counts
		// replies; sending resumes if the quota had stopped it.
		refund := int64(0)
		for k := f.recvd.Load(); k < f.sent.Load(); k++ {
			if f.times[k%f.pipe].Load() > 0 {
				refund++
			}
		}
		w.quota += refund
		if refund > 0 && !w.sending && t < w.tl.me {
			w.sending = true
		}
	}
	f.restart()
	ec.out, ec.outOff, ec.wantOut = ec.out[:0], 0, false
	unix.Close(ec.fd)
	ec.fd = -1
	ec.reopen = true
	if !w.sending {
		w.live--
		ec.state = stateDead
		return
	}
	switch w.dial(ec, t) {
	case dialDone, dialPending:
		return
	case dialRetry:
		w.st.connectError(t, "reconnect to %s: listen queue full", w.d.c.Addr)
		if ec.fd >= 0 {
			unix.Close(ec.fd)
			ec.fd = -1
		}
	}
	w.live--
	ec.state = stateDead
}
