package switchboard_test

// Conformance cases for hostile peers and careless handlers: the frame
// timeout, the per-address limit, panics in each callback, and a codec
// that cannot be trusted. They run in the one table (conformanceCases).

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"switchboard"
	"switchboard/framing"
	"switchboard/service"
)

// closeWatch wraps a handler and reports each close reason.
type closeWatch struct {
	switchboard.Handler
	errs chan error
}

func (w closeWatch) OnClose(c switchboard.Conn, err error) {
	w.Handler.OnClose(c, err)
	w.errs <- err
}

func (w closeWatch) await(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no OnClose within 10s")
		return nil
	}
}

// trickle writes b a byte at a time, every gap, until done or an error.
func trickle(c net.Conn, b []byte, gap time.Duration) error {
	for i := range b {
		if _, err := c.Write(b[i : i+1]); err != nil {
			return err
		}
		time.Sleep(gap)
	}
	return nil
}

// closedWithin reads from c until the server closes it and returns how
// long that took from began.
func closedWithin(t *testing.T, c net.Conn, began time.Time) time.Duration {
	t.Helper()
	expectClosed(t, c)
	return time.Since(began)
}

// testFrameTimeout leaves frames that must pass ten times what they need on
// an idle machine: CI machines are not idle.
const testFrameTimeout = 800 * time.Millisecond

// testFrameTimeoutCase: a line trickled a byte every 50 ms is closed about
// 800 ms after its first byte with ErrFrameTimeout, counted as a timeout;
// lines that each arrive whole, however far apart, are not (gaps between
// frames are the idle timeout's business, off here).
func testFrameTimeoutCase(t *testing.T, model string) {
	w := closeWatch{echo, make(chan error, 4)}
	srv, addr := start(t, model, w, switchboard.WithFraming("line", 0), switchboard.WithFrameTimeout(testFrameTimeout))
	slow := dial(t, addr)
	began := time.Now()
	go trickle(slow, []byte(strings.Repeat("x", 100)), 50*time.Millisecond)
	took := closedWithin(t, slow, began)
	if err := w.await(t); !errors.Is(err, switchboard.ErrFrameTimeout) {
		t.Fatalf("OnClose(%v), want ErrFrameTimeout", err)
	}
	if took < testFrameTimeout-50*time.Millisecond || took > testFrameTimeout+2*time.Second {
		t.Fatalf("closed %v after the first byte, frame timeout %v", took, testFrameTimeout)
	}
	waitFor(t, "one timeout counted", func() bool { return srv.Stats().Timeouts == 1 })
	slow.Close()

	// Whole frames with long gaps survive, and so does a frame that takes
	// a while but less than the timeout.
	c := dial(t, addr)
	for i := range 4 {
		time.Sleep(testFrameTimeout / 2)
		c.Write([]byte("line\n"))
		if i == 3 {
			// One frame in two reads, the second well within the timeout.
			c.Write([]byte("in "))
			time.Sleep(testFrameTimeout / 20)
			c.Write([]byte("time\n"))
		}
	}
	want := "line\nline\nline\nline\nin time\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("frames within the timeout: %q, %v", got, err)
	}
	c.Close()

	// Every read ending inside a frame, for twice the timeout, is not one
	// slow frame: each completes quickly, and the clock restarts.
	c = dial(t, addr)
	c.Write([]byte("a"))
	for range 10 {
		time.Sleep(testFrameTimeout / 8)
		c.Write([]byte("b\na"))
	}
	c.Write([]byte("b\n"))
	want = strings.Repeat("ab\n", 11)
	got = make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("frames straddling reads: %q, %v", got, err)
	}
}

// testHelloFrameTimeout: the hello service's request head counts as a
// frame, though the engine sees raw reads: a head trickled in is closed by
// the frame timeout, whole requests are served.
func testHelloFrameTimeout(t *testing.T, model string) {
	svc, _ := service.Lookup("hello")
	w := closeWatch{svc.New(), make(chan error, 4)}
	_, addr := start(t, model, w, switchboard.WithFrameTimeout(testFrameTimeout))
	slow := dial(t, addr)
	began := time.Now()
	go trickle(slow, []byte("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n\r\n"), 30*time.Millisecond)
	took := closedWithin(t, slow, began)
	if err := w.await(t); !errors.Is(err, switchboard.ErrFrameTimeout) {
		t.Fatalf("OnClose(%v), want ErrFrameTimeout", err)
	}
	if took > testFrameTimeout+2*time.Second {
		t.Fatalf("trickled head closed after %v, frame timeout %v", took, testFrameTimeout)
	}
	slow.Close()
	// Pipelined heads straddling reads, each complete within the timeout,
	// for twice the timeout: each read completes one head and starts the
	// next, so the clock restarts.
	c := dial(t, addr)
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	c.Write([]byte(req[:8]))
	for range 10 {
		time.Sleep(testFrameTimeout / 5)
		c.Write([]byte(req[8:] + req[:8]))
	}
	c.Write([]byte(req[8:]))
	var replies []byte
	buf := make([]byte, 4096)
	for bytes.Count(replies, []byte("Hello, world!")) < 11 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d pipelined replies: %v", bytes.Count(replies, []byte("Hello, world!")), err)
		}
		replies = append(replies, buf[:n]...)
	}
	c.Close()
	// Requests split over a few reads, but quickly, are answered, and the
	// connection then idles between requests without a frame timeout.
	c = dial(t, addr)
	for range 2 {
		c.Write([]byte("GET / HTTP/1.1\r\n"))
		time.Sleep(testFrameTimeout / 4)
		c.Write([]byte("Host: x\r\n\r\n"))
		reply := make([]byte, 512)
		n, err := c.Read(reply)
		if err != nil || !bytes.HasPrefix(reply[:n], []byte("HTTP/1.1 200 OK")) {
			t.Fatalf("split request: %q, %v", reply[:n], err)
		}
		time.Sleep(testFrameTimeout * 5 / 4)
	}
}

// testMaxConnsPerIP: with a limit of 2, a third connection from 127.0.0.1
// is closed at accept and counted, one from 127.0.0.2 is served, and a
// slot frees when a connection closes.
func testMaxConnsPerIP(t *testing.T, model string) {
	srv, addr := start(t, model, echo, switchboard.WithMaxConnsPerIP(2))
	ping := func(c net.Conn) error {
		c.Write([]byte("ok"))
		_, err := io.ReadFull(c, make([]byte, 2))
		return err
	}
	a, b := dial(t, addr), dial(t, addr)
	for _, c := range []net.Conn{a, b} {
		if err := ping(c); err != nil {
			t.Fatal(err)
		}
	}
	if extra, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		defer extra.Close()
		expectClosed(t, extra)
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	waitFor(t, "the refusal to be counted", func() bool {
		st := srv.Stats()
		return st.RejectedPerIP == 1 && st.Rejected == 1
	})
	// Another address has its own allowance.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	other := clientOver(addr, raw)
	defer other.Close()
	other.SetDeadline(time.Now().Add(10 * time.Second))
	if err := ping(other); err != nil {
		t.Fatalf("from 127.0.0.2: %v", err)
	}
	a.Close()
	waitFor(t, "the closed connection to go", func() bool { return srv.Stats().Active <= 2 })
	c := dial(t, addr)
	if err := ping(c); err != nil {
		t.Fatalf("after a slot freed: %v", err)
	}
}

// panicky panics in the callback named by where, for the connection that
// sends (or, for OnOpen, is) the first; it echoes otherwise.
type panicky struct {
	where  string
	fired  atomic.Bool
	closes chan error
}

func (p *panicky) OnOpen(c switchboard.Conn) {
	if p.where == "OnOpen" && !p.fired.Swap(true) {
		panic("boom in OnOpen")
	}
}

func (p *panicky) OnMessage(c switchboard.Conn, msg []byte) {
	if p.where == "OnMessage" && string(msg) == "boom" {
		p.fired.Store(true)
		panic("boom in OnMessage")
	}
	c.Write(msg)
}

func (p *panicky) OnClose(c switchboard.Conn, err error) {
	p.closes <- err
	if p.where == "OnClose" && !p.fired.Swap(true) {
		panic("boom in OnClose")
	}
}

// testPanicIn returns a case: a panic in the callback closes only its own
// connection (OnClose hearing ErrPanic where it still can), is counted,
// and the loop — one loop here, shared with the other connection — and
// every other connection carry on.
func testPanicIn(where string) func(t *testing.T, model string) {
	return func(t *testing.T, model string) {
		p := &panicky{where: where, closes: make(chan error, 16)}
		srv, addr := start(t, model, p, switchboard.WithLoops(1))
		echoes := func(c net.Conn, msg string) error {
			c.Write([]byte(msg))
			got := make([]byte, len(msg))
			_, err := io.ReadFull(c, got)
			if err == nil && string(got) != msg {
				err = errors.New("echo differs")
			}
			return err
		}
		awaitClose := func() error {
			select {
			case err := <-p.closes:
				return err
			case <-time.After(10 * time.Second):
				t.Fatal("no OnClose within 10s")
				return nil
			}
		}
		switch where {
		case "OnOpen":
			bad := dial(t, addr)
			expectClosed(t, bad)
			if err := awaitClose(); !errors.Is(err, switchboard.ErrPanic) {
				t.Fatalf("OnClose(%v) after a panic in OnOpen, want ErrPanic", err)
			}
		case "OnMessage":
			var good net.Conn
			if name, _ := splitModel(model); name != switchboard.ModelBlocking {
				good = dial(t, addr)
				if err := echoes(good, "before"); err != nil {
					t.Fatal(err)
				}
			}
			bad := dial(t, addr)
			bad.Write([]byte("boom"))
			expectClosed(t, bad)
			if err := awaitClose(); !errors.Is(err, switchboard.ErrPanic) {
				t.Fatalf("OnClose(%v) after a panic in OnMessage, want ErrPanic", err)
			}
			if good != nil {
				if err := echoes(good, "after"); err != nil {
					t.Fatalf("the other connection on the loop: %v", err)
				}
			}
		case "OnClose":
			first := dial(t, addr)
			if err := echoes(first, "hi"); err != nil {
				t.Fatal(err)
			}
			first.Close()
			if err := awaitClose(); err != nil {
				t.Fatalf("OnClose(%v), want nil", err)
			}
		}
		waitFor(t, "the panic to be counted", func() bool { return srv.Stats().Panics == 1 })
		// The server carries on.
		c := dial(t, addr)
		if err := echoes(c, "still serving"); err != nil {
			t.Fatalf("after the panic: %v", err)
		}
	}
}

// blackholeCodec never finds a frame and never fails: what an engine that
// trusts its codec would buffer without end.
type blackholeCodec struct{ framing.Codec }

func (blackholeCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) { return nil, 0, nil }
func (blackholeCodec) MaxFrame() int                                      { return 1024 }
func (blackholeCodec) Overhead() int                                      { return 0 }
func (blackholeCodec) String() string                                     { return "blackhole" }

// liarCodec claims to have decoded more bytes than it was given.
type liarCodec struct{ framing.Codec }

func (l liarCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	return buf, len(buf) + 1, nil
}
func (liarCodec) String() string { return "liar" }

// testDistrustedCodec: a codec that never completes a frame cannot make the
// engine hold more than MaxFrame()+Overhead() (plus one read) for a client
// sending 64 MiB: the connection closes with ErrFrameTooLarge. A codec
// that claims more bytes than it was given closes it with ErrCodec.
func testDistrustedCodec(t *testing.T, model string) {
	raw := framing.Raw(framing.DefaultMaxFrame)
	for _, tc := range []struct {
		codec framing.Codec
		want  error
	}{
		{blackholeCodec{raw}, framing.ErrFrameTooLarge},
		{liarCodec{raw}, framing.ErrCodec},
	} {
		t.Run(tc.codec.String(), func(t *testing.T) {
			w := closeWatch{echo, make(chan error, 4)}
			srv, addr := start(t, model, w, switchboard.WithCodec(tc.codec))
			c := dial(t, addr)
			go c.Write(make([]byte, 64<<20)) // fails once the server closes
			expectClosed(t, c)
			if err := w.await(t); !errors.Is(err, tc.want) {
				t.Fatalf("OnClose(%v), want %v", err, tc.want)
			}
			if in := srv.Stats().BytesIn; in > 1<<20 {
				t.Fatalf("the server took in %d bytes before giving up on a codec with a 1 KiB limit", in)
			}
			waitFor(t, "no open connections", func() bool { return srv.Stats().Active == 0 })
		})
	}
}
