package tlsloop_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"switchboard/internal/testcert"
	"switchboard/internal/tlsloop"
)

// link is an in-memory connection whose writes never block, so one
// goroutine can play both ends once the handshake is done. Side 0 is the
// client's, side 1 the server's: end(s) reads buf[s] and writes buf[1-s].
type link struct {
	mu     sync.Mutex
	cond   sync.Cond
	buf    [2][]byte
	closed bool
	wrote  chan struct{} // signalled when the client writes
}

func newLink() *link {
	l := &link{wrote: make(chan struct{}, 1)}
	l.cond.L = &l.mu
	return l
}

func (l *link) end(side int) net.Conn { return &linkEnd{l, side} }

// take returns what was written to side, appended to dst.
func (l *link) take(side int, dst []byte) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	dst = append(dst, l.buf[side]...)
	l.buf[side] = l.buf[side][:0]
	return dst
}

func (l *link) put(side int, p []byte) {
	if len(p) == 0 {
		return
	}
	l.mu.Lock()
	l.buf[side] = append(l.buf[side], p...)
	l.cond.Broadcast()
	l.mu.Unlock()
	if side == 1 {
		select {
		case l.wrote <- struct{}{}:
		default:
		}
	}
}

func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

type linkEnd struct {
	l    *link
	side int
}

func (e *linkEnd) Read(p []byte) (int, error) {
	l := e.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.buf[e.side]) == 0 {
		if l.closed {
			return 0, io.EOF
		}
		l.cond.Wait()
	}
	n := copy(p, l.buf[e.side])
	l.buf[e.side] = l.buf[e.side][:copy(l.buf[e.side], l.buf[e.side][n:])]
	return n, nil
}

func (e *linkEnd) Write(p []byte) (int, error) { e.l.put(1-e.side, p); return len(p), nil }
func (e *linkEnd) Close() error                { e.l.close(); return nil }
func (e *linkEnd) LocalAddr() net.Addr         { return &net.TCPAddr{} }
func (e *linkEnd) RemoteAddr() net.Addr        { return &net.TCPAddr{} }
func (e *linkEnd) SetDeadline(time.Time) error { return nil }

func (e *linkEnd) SetReadDeadline(time.Time) error  { return nil }
func (e *linkEnd) SetWriteDeadline(time.Time) error { return nil }

func benchConfigs(b *testing.B) (scfg, ccfg *tls.Config) {
	set := certs(b, testcert.ECDSAP256)
	scfg, ccfg = set.ServerConfig(), set.ClientConfig()
	ccfg.MinVersion = tls.VersionTLS13
	return scfg, ccfg
}

// BenchmarkHandshake: full handshakes (ECDSA P-256, TLS 1.3, the default
// key exchange) of a crypto/tls client with a Conn driven by the
// benchmark's goroutine as a loop, and with tls.Server on a goroutine of
// its own, over the same in-memory link. Both include the client's work.
//
//	go test -run '^$' -bench Handshake -count 10 ./internal/tlsloop
func BenchmarkHandshake(b *testing.B) {
	scfg, ccfg := benchConfigs(b)
	b.Run("impl=tlsloop", func(b *testing.B) {
		cfg := &tlsloop.Config{TLS: scfg}
		var scratch []byte
		cpu := startCPU(b)
		defer cpu.stop()
		for range b.N {
			l := newLink()
			cli := tls.Client(l.end(0), ccfg)
			cerr := make(chan error, 1)
			go func() { cerr <- cli.Handshake() }()
			ev := newChanEvents()
			srv := tlsloop.Server(cfg, ev)
			srv.Start()
		loop:
			for {
				select {
				case <-l.wrote:
					scratch = l.take(1, scratch[:0])
					srv.Feed(scratch)
				case <-ev.out:
					l.put(0, srv.Output(nil))
				case err := <-ev.done:
					if err != nil {
						b.Fatal(err)
					}
					l.put(0, srv.Output(nil))
					break loop
				}
			}
			if err := <-cerr; err != nil {
				b.Fatal(err)
			}
			srv.Close()
			l.close()
		}
	})
	b.Run("impl=crypto-tls", func(b *testing.B) {
		cpu := startCPU(b)
		defer cpu.stop()
		for range b.N {
			l := newLink()
			cli := tls.Client(l.end(0), ccfg)
			srv := tls.Server(l.end(1), scfg)
			serr := make(chan error, 1)
			go func() { serr <- srv.Handshake() }()
			if err := cli.Handshake(); err != nil {
				b.Fatal(err)
			}
			if err := <-serr; err != nil {
				b.Fatal(err)
			}
			l.close()
		}
	})
}

// BenchmarkEcho: one echo round trip on a connected pair, all on one
// goroutine: the client (crypto/tls) encrypts, the server decrypts and
// encrypts the reply, the client decrypts. The server is a Conn (Feed,
// Read, Seal) or a tls.Conn over the link, so the difference is what the
// adapter adds to crypto/tls's own work.
//
//	go test -run '^$' -bench Echo -count 10 ./internal/tlsloop
func BenchmarkEcho(b *testing.B) {
	scfg, ccfg := benchConfigs(b)
	for _, size := range []int{64, 4096} {
		msg := make([]byte, size)
		b.Run("size="+sizeName(size)+"/impl=tlsloop", func(b *testing.B) {
			l := newLink()
			cli := tls.Client(l.end(0), ccfg)
			srv := handshakeLoop(b, l, cli, scfg)
			defer srv.Close()
			var scratch, out []byte
			buf := make([]byte, 16<<10)
			back := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(b)
			defer cpu.stop()
			for range b.N {
				if _, err := cli.Write(msg); err != nil {
					b.Fatal(err)
				}
				scratch = l.take(1, scratch[:0])
				srv.Feed(scratch)
				got := 0
				for {
					n, err := srv.Read(buf[got:])
					got += n
					if errors.Is(err, tlsloop.ErrWouldBlock) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				var err error
				if out, err = srv.Seal(out[:0], buf[:got]); err != nil {
					b.Fatal(err)
				}
				l.put(0, out)
				if _, err := io.ReadFull(cli, back); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("size="+sizeName(size)+"/impl=crypto-tls", func(b *testing.B) {
			l := newLink()
			cli := tls.Client(l.end(0), ccfg)
			srv := tls.Server(l.end(1), scfg)
			serr := make(chan error, 1)
			go func() { serr <- srv.Handshake() }()
			if err := cli.Handshake(); err != nil {
				b.Fatal(err)
			}
			if err := <-serr; err != nil {
				b.Fatal(err)
			}
			// Take the session tickets now, not in the timed loop.
			cli.Write(msg)
			io.ReadFull(srv, make([]byte, size))
			buf := make([]byte, 16<<10)
			back := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(b)
			defer cpu.stop()
			for range b.N {
				if _, err := cli.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(srv, buf[:size]); err != nil {
					b.Fatal(err)
				}
				if _, err := srv.Write(buf[:size]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(cli, back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// handshakeLoop completes a handshake of cli with a server Conn, the
// calling goroutine moving the bytes, and one message each way so the
// session tickets are out of the way.
func handshakeLoop(b *testing.B, l *link, cli *tls.Conn, scfg *tls.Config) *tlsloop.Conn {
	cerr := make(chan error, 1)
	go func() { cerr <- cli.Handshake() }()
	ev := newChanEvents()
	srv := tlsloop.Server(&tlsloop.Config{TLS: scfg}, ev)
	srv.Start()
	for done := false; !done; {
		select {
		case <-l.wrote:
			srv.Feed(l.take(1, nil))
		case <-ev.out:
			l.put(0, srv.Output(nil))
		case err := <-ev.done:
			if err != nil {
				b.Fatal(err)
			}
			l.put(0, srv.Output(nil))
			done = true
		}
	}
	if err := <-cerr; err != nil {
		b.Fatal(err)
	}
	cli.Write([]byte("x"))
	srv.Feed(l.take(1, nil))
	readAll(srv)
	return srv
}

// cpuMeter reports process CPU time per operation as cpu-ns/op.
type cpuMeter struct {
	b     *testing.B
	start time.Duration
	ok    bool
}

func startCPU(b *testing.B) cpuMeter {
	t, ok := processCPU()
	return cpuMeter{b, t, ok}
}

func (m cpuMeter) stop() {
	if t, ok := processCPU(); ok && m.ok && m.b.N > 0 {
		m.b.ReportMetric(float64(t-m.start)/float64(m.b.N), "cpu-ns/op")
	}
}

func sizeName(n int) string {
	if n >= 1024 {
		return itoa(n/1024) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
