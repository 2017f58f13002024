package switchboard_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard"
	"switchboard/internal/testserver"
)

// TLS-only cases, on every model. The conformance suite runs everything
// else over TLS too (conformance_tls_test.go).

// forEachModel runs f on every model that speaks TLS, in parallel: these
// cases wait on timeouts far more than they compute.
func forEachModel(t *testing.T, f func(t *testing.T, model string)) {
	for _, model := range switchboard.Models() {
		if info, _ := switchboard.LookupModel(model); !info.TLS {
			continue
		}
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			f(t, model)
		})
	}
}

// syncBuffer is a log sink for a server's handler.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openCounter counts OnOpen calls: a connection whose handshake failed
// must never reach the handler.
type openCounter struct {
	mu     sync.Mutex
	opened int
	closed int
}

func (h *openCounter) OnOpen(switchboard.Conn) { h.mu.Lock(); h.opened++; h.mu.Unlock() }
func (h *openCounter) OnMessage(c switchboard.Conn, msg []byte) {
	c.Write(msg)
}
func (h *openCounter) OnClose(switchboard.Conn, error) { h.mu.Lock(); h.closed++; h.mu.Unlock() }

func (h *openCounter) counts() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opened, h.closed
}

// startTLS serves h over TLS with cfg on model; the log goes to the
// returned buffer.
func startTLS(t *testing.T, model string, h switchboard.Handler, cfg *tls.Config, opts ...switchboard.Option) (*switchboard.Server, string, *syncBuffer) {
	t.Helper()
	logs := new(syncBuffer)
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]switchboard.Option{switchboard.WithModel(model), switchboard.WithLoops(2),
		switchboard.WithTLS(cfg), switchboard.WithLogger(log)}, opts...)
	addr, srv := testserver.Start(t, "127.0.0.1:0", h, opts...)
	return srv, addr, logs
}

func TestTLSHandshakeTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	forEachModel(t, func(t *testing.T, model string) {
		h := new(openCounter)
		srv, addr, logs := startTLS(t, model, h, testCerts().ServerConfig(), switchboard.WithHandshakeTimeout(timeout))
		// A client that says nothing, then one that sends half a
		// ClientHello: each is closed once the timeout has passed.
		hello := clientHelloBytes(t)
		for i, send := range [][]byte{nil, hello[:len(hello)/2]} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			began := time.Now()
			c.Write(send)
			expectClosed(t, c)
			if waited := time.Since(began); waited < timeout-50*time.Millisecond || waited > 5*time.Second {
				t.Errorf("client %d closed after %v, want about %v", i, waited, timeout)
			}
			c.Close() // the blocking model serves the next one after this
		}
		waitFor(t, "two handshake failures", func() bool { return srv.Stats().HandshakeFailures == 2 })
		if opened, _ := h.counts(); opened != 0 {
			t.Errorf("OnOpen called %d times for connections without a handshake", opened)
		}
		if !strings.Contains(logs.String(), "timed out") {
			t.Errorf("no logged reason:\n%s", logs)
		}
		// The server goes on serving.
		if err := tlsEchoOnce(addr, testCerts().ClientConfig(), "still here"); err != nil {
			t.Fatal(err)
		}
	})
}

// clientHelloBytes records the first flight a crypto/tls client sends.
func clientHelloBytes(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, testCerts().ClientConfig()).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := b.Read(buf)
	if err != nil || n < 10 || buf[0] != 0x16 {
		t.Fatalf("no ClientHello recorded: %d bytes, %v", n, err)
	}
	return buf[:n]
}

// tlsEchoOnce sends msg over a new TLS connection and checks the echo.
func tlsEchoOnce(addr string, cfg *tls.Config, msg string) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func TestTLSPlaintextToTLSPort(t *testing.T) {
	forEachModel(t, func(t *testing.T, model string) {
		h := new(openCounter)
		srv, addr, logs := startTLS(t, model, h, testCerts().ServerConfig())
		for i, junk := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01\x00\x05garbage that is not a handshake"} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte(junk))
			expectClosed(t, c)
			c.Close()
			waitFor(t, fmt.Sprintf("handshake failure %d counted", i+1), func() bool { return srv.Stats().HandshakeFailures == int64(i+1) })
		}
		if opened, _ := h.counts(); opened != 0 {
			t.Errorf("OnOpen called %d times", opened)
		}
		if l := logs.String(); !strings.Contains(l, `plaintext \"GET /\"`) || !strings.Contains(l, "level=WARN") {
			t.Errorf("the log does not say what came:\n%s", l)
		}
		if err := tlsEchoOnce(addr, testCerts().ClientConfig(), "fine"); err != nil {
			t.Fatal(err)
		}
	})
}

// stateReporter writes back, for each message, what the connection
// negotiated.
type stateReporter struct{ switchboard.BaseHandler }

func (stateReporter) OnMessage(c switchboard.Conn, msg []byte) {
	tc, ok := c.(switchboard.TLSConn)
	if !ok {
		c.Write([]byte("no TLSConn"))
		return
	}
	cs, ok := tc.ConnectionState()
	if !ok {
		c.Write([]byte("no state"))
		return
	}
	peer := "-"
	if len(cs.PeerCertificates) > 0 {
		peer = cs.PeerCertificates[0].Subject.CommonName
	}
	c.Write([]byte(fmt.Sprintf("%s sni=%s alpn=%s peer=%s", tls.VersionName(cs.Version), cs.ServerName, cs.NegotiatedProtocol, peer)))
}

// ask sends one line over TLS and returns the reply line.
func ask(addr string, cfg *tls.Config) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("state\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestTLSVersionsAndState(t *testing.T) {
	forEachModel(t, func(t *testing.T, model string) {
		cfg := testCerts().ServerConfig()
		cfg.NextProtos = []string{"sb/1"}
		_, addr, _ := startTLS(t, model, stateReporter{}, cfg, switchboard.WithFraming("line", 0))
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			cc := testCerts().ClientConfig()
			cc.MinVersion, cc.MaxVersion = v, v
			cc.NextProtos = []string{"sb/1"}
			got, err := ask(addr, cc)
			if want := tls.VersionName(v) + " sni=localhost alpn=sb/1 peer=-\n"; err != nil || got != want {
				t.Errorf("%s: got %q, %v; want %q", tls.VersionName(v), got, err, want)
			}
		}
	})
}

func TestTLSClientCertificate(t *testing.T) {
	forEachModel(t, func(t *testing.T, model string) {
		h := stateReporter{}
		srv, addr, _ := startTLS(t, model, h, testCerts().MutualServerConfig(), switchboard.WithFraming("line", 0))
		got, err := ask(addr, testCerts().MutualClientConfig())
		if err != nil || !strings.Contains(got, "peer=") || strings.Contains(got, "peer=-") {
			t.Fatalf("with a client certificate: %q, %v", got, err)
		}
		// Without one the server refuses: TLS 1.3 clients learn it on
		// their first read.
		if got, err := ask(addr, testCerts().ClientConfig()); err == nil {
			t.Fatalf("without a client certificate the server answered %q", got)
		}
		waitFor(t, "the refusal counted", func() bool { return srv.Stats().HandshakeFailures == 1 })
	})
}

// recordConn remembers the TLS record types the server sent, as read.
type recordConn struct {
	net.Conn
	mu    sync.Mutex
	types []byte
	rec   []byte // a partial record header
	skip  int    // body bytes of the current record still to pass
}

func (r *recordConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	for b := p[:n]; len(b) > 0; {
		if r.skip > 0 {
			k := min(r.skip, len(b))
			r.skip -= k
			b = b[k:]
			continue
		}
		k := min(5-len(r.rec), len(b))
		r.rec = append(r.rec, b[:k]...)
		b = b[k:]
		if len(r.rec) == 5 {
			r.types = append(r.types, r.rec[0])
			r.skip = int(r.rec[3])<<8 | int(r.rec[4])
			r.rec = r.rec[:0]
		}
	}
	return n, err
}

func (r *recordConn) last() byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.types) == 0 {
		return 0
	}
	return r.types[len(r.types)-1]
}

// TestTLSCloseNotify: the handler's CloseWrite sends close_notify (an
// alert record, visible as such in TLS 1.2) and then the FIN; the
// connection stays readable, so the client's last message still arrives,
// and the client's own close_notify and FIN end it.
func TestTLSCloseNotify(t *testing.T) {
	forEachModel(t, func(t *testing.T, model string) {
		rec := &halfCloser{closeRecorder: newCloseRecorder()}
		_, addr, _ := startTLS(t, model, rec, testCerts().ServerConfig(), switchboard.WithFraming("line", 0))
		raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		rc := &recordConn{Conn: raw}
		cc := testCerts().ClientConfig()
		cc.MaxVersion = tls.VersionTLS12
		c := tls.Client(rc, cc)
		fmt.Fprint(c, "hello\nbye\n")
		r := bufio.NewReader(c)
		for _, want := range []string{"hello\n", "bye\n"} {
			if got, err := r.ReadString('\n'); got != want || err != nil {
				t.Fatalf("got %q, %v; want %q", got, err, want)
			}
		}
		if _, err := r.ReadByte(); err != io.EOF {
			t.Fatalf("after the server's CloseWrite: %v, want EOF", err)
		}
		if last := rc.last(); last != 21 { // alert
			t.Fatalf("the last record before EOF had type %d, want an alert (21): close_notify", last)
		}
		// Our write half is still open and the server still reads.
		fmt.Fprint(c, "after\n")
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		raw.(*net.TCPConn).CloseWrite()
		if err := rec.waitClose(t); err != nil {
			t.Fatalf("OnClose: %v", err)
		}
		if got := rec.messages(); got != "hello,bye,after" {
			t.Fatalf("server received %q", got)
		}
	})
}

// halfCloser echoes each line, half-closes after "bye", and records
// what it received.
type halfCloser struct {
	*closeRecorder
	mu   sync.Mutex
	msgs []string
}

func (h *halfCloser) OnMessage(c switchboard.Conn, msg []byte) {
	h.mu.Lock()
	h.msgs = append(h.msgs, string(msg))
	h.mu.Unlock()
	if string(msg) == "after" {
		return // our write half is shut
	}
	c.Write(msg)
	if string(msg) == "bye" {
		c.CloseWrite()
	}
}

func (h *halfCloser) messages() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.msgs, ",")
}

// TestTLSProxyProtocol: the PROXY header comes in the clear, TLS after it,
// in the same segment or not.
func TestTLSProxyProtocol(t *testing.T) {
	forEachModel(t, func(t *testing.T, model string) {
		_, addr, _ := startTLS(t, model, addrEcho{}, testCerts().ServerConfig(),
			switchboard.WithProxyProtocol(true), switchboard.WithFraming("line", 0))
		for _, together := range []bool{false, true} {
			raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			hdr := []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4242 8888\r\n")
			var conn net.Conn = raw
			if together {
				conn = &prefixWriter{Conn: raw, pre: hdr}
			} else {
				raw.Write(hdr)
			}
			c := tls.Client(conn, testCerts().ClientConfig())
			fmt.Fprint(c, "hi\n")
			got, err := bufio.NewReader(c).ReadString('\n')
			if want := "203.0.113.7:4242 hi\n"; got != want || err != nil {
				t.Fatalf("together=%v: got %q, %v; want %q", together, got, err, want)
			}
			raw.Close()
		}
		// A bad header is refused before any TLS.
		bad, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer bad.Close()
		bad.Write([]byte("\x16\x03\x01"))
		expectClosed(t, bad)
	})
}

// prefixWriter sends pre in the same write as the first bytes written.
type prefixWriter struct {
	net.Conn
	pre []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if p.pre != nil {
		buf := append(p.pre, b...)
		p.pre = nil
		if _, err := p.Conn.Write(buf); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return p.Conn.Write(b)
}

func TestWithTLSRefusesBadConfig(t *testing.T) {
	if _, err := switchboard.NewServer(echo, switchboard.WithTLS(nil)); err == nil {
		t.Error("WithTLS(nil) accepted")
	}
	if _, err := switchboard.NewServer(echo, switchboard.WithTLS(&tls.Config{})); err == nil {
		t.Error("a TLS config without a certificate accepted")
	}
	if _, err := switchboard.NewServer(echo, switchboard.WithHandshakeTimeout(0)); err == nil {
		t.Error("a zero handshake timeout accepted")
	}
	if _, err := switchboard.NewServer(echo, switchboard.WithMaxHandshakes(0)); err == nil {
		t.Error("zero handshake slots accepted")
	}
	if !errors.Is(fmt.Errorf("x: %w", switchboard.ErrHandshake), switchboard.ErrHandshake) {
		t.Error("ErrHandshake does not match itself")
	}
}
