//go:build linux

package loadgen

import (
	"context"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/framing"
	"switchboard/internal/rawio"
)

const defaultDriver = DriverEpoll

func init() {
	bindNoPortControl = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}
}

func newDriver(c *config) (driver, error) {
	if c.Driver == DriverGoroutine {
		return newNetDriver(c)
	}
	return newEpollDriver(c)
}

// maxPendingConnects bounds the connects a worker has in flight at once, on
// top of the connect rate, so a burst never overruns the listen backlog.
const maxPendingConnects = 256

// Reserved epoll data values; connection events carry the connection's
// index in its worker.
const (
	evWake  = -1 // the eventfd: stop
	evTimer = -2 // the timerfd: an open-loop send is due
)

// epollDriver runs the connections on c.workers OS threads, each one
// goroutine locked to its thread running one epoll loop.
type epollDriver struct {
	c       *config
	lim     *limiter
	domain  int
	workers []*eworker

	quit       chan struct{}
	closeOnce  sync.Once
	wakeMu     sync.Mutex
	wakeClosed bool
	started    bool
}

type connState uint8

const (
	stateNew connState = iota
	stateConnecting
	stateOpen
	stateDead
)

// econn is one connection of an epoll worker.
type econn struct {
	fd      int
	id      int // connection number
	idx     int // index among the worker's active connections (open-loop slot)
	pos     int // index in the worker's conns: the epoll data of its events
	idle    bool
	state   connState
	wantOut bool
	since   int64 // connect started
	f       *flow // nil for an idle connection
	out     []byte
	outOff  int
	reopen  bool   // reconnected after the server closed it
	base    uint64 // replies received when it (re)opened
}

// eworker is one epoll thread and its connections.
type eworker struct {
	d      *epollDriver
	num    int
	sa     unix.Sockaddr
	epfd   int
	evfd   int
	tfd    int
	conns  []*econn // active first, then idle
	active []*econn
	st     *stats
	events []unix.EpollEvent
	rbuf   []byte
	split  *framing.Splitter // replies, with this worker's partialBufs

	aborted  bool
	traffic  bool
	live     int // active connections open
	tl       *timeline
	sending  bool
	drainEnd int64
	inflight int64
	quota    int64
	sched    schedule
	slot     uint64

	start       chan *timeline
	trafficDone chan struct{}
	exited      chan struct{}
}

func newEpollDriver(c *config) (*epollDriver, error) {
	d := &epollDriver{c: c, quit: make(chan struct{})}
	d.domain, _ = d.sockaddr()
	// Reads take what one syscall returns; a partial frame waits in the
	// connection's accumulator, so one shared buffer per worker suffices.
	for i := 0; i < c.workers; i++ {
		w := &eworker{
			d: d, num: i, epfd: -1, evfd: -1, tfd: -1, st: newStats(),
			events: make([]unix.EpollEvent, 512), rbuf: make([]byte, readBufSize),
			split: lentSplitter(c.proto, new(partialBufs)),
			start: make(chan *timeline, 1), trafficDone: make(chan struct{}), exited: make(chan struct{}),
		}
		active, idle := assign(c, i)
		for _, id := range active {
			ec := &econn{fd: -1, id: id, idx: len(w.active), pos: len(w.conns), f: newFlow(c.proto, id, c.Pipeline, w.st.prog, w.split)}
			w.active = append(w.active, ec)
			w.conns = append(w.conns, ec)
		}
		for _, id := range idle {
			w.conns = append(w.conns, &econn{fd: -1, id: id, pos: len(w.conns), idle: true})
		}
		w.quota = quota(c, len(active), i)
		// Connect writes into the Sockaddr's own buffer: one per thread.
		_, w.sa = d.sockaddr()
		d.workers = append(d.workers, w)
	}
	for _, w := range d.workers {
		if err := w.open(); err != nil {
			d.closeFDs()
			return nil, fmt.Errorf("loadgen: %w", err)
		}
	}
	return d, nil
}

// sockaddr builds the server's address for connect.
func (d *epollDriver) sockaddr() (int, unix.Sockaddr) {
	c := d.c
	if c.network == "unix" {
		return unix.AF_UNIX, &unix.SockaddrUnix{Name: c.address}
	}
	if ip4 := c.tcpAddr.IP.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: c.tcpAddr.Port}
		copy(sa.Addr[:], ip4)
		return unix.AF_INET, sa
	}
	sa := &unix.SockaddrInet6{Port: c.tcpAddr.Port}
	copy(sa.Addr[:], c.tcpAddr.IP.To16())
	if c.tcpAddr.Zone != "" {
		if ifi, err := net.InterfaceByName(c.tcpAddr.Zone); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return unix.AF_INET6, sa
}

// open creates the worker's epoll instance and its wake-up eventfd.
func (w *eworker) open() error {
	var err error
	if w.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if w.evfd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: evWake}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, w.evfd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (d *epollDriver) stats() []*stats {
	out := make([]*stats, len(d.workers))
	for i, w := range d.workers {
		out[i] = w.st
	}
	return out
}

// wake interrupts every worker's epoll_wait: ctx is done. It may run on a
// goroutine of context.AfterFunc's at any time until close, which is why
// the eventfds are closed only under wakeMu, by close.
func (d *epollDriver) wake() {
	d.wakeMu.Lock()
	defer d.wakeMu.Unlock()
	if d.wakeClosed {
		return
	}
	one := [8]byte{1}
	for _, w := range d.workers {
		unix.Write(w.evfd, one[:])
	}
}

func (d *epollDriver) connect(ctx context.Context) {
	d.lim = newLimiter(d.c.ConnectRate)
	d.started = true
	stop := context.AfterFunc(ctx, d.wake)
	defer stop()
	var ready sync.WaitGroup
	ready.Add(len(d.workers))
	for _, w := range d.workers {
		go w.main(&ready)
	}
	ready.Wait()
}

func (d *epollDriver) traffic(ctx context.Context, tl *timeline) {
	stop := context.AfterFunc(ctx, d.wake)
	defer stop()
	for _, w := range d.workers {
		w.start <- tl
	}
	for _, w := range d.workers {
		<-w.trafficDone
	}
}

func (d *epollDriver) close() {
	d.closeOnce.Do(func() {
		close(d.quit)
		if d.started {
			for _, w := range d.workers {
				<-w.exited
			}
		}
		d.closeFDs()
	})
}

// main is the worker's goroutine, locked to its OS thread from the first
// connect to the last close, so that one thread owns the epoll loop.
func (w *eworker) main(ready *sync.WaitGroup) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(w.exited)
	w.connectPhase()
	ready.Done()
	select {
	case tl := <-w.start:
		if !w.aborted {
			w.trafficPhase(tl)
		}
		close(w.trafficDone)
		<-w.d.quit
	case <-w.d.quit:
	}
	w.cleanup()
}

func (w *eworker) cleanup() {
	for _, c := range w.conns {
		if c.fd >= 0 {
			unix.Close(c.fd)
			c.fd = -1
		}
	}
	for _, fd := range []*int{&w.tfd, &w.epfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// closeFDs closes what the workers have left open, and the eventfds.
func (d *epollDriver) closeFDs() {
	for _, w := range d.workers {
		w.cleanup()
	}
	d.wakeMu.Lock()
	defer d.wakeMu.Unlock()
	d.wakeClosed = true
	for _, w := range d.workers {
		if w.evfd >= 0 {
			unix.Close(w.evfd)
			w.evfd = -1
		}
	}
}

// wait runs epoll_wait for at most timeout (negative: no limit) and
// returns the events.
func (w *eworker) wait(timeout time.Duration) []unix.EpollEvent {
	n, err := unix.EpollWait(w.epfd, w.events, rawio.Millis(timeout))
	if err != nil {
		// EINTR; anything else would be a bug, and the deadlines still end
		// the loop.
		return nil
	}
	return w.events[:n]
}

// ------------------------------------------------------------- connecting

func (w *eworker) connectPhase() {
	c := w.d.c
	lim := w.d.lim
	next, pending := 0, 0
	var retry []*econn
	var lastScan int64
	for (next < len(w.conns) || pending > 0 || len(retry) > 0) && !w.aborted {
		t := now()
		wait := time.Duration(-1)
	dialing:
		for (next < len(w.conns) || len(retry) > 0) && pending < maxPendingConnects {
			ok, d := lim.take(t)
			if !ok {
				wait = d
				break
			}
			var ec *econn
			if len(retry) > 0 {
				ec, retry = retry[0], retry[1:]
			} else {
				ec = w.conns[next]
				next++
				ec.since = t
			}
			switch w.dial(ec, t) {
			case dialPending:
				pending++
			case dialRetry:
				retry = append(retry, ec)
				wait = time.Millisecond
				break dialing
			}
		}
		if next == len(w.conns) && pending == 0 && len(retry) == 0 {
			break
		}
		if pending > 0 {
			// Wake now and then to time out connects that hang.
			if wait < 0 || wait > 10*time.Millisecond {
				wait = 10 * time.Millisecond
			}
		}
		for _, ev := range w.wait(wait) {
			idx := int(ev.Fd)
			switch {
			case idx == evWake:
				w.aborted = true
			case idx >= 0:
				ec := w.conns[idx]
				if ec.state == stateConnecting {
					pending--
					w.finishConnect(ec, now())
				} else if ec.state == stateOpen {
					// A server that closes connections right away (a
					// connection limit) shows it already.
					w.readConn(ec, now())
				}
			}
		}
		t = now()
		if pending > 0 && t-lastScan > int64(10*time.Millisecond) {
			lastScan = t
			for _, ec := range w.conns[:next] {
				if ec.state == stateConnecting && time.Duration(t-ec.since) > c.ConnectTimeout {
					pending--
					w.st.connectError(t, "connect to %s: timed out after %v", c.Addr, c.ConnectTimeout)
					w.kill(ec)
				}
			}
		}
		for len(retry) > 0 && time.Duration(t-retry[0].since) > c.ConnectTimeout {
			w.st.connectError(t, "connect to %s: listen queue full for %v", c.Addr, c.ConnectTimeout)
			retry[0].state = stateDead
			retry = retry[1:]
		}
	}
}

type dialResult int

const (
	dialDone dialResult = iota
	dialPending
	dialRetry
	dialFailed
)

// dial starts a non-blocking connect.
func (w *eworker) dial(ec *econn, t int64) dialResult {
	d := w.d
	c := d.c
	fd, err := unix.Socket(d.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		w.st.connectError(t, "socket: %v", err)
		ec.state = stateDead
		return dialFailed
	}
	if d.domain != unix.AF_UNIX {
		// Small messages go out at once, as every latency-minded client
		// does; the server sets the same on its side.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if c.SourceIPs > 0 {
		// Bind the source address now but leave the port to connect, so
		// the port only has to be unique per destination: this is what
		// lets several source addresses multiply the ephemeral ports.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: sourceIP(c, ec.id)}); err != nil {
			unix.Close(fd)
			w.st.connectError(t, "bind %v: %v", sourceIP(c, ec.id), err)
			ec.state = stateDead
			return dialFailed
		}
	}
	err = unix.Connect(fd, w.sa)
	switch err {
	case nil:
		ec.fd = fd
		if !w.register(ec, unix.EPOLLIN) {
			return dialFailed
		}
		w.opened(ec)
		return dialDone
	case unix.EINPROGRESS:
		ec.fd = fd
		ec.state = stateConnecting
		if !w.register(ec, unix.EPOLLOUT) {
			return dialFailed
		}
		return dialPending
	case unix.EAGAIN:
		// A Unix socket whose listen queue is full: try again shortly.
		unix.Close(fd)
		return dialRetry
	}
	unix.Close(fd)
	w.st.connectError(t, "connect to %s: %v", c.Addr, err)
	ec.state = stateDead
	return dialFailed
}

func (w *eworker) register(ec *econn, events uint32) bool {
	ev := unix.EpollEvent{Events: events, Fd: int32(ec.pos)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, ec.fd, &ev); err != nil {
		w.st.connectError(now(), "epoll_ctl: %v", err)
		unix.Close(ec.fd)
		ec.fd = -1
		ec.state = stateDead
		return false
	}
	return true
}

// finishConnect completes a pending connect once the socket is writable.
func (w *eworker) finishConnect(ec *econn, t int64) {
	errno, err := unix.GetsockoptInt(ec.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = unix.Errno(errno)
	}
	if err != nil {
		w.st.connectError(t, "connect to %s: %v", w.d.c.Addr, err)
		w.kill(ec)
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ec.pos)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, ec.fd, &ev); err != nil {
		w.st.connectError(t, "epoll_ctl: %v", err)
		w.kill(ec)
		return
	}
	w.opened(ec)
}

func (w *eworker) opened(ec *econn) {
	ec.state = stateOpen
	if !ec.reopen {
		if !ec.idle {
			w.live++
		}
		w.st.prog.connected.Add(1)
	}
	if ec.f != nil {
		ec.base = ec.f.recvd.Load()
	}
	if c := w.d.c; c.ProxyHeader != "" {
		w.sendProxyHeader(ec)
	}
}

// kill closes a connection for good.
func (w *eworker) kill(ec *econn) {
	if ec.fd >= 0 {
		unix.Close(ec.fd) // also removes it from the epoll set
		ec.fd = -1
	}
	if ec.f != nil && (ec.state == stateOpen || (ec.reopen && ec.state == stateConnecting)) {
		w.inflight -= int64(ec.f.inflight())
		w.live--
	}
	ec.state = stateDead
}

// ---------------------------------------------------------------- traffic

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
