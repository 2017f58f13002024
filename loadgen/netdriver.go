package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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

	// TLS (tls.go).
	hs      handshakes
	tlsOnce sync.Once
	tls     *tls.Config
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
	if c.TLS != nil {
		return d.handshake(nc)
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
