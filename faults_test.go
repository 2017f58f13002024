package switchboard_test

// Faults on the path between client and server, injected by
// internal/faultproxy, over every model: connections that survive lose and
// reorder nothing; faulted ones are closed for the right reason by the
// right mechanism; and afterwards the server holds no more connections,
// descriptors, goroutines or heap than before.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchboard"
	"switchboard/framing"
	"switchboard/internal/faultproxy"
)

// faultIdle is the server's idle timeout in these tests: what ends a
// connection blackholed between frames. faultFrame, shorter, ends one
// blackholed in the middle of a frame.
const (
	faultIdle  = 2 * time.Second
	faultFrame = 1200 * time.Millisecond
)

// namedCloses records each connection's close reason under the name its
// first message gave it, and echoes everything.
type namedCloses struct {
	mu     sync.Mutex
	reason map[string]error
	closed chan string
}

func newNamedCloses() *namedCloses {
	return &namedCloses{reason: make(map[string]error), closed: make(chan string, 64)}
}

func (h *namedCloses) OnOpen(switchboard.Conn) {}

func (h *namedCloses) OnMessage(c switchboard.Conn, msg []byte) {
	if c.Value() == nil {
		c.SetValue(string(msg))
	}
	c.Write(msg)
}

func (h *namedCloses) OnClose(c switchboard.Conn, err error) {
	name, _ := c.Value().(string)
	h.mu.Lock()
	h.reason[name] = err
	h.mu.Unlock()
	h.closed <- name
}

// await waits for name's OnClose and returns when it came and its reason.
func (h *namedCloses) await(t *testing.T, name string) (time.Time, error) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		h.mu.Lock()
		err, ok := h.reason[name]
		h.mu.Unlock()
		if ok {
			return time.Now(), err
		}
		select {
		case <-h.closed:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s: no OnClose within 10s", name)
		}
	}
}

// faultCase is one connection through a proxy with one fault.
type faultCase struct {
	name  string
	fault faultproxy.Fault
	// run drives one connection through the case's proxy and checks what
	// became of it.
	run func(t *testing.T, h *namedCloses, p *faultproxy.Proxy, name string)
	// timed cases go to the server with the short idle and frame
	// timeouts; the others to one with the defaults, so that a busy CI
	// machine cannot make a slow survivor look like a slowloris.
	timed bool
}

var faultCodec, _ = framing.Parse("len:4", 64<<10)

func frameOf(t *testing.T, msg []byte) []byte {
	t.Helper()
	w, err := faultCodec.Append(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// survive sends numbered frames of random sizes through the proxy,
// half-closes, and checks that every echo comes back whole and in order
// and that the server saw an orderly close.
func survive(frames, maxLen int) func(*testing.T, *namedCloses, *faultproxy.Proxy, string) {
	return func(t *testing.T, h *namedCloses, p *faultproxy.Proxy, name string) {
		r := rand.New(rand.NewPCG(uint64(len(name)), uint64(frames)))
		msgs := [][]byte{[]byte(name)}
		for i := 1; i < frames; i++ {
			msgs = append(msgs, fmt.Appendf(nil, "%s #%d %s", name, i, randText(r, r.IntN(maxLen))))
		}
		var wire []byte
		for _, m := range msgs {
			wire = append(wire, frameOf(t, m)...)
		}
		c := dialProxy(t, p)
		go func() {
			writeSplit(c, wire, r)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%s: read after %d bytes: %v", name, len(got), err)
		}
		for i, want := range msgs {
			frame, n, err := faultCodec.Decode(got, true)
			if err != nil || n == 0 {
				t.Fatalf("%s: echo %d of %d missing (n=%d, err=%v)", name, i, len(msgs), n, err)
			}
			if !bytes.Equal(frame, want) {
				t.Fatalf("%s: echo %d = %.40q, want %.40q: lost or reordered", name, i, frame, want)
			}
			got = got[n:]
		}
		if len(got) != 0 {
			t.Fatalf("%s: %d bytes after the last echo", name, len(got))
		}
		if _, err := h.await(t, name); err != nil {
			t.Fatalf("%s: OnClose(%v), want an orderly close", name, err)
		}
	}
}

func dialProxy(t *testing.T, p *faultproxy.Proxy) net.Conn {
	t.Helper()
	c, err := p.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// hello sends the naming frame and waits for its echo, so the server knows
// the connection's name before any fault.
func hello(t *testing.T, c net.Conn, name string) int {
	t.Helper()
	f := frameOf(t, []byte(name))
	if _, err := c.Write(f); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(f))); err != nil {
		t.Fatalf("%s: naming echo: %v", name, err)
	}
	return len(f)
}

// faultCases: four that must survive, three that must not.
var faultCases = []faultCase{
	{"Latency", faultproxy.Fault{Latency: 5 * time.Millisecond}, survive(200, 2000), false},
	{"OneByteSegments", faultproxy.Fault{Segment: 1}, survive(40, 100), false},
	{"Bandwidth", faultproxy.Fault{BytesPerSecond: 512 << 10}, survive(100, 1000), false},
	{"LatencySegmentsBandwidth", faultproxy.Fault{Latency: 2 * time.Millisecond, Segment: 7, BytesPerSecond: 256 << 10}, survive(30, 300), false},
	{"ResetMidFrame", faultproxy.Fault{}, runReset, false},
	{"Blackhole", faultproxy.Fault{}, runBlackhole, true},
	{"BlackholeMidFrame", faultproxy.Fault{}, runBlackholeMidFrame, true},
}

// runReset names the connection, then starts a 1000-byte frame and has the
// proxy reset both sides half way through it.
func runReset(t *testing.T, h *namedCloses, p *faultproxy.Proxy, name string) {
	p.SetFault(faultproxy.Fault{ResetAfter: len(frameOf(t, []byte(name))) + 4 + 500})
	c := dialProxy(t, p)
	hello(t, c, name)
	c.Write(frameOf(t, bytes.Repeat([]byte("r"), 1000)))
	_, err := h.await(t, name)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: OnClose(%v), want the peer's reset (ECONNRESET)", name, err)
	}
}

// runBlackhole names the connection, sends two more frames and has the
// proxy swallow everything after them: the server must close it with its
// idle timeout, not sooner and not never.
func runBlackhole(t *testing.T, h *namedCloses, p *faultproxy.Proxy, name string) {
	two := append(frameOf(t, []byte("one")), frameOf(t, []byte("two"))...)
	p.SetFault(faultproxy.Fault{BlackholeAfter: len(frameOf(t, []byte(name))) + len(two)})
	c := dialProxy(t, p)
	hello(t, c, name)
	c.Write(two)
	cut := time.Now()
	at, err := h.await(t, name)
	if !errors.Is(err, switchboard.ErrIdleTimeout) {
		t.Fatalf("%s: OnClose(%v), want ErrIdleTimeout", name, err)
	}
	// Not sooner than the timeout after the last byte (which the server
	// may have read a while before cut, on a busy machine), not much later.
	if waited := at.Sub(cut); waited > faultIdle+3*time.Second {
		t.Fatalf("%s: closed %v after the peer vanished, idle timeout %v", name, waited, faultIdle)
	}
	// Nothing came back through the hole, and nothing closed on our side.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: client read %d, %v through the blackhole", name, n, err)
	}
}

// runBlackholeMidFrame has the peer vanish after half a frame: the frame
// timeout, shorter than the idle timeout, must end it.
func runBlackholeMidFrame(t *testing.T, h *namedCloses, p *faultproxy.Proxy, name string) {
	half := frameOf(t, bytes.Repeat([]byte("h"), 200))[:104]
	p.SetFault(faultproxy.Fault{BlackholeAfter: len(frameOf(t, []byte(name))) + len(half)})
	c := dialProxy(t, p)
	hello(t, c, name)
	c.Write(half)
	cut := time.Now()
	at, err := h.await(t, name)
	if !errors.Is(err, switchboard.ErrFrameTimeout) {
		t.Fatalf("%s: OnClose(%v), want ErrFrameTimeout", name, err)
	}
	if waited := at.Sub(cut); waited > faultFrame+3*time.Second {
		t.Fatalf("%s: closed %v after the peer vanished mid-frame, frame timeout %v", name, waited, faultFrame)
	}
}

// footprint is what a server holds that a test can see from inside the
// process.
type footprint struct {
	fds, goroutines int
	heap            uint64
}

func (f footprint) String() string {
	return fmt.Sprintf("%d fds, %d goroutines, %d KiB heap", f.fds, f.goroutines, f.heap>>10)
}

// measure returns the process's open descriptors (-1 without /proc),
// goroutines and live heap after a collection.
func measure() footprint {
	fds := -1
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(ents) - 1 // the directory being read
	}
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return footprint{fds: fds, goroutines: runtime.NumGoroutine(), heap: s[0].Value.Uint64()}
}

// backToBaseline waits until the footprint is no larger than base (heap
// within slack), or fails with both.
func backToBaseline(t *testing.T, base footprint, heapSlack uint64) footprint {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := measure()
		if now.fds <= base.fds && now.goroutines <= base.goroutines && now.heap <= base.heap+heapSlack {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the faults: %v; before: %v (heap slack %d KiB)", now, base, heapSlack>>10)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFaults(t *testing.T) {
	for _, model := range switchboard.Models() {
		t.Run(model, func(t *testing.T) { testFaults(t, model) })
	}
}

func testFaults(t *testing.T, model string) {
	h := newNamedCloses()
	calm, calmAddr := start(t, model, h, switchboard.WithCodec(faultCodec))
	strict, strictAddr := start(t, model, h, switchboard.WithCodec(faultCodec),
		switchboard.WithIdleTimeout(faultIdle), switchboard.WithFrameTimeout(faultFrame))
	// A round trip first, so buffers, pools and the runtime poller exist
	// before the baseline.
	for i, addr := range []string{calmAddr, strictAddr} {
		name := fmt.Sprint("warm-up ", i)
		warm := dial(t, addr)
		warm.Write(frameOf(t, []byte(name)))
		io.ReadFull(warm, make([]byte, len(frameOf(t, []byte(name)))))
		warm.Close()
		h.await(t, name)
	}
	waitFor(t, "the warm-up connections to go", func() bool { return calm.Stats().Active+strict.Stats().Active == 0 })
	base := measure()
	calmBefore, strictBefore := calm.Stats(), strict.Stats()

	proxies := make([]*faultproxy.Proxy, len(faultCases))
	for i, fc := range faultCases {
		addr := calmAddr
		if fc.timed {
			addr = strictAddr
		}
		p, err := faultproxy.New(addr, fc.fault)
		if err != nil {
			t.Fatal(err)
		}
		proxies[i] = p
	}
	runCase := func(i int) {
		fc := faultCases[i]
		t.Run(fc.name, func(t *testing.T) {
			fc.run(t, h, proxies[i], model+"/"+fc.name)
		})
	}
	if model == switchboard.ModelBlocking {
		// One connection at a time by design: the cases take turns.
		for i := range faultCases {
			runCase(i)
		}
	} else {
		// Together, so a fault on one connection meets live traffic on the
		// others.
		var wg sync.WaitGroup
		for i := range faultCases {
			wg.Add(1)
			go func() { defer wg.Done(); runCase(i) }()
		}
		wg.Wait()
	}
	for _, p := range proxies {
		p.Close()
	}
	if t.Failed() {
		return
	}
	waitFor(t, "no open connections", func() bool { return calm.Stats().Active+strict.Stats().Active == 0 })
	calmAfter, strictAfter := calm.Stats(), strict.Stats()
	if got := strictAfter.Timeouts - strictBefore.Timeouts; got != 2 {
		t.Errorf("%d timeouts counted, want 2 (the blackholes)", got)
	}
	if got := calmAfter.Timeouts - calmBefore.Timeouts; got != 0 {
		t.Errorf("%d timeouts on the server without short timeouts", got)
	}
	accepted := calmAfter.Accepted - calmBefore.Accepted + strictAfter.Accepted - strictBefore.Accepted
	if accepted != int64(len(faultCases)) {
		t.Errorf("%d connections accepted, want %d", accepted, len(faultCases))
	}
	now := backToBaseline(t, base, 1<<20)
	t.Logf("before: %v; after: %v", base, now)
	if base.fds < 0 && !strings.HasPrefix(runtime.GOOS, "linux") {
		t.Log("no /proc: descriptors not compared")
	}
}
