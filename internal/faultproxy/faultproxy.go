// Package faultproxy is a user-space TCP proxy for tests: it sits between a
// test's clients and a server and makes the network misbehave on purpose —
// latency, tiny segments, a bandwidth cap, a reset in the middle of a
// frame, or a peer that vanishes without a FIN or a reset (a blackhole).
//
// It is ours rather than Shopify's toxiproxy used as a library because the
// faults the tests need fit in a few hundred lines we control, while
// toxiproxy brings an HTTP API, a CLI and a dependency tree (a router,
// logging and metrics libraries) that switchboard's test suite would carry
// for nothing. Everything here is the standard library.
//
// Faults apply per direction and per connection: each accepted connection
// gets two pumps (client to server, server to client), and each pump reads,
// delays, cuts and paces bytes before writing them on. Only loopback is
// meant to be used.
package faultproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what the proxy does to each connection it forwards. The zero
// Fault forwards faithfully.
type Fault struct {
	// Latency delays every chunk by this much in each direction, keeping
	// order (a one-way delay, not a round trip).
	Latency time.Duration
	// Segment caps how many bytes one write forwards; 1 delivers the
	// stream a byte at a time. Writes go out with TCP_NODELAY, so each is
	// its own segment and, usually, its own read on the other side.
	Segment int
	// BytesPerSecond caps each direction's rate (0: no cap).
	BytesPerSecond int
	// ResetAfter, when positive, forwards that many bytes from the client
	// to the server and then resets both sides (close with SO_LINGER 0):
	// the server sees ECONNRESET, with a frame half received if the count
	// ends inside one.
	ResetAfter int
	// BlackholeAfter, when positive, forwards that many bytes from the
	// client to the server and then stops forwarding in both directions
	// without closing anything until the proxy is closed: to the server,
	// the client vanished without a FIN or a reset.
	BlackholeAfter int
}

// Proxy forwards connections accepted on its own loopback address to a
// target address, applying a Fault.
type Proxy struct {
	ln     net.Listener
	target string
	fault  atomic.Pointer[Fault]

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by Close, ending delays and pacing
	wg     sync.WaitGroup

	accepted, resets, blackholes, writes atomic.Int64
}

// New starts a proxy on 127.0.0.1 forwarding to target ("host:port").
func New(target string, f Fault) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{}), done: make(chan struct{})}
	p.fault.Store(&f)
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetFault changes the fault for connections accepted from now on.
func (p *Proxy) SetFault(f Fault) { p.fault.Store(&f) }

// Accepted counts connections proxied so far.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Resets counts connections the proxy has reset.
func (p *Proxy) Resets() int64 { return p.resets.Load() }

// Blackholes counts connections the proxy has stopped forwarding.
func (p *Proxy) Blackholes() int64 { return p.blackholes.Load() }

// Writes counts write calls made forwarding, both directions: with
// Segment 1, one per byte.
func (p *Proxy) Writes() int64 { return p.writes.Load() }

// Close stops accepting, closes every connection still held (blackholed
// ones too) and waits for the proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	err := p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// track registers c to be closed by Close; false if the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if !p.track(client) {
			return
		}
		p.wg.Add(1)
		go p.serve(client, *p.fault.Load())
	}
}

// link is one proxied connection: the two sockets and the fault's shared
// state.
type link struct {
	p              *Proxy
	f              Fault
	client, server *net.TCPConn
	once           sync.Once
	stop           chan struct{} // closed when forwarding ends (blackhole or reset)
	// halted stops the server-to-client direction just before the last
	// client bytes of a blackhole go up, so no reply to them comes back.
	halted atomic.Bool
}

func (p *Proxy) serve(client net.Conn, f Fault) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.untrack(client)
		return
	}
	if !p.track(up) {
		p.untrack(client)
		return
	}
	l := &link{p: p, f: f, client: client.(*net.TCPConn), server: up.(*net.TCPConn), stop: make(chan struct{})}
	l.client.SetNoDelay(true)
	l.server.SetNoDelay(true)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(l.client, l.server, true) }()
	go func() { defer wg.Done(); l.pump(l.server, l.client, false) }()
	wg.Wait()
	select {
	case <-l.stop:
		// Blackholed: hold both sockets, open and silent, until Close.
		// Reset: they are closed already.
	default:
		p.untrack(l.client)
		p.untrack(l.server)
	}
}

// chunk is bytes read at one time, due to be written at another.
type chunk struct {
	b   []byte
	due time.Time
}

// pump forwards src to dst with the link's fault. A reader goroutine
// timestamps what it reads, so latency is added once per chunk and keeps
// order; the writer here cuts, paces and fires the reset or blackhole.
func (l *link) pump(src, dst *net.TCPConn, upstream bool) {
	// Bounded, so a slow writer stops the reader and TCP flow control
	// reaches the sender, as on a real path.
	q := make(chan chunk, 16)
	l.p.wg.Add(1)
	go func() {
		defer l.p.wg.Done()
		defer close(q)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				b := append([]byte(nil), buf[:n]...)
				select {
				case q <- chunk{b, time.Now().Add(l.f.Latency)}:
				case <-l.stop:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		for range q { // let the reader finish
		}
	}()
	var sent int
	var next time.Time // when the bandwidth cap allows the next byte
	for ch := range q {
		if l.stopped() || !l.sleepUntil(ch.due) {
			return
		}
		for b := ch.b; len(b) > 0; {
			n := len(b)
			if l.f.Segment > 0 {
				n = min(n, l.f.Segment)
			}
			if upstream {
				if left, ok := l.cutAt(sent); ok {
					if left == 0 {
						l.fire()
						return
					}
					n = min(n, left)
					if n == left && l.f.BlackholeAfter > 0 {
						l.halt()
					}
				}
			} else if l.halted.Load() {
				return
			}
			if _, err := dst.Write(b[:n]); err != nil {
				l.abort()
				return
			}
			l.p.writes.Add(1)
			b = b[n:]
			sent += n
			if r := l.f.BytesPerSecond; r > 0 {
				now := time.Now()
				if next.Before(now) {
					next = now
				}
				next = next.Add(time.Duration(float64(n) / float64(r) * float64(time.Second)))
				// Sleep only once ahead by a millisecond: a sleep per
				// small segment would cost its timer's overshoot each
				// time and fall far below the rate.
				if time.Until(next) > time.Millisecond && !l.sleepUntil(next) {
					return
				}
			}
		}
		if upstream {
			if left, ok := l.cutAt(sent); ok && left == 0 {
				l.fire()
				return
			}
		}
	}
	if !l.stopped() && !l.halted.Load() {
		// The source closed: pass the half-close on, as a transparent
		// path would. (A blackhole's halt ends the server's reader too,
		// and that is no close to pass on.)
		dst.CloseWrite()
	}
}

// cutAt reports, for a link with a reset or a blackhole, how many more
// client bytes may pass before it fires.
func (l *link) cutAt(sent int) (int, bool) {
	switch {
	case l.f.ResetAfter > 0:
		return max(l.f.ResetAfter-sent, 0), true
	case l.f.BlackholeAfter > 0:
		return max(l.f.BlackholeAfter-sent, 0), true
	}
	return 0, false
}

// halt stops forwarding from the server: nothing more is read from it, and
// what was read is dropped.
func (l *link) halt() {
	l.halted.Store(true)
	l.server.SetReadDeadline(time.Unix(1, 0))
}

// fire performs the link's reset or blackhole, once.
func (l *link) fire() {
	l.once.Do(func() {
		close(l.stop)
		if l.f.ResetAfter > 0 {
			l.p.resets.Add(1)
			l.client.SetLinger(0)
			l.server.SetLinger(0)
			l.p.untrack(l.client)
			l.p.untrack(l.server)
			return
		}
		// Nobody reads either socket from now on, so the kernel's buffers
		// fill and both ends see a peer that neither acknowledges at the
		// application level nor closes. The sockets stay open until
		// Close.
		l.p.blackholes.Add(1)
		past := time.Unix(1, 0)
		l.client.SetReadDeadline(past)
		l.server.SetReadDeadline(past)
	})
}

func (l *link) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// abort ends forwarding after a write failed: the other side is gone, so
// both sockets close.
func (l *link) abort() {
	l.client.Close()
	l.server.Close()
}

// sleepUntil waits until t unless forwarding stops first.
func (l *link) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return !l.stopped()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-l.stop:
		return false
	case <-l.p.done:
		return false
	}
}

// Dial connects to the proxy.
func (p *Proxy) Dial() (net.Conn, error) {
	return net.DialTimeout("tcp", p.Addr(), 5*time.Second)
}
