//go:build linux

package reactor

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"switchboard/internal/engine"
	"switchboard/internal/testcert"
)

// rawClient connects a blocking socket with plain system calls, so that a
// round trip allocates nothing on the client side and any allocation
// counted belongs to the server.
func rawClient(t testing.TB, addr string) int {
	t.Helper()
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// echoRig is one raw client on an epoll server, sending pipeline framed
// 64-byte messages per write and reading them all back.
type echoRig struct {
	fd   int
	out  []byte
	in   []byte
	fail func(...any)
}

func newEchoRig(t testing.TB, model, spec string, pipeline int) *echoRig {
	codec := mustCodec(t, spec, 0)
	ts := startServer(t, model, engine.Config{Codec: codec, Loops: 1, NoDelay: true}, echoHandler{})
	r := &echoRig{fd: rawClient(t, ts.addr), fail: t.Fatal}
	for range pipeline {
		r.out, _ = codec.Append(r.out, bytes.Repeat([]byte{'m'}, 64))
	}
	r.in = make([]byte, len(r.out))
	return r
}

func (r *echoRig) roundTrip() {
	if _, err := unix.Write(r.fd, r.out); err != nil {
		r.fail(err)
	}
	for got := 0; got < len(r.in); {
		n, err := unix.Read(r.fd, r.in[got:])
		if err != nil || n == 0 {
			r.fail("read", n, err)
		}
		got += n
	}
}

// TestZeroAllocsPerMessage: in steady state an echoed message costs the
// whole process (server loop included) no allocation, raw or framed,
// one message or sixteen per read, on epoll and on io_uring.
func TestZeroAllocsPerMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a steady state")
	}
	for _, model := range backends(t, "epoll", "uring") {
		t.Run(model, func(t *testing.T) { testZeroAllocs(t, model) })
	}
}

func testZeroAllocs(t *testing.T, model string) {
	for _, spec := range []string{"raw", "len:4"} {
		for _, pipeline := range []int{1, 16} {
			if spec == "raw" && pipeline > 1 {
				continue // raw has no message boundaries to pipeline
			}
			r := newEchoRig(t, model, spec, pipeline)
			for range 1000 {
				r.roundTrip()
			}
			if a := testing.AllocsPerRun(5000, r.roundTrip); a != 0 {
				t.Errorf("%s pipeline %d: %.2f allocations per round trip, want 0", spec, pipeline, a)
			} else {
				t.Logf("%s pipeline %d: 0 allocations per round trip", spec, pipeline)
			}
		}
	}
}

// BenchmarkEcho reports allocations and time per echoed message on epoll
// and io_uring. The client is in the same process but makes plain system
// calls, so allocs/op is the server's.
func BenchmarkEcho(b *testing.B) {
	for _, model := range []string{"epoll", "uring"} {
		if _, ok := otherEngines[model]; !ok && model != "epoll" {
			continue
		}
		b.Run(model, func(b *testing.B) { benchmarkEcho(b, model) })
	}
}

func benchmarkEcho(b *testing.B, model string) {
	for _, c := range []struct {
		name     string
		spec     string
		pipeline int
	}{{"raw", "raw", 1}, {"len4", "len:4", 1}, {"len4-pipeline16", "len:4", 16}} {
		b.Run(c.name, func(b *testing.B) {
			r := newEchoRig(b, model, c.spec, c.pipeline)
			for range 1000 {
				r.roundTrip()
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(r.out)))
			for b.Loop() {
				r.roundTrip()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*c.pipeline), "ns/msg")
		})
	}
}

// TestTLSAllocsPerRecord: over TLS the engines add no allocation to an
// echoed message either, on epoll and on io_uring. crypto/tls itself
// makes one per record it reads (readFromUntil's atLeastReader escapes),
// which the test cannot avoid on either side: a round trip here is one
// record each way, however many messages it carries, so the process as
// a whole may make two allocations per round trip and no more.
func TestTLSAllocsPerRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("measures a steady state")
	}
	if raceEnabled {
		t.Skip("the race detector changes crypto/tls's allocations; run without -race")
	}
	certs := testcert.New(t)
	for _, model := range backends(t, "epoll", "uring") {
		t.Run(model, func(t *testing.T) {
			for _, pipeline := range []int{1, 16} {
				codec := mustCodec(t, "len:4", 0)
				ts := startServer(t, model, engine.Config{Codec: codec, Loops: 1, NoDelay: true, TLS: certs.ServerConfig()}, echoHandler{})
				nc, err := net.Dial("tcp", ts.addr)
				if err != nil {
					t.Fatal(err)
				}
				tc := tls.Client(nc, certs.ClientConfig())
				t.Cleanup(func() { tc.Close() })
				var out []byte
				for range pipeline {
					out, _ = codec.Append(out, bytes.Repeat([]byte{'m'}, 64))
				}
				in := make([]byte, len(out))
				roundTrip := func() {
					if _, err := tc.Write(out); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(tc, in); err != nil {
						t.Fatal(err)
					}
				}
				for range 1000 {
					roundTrip()
				}
				// crypto/tls's, one per record read: the server's, the client's.
				const cryptoTLS = 2
				if a := testing.AllocsPerRun(2000, roundTrip); a > cryptoTLS {
					t.Errorf("pipeline %d: %.2f allocations per round trip, want crypto/tls's %d at most", pipeline, a, cryptoTLS)
				} else {
					t.Logf("pipeline %d: %.2f allocations per round trip (crypto/tls's)", pipeline, a)
				}
			}
		})
	}
}
