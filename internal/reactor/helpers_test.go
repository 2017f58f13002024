//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/loopconn"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// funcs is a Handler from optional functions.
type funcs struct {
	open  func(engine.Conn)
	msg   func(engine.Conn, []byte)
	close func(engine.Conn, error)
}

func (h *funcs) OnOpen(c engine.Conn) {
	if h.open != nil {
		h.open(c)
	}
}

func (h *funcs) OnMessage(c engine.Conn, m []byte) {
	if h.msg != nil {
		h.msg(c, m)
	}
}

func (h *funcs) OnClose(c engine.Conn, err error) {
	if h.close != nil {
		h.close(c, err)
	}
}

// echoHandler writes every message back.
type echoHandler struct{}

func (echoHandler) OnOpen(engine.Conn)                {}
func (echoHandler) OnMessage(c engine.Conn, m []byte) { c.Write(m) }
func (echoHandler) OnClose(engine.Conn, error)        {}

// closes records OnClose reasons for a test to wait on.
type closes chan error

func newCloses() closes { return make(closes, 1024) }

func (ch closes) wait(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(within):
		t.Fatalf("no OnClose within %v", within)
		return nil
	}
}

type testServer struct {
	eng    engine.Engine
	addr   string
	stats  *engine.Stats
	served chan error
}

// startServer runs backend on a fresh loopback listener and shuts it down
// when the test ends, checking that Serve returned ErrServerClosed.
func startServer(t testing.TB, backend string, cfg engine.Config, h engine.Handler) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Stats == nil {
		cfg.Stats = new(engine.Stats)
	}
	eng, err := newEngine(backend, cfg, h)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ts := &testServer{eng: eng, addr: ln.Addr().String(), stats: cfg.Stats, served: make(chan error, 1)}
	go func() { ts.served <- eng.Serve(ln) }()
	t.Cleanup(func() { ts.stop(t) })
	if s, ok := eng.(*server); ok {
		waitFor(t, 5*time.Second, "Serve to start", s.Started)
	} else if x := otherEngines[backend]; x.serving != nil {
		waitFor(t, 5*time.Second, "Serve to start", func() bool { return x.serving(eng) })
	}
	return ts
}

// otherEngine is an engine beside the reactor that its engine-level tests
// also run on, so the cases are written once (the io_uring engine, on
// Linux: uring_linux_test.go registers it when the kernel allows it).
type otherEngine struct {
	new     engine.Constructor
	loopOf  func(engine.Conn) int // which loop serves a connection
	pending func(engine.Conn) int // its queued output
	serving func(engine.Engine) bool
	drain   func(engine.Engine, int) bool // drain one loop only
	stopped func(engine.Engine, int) bool // that loop has ended
}

var otherEngines = map[string]otherEngine{}

// newEngine builds backend's engine, the reactor's or another's.
func newEngine(backend string, cfg engine.Config, h engine.Handler) (engine.Engine, error) {
	if x, ok := otherEngines[backend]; ok {
		return x.new(cfg, h)
	}
	return New(backend, cfg, h)
}

// models lists the poller backends and other engines the tests run on.
func models() []string {
	out := Backends()
	for _, n := range []string{"uring"} {
		if _, ok := otherEngines[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// loopOf says which loop serves c, on any engine.
func loopOf(c engine.Conn) int {
	if rc, ok := c.(*conn); ok {
		return rc.L.ID
	}
	for _, x := range otherEngines {
		if id := x.loopOf(c); id >= 0 {
			return id
		}
	}
	panic(fmt.Sprintf("loopOf: unknown connection type %T", c))
}

// pendingBytes reads a connection's queued output the way its loop does.
func pendingBytes(c engine.Conn) int {
	if rc, ok := c.(*conn); ok {
		rc.Mu.Lock()
		defer rc.Mu.Unlock()
		return rc.Out.Len()
	}
	for _, x := range otherEngines {
		if n := x.pending(c); n >= 0 {
			return n
		}
	}
	panic(fmt.Sprintf("pendingBytes: unknown connection type %T", c))
}

// drainLoop drains loop i alone, on any engine, and waits until it has
// ended (it has no connections, so it ends at once).
func drainLoop(t testing.TB, eng engine.Engine, backend string, i int) {
	t.Helper()
	var drain, stopped func(engine.Engine, int) bool
	if s, ok := eng.(*server); ok {
		s.Mu.Lock()
		l := s.loops[i]
		s.Mu.Unlock()
		drain = func(engine.Engine, int) bool { return l.Post(loopconn.Task[connIO]{Kind: loopconn.TaskDrain}) }
		stopped = func(engine.Engine, int) bool { return l.Stopped() }
	} else if x := otherEngines[backend]; x.drain != nil {
		drain, stopped = x.drain, x.stopped
	}
	if drain == nil || !drain(eng, i) {
		t.Fatalf("%s: cannot drain loop %d", backend, i)
	}
	waitFor(t, 5*time.Second, "the drained loop to end", func() bool { return stopped(eng, i) })
}

func (ts *testServer) stop(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.eng.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case err, ok := <-ts.served:
		if ok && !errors.Is(err, engine.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if ok {
			close(ts.served)
		}
	case <-time.After(5 * time.Second):
		t.Error("Serve did not return after Shutdown")
	}
}

// waitFor polls cond every few milliseconds until it holds or within
// passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func mustCodec(t testing.TB, spec string, maxFrame int) framing.Codec {
	t.Helper()
	c, err := framing.Parse(spec, maxFrame)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readFrame reads one len:4 frame.
func readFrame(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(h[0])<<24 | int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

// registry keeps the server side of every open connection, for tests
// that write from outside the loops or inspect a connection.
type registry struct {
	mu    sync.Mutex
	conns []engine.Conn
}

func (r *registry) add(c engine.Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
}

func (r *registry) snapshot() []engine.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]engine.Conn(nil), r.conns...)
}

func (r *registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

func backends(t *testing.T, names ...string) []string {
	have := map[string]bool{}
	for _, n := range models() {
		have[n] = true
	}
	var out []string
	for _, n := range names {
		if have[n] {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		t.Skipf("none of %v on this platform", names)
	}
	return out
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// serveOwn starts an engine whose Shutdown or Close the test calls itself;
// served receives Serve's result.
func serveOwn(t testing.TB, backend string, cfg engine.Config, h engine.Handler) (eng engine.Engine, addr string, served chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eng, err = New(backend, cfg, h)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	served = make(chan error, 1)
	go func() { served <- eng.Serve(ln) }()
	return eng, ln.Addr().String(), served
}
