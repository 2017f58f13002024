package uringengine

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard/internal/engine"
	"switchboard/internal/uring"
)

// The engine's behaviour is tested where every model's is: the
// conformance suite (the root package) and the reactor's engine-level
// cases, which run on this engine too (internal/reactor's
// uring_linux_test.go). These tests cover what only this package has.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions(" no-defer-taskrun, no-bundle,,no-registered-ring ")
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Ring: uring.Options{NoDeferTaskrun: true, NoRegisteredRing: true}, NoBundle: true}
	if o != want {
		t.Fatalf("got %+v, want %+v", o, want)
	}
	if o, err := ParseOptions(""); err != nil || o != (Options{}) {
		t.Fatalf("empty: %+v, %v (every feature is on by default, DEFER_TASKRUN included)", o, err)
	}
	if o, err := ParseOptions("defer-taskrun"); err != nil || o != (Options{}) {
		t.Fatalf("defer-taskrun: %+v, %v", o, err)
	}
	if o, err := ParseOptions("no-defer-taskrun,defer-taskrun"); err != nil || o != (Options{}) {
		t.Fatalf("no-defer-taskrun,defer-taskrun: %+v, %v (the last word wins)", o, err)
	}
	if o, err := ParseOptions("no-buf-inc,buf-size=65536,buf-count=256"); err != nil || o != (Options{NoBufInc: true, BufSize: 65536, BufCount: 256}) {
		t.Fatalf("buffer options: %+v, %v", o, err)
	}
	if size, count := (Options{}).bufDims(true); size != incBufSize || count != incBufCount {
		t.Fatalf("default incremental buffer ring %d x %d", count, size)
	}
	if size, count := (Options{BufCount: 64}).bufDims(false); size != defaultBufSize || count != 64 {
		t.Fatalf("whole-buffer ring with 64 buffers: %d x %d", count, size)
	}
	for _, bad := range []string{"buf-count=1000", "buf-count=0", "buf-size=12", "buf-size=4k", "buf-size=", "turbo=3"} {
		if _, err := ParseOptions(bad); err == nil || !strings.Contains(err.Error(), strings.SplitN(bad, "=", 2)[0]) {
			t.Errorf("%s: %v, want an error naming the option", bad, err)
		}
	}
	_, err = ParseOptions("no-bundle,turbo")
	if err == nil || !strings.Contains(err.Error(), `"turbo"`) || !strings.Contains(err.Error(), "no-sqarray") || !strings.Contains(err.Error(), "buf-size=N") {
		t.Fatalf("unknown option: %v, want an error naming it and the valid ones", err)
	}
}

func TestUserData(t *testing.T) {
	for _, c := range []struct {
		kind      uint64
		gen, slot uint32
	}{{udRecv, 0, 0}, {udSend, 0xffffff, 1<<32 - 1}, {udAccept, 7, 3}, {udWake, 1 << 23, 12345}} {
		k, g, s := splitUserData(userData(c.kind, c.gen, c.slot))
		if k != c.kind || g != c.gen || s != c.slot {
			t.Fatalf("%+v came back as %d %d %d", c, k, g, s)
		}
	}
	// A generation wraps within its 24 bits and still tells a stale
	// completion from a current one.
	k, g, _ := splitUserData(userData(udRecv, 1<<24+5, 9))
	if k != udRecv || g != 5 {
		t.Fatalf("wrapped generation: kind %d gen %d", k, g)
	}
}

type echo struct{}

func (echo) OnOpen(engine.Conn)                {}
func (echo) OnMessage(c engine.Conn, m []byte) { c.Write(m) }
func (echo) OnClose(engine.Conn, error)        {}

// TestFeaturesOff: every SWITCHBOARD_URING_OPTS switch still serves, two
// loops and a cross-loop hand-over included.
func TestFeaturesOff(t *testing.T) {
	if _, err := uring.Available(); err != nil {
		t.Skip(err)
	}
	for _, opts := range []string{"", "defer-taskrun", "no-single-issuer", "no-defer-taskrun", "no-coop-taskrun", "no-submit-all", "no-sqarray", "no-registered-ring", "no-bundle", "no-msg-ring",
		"no-single-issuer,no-coop-taskrun,no-submit-all,no-sqarray,no-registered-ring,no-bundle,no-msg-ring",
		"no-taskrun-flag", "no-buf-inc", "no-bundle,buf-size=4096,buf-count=64", "no-buf-inc,buf-size=16384,buf-count=1024"} {
		t.Run(opts, func(t *testing.T) {
			t.Setenv(OptionsEnv, opts)
			addr := serveTest(t, engine.Config{Loops: 2})
			for i := range 4 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				msg := []byte(strings.Repeat("x", 1+i*5000))
				c.Write(msg)
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
					t.Fatalf("conn %d: %v", i, err)
				}
				c.Close()
			}
		})
	}
}

// serveTest serves echo with cfg on 127.0.0.1 until the test ends, then
// checks that Shutdown drains and Serve returns ErrServerClosed.
func serveTest(t *testing.T, cfg engine.Config) string {
	t.Helper()
	eng, err := New(cfg, echo{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- eng.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; !errors.Is(err, engine.ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	})
	return ln.Addr().String()
}

// TestRefusal: New says why io_uring cannot be used, as one line.
func TestRefusal(t *testing.T) {
	restore := uring.ForceUnavailable("not here")
	defer restore()
	_, err := New(engine.Config{}, echo{})
	if !errors.Is(err, engine.ErrUnsupported) || !errors.Is(err, uring.ErrUnavailable) || !strings.Contains(err.Error(), "not here") {
		t.Fatalf("New = %v", err)
	}
	if err := Check(); !errors.Is(err, uring.ErrUnavailable) {
		t.Fatalf("Check = %v", err)
	}
}
