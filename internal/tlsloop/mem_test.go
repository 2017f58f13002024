package tlsloop_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"switchboard/internal/testcert"
)

// TestIdleMemory measures what an idle server connection holds once its
// handshake (ECDSA P-256, TLS 1.3) and one echo are done: the growth of
// the live heap, after GC, divided by the number of connections, for a
// Conn, and for the goroutine-per-connection way (tls.Server over a
// net.Pipe end with a goroutine parked in Read into a buffer of the echo's
// size; stack counted, and the pipe's own state, a few hundred bytes, too). The clients are dropped
// before measuring. A socket costs the same in both and is not counted.
//
//	SWITCHBOARD_TLS_IDLE_MEM=1 go test -run TestIdleMemory -v ./internal/tlsloop
//
// SWITCHBOARD_TLS_HEAPPROFILE=path also writes a heap profile of each
// measurement, with connections held, to path.1, path.2, ...
func TestIdleMemory(t *testing.T) {
	if os.Getenv("SWITCHBOARD_TLS_IDLE_MEM") == "" {
		t.Skip("set SWITCHBOARD_TLS_IDLE_MEM=1 to measure idle TLS connection memory")
	}
	const conns = 2000
	set := certs(t, testcert.ECDSAP256)
	// One configuration for every connection, as a server has.
	scfg, ccfg := set.ServerConfig(), set.ClientConfig()
	for _, size := range []int{64, 16 << 10} {
		per := measure(t, conns, func() func() { return idleAdapter(t, scfg, ccfg, size) })
		t.Logf("tlsloop.Conn, after a %d-byte echo: %.0f bytes per idle connection", size, per)
		per = measure(t, conns, func() func() { return idleGoroutine(t, scfg, ccfg, size) })
		t.Logf("goroutine + tls.Conn, after a %d-byte echo: %.0f bytes per idle connection (heap + stacks)", size, per)
	}
	// What a server's tls.Config (or its clients) could change about what
	// crypto/tls keeps per connection, after a 64-byte echo.
	for _, v := range []struct {
		name     string
		srv, cli func(*tls.Config)
	}{
		{"session tickets off", func(c *tls.Config) { c.SessionTicketsDisabled = true }, nil},
		{"server prefers X25519 (no ML-KEM key exchange)", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519} }, nil},
		{"client offers X25519 only (a ClientHello without the ML-KEM share)", nil, func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519} }},
	} {
		s, c := scfg.Clone(), ccfg.Clone()
		if v.srv != nil {
			v.srv(s)
		}
		if v.cli != nil {
			v.cli(c)
		}
		per := measure(t, conns, func() func() { return idleAdapter(t, s, c, 64) })
		t.Logf("tlsloop.Conn, %s: %.0f bytes per idle connection", v.name, per)
	}
}

// measure makes n connections with mk (which returns how to release one)
// and returns the heap and stack growth per connection.
func measure(t *testing.T, n int, mk func() func()) float64 {
	t.Helper()
	warm := mk()
	warm()
	before := liveBytes()
	release := make([]func(), n)
	for i := range release {
		release[i] = mk()
	}
	after := liveBytes()
	if p := os.Getenv("SWITCHBOARD_TLS_HEAPPROFILE"); p != "" {
		profiles++
		f, err := os.Create(fmt.Sprintf("%s.%d", p, profiles))
		if err != nil {
			t.Fatal(err)
		}
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	for _, r := range release {
		r()
	}
	return float64(after-before) / float64(n)
}

var profiles int

func liveBytes() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

func idleAdapter(t *testing.T, scfg, ccfg *tls.Config, size int) func() {
	srv, cli := pair(t, scfg, ccfg)
	msg := make([]byte, size)
	ct, err := cli.Seal(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Feed(ct)
	got, _ := readAll(srv)
	out, err := srv.Seal(srv.Output(nil), got)
	if err != nil || len(got) != size {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	cli.Feed(out)
	if back, _ := readAll(cli); len(back) != size {
		t.Fatalf("echo back: %d bytes", len(back))
	}
	cli.Close()
	return func() { srv.Close() }
}

func idleGoroutine(t *testing.T, scfg, ccfg *tls.Config, size int) func() {
	a, b := net.Pipe()
	parked := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := tls.Server(b, scfg)
		buf := make([]byte, size) // the least a reader can hold
		n, err := io.ReadFull(s, buf)
		if err == nil {
			_, err = s.Write(buf[:n])
		}
		if err != nil {
			t.Error(err)
			return
		}
		close(parked)
		s.Read(buf) // parked here while idle, as a goroutine-per-connection server is
	}()
	c := tls.Client(a, ccfg)
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	<-parked
	return func() { a.Close(); <-done }
}
