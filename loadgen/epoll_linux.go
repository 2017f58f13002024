//go:build linux

package loadgen

import (
	"context"
	"fmt"
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
