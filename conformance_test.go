package switchboard_test

// The conformance suite: one table of behaviours, run against every model
// this build registers. A new model proves itself by passing it unchanged.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard"
	"switchboard/framing"
	"switchboard/internal/testserver"
	"switchboard/service"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// conformanceCases is the suite. Each case gets a model name and starts
// its own servers.
var conformanceCases = []struct {
	name string
	run  func(t *testing.T, model string)
	// concurrent cases need more than one connection served at a time,
	// which the iterative blocking model by design does not do.
	concurrent bool
}{
	{"StreamManyConns", testStreamManyConns, false},
	{"Framings", testFramings, false},
	{"HalfCloseEOF", testHalfCloseEOF, false},
	{"OversizedFrameClosesOnlyItsConn", testOversizedFrame, true},
	{"MalformedFrame", testMalformedFrame, false},
	{"SlowReaderBoundedMemory", testSlowReader, false},
	{"IdleTimeout", testIdleTimeout, false},
	{"MaxConns", testMaxConns, true},
	{"GracefulShutdown", testGracefulShutdown, false},
	{"CloseIsImmediate", testClose, false},
	{"ChatFanOut", testChatFanOut, true},
	{"HelloHTTP", testHelloHTTP, false},
	{"UnixSocket", testUnixSocket, false},
	{"IPv6", testIPv6, false},
	{"HandlerEvents", testHandlerEvents, false},
	{"WriteTimeout", testWriteTimeout, false},
	{"PeerReset", testPeerReset, false},
	{"ProxyProtocol", testProxyProtocol, false},
	{"ProxyHeaderTimeout", testProxyHeaderTimeout, false},
	{"ReusePort", testReusePort, false},
	{"ShutdownRacesServe", testShutdownRacesServe, false},
	{"FrameTimeout", testFrameTimeoutCase, false},
	{"HelloFrameTimeout", testHelloFrameTimeout, false},
	{"MaxConnsPerIP", testMaxConnsPerIP, true},
	{"PanicInOnOpen", testPanicIn("OnOpen"), false},
	{"PanicInOnMessage", testPanicIn("OnMessage"), false},
	{"PanicInOnClose", testPanicIn("OnClose"), false},
	{"DistrustedCodec", testDistrustedCodec, false},
	{"ConnLog", testConnLog, false},
	{"AsyncReplyAfterFIN", testAsyncReplyAfterFIN, false},
	{"ConnDeadline", testConnDeadline, false},
	{"Tick", testTick, false},
	{"ShutdownNotice", testShutdownNotice, false},
	{"CodecSwitch", testCodecSwitch, false},
	{"ConnContextStats", testConnContextStats, false},
}

func TestConformance(t *testing.T) {
	var variants []string
	for _, model := range switchboard.Models() {
		variants = append(variants, model)
		if info, _ := switchboard.LookupModel(model); info.TLS {
			variants = append(variants, model+tlsSuffix)
		}
	}
	for _, model := range variants {
		t.Run(model, func(t *testing.T) {
			for _, tc := range conformanceCases {
				t.Run(tc.name, func(t *testing.T) {
					if name, _ := splitModel(model); tc.concurrent && name == switchboard.ModelBlocking {
						t.Skip("blocking serves one connection at a time by design")
					}
					if why, ok := tlsSkipReason(model, tc.name); ok {
						t.Skip(why)
					}
					tc.run(t, model)
				})
			}
		})
	}
}

// echo writes every message back.
var echo = switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write(msg) })

// start runs a server on 127.0.0.1:0 and shuts it down at the end of the
// test, checking that Serve returned ErrServerClosed.
func start(t *testing.T, model string, h switchboard.Handler, opts ...switchboard.Option) (*switchboard.Server, string) {
	t.Helper()
	return startOn(t, "127.0.0.1:0", model, h, opts...)
}

func startOn(t *testing.T, addr, model string, h switchboard.Handler, opts ...switchboard.Option) (*switchboard.Server, string) {
	t.Helper()
	a, srv := testserver.Start(t, addr, h, append(modelOptions(model), opts...)...)
	markTLS(t, model, a)
	return srv, a
}

// launch starts a server whose lifecycle the test manages itself; served
// receives Serve's result.
func launch(t *testing.T, model string, h switchboard.Handler) (*switchboard.Server, string, chan error) {
	t.Helper()
	srv, err := switchboard.NewServer(h, modelOptions(model)...)
	if err != nil {
		t.Fatal(err)
	}
	lns, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lns...) }()
	markTLS(t, model, lns[0].Addr().String())
	return srv, lns[0].Addr().String(), served
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := dialConn(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := handshake(addr, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialRaw connects over plain TCP whatever addr's server speaks.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// writeSplit writes b in random pieces, down to one byte.
func writeSplit(w io.Writer, b []byte, r *rand.Rand) error {
	for len(b) > 0 {
		n := 1 + r.IntN(min(len(b), 1+r.IntN(4096)))
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func testStreamManyConns(t *testing.T, model string) {
	_, addr := start(t, model, echo)
	const conns = 200
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- streamOnce(addr, uint64(i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// streamOnce sends random data in random chunks, half-closes, and checks
// that the echo hashes the same.
func streamOnce(addr string, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 42))
	data := make([]byte, 8<<10+r.IntN(56<<10))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	c, err := dialConn(addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		err := writeSplit(c, data, r)
		if err == nil {
			err = closeWrite(c)
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("conn %d: read after %d bytes: %w", seed, n, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("conn %d: write: %w", seed, err)
	}
	if want := sha256.Sum256(data); n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("conn %d: echoed %d bytes with a different hash, sent %d", seed, n, len(data))
	}
	return nil
}

// framingCases generates valid messages for each spec.
var framingCases = []struct {
	spec string
	gen  func(r *rand.Rand) []byte
}{
	{"line", func(r *rand.Rand) []byte { return randText(r, r.IntN(300)) }},
	{"delim:0d0a0d0a", func(r *rand.Rand) []byte { return randText(r, r.IntN(300)) }},
	{"delim:00", func(r *rand.Rand) []byte { return randText(r, 1+r.IntN(300)) }},
	{"fixed:7", func(r *rand.Rand) []byte { return randBytes(r, 7) }},
	{"len:1", func(r *rand.Rand) []byte { return randBytes(r, r.IntN(256)) }},
	{"len:2", func(r *rand.Rand) []byte { return randBytes(r, r.IntN(3000)) }},
	{"len:4", func(r *rand.Rand) []byte { return randBytes(r, r.IntN(5000)) }},
	{"len:4le", func(r *rand.Rand) []byte { return randBytes(r, r.IntN(5000)) }},
	{"len:8", func(r *rand.Rand) []byte { return randBytes(r, r.IntN(5000)) }},
	{"digits:5", func(r *rand.Rand) []byte { return randBytes(r, r.IntN(2000)) }},
	{"typed:a=3,b=10,z=0", func(r *rand.Rand) []byte {
		t := "abz"[r.IntN(3)]
		n := map[byte]int{'a': 3, 'b': 10, 'z': 0}[t]
		return append([]byte{t}, randBytes(r, n)...)
	}},
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// randText has no control characters, so it holds no delimiter.
func randText(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(' ' + r.IntN(95))
	}
	return b
}

func testFramings(t *testing.T, model string) {
	for _, fc := range framingCases {
		t.Run(fc.spec, func(t *testing.T) {
			codec, err := framing.Parse(fc.spec, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, addr := start(t, model, echo, switchboard.WithCodec(codec))
			r := rand.New(rand.NewPCG(7, uint64(len(fc.spec))))
			var msgs [][]byte
			var wire []byte
			for range 200 {
				m := fc.gen(r)
				msgs = append(msgs, m)
				if wire, err = codec.Append(wire, m); err != nil {
					t.Fatal(err)
				}
			}
			c := dial(t, addr)
			go func() {
				writeSplit(c, wire, r)
				closeWrite(c)
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range msgs {
				frame, n, err := codec.Decode(got, true)
				if err != nil || n == 0 {
					t.Fatalf("reply %d of %d: n=%d err=%v", i, len(msgs), n, err)
				}
				if !bytes.Equal(frame, want) {
					t.Fatalf("reply %d = %q, want %q", i, frame, want)
				}
				got = got[n:]
			}
			if len(got) != 0 {
				t.Fatalf("%d bytes after the last reply", len(got))
			}
		})
	}
}

func testHalfCloseEOF(t *testing.T, model string) {
	// The eof codec: one message, ended by the client's shutdown(SHUT_WR);
	// the reply comes back and then the server closes.
	var got atomic.Int64
	h := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		got.Add(1)
		c.Write(bytes.ToUpper(msg))
	})
	_, addr := start(t, model, h, switchboard.WithFraming("eof", 1<<20))
	c := dial(t, addr)
	r := rand.New(rand.NewPCG(1, 2))
	msg := randText(r, 200<<10)
	go func() {
		writeSplit(c, msg, r)
		closeWrite(c)
	}()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reply, bytes.ToUpper(msg)) {
		t.Fatalf("reply of %d bytes differs from the %d sent", len(reply), len(msg))
	}
	if got.Load() != 1 {
		t.Fatalf("handler saw %d messages, want 1", got.Load())
	}
}

// closeRecorder remembers each connection's close reason.
type closeRecorder struct {
	switchboard.BaseHandler
	mu   sync.Mutex
	errs []error
	done chan struct{}
}

func newCloseRecorder() *closeRecorder { return &closeRecorder{done: make(chan struct{}, 100)} }

func (h *closeRecorder) OnMessage(c switchboard.Conn, msg []byte) { c.Write(msg) }

func (h *closeRecorder) OnClose(c switchboard.Conn, err error) {
	h.mu.Lock()
	h.errs = append(h.errs, err)
	h.mu.Unlock()
	h.done <- struct{}{}
}

func (h *closeRecorder) waitClose(t *testing.T) error {
	t.Helper()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnClose within 10s")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errs[len(h.errs)-1]
}

// expectClosed reads until the server closes c (EOF or reset).
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("expected the server to close the connection, got %v", err)
	}
}

func testOversizedFrame(t *testing.T, model string) {
	rec := newCloseRecorder()
	srv, addr := start(t, model, rec, switchboard.WithFraming("len:4", 1024))
	good := dial(t, addr)
	bad := dial(t, addr)
	// Announce 1 GiB: the server must refuse at the header, allocating
	// nothing for the body.
	bad.Write([]byte{0x40, 0, 0, 0, 'x'})
	expectClosed(t, bad)
	if err := rec.waitClose(t); !errors.Is(err, framing.ErrFrameTooLarge) {
		t.Fatalf("OnClose err = %v, want ErrFrameTooLarge", err)
	}
	// The other connection is untouched.
	codec, _ := framing.Parse("len:4", 1024)
	msg, _ := codec.Append(nil, []byte("still here"))
	if _, err := good.Write(msg); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, len(msg))
	if _, err := io.ReadFull(good, reply); err != nil || !bytes.Equal(reply, msg) {
		t.Fatalf("good conn: %q, %v", reply, err)
	}
	waitFor(t, "one protocol error", func() bool { return srv.Stats().ProtocolErrors == 1 })
}

func testMalformedFrame(t *testing.T, model string) {
	rec := newCloseRecorder()
	_, addr := start(t, model, rec, switchboard.WithFraming("digits:4", 0))
	c := dial(t, addr)
	c.Write([]byte("00x1abc"))
	expectClosed(t, c)
	if err := rec.waitClose(t); !errors.Is(err, framing.ErrMalformed) {
		t.Fatalf("OnClose err = %v, want ErrMalformed", err)
	}
}

func testSlowReader(t *testing.T, model string) {
	const maxPending = 64 << 10
	srv, addr := start(t, model, echo, switchboard.WithMaxPending(maxPending), switchboard.WithFraming("len:4", 16<<10))
	codec, _ := framing.Parse("len:4", 16<<10)
	r := rand.New(rand.NewPCG(3, 4))
	var wire []byte
	for wire == nil || len(wire) < 16<<20 {
		wire, _ = codec.Append(wire, randBytes(r, 1+r.IntN(16<<10)))
	}
	c := dial(t, addr)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(wire)
		werr <- err
	}()
	// Read nothing until the server has stopped reading: its backlog
	// (read minus written) must stay under the hard limit while the
	// kernel buffers and TCP flow control hold the rest.
	limit := int64(maxPending + max(maxPending, 16<<10+4+64<<10))
	var last int64 = -1
	for range 100 {
		time.Sleep(20 * time.Millisecond)
		st := srv.Stats()
		if backlog := st.BytesIn - st.BytesOut; backlog > limit {
			t.Fatalf("server holds %d bytes of output for a peer that does not read, limit %d", backlog, limit)
		}
		if st.BytesIn == last {
			break // reading has paused
		}
		last = st.BytesIn
	}
	if last >= int64(len(wire)) {
		t.Fatalf("server read all %d bytes without the client reading: no backpressure", last)
	}
	got := make([]byte, len(wire))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wire) {
		t.Fatal("echo differs after the slow reader caught up")
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

func testIdleTimeout(t *testing.T, model string) {
	rec := newCloseRecorder()
	srv, addr := start(t, model, rec, switchboard.WithIdleTimeout(200*time.Millisecond))
	c := dial(t, addr)
	began := time.Now()
	expectClosed(t, c)
	if waited := time.Since(began); waited > 5*time.Second {
		t.Fatalf("idle connection closed after %v", waited)
	}
	if err := rec.waitClose(t); !errors.Is(err, switchboard.ErrIdleTimeout) {
		t.Fatalf("OnClose err = %v, want ErrIdleTimeout", err)
	}
	waitFor(t, "one timeout", func() bool { return srv.Stats().Timeouts == 1 })
	// An active connection is not idle: its own server, whose timeout
	// leaves room for a loaded machine's scheduling delays, and activity
	// that lasts longer than the timeout in all.
	_, addr2 := start(t, model, echo, switchboard.WithIdleTimeout(time.Second))
	c2 := dial(t, addr2)
	for range 6 {
		time.Sleep(200 * time.Millisecond)
		c2.Write([]byte("x"))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c2, b); err != nil {
			t.Fatalf("active connection closed: %v", err)
		}
	}
}

func testMaxConns(t *testing.T, model string) {
	srv, addr := start(t, model, echo, switchboard.WithMaxConns(2))
	a, b := dial(t, addr), dial(t, addr)
	for _, c := range []net.Conn{a, b} {
		c.Write([]byte("ok"))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	// The refused connection is closed at once; the reset may even beat
	// the client's connect call.
	if extra, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		defer extra.Close()
		expectClosed(t, extra)
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	waitFor(t, "the refusal to be counted", func() bool { return srv.Stats().Rejected == 1 })
	a.Close()
	// A slot frees up once a connection has gone.
	waitFor(t, "the closed connection to go", func() bool { return srv.Stats().Active <= 1 })
	c := dial(t, addr)
	c.Write([]byte("hi"))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("after a slot freed: %v", err)
	}
}

func testGracefulShutdown(t *testing.T, model string) {
	srv, addr, served := launch(t, model, echo)

	const clients = 8
	type result struct {
		sent, got []byte
		err       error
	}
	results := make(chan result, clients)
	var started sync.WaitGroup
	for i := range clients {
		started.Add(1)
		go func() {
			c, err := dialConn(addr, 10*time.Second)
			if err != nil {
				started.Done()
				results <- result{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			var mu sync.Mutex
			var sent []byte
			stop := make(chan struct{})
			go func() {
				r := rand.New(rand.NewPCG(uint64(i), 9))
				for k := 0; ; k++ {
					chunk := []byte(fmt.Sprintf("client %d chunk %d %s\n", i, k, randText(r, r.IntN(100))))
					mu.Lock()
					sent = append(sent, chunk...)
					mu.Unlock()
					if _, err := c.Write(chunk); err != nil {
						mu.Lock()
						sent = sent[:len(sent)-len(chunk)]
						mu.Unlock()
						return
					}
					if k == 10 {
						started.Done()
					}
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
			got, err := io.ReadAll(c)
			close(stop)
			mu.Lock()
			defer mu.Unlock()
			results <- result{sent: sent, got: got, err: err}
		}()
	}
	started.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	began := time.Now()
	if err := srv.Shutdown(ctx); err != nil && model != switchboard.ModelBlocking {
		t.Errorf("Shutdown: %v", err)
	}
	if took := time.Since(began); took > 4*time.Second {
		t.Errorf("Shutdown took %v, deadline 3s", took)
	}
	if err := <-served; !errors.Is(err, switchboard.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	for range clients {
		r := <-results
		if r.err != nil && !(model == switchboard.ModelBlocking && errors.Is(r.err, syscall.ECONNRESET)) {
			// Only connections never served (waiting in the blocking
			// model's backlog) may see a reset.
			t.Errorf("client: %v", r.err)
		}
		if !bytes.HasPrefix(r.sent, r.got) {
			t.Errorf("client received %d bytes that are not a prefix of the %d it sent", len(r.got), len(r.sent))
		}
	}
	// The server is gone.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("listener still accepting after Shutdown")
	}
}

func testClose(t *testing.T, model string) {
	srv, addr, served := launch(t, model, echo)
	c := dial(t, addr)
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	began := time.Now()
	srv.Close()
	if err := <-served; !errors.Is(err, switchboard.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	expectClosed(t, c)
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Close took %v", took)
	}
	// Serving again on a closed server is refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := srv.Serve(ln); !errors.Is(err, switchboard.ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func testChatFanOut(t *testing.T, model string) {
	svc, err := service.Lookup("chat")
	if err != nil {
		t.Fatal(err)
	}
	const members = 5
	h := openSignal{svc.New(), make(chan struct{}, members)}
	_, addr := start(t, model, h, switchboard.WithFraming("line", 0))
	conns := make([]net.Conn, members)
	for i := range conns {
		conns[i] = dial(t, addr)
	}
	// A line sent before every member has joined would not reach them all.
	for range members {
		select {
		case <-h.opened:
		case <-time.After(10 * time.Second):
			t.Fatal("members did not all join")
		}
	}
	for i, c := range conns {
		fmt.Fprintf(c, "hello from %d\n", i)
	}
	for i, c := range conns {
		got := make(map[string]bool)
		buf := make([]byte, 0, 256)
		one := make([]byte, 1)
		for len(got) < members-1 {
			if _, err := c.Read(one); err != nil {
				t.Fatalf("member %d after %v: %v", i, got, err)
			}
			if one[0] == '\n' {
				got[string(buf)] = true
				buf = buf[:0]
				continue
			}
			buf = append(buf, one[0])
		}
		for j := range members {
			if line := fmt.Sprintf("hello from %d", j); got[line] != (j != i) {
				t.Errorf("member %d: received %q = %v", i, line, got[line])
			}
		}
	}
}

// openSignal reports each OnOpen after the wrapped handler has seen it.
type openSignal struct {
	switchboard.Handler
	opened chan struct{}
}

func (o openSignal) OnOpen(c switchboard.Conn) {
	o.Handler.OnOpen(c)
	o.opened <- struct{}{}
}

func testHelloHTTP(t *testing.T, model string) {
	svc, err := service.Lookup("hello")
	if err != nil {
		t.Fatal(err)
	}
	_, addr := start(t, model, svc.New())
	tr, scheme := httpTransport(addr)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 20 {
		resp, err := client.Get(scheme + addr + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "Hello, world!" {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, body, err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("Content-Type %q", ct)
		}
	}
}

func testUnixSocket(t *testing.T, model string) {
	path := filepath.Join(t.TempDir(), "sb.sock")
	// A stale socket file from a dead server must not stop us.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	_, addr := startOn(t, "unix:"+path, model, echo)
	c := dial(t, addr)
	c.Write([]byte("over unix"))
	closeWrite(c)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "over unix" {
		t.Fatalf("%q %v", got, err)
	}
}

func testIPv6(t *testing.T, model string) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	_, addr := startOn(t, "[::1]:0", model, echo)
	if err := streamOnce(addr, 99); err != nil {
		t.Fatal(err)
	}
}

// eventRecorder checks the order of handler events and the Conn surface.
type eventRecorder struct {
	mu     sync.Mutex
	events []string
	closed chan struct{}
}

func (h *eventRecorder) add(e string) {
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

func (h *eventRecorder) OnOpen(c switchboard.Conn) {
	c.SetValue("state")
	h.add("open")
	c.Write([]byte("welcome"))
}

func (h *eventRecorder) OnMessage(c switchboard.Conn, msg []byte) {
	h.add("msg:" + string(msg) + ":" + fmt.Sprint(c.Value()))
	if string(msg) == "bye" {
		c.Write([]byte("bye"))
		c.CloseWrite()
	}
}

func (h *eventRecorder) OnClose(c switchboard.Conn, err error) {
	h.add(fmt.Sprintf("close:%v", err))
	if c.Write([]byte("late")) == nil {
		h.add("write after close succeeded")
	}
	close(h.closed)
}

func testHandlerEvents(t *testing.T, model string) {
	h := &eventRecorder{closed: make(chan struct{})}
	_, addr := start(t, model, h, switchboard.WithFraming("line", 0))
	c := dial(t, addr)
	if c.LocalAddr().String() == "" {
		t.Fatal("no local address")
	}
	c.Write([]byte("one\nbye\n"))
	got, err := io.ReadAll(c) // the server's CloseWrite ends this
	if err != nil || string(got) != "welcome\nbye\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	c.Close()
	select {
	case <-h.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnClose")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	want := []string{"open", "msg:one:state", "msg:bye:state", "close:<nil>"}
	if fmt.Sprint(h.events) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", h.events, want)
	}
}

// amplifier answers each message four times over, so what it owes a peer
// that does not read outgrows every kernel buffer on the way.
type amplifier struct{ *closeRecorder }

func (a amplifier) OnMessage(c switchboard.Conn, msg []byte) {
	for range 4 {
		c.Write(msg)
	}
}

func testWriteTimeout(t *testing.T, model string) {
	rec := newCloseRecorder()
	srv, addr := start(t, model, amplifier{rec},
		switchboard.WithWriteTimeout(300*time.Millisecond), switchboard.WithMaxPending(64<<10))
	c := dial(t, addr)
	tcpConn(c).SetReadBuffer(4 << 10)
	go c.Write(make([]byte, 64<<20)) // and never read
	select {
	case <-rec.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("no close within 10s; server stats %+v", srv.Stats())
	}
	rec.mu.Lock()
	err := rec.errs[0]
	rec.mu.Unlock()
	if !errors.Is(err, switchboard.ErrWriteTimeout) {
		t.Fatalf("OnClose err = %v, want ErrWriteTimeout", err)
	}
	waitFor(t, "one timeout", func() bool { return srv.Stats().Timeouts == 1 })
}

func testPeerReset(t *testing.T, model string) {
	rec := newCloseRecorder()
	srv, addr := start(t, model, rec)
	c := dial(t, addr)
	c.Write([]byte("ping"))
	io.ReadFull(c, make([]byte, 4))
	// Vanish with a reset instead of a FIN.
	tcpConn(c).SetLinger(0)
	c.Close()
	rec.waitClose(t)
	waitFor(t, "no active connections after the peer reset", func() bool { return srv.Stats().Active == 0 })
	// The server carries on.
	if err := streamOnce(addr, 5); err != nil {
		t.Fatal(err)
	}
}

// addrEcho replies with the remote address the server sees.
type addrEcho struct{ switchboard.BaseHandler }

func (addrEcho) OnMessage(c switchboard.Conn, msg []byte) {
	c.Write([]byte(c.RemoteAddr().String() + " " + string(msg)))
}

func testProxyProtocol(t *testing.T, model string) {
	srv, addr := start(t, model, addrEcho{}, switchboard.WithProxyProtocol(true), switchboard.WithFraming("line", 0))
	// The header and the first message (or the ClientHello) share a
	// segment.
	c := dialProxied(t, addr, []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4242 8888\r\n"))
	c.Write([]byte("hello\n"))
	line := make([]byte, len("203.0.113.7:4242 hello\n"))
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "203.0.113.7:4242 hello\n" {
		t.Fatalf("got %q, %v", line, err)
	}
	c.Close() // the blocking model serves one connection at a time
	// v2, binary, IPv6.
	v2 := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24")
	v2 = append(v2, net.ParseIP("2001:db8::1")...)
	v2 = append(v2, net.ParseIP("2001:db8::2")...)
	v2 = append(v2, 0x10, 0x92, 0x22, 0xb8)
	c2 := dialProxied(t, addr, v2)
	c2.Write([]byte("hi\n"))
	want := "[2001:db8::1]:4242 hi\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c2, got); err != nil || string(got) != want {
		t.Fatalf("v2: got %q, %v", got, err)
	}
	c2.Close()
	// No header: refused as a protocol error, other connections unharmed.
	// (In the clear: the header is missing whether or not TLS follows.)
	bad := dialRaw(t, addr)
	bad.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	expectClosed(t, bad)
	waitFor(t, "one protocol error", func() bool { return srv.Stats().ProtocolErrors == 1 })
	c3 := dialProxied(t, addr, []byte("PROXY UNKNOWN\r\n"))
	c3.Write([]byte("again\n"))
	want = c3.LocalAddr().String() + " again\n"
	got = make([]byte, len(want))
	if _, err := io.ReadFull(c3, got); err != nil || string(got) != want {
		t.Fatalf("UNKNOWN keeps the socket's address: got %q, %v", got, err)
	}
}

// testProxyHeaderTimeout: a PROXY header that does not complete is
// refused after the header timeout, which the idle timeout caps on every
// model (10 s otherwise), and counted as a protocol error.
func testProxyHeaderTimeout(t *testing.T, model string) {
	const idle = 300 * time.Millisecond
	srv, addr := start(t, model, echo, switchboard.WithProxyProtocol(true), switchboard.WithIdleTimeout(idle))
	c := dialRaw(t, addr) // the header is in the clear over TLS too
	c.Write([]byte("PROXY TCP4 203.0.113.7"))
	began := time.Now()
	expectClosed(t, c)
	if waited := time.Since(began); waited < idle-50*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("refused after %v, want about the %v idle timeout", waited, idle)
	}
	waitFor(t, "one protocol error", func() bool { return srv.Stats().ProtocolErrors == 1 })
}

// waitFor polls cond for up to five seconds: counters are updated by the
// engine after the peer can already see the effect.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testReusePort(t *testing.T, model string) {
	srv, addr := start(t, model, echo, switchboard.WithReusePort(true))
	errs := make(chan error, 20)
	for i := range cap(errs) {
		go func() { errs <- streamOnce(addr, uint64(100+i)) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := srv.Stats().Accepted; n != int64(cap(errs)) {
		t.Errorf("Accepted = %d over the shared port, want %d", n, cap(errs))
	}
}

// testShutdownRacesServe stops servers at every point of their start-up:
// Serve must return ErrServerClosed and leave nothing running.
func testShutdownRacesServe(t *testing.T, model string) {
	for i := range 30 {
		srv, addr, served := launch(t, model, echo)
		time.Sleep(time.Duration(i%5) * 200 * time.Microsecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		select {
		case err := <-served:
			if !errors.Is(err, switchboard.ErrServerClosed) {
				t.Fatalf("Serve returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Serve did not return after Shutdown", i)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("round %d: listener still open after Shutdown", i)
		}
	}
}
