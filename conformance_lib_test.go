package switchboard_test

// Conformance cases for the protocol-writer's API: replies after the
// peer's FIN, per-connection timers, the server's tick, the shutdown
// notice, codec switches, and per-connection context and counters. They
// are entries of the one table in conformance_test.go.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard"
	"switchboard/framing"
)

// asyncReplier answers each line from another goroutine, after a delay,
// as a handler with a slow back end would. It is a HalfCloser: after the
// peer's FIN it closes the connection (CloseWrite, so the replies go
// first) once the last outstanding reply is written.
type asyncReplier struct {
	switchboard.BaseHandler
	delay  time.Duration
	closes chan error
}

type asyncState struct {
	mu         sync.Mutex
	inflight   int
	peerClosed bool
}

func (h *asyncReplier) OnOpen(c switchboard.Conn) { c.SetValue(new(asyncState)) }

func (h *asyncReplier) OnMessage(c switchboard.Conn, msg []byte) {
	st := c.Value().(*asyncState)
	st.mu.Lock()
	st.inflight++
	st.mu.Unlock()
	reply := append([]byte("reply to "), msg...)
	go func() {
		time.Sleep(h.delay)
		c.Write(reply)
		st.mu.Lock()
		st.inflight--
		done := st.inflight == 0 && st.peerClosed
		st.mu.Unlock()
		if done {
			c.CloseWrite()
		}
	}()
}

func (h *asyncReplier) OnPeerClose(c switchboard.Conn) {
	st := c.Value().(*asyncState)
	st.mu.Lock()
	st.peerClosed = true
	done := st.inflight == 0
	st.mu.Unlock()
	if done {
		c.CloseWrite()
	}
}

func (h *asyncReplier) OnClose(c switchboard.Conn, err error) {
	if h.closes != nil {
		h.closes <- err
	}
}

// sendHalfClose sends msg, shuts down the write half at once (as
// `printf ... | nc -N` does) and returns everything read until EOF.
func sendHalfClose(t *testing.T, addr string, msg string) string {
	t.Helper()
	c := dial(t, addr)
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v (got %q)", err, got)
	}
	return string(got)
}

func testAsyncReplyAfterFIN(t *testing.T, model string) {
	// A HalfCloser gets its asynchronous replies out after the peer's FIN,
	// then closes; OnClose gets nil.
	h := &asyncReplier{delay: 50 * time.Millisecond, closes: make(chan error, 1)}
	_, addr := start(t, model, h, switchboard.WithFraming("line", 0))
	// The replies come from two goroutines, in either order.
	got := sendHalfClose(t, addr, "GET k\r\nGET j\r\n")
	if got != "reply to GET k\nreply to GET j\n" && got != "reply to GET j\nreply to GET k\n" {
		t.Fatalf("after FIN got %q, want both replies", got)
	}
	if err := <-h.closes; err != nil {
		t.Fatalf("OnClose err = %v, want nil", err)
	}

	// A handler that is not a HalfCloser keeps the echo server's rule: the
	// connection closes once the replies queued at the FIN are out, and a
	// later Write is refused.
	late := make(chan error, 1)
	plain := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		c.Write([]byte("now"))
		go func() {
			time.Sleep(50 * time.Millisecond)
			late <- c.Write([]byte("late"))
		}()
	})
	_, addr2 := start(t, model, plain, switchboard.WithFraming("line", 0))
	if got := sendHalfClose(t, addr2, "x\n"); got != "now\n" {
		t.Fatalf("plain handler after FIN: got %q, want %q", got, "now\n")
	}
	if err := <-late; !errors.Is(err, switchboard.ErrConnClosed) {
		t.Fatalf("Write after the close: %v, want ErrConnClosed", err)
	}

	// A HalfCloser that never closes is closed after the half-close
	// timeout, with ErrHalfCloseTimeout; what it wrote meanwhile was sent.
	stuck := &halfOpenForever{closes: make(chan error, 1)}
	srv, addr3 := start(t, model, stuck, switchboard.WithFraming("line", 0),
		switchboard.WithHalfCloseTimeout(200*time.Millisecond))
	began := time.Now()
	if got := sendHalfClose(t, addr3, "x\n"); got != "peer closed\n" {
		t.Fatalf("stuck HalfCloser: got %q", got)
	}
	if err := <-stuck.closes; !errors.Is(err, switchboard.ErrHalfCloseTimeout) {
		t.Fatalf("OnClose err = %v, want ErrHalfCloseTimeout", err)
	}
	if waited := time.Since(began); waited < 150*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("half-close timeout after %v, want about 200ms", waited)
	}
	waitFor(t, "the timeout counted", func() bool { return srv.Stats().Timeouts == 1 })
}

// halfOpenForever writes once on hearing of the FIN and never closes.
type halfOpenForever struct {
	switchboard.BaseHandler
	closes chan error
}

func (h *halfOpenForever) OnPeerClose(c switchboard.Conn) { c.Write([]byte("peer closed")) }

func (h *halfOpenForever) OnClose(c switchboard.Conn, err error) { h.closes <- err }

// timerHandler: "short" sets a 150ms idle timeout on its connection;
// "after" writes "fired" from an AfterFunc 50ms later; anything else
// is echoed.
type timerHandler struct {
	switchboard.BaseHandler
	closes chan error
}

func (h *timerHandler) OnMessage(c switchboard.Conn, msg []byte) {
	switch string(msg) {
	case "short":
		c.SetIdleTimeout(150 * time.Millisecond)
		c.Write([]byte("ok"))
	case "after":
		c.AfterFunc(50*time.Millisecond, func() { c.Write([]byte("fired")) })
	default:
		c.Write(msg)
	}
}

func (h *timerHandler) OnClose(c switchboard.Conn, err error) { h.closes <- err }

func testConnDeadline(t *testing.T, model string) {
	h := &timerHandler{closes: make(chan error, 4)}
	_, addr := start(t, model, h, switchboard.WithFraming("line", 0))

	// AfterFunc runs on the connection's side, and what it writes arrives.
	c := dial(t, addr)
	r := bufio.NewReader(c)
	c.Write([]byte("after\nping\n"))
	for _, want := range []string{"ping\n", "fired\n"} {
		if got, err := r.ReadString('\n'); err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	c.Close()
	if err := <-h.closes; err != nil {
		t.Fatalf("OnClose after AfterFunc: %v", err)
	}

	// A per-connection idle timeout on a server that has none.
	c = dial(t, addr)
	r = bufio.NewReader(c)
	c.Write([]byte("short\n"))
	if got, err := r.ReadString('\n'); err != nil || got != "ok\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	began := time.Now()
	expectClosed(t, c)
	if waited := time.Since(began); waited > 5*time.Second {
		t.Fatalf("closed after %v", waited)
	}
	if err := <-h.closes; !errors.Is(err, switchboard.ErrIdleTimeout) {
		t.Fatalf("OnClose err = %v, want ErrIdleTimeout", err)
	}
}

// tickCounter ticks every 10ms and stops itself after three ticks.
type tickCounter struct {
	switchboard.BaseHandler
	n atomic.Int32
}

func (h *tickCounter) OnTick() time.Duration {
	if h.n.Add(1) >= 3 {
		return 0
	}
	return 10 * time.Millisecond
}

func testTick(t *testing.T, model string) {
	h := new(tickCounter)
	start(t, model, h)
	waitFor(t, "three ticks", func() bool { return h.n.Load() >= 3 })
	time.Sleep(50 * time.Millisecond)
	if n := h.n.Load(); n != 3 {
		t.Fatalf("%d ticks, want 3: a zero delay stops the tick", n)
	}
}

// members keeps the open connections, for the shutdown hook to reach.
type members struct {
	switchboard.BaseHandler
	mu     sync.Mutex
	conns  map[switchboard.Conn]bool
	opened chan struct{}
}

func (h *members) OnOpen(c switchboard.Conn) {
	h.mu.Lock()
	h.conns[c] = true
	h.mu.Unlock()
	h.opened <- struct{}{}
}

func (h *members) OnClose(c switchboard.Conn, err error) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

func testShutdownNotice(t *testing.T, model string) {
	h := &members{conns: map[switchboard.Conn]bool{}, opened: make(chan struct{}, 1)}
	srv, addr, served := launch(t, model, h)
	var hookErr error
	srv.RegisterOnShutdown(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for c := range h.conns {
			if err := c.Write([]byte("server going away\n")); err != nil {
				hookErr = err
			}
		}
	})
	c := dial(t, addr)
	<-h.opened
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "server going away\n" {
		t.Fatalf("read %q, %v; want the notice, then EOF", got, err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if hookErr != nil {
		t.Fatalf("the hook's Write: %v", hookErr)
	}
	if err := <-served; !errors.Is(err, switchboard.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

// switcher speaks lines until "SWITCH", then len:2 frames, echoing each.
type switcher struct{ switchboard.BaseHandler }

func (switcher) OnMessage(c switchboard.Conn, msg []byte) {
	if string(msg) == "SWITCH" {
		c.Write([]byte("switching"))
		len2, _ := framing.Parse("len:2", 0)
		c.SetCodec(len2)
		return
	}
	c.Write(msg)
}

func testCodecSwitch(t *testing.T, model string) {
	_, addr := start(t, model, switcher{}, switchboard.WithFraming("line", 0))
	c := dial(t, addr)
	// One write: the framed part is already read, behind the SWITCH line,
	// when the handler switches; a partial frame ends it, completed later.
	if _, err := c.Write([]byte("hello\nSWITCH\n\x00\x03a\nb\x00\x02cd\x00\x04ef")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c.Write([]byte("gh"))
	want := "hello\nswitching\n\x00\x03a\nb\x00\x02cd\x00\x04efgh"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}

	// A reply codec distinct from the request codec: requests are lines,
	// replies go out as written.
	raw := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		c.Write(append(append([]byte("<"), msg...), '>'))
	})
	_, addr2 := start(t, model, raw, switchboard.WithFraming("line", 0),
		switchboard.WithReplyCodec(framing.Raw(0)))
	c2 := dial(t, addr2)
	c2.Write([]byte("a\nb\n"))
	got = make([]byte, 6)
	if _, err := io.ReadFull(c2, got); err != nil || string(got) != "<a><b>" {
		t.Fatalf("raw replies: got %q, %v", got, err)
	}
}

// statsRecorder echoes and reports each connection's counters and whether
// its context was cancelled by the time OnClose ran.
type statsRecorder struct {
	switchboard.BaseHandler
	ctxDone chan struct{}
	closed  chan switchboard.ConnStats
}

func (h *statsRecorder) OnOpen(c switchboard.Conn) {
	ctx := c.Context()
	go func() {
		<-ctx.Done()
		h.ctxDone <- struct{}{}
	}()
}

func (h *statsRecorder) OnMessage(c switchboard.Conn, msg []byte) {
	c.Write(msg)
	c.Write(msg)
}

func (h *statsRecorder) OnClose(c switchboard.Conn, err error) { h.closed <- c.Stats() }

func testConnContextStats(t *testing.T, model string) {
	h := &statsRecorder{ctxDone: make(chan struct{}, 1), closed: make(chan switchboard.ConnStats, 1)}
	_, addr := start(t, model, h, switchboard.WithFraming("line", 0))
	c := dial(t, addr)
	c.Write([]byte("one\ntwo\nthree\n"))
	want := "one\none\ntwo\ntwo\nthree\nthree\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q, %v", got, err)
	}
	c.Close()
	st := <-h.closed
	if wantSt := (switchboard.ConnStats{BytesIn: 14, BytesOut: 28, MessagesIn: 3, MessagesOut: 6}); st != wantSt {
		t.Fatalf("stats %+v, want %+v", st, wantSt)
	}
	select {
	case <-h.ctxDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection's context was not cancelled at close")
	}
}
