package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"switchboard/framing"
)

var runtimeNumCPU = runtime.NumCPU

// bindNoPortControl, where the platform has IP_BIND_ADDRESS_NO_PORT, sets it
// on a socket about to be bound to a source address.
var bindNoPortControl func(network, address string, c syscall.RawConn) error

// netDriver is the portable driver: a reader and a writer goroutine per
// active connection over net.Conn, one reader per idle connection. It
// costs more CPU per message than the epoll driver, and its open-loop
// schedule is only as precise as Go's timers.
type netDriver struct {
	c      *config
	conns  []*gconn // active, then idle
	shards []*stats
	split  *framing.Splitter // replies: each connection reads into its accumulator
	quota  atomic.Int64      // Requests left to measure

	closing   atomic.Bool
	wg        sync.WaitGroup // every goroutine the driver started
	closeOnce sync.Once
}

// gconn is one connection of the goroutine driver.
type gconn struct {
	id, idx int
	idle    bool
	box     atomic.Pointer[connBox] // the connection, replaced on a reconnect
	f       *flow

	// mu serialises building and writing a batch with a reconnect, so a
	// message is either abandoned with the old connection or sent on the
	// new one. reconnected is closed (and replaced) by each reconnect.
	mu          sync.Mutex
	reconnected chan struct{}
	base        uint64 // replies received when the connection (re)opened
	st          *stats

	credits chan struct{} // one per free pipeline slot
	gone    chan struct{} // closed when the reader is done
	stopped atomic.Bool   // the writer sends no more
	dead    atomic.Bool   // an error was reported for this connection
}

func newNetDriver(c *config) (*netDriver, error) {
	d := &netDriver{c: c, split: ownSplitter(c.proto)}
	for i := 0; i < c.workers; i++ {
		d.shards = append(d.shards, newStats())
	}
	for i := 0; i < c.Conns+c.Idle; i++ {
		gc := &gconn{id: i, idx: i, idle: i >= c.Conns, st: d.shards[i%len(d.shards)]}
		if !gc.idle {
			gc.f = newFlow(c.proto, i, c.Pipeline, gc.st.prog, d.split)
		}
		d.conns = append(d.conns, gc)
	}
	d.quota.Store(c.Requests)
	return d, nil
}

func (d *netDriver) stats() []*stats { return d.shards }

func (d *netDriver) connect(ctx context.Context) {
	c := d.c
	lim := newLimiter(c.ConnectRate)
	sem := make(chan struct{}, maxPendingDials)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, gc := range d.conns {
		for {
			ok, wait := lim.take(now())
			if ok {
				break
			}
			if !sleepCtx(ctx, wait) {
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.dial(ctx, gc)
		}()
	}
}

// maxPendingDials bounds the connects in flight, as the epoll driver's
// maxPendingConnects does.
const maxPendingDials = 256

func (d *netDriver) dial(ctx context.Context, gc *gconn) {
	nc, err := d.open(ctx, gc)
	st := gc.st
	if err != nil {
		st.mu.Lock()
		st.connectError(now(), "connect to %s: %v", d.c.Addr, err)
		st.mu.Unlock()
		gc.dead.Store(true)
		return
	}
	gc.box.Store(&connBox{nc})
	st.prog.connected.Add(1)
	if gc.idle {
		d.wg.Add(1)
		go d.idleReader(gc)
	}
}

// open connects to the server for gc, PROXY header and all.
func (d *netDriver) open(ctx context.Context, gc *gconn) (net.Conn, error) {
	c := d.c
	dl := net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: -1}
	if c.SourceIPs > 0 {
		ip := sourceIP(c, gc.id)
		dl.LocalAddr = &net.TCPAddr{IP: net.IP(ip[:])}
		dl.Control = bindNoPortControl
	}
	nc, err := dl.DialContext(ctx, c.network, c.address)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if c.ProxyHeader != "" {
		var srcAddr, dstAddr net.Addr = nc.LocalAddr(), nc.RemoteAddr()
		if c.proxySrc != nil {
			srcAddr = c.proxySrc
		}
		hdr, _ := AppendProxyHeader(nil, c.ProxyHeader, srcAddr, dstAddr) // validated already
		nc.SetWriteDeadline(time.Now().Add(c.ConnectTimeout))
		_, err := nc.Write(hdr)
		nc.SetWriteDeadline(time.Time{})
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("PROXY header: %w", err)
		}
	}
	return nc, nil
}

// idleReader watches an idle connection: anything but our own close is an
// error.
func (d *netDriver) idleReader(gc *gconn) {
	defer d.wg.Done()
	var b [1]byte
	n, err := gc.conn().Read(b[:])
	if d.closing.Load() {
		return
	}
	gc.st.mu.Lock()
	defer gc.st.mu.Unlock()
	if n > 0 {
		gc.st.connError(now(), "connection %d: bytes before any request", gc.id)
	} else {
		gc.st.connError(now(), "idle connection %d: %v", gc.id, closedBy(ignoreEOF(err)))
	}
}

// ignoreEOF turns the end of the stream into nil, which closedBy reports
// as the server closing the connection.
func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func (d *netDriver) traffic(ctx context.Context, tl *timeline) {
	stop := context.AfterFunc(ctx, func() { d.shutdown() })
	defer stop()
	var wg sync.WaitGroup
	for _, gc := range d.conns {
		if gc.idle || gc.box.Load() == nil {
			continue
		}
		gc.credits = make(chan struct{}, d.c.Pipeline)
		for i := 0; i < d.c.Pipeline; i++ {
			gc.credits <- struct{}{}
		}
		gc.gone = make(chan struct{})
		gc.reconnected = make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); d.writer(gc, tl) }()
		go func() { defer wg.Done(); d.reader(gc) }()
	}
	if d.c.Conns == 0 && tl.me != math.MaxInt64 {
		// Only idle connections: hold them for the duration.
		sleepCtx(ctx, time.Duration(tl.me-now()))
	}
	wg.Wait()
}

// writer sends on one connection while pipeline credits, the schedule and
// the quota allow.
func (d *netDriver) writer(gc *gconn, tl *timeline) {
	c := d.c
	f := gc.f
	var sched schedule
	if c.Rate > 0 {
		sched = schedule{t0: tl.t0, tick: 1e9 / c.Rate, n: uint64(c.Conns)}
	}
	buf := make([]byte, 0, c.Pipeline*(c.proto.msgLen+c.Codec.Overhead()))
	defer func() {
		end := min(now(), tl.me)
		gc.st.mu.Lock()
		gc.st.sendEnd = max(gc.st.sendEnd, end)
		if c.Rate > 0 {
			gc.st.behind += max(int64(sched.dueBefore(end, gc.idx))-int64(f.sent.Load()), 0)
		}
		gc.st.mu.Unlock()
		gc.stopped.Store(true)
		// Wake the reader now if nothing is in flight; otherwise give the
		// replies the drain timeout.
		gc.mu.Lock()
		defer gc.mu.Unlock()
		if f.inflight() == 0 {
			gc.conn().SetReadDeadline(time.Now())
		} else {
			gc.conn().SetReadDeadline(time.Now().Add(c.DrainTimeout))
		}
	}()
	// The end of the window stops a writer that waits for a credit a
	// silent server never hands back.
	var end <-chan time.Time
	if tl.me != math.MaxInt64 {
		tm := time.NewTimer(time.Duration(tl.me - now()))
		defer tm.Stop()
		end = tm.C
	}
	for {
		select {
		case <-gc.credits:
		case <-gc.gone:
			return
		case <-end:
			return
		}
		n := 1
		if c.Rate == 0 {
			// Batch whatever else is free into one write.
		more:
			for {
				select {
				case <-gc.credits:
					n++
				default:
					break more
				}
			}
		}
		if c.Rate > 0 {
			// One message at a time (n is 1), when it is due.
			if w := sched.due(f.sent.Load(), gc.idx) - now(); w > 0 && !sleepCh(gc.gone, time.Duration(w)) {
				return
			}
		}
		gc.mu.Lock()
		buf = buf[:0]
		done, exhausted := false, false
		i := 0
		for ; i < n && !done && !exhausted; i++ {
			at := now()
			if c.Rate > 0 {
				at = sched.due(f.sent.Load(), gc.idx)
			}
			// A message counts when it is sent inside the window; in open
			// loop its latency runs from when it was due.
			t := now()
			if t >= tl.me {
				done = true
				break
			}
			measured := t >= tl.ms
			if measured && c.Requests > 0 && d.quota.Add(-1) < 0 {
				d.quota.Add(1)
				exhausted = true
				break
			}
			buf = f.appendNext(buf, at, measured)
		}
		var err error
		if len(buf) > 0 {
			_, err = gc.conn().Write(buf)
		}
		reconnected := gc.reconnected
		gc.mu.Unlock()
		if err != nil && !d.awaitReconnect(gc, reconnected) {
			d.fail(gc, "connection %d: write: %v", gc.id, err)
			return
		}
		if done {
			return
		}
		if exhausted {
			for ; i < n; i++ {
				gc.credits <- struct{}{} // unspent: never blocks
			}
			if !d.awaitQuota(gc, end) {
				return
			}
		}
	}
}

// awaitQuota holds a writer whose quota ran out while its replies are in
// flight: a reconnect may abandon some and give their quota back. It
// reports whether there is quota to send again.
func (d *netDriver) awaitQuota(gc *gconn, end <-chan time.Time) bool {
	f := gc.f
	tk := time.NewTicker(time.Millisecond)
	defer tk.Stop()
	last, since := f.recvd.Load(), time.Now()
	for {
		if d.quota.Load() > 0 {
			return true
		}
		if f.inflight() == 0 {
			return false
		}
		select {
		case <-gc.gone:
			return false
		case <-end:
			return false
		case <-tk.C:
		}
		if r := f.recvd.Load(); r != last {
			last, since = r, time.Now()
		} else if time.Since(since) > d.c.DrainTimeout {
			return false
		}
	}
}

// reader verifies one connection's replies and hands back a credit for
// each.
func (d *netDriver) reader(gc *gconn) {
	defer close(gc.gone)
	f := gc.f
	st := gc.st
	var rbuf []byte // raw replies; framed ones are read into f's accumulator
	if !f.p.framed {
		rbuf = make([]byte, readBufSize)
	}
	for {
		buf := f.recvBuf(rbuf)
		n, err := gc.conn().Read(buf)
		if n > 0 {
			t := now()
			st.mu.Lock()
			before := f.recvd.Load()
			cerr := f.consume(buf, n, st, t)
			st.publish()
			st.mu.Unlock()
			for i := before; i < f.recvd.Load(); i++ {
				gc.credits <- struct{}{} // never blocks: credits + in flight = pipeline
			}
			if cerr != nil {
				d.fail(gc, "connection %d: %v", gc.id, cerr)
				return
			}
		}
		if gc.stopped.Load() && f.inflight() == 0 {
			return
		}
		if err != nil {
			if d.closing.Load() {
				return
			}
			if errors.Is(err, io.EOF) && !d.c.CloseIsError && f.recvd.Load() > gc.base {
				// A clean close after replies: a keep-alive limit.
				if d.reconnect(gc) {
					continue
				}
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && gc.stopped.Load() {
				lost := int64(f.inflight())
				st.mu.Lock()
				st.unanswered += lost
				st.noteErr(now(), "%d replies had not come %v after sending stopped", lost, d.c.DrainTimeout)
				st.mu.Unlock()
				return
			}
			d.fail(gc, "connection %d: %v after %d replies", gc.id, closedBy(ignoreEOF(err)), f.recvd.Load())
			return
		}
	}
}

// connBox holds a connection for an atomic pointer.
type connBox struct{ net.Conn }

func (gc *gconn) conn() net.Conn { return gc.box.Load().Conn }

// reconnect replaces a connection the server closed cleanly, as the epoll
// driver does: what was in flight is abandoned, its credits come back, and
// the writer goes on with the new connection. It reports false when the
// connection is done for (sending stopped, the run is closing, or the
// connect failed, which is counted).
func (d *netDriver) reconnect(gc *gconn) bool {
	c := d.c
	f := gc.f
	st := gc.st
	gc.mu.Lock()
	defer gc.mu.Unlock()
	lost := f.inflight()
	refund := int64(0)
	for k := f.recvd.Load(); k < f.sent.Load(); k++ {
		if f.times[k%f.pipe].Load() > 0 {
			refund++
		}
	}
	if c.Requests > 0 {
		// Before the messages leave the flight: a writer waiting for
		// quota sees it come back before it sees nothing in flight.
		d.quota.Add(refund)
	}
	f.restart()
	st.mu.Lock()
	st.abandoned += int64(lost)
	st.mu.Unlock()
	for i := uint64(0); i < lost; i++ {
		gc.credits <- struct{}{} // never blocks: credits + in flight = pipeline
	}
	old := gc.conn()
	old.Close()
	if gc.stopped.Load() || d.closing.Load() {
		return false
	}
	nc, err := d.open(context.Background(), gc)
	if err != nil {
		st.mu.Lock()
		st.connectError(now(), "reconnect to %s: %v", c.Addr, err)
		st.mu.Unlock()
		gc.dead.Store(true)
		return false
	}
	gc.box.Store(&connBox{nc})
	if d.closing.Load() {
		// shutdown may have closed the old one only.
		nc.Close()
		return false
	}
	st.mu.Lock()
	st.reconnects++
	st.mu.Unlock()
	gc.base = f.recvd.Load()
	close(gc.reconnected)
	gc.reconnected = make(chan struct{})
	return true
}

// awaitReconnect tells a writer whose write failed whether the reader
// replaced the connection (the server had closed it cleanly), waiting at
// most the connect timeout for the reader to see the close.
func (d *netDriver) awaitReconnect(gc *gconn, reconnected <-chan struct{}) bool {
	if d.c.CloseIsError {
		return false
	}
	t := time.NewTimer(d.c.ConnectTimeout)
	defer t.Stop()
	select {
	case <-reconnected:
		return true
	case <-gc.gone:
	case <-t.C:
	}
	return false
}

// fail reports the first error of a connection, unless the driver is
// closing it, and closes it.
func (d *netDriver) fail(gc *gconn, format string, args ...any) {
	if !d.closing.Load() && gc.dead.CompareAndSwap(false, true) {
		gc.st.mu.Lock()
		gc.st.connError(now(), format, args...)
		gc.st.mu.Unlock()
	}
	gc.conn().Close()
}

// shutdown closes every connection, ending every goroutine.
func (d *netDriver) shutdown() {
	d.closing.Store(true)
	for _, gc := range d.conns {
		if b := gc.box.Load(); b != nil {
			b.Close()
		}
	}
}

func (d *netDriver) close() {
	d.closeOnce.Do(func() {
		d.shutdown()
		d.wg.Wait()
	})
}

// sleepCtx sleeps for w unless ctx ends first (false).
func sleepCtx(ctx context.Context, w time.Duration) bool {
	t := time.NewTimer(w)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleepCh sleeps for w unless ch is closed first (false).
func sleepCh(ch <-chan struct{}, w time.Duration) bool {
	t := time.NewTimer(w)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ch:
		return false
	}
}
