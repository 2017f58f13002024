package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend is a TCP server for the proxy to forward to: it echoes, or
// records what it reads and how the read ended.
type backend struct {
	ln   net.Listener
	echo bool
	wg   sync.WaitGroup

	mu    sync.Mutex
	got   []byte
	reads int
	end   chan error // how each connection's reading ended
	conns []net.Conn
}

func newBackend(t *testing.T, echo bool) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, echo: echo, end: make(chan error, 16)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go b.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *backend) serve(c net.Conn) {
	defer b.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		b.mu.Lock()
		b.got = append(b.got, buf[:n]...)
		if n > 0 {
			b.reads++
		}
		b.mu.Unlock()
		if n > 0 && b.echo {
			c.Write(buf[:n])
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
				if tc, ok := c.(*net.TCPConn); ok && b.echo {
					tc.CloseWrite()
				}
			}
			b.end <- err
			return
		}
	}
}

func (b *backend) received() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.got...)
}

func start(t *testing.T, target string, f Fault) *Proxy {
	t.Helper()
	p, err := New(target, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := p.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// roundTrip sends data, half-closes and returns the echo, read to EOF.
func roundTrip(t *testing.T, c *net.TCPConn, data []byte) []byte {
	t.Helper()
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestForwardsFaithfully(t *testing.T) {
	b := newBackend(t, true)
	p := start(t, b.ln.Addr().String(), Fault{})
	data := pattern(1 << 20)
	if got := roundTrip(t, dial(t, p), data); !bytes.Equal(got, data) {
		t.Fatalf("echo of %d bytes came back as %d different ones", len(data), len(got))
	}
	if err := <-b.end; err != nil {
		t.Fatalf("backend saw %v, want a clean EOF passed through", err)
	}
}

func TestLatency(t *testing.T) {
	b := newBackend(t, true)
	const lat = 50 * time.Millisecond
	p := start(t, b.ln.Addr().String(), Fault{Latency: lat})
	c := dial(t, p)
	began := time.Now()
	c.Write([]byte("ping"))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	// One way each direction.
	if rtt := time.Since(began); rtt < 2*lat {
		t.Fatalf("round trip %v through a proxy adding %v each way", rtt, lat)
	}
}

func TestOneByteSegments(t *testing.T) {
	b := newBackend(t, true)
	p := start(t, b.ln.Addr().String(), Fault{Segment: 1})
	data := pattern(3000)
	if got := roundTrip(t, dial(t, p), data); !bytes.Equal(got, data) {
		t.Fatal("echo differs")
	}
	// Each byte was its own write, in each direction.
	if w := p.Writes(); w != 2*int64(len(data)) {
		t.Fatalf("%d writes for %d bytes each way", w, len(data))
	}
}

func TestBandwidth(t *testing.T) {
	b := newBackend(t, false)
	const rate = 200 << 10
	p := start(t, b.ln.Addr().String(), Fault{BytesPerSecond: rate})
	c := dial(t, p)
	data := pattern(100 << 10) // half a second's worth
	began := time.Now()
	c.Write(data)
	c.CloseWrite()
	if err := <-b.end; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 400*time.Millisecond {
		t.Fatalf("%d bytes at %d B/s arrived in %v", len(data), rate, took)
	}
	if got := b.received(); !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
}

func TestResetMidStream(t *testing.T) {
	b := newBackend(t, false)
	const after = 1000
	p := start(t, b.ln.Addr().String(), Fault{ResetAfter: after})
	c := dial(t, p)
	c.Write(pattern(5000))
	select {
	case err := <-b.end:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("backend read ended with %v, want ECONNRESET", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend never saw the reset")
	}
	if n := len(b.received()); n > after {
		t.Fatalf("backend got %d bytes, the reset came after %d", n, after)
	}
	if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read ended with %v, want ECONNRESET", err)
	}
	if p.Resets() != 1 {
		t.Fatalf("Resets = %d", p.Resets())
	}
}

func TestBlackhole(t *testing.T) {
	b := newBackend(t, true)
	const after = 10
	p := start(t, b.ln.Addr().String(), Fault{BlackholeAfter: after})
	c := dial(t, p)
	c.Write(pattern(after + 50))
	// The backend gets exactly the bytes before the cut...
	deadline := time.Now().Add(5 * time.Second)
	for len(b.received()) < after && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := b.received(); !bytes.Equal(got, pattern(after)) {
		t.Fatalf("backend got %d bytes, want the %d before the cut", len(got), after)
	}
	// ...and then neither more bytes, nor an EOF, nor a reset; the client
	// gets no echo and no close either.
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read %d, %v through a blackhole", n, err)
	}
	select {
	case err := <-b.end:
		t.Fatalf("backend connection ended (%v) while blackholed", err)
	default:
	}
	if got := len(b.received()); got != after {
		t.Fatalf("backend got %d bytes after the cut", got-after)
	}
	if p.Blackholes() != 1 {
		t.Fatalf("Blackholes = %d", p.Blackholes())
	}
	// Closing the proxy finally lets go.
	p.Close()
	select {
	case <-b.end:
	case <-time.After(5 * time.Second):
		t.Fatal("backend connection still open after the proxy closed")
	}
}

func TestCloseEndsEverything(t *testing.T) {
	b := newBackend(t, true)
	p := start(t, b.ln.Addr().String(), Fault{Latency: time.Second})
	for range 5 {
		c := dial(t, p)
		c.Write([]byte("stuck in the delay"))
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waited on a delayed chunk")
	}
	if _, err := p.Dial(); err == nil {
		t.Fatal("dial after Close succeeded")
	}
}
