package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard"
	"switchboard/framing"
	"switchboard/internal/testserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var echo = switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write(msg) })

// startServer serves h on addr (port 0 or a unix path) until the test
// ends and returns the address to dial.
func startServer(t *testing.T, addr string, h switchboard.Handler, opts ...switchboard.Option) string {
	t.Helper()
	a, _ := testserver.Start(t, addr, h, append([]switchboard.Option{switchboard.WithModel("goroutine")}, opts...)...)
	return a
}

func dial(t *testing.T, addr string, opts ...Option) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), addr, append([]Option{WithTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRequestEveryFraming(t *testing.T) {
	for _, spec := range []string{"raw", "line", "delim:0d0a", "fixed:5", "len:1", "len:2", "len:4le", "len:8", "digits:5", "typed:a=4,b=0"} {
		t.Run(spec, func(t *testing.T) {
			addr := startServer(t, "127.0.0.1:0", echo, switchboard.WithFraming(spec, 0))
			c := dial(t, addr, WithFraming(spec, 0))
			msgs := []string{"hello", "world", "a1234"}
			if strings.HasPrefix(spec, "typed") {
				msgs = []string{"a1234", "b", "aqwer"}
			}
			for _, m := range msgs {
				got, err := c.Request([]byte(m))
				if err != nil || string(got) != m {
					t.Fatalf("Request(%q) = %q, %v", m, got, err)
				}
			}
			if c.Codec().String() != spec {
				t.Errorf("Codec() = %v", c.Codec())
			}
		})
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sb.sock")
	addr := startServer(t, "unix:"+path, echo, switchboard.WithFraming("line", 0))
	if addr != "unix:"+path {
		t.Fatalf("addr %q", addr)
	}
	c := dial(t, addr, WithFraming("line", 0))
	got, err := c.Request([]byte("over unix"))
	if err != nil || string(got) != "over unix" {
		t.Fatalf("Request = %q, %v", got, err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Receive(context.Background()); err != io.EOF {
		t.Fatalf("Receive after CloseWrite = %v, want io.EOF", err)
	}
}

func TestIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	addr := startServer(t, "[::1]:0", echo)
	c := dial(t, addr)
	got, err := c.Request([]byte("v6"))
	if err != nil || string(got) != "v6" {
		t.Fatalf("Request = %q, %v", got, err)
	}
	if !strings.HasPrefix(c.RemoteAddr().String(), "[::1]:") {
		t.Errorf("RemoteAddr %v", c.RemoteAddr())
	}
}

// pipeConn returns a client over one end of a synchronous net.Pipe, whose
// every write on the other end arrives as its own read, and that other end.
func pipeConn(t *testing.T, opts ...Option) (*Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	c, err := New(a, append([]Option{WithTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); b.Close() })
	return c, b
}

// writeChunks writes stream to w in pieces of the given sizes (repeating
// the last), then closes w if closeAfter is set.
func writeChunks(w net.Conn, stream []byte, sizes []int, closeAfter bool) chan error {
	errc := make(chan error, 1)
	go func() {
		i := 0
		for len(stream) > 0 {
			n := min(sizes[min(i, len(sizes)-1)], len(stream))
			i++
			if _, err := w.Write(stream[:n]); err != nil {
				errc <- err
				return
			}
			stream = stream[n:]
		}
		if closeAfter {
			w.Close()
		}
		errc <- nil
	}()
	return errc
}

func TestReceiveAnySplit(t *testing.T) {
	specs := []string{"line", "delim:0d0a0d0a", "fixed:3", "len:2", "digits:3", "typed:x=2,y=0", "eof"}
	msgs := [][]byte{[]byte("abc"), []byte("xyz"), []byte("x12"), []byte("y")}
	for _, spec := range specs {
		codec, err := framing.Parse(spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		var stream, want []byte
		var wantMsgs []string
		for _, m := range msgs {
			if b, err := codec.Append(stream, m); err == nil {
				stream = b
				want = append(want, m...)
				wantMsgs = append(wantMsgs, string(m))
			}
		}
		if spec == "eof" {
			wantMsgs = []string{string(want)}
		}
		for _, sizes := range [][]int{{len(stream)}, {1}, {2}, {3, 1}, {5, 7}} {
			c, w := pipeConn(t, WithCodec(codec))
			errc := writeChunks(w, stream, sizes, true)
			var got []string
			for range 100 {
				m, err := c.Receive(context.Background())
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s %v: Receive: %v", spec, sizes, err)
				}
				got = append(got, string(m))
			}
			if fmt.Sprint(got) != fmt.Sprint(wantMsgs) {
				t.Errorf("%s in pieces of %v: got %q, want %q", spec, sizes, got, wantMsgs)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestRawReceiveIsOneRead(t *testing.T) {
	c, w := pipeConn(t)
	errc := writeChunks(w, []byte("abcde"), []int{3, 2}, true)
	for _, want := range []string{"abc", "de"} {
		got, err := c.Receive(context.Background())
		if err != nil || string(got) != want {
			t.Fatalf("Receive = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := c.Receive(context.Background()); err != io.EOF {
		t.Fatalf("Receive at end = %v, want io.EOF", err)
	}
	<-errc
}

func TestReceiveLargeFrames(t *testing.T) {
	const max = 3 << 20
	addr := startServer(t, "127.0.0.1:0", echo, switchboard.WithFraming("len:4", max))
	c := dial(t, addr, WithFraming("len:4", max))
	for _, size := range []int{0, 1, initialReadBuf - 4, initialReadBuf, 1 << 20, max} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		// Send and receive at once: a large echo does not fit in the
		// socket buffers of both directions.
		errc := make(chan error, 1)
		go func() { errc <- c.Send(msg) }()
		got, err := c.Receive(context.Background())
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("size %d: got %d bytes, %v", size, len(got), err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// shortConn writes at most 3 bytes per call, as a non-blocking socket
// might.
type shortConn struct{ net.Conn }

func (s shortConn) Write(p []byte) (int, error) {
	if len(p) > 3 {
		p = p[:3]
	}
	return s.Conn.Write(p)
}

func TestShortWrites(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c, err := New(shortConn{a}, WithFraming("len:2", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 2+11+2+3)
		io.ReadFull(b, buf)
		got <- buf
	}()
	if err := c.SendBatch([]byte("hello world"), []byte("abc")); err != nil {
		t.Fatal(err)
	}
	select {
	case wire := <-got:
		if want := "\x00\x0bhello world\x00\x03abc"; string(wire) != want {
			t.Fatalf("wire bytes %q, want %q", wire, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer did not get the bytes")
	}
}

func TestFramingErrors(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		c, w := pipeConn(t, WithFraming("line", 8))
		errc := writeChunks(w, []byte("short\n0123456789abcdef\n"), []int{4}, true)
		if m, err := c.Receive(context.Background()); err != nil || string(m) != "short" {
			t.Fatalf("Receive = %q, %v", m, err)
		}
		_, err := c.Receive(context.Background())
		if !errors.Is(err, framing.ErrFrameTooLarge) {
			t.Fatalf("Receive = %v, want ErrFrameTooLarge", err)
		}
		if _, err2 := c.Receive(context.Background()); err2 != err {
			t.Fatalf("error not sticky: %v", err2)
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Op != "receive" || !strings.HasPrefix(err.Error(), "receive pipe: framing: frame exceeds maximum size") {
			t.Fatalf("error %q", err)
		}
		// The raw stream can still be read.
		rest, rerr := c.ReadAll()
		if rerr != nil || len(rest) == 0 {
			t.Fatalf("ReadAll after framing error = %q, %v", rest, rerr)
		}
		<-errc
	})
	t.Run("truncated", func(t *testing.T) {
		c, w := pipeConn(t, WithFraming("len:4", 0))
		errc := writeChunks(w, []byte("\x00\x00\x00\x05hel"), []int{100}, true)
		if _, err := c.Receive(context.Background()); !errors.Is(err, framing.ErrTruncated) {
			t.Fatalf("Receive = %v, want ErrTruncated", err)
		}
		<-errc
	})
	t.Run("unknown type", func(t *testing.T) {
		c, w := pipeConn(t, WithFraming("typed:a=1", 0))
		errc := writeChunks(w, []byte("z1"), []int{100}, true)
		if _, err := c.Receive(context.Background()); !errors.Is(err, framing.ErrUnknownType) {
			t.Fatalf("Receive = %v, want ErrUnknownType", err)
		}
		<-errc
	})
	t.Run("bad spec", func(t *testing.T) {
		if _, err := Dial(context.Background(), "127.0.0.1:1", WithFraming("nope", 0)); !errors.Is(err, framing.ErrSpec) {
			t.Fatalf("Dial = %v, want ErrSpec", err)
		}
	})
}

func TestInvalidMessageLosesNothing(t *testing.T) {
	addr := startServer(t, "127.0.0.1:0", echo, switchboard.WithFraming("line", 0))
	c := dial(t, addr, WithFraming("line", 0))
	if err := c.Send([]byte("two\nlines")); !errors.Is(err, framing.ErrInvalidMessage) {
		t.Fatalf("Send = %v, want ErrInvalidMessage", err)
	}
	err := c.SendBatch([]byte("fine"), []byte("not\nfine"))
	if !errors.Is(err, framing.ErrInvalidMessage) || !strings.HasPrefix(err.Error(), "message 2: ") {
		t.Fatalf("SendBatch = %v", err)
	}
	// Nothing of either reached the server.
	got, err := c.Request([]byte("next"))
	if err != nil || string(got) != "next" {
		t.Fatalf("Request = %q, %v", got, err)
	}
	if err := c.SendBatch([]byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a", "b"} {
		if got, err := c.Receive(context.Background()); err != nil || string(got) != want {
			t.Fatalf("Receive = %q, %v", got, err)
		}
	}
}

func TestDialErrors(t *testing.T) {
	addr := testserver.FreeAddr(t)
	_, err := Dial(context.Background(), addr, WithTimeout(5*time.Second))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial = %v, want ECONNREFUSED", err)
	}
	if want := "connect " + addr + ": connection refused"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if errors.Is(err, ErrTimeout) {
		t.Error("refused counts as a timeout")
	}

	missing := "unix:" + filepath.Join(t.TempDir(), "none.sock")
	_, err = Dial(context.Background(), missing)
	if !errors.Is(err, syscall.ENOENT) || err.Error() != "connect "+missing+": no such file or directory" {
		t.Errorf("Dial(%s) = %v", missing, err)
	}

	_, err = Dial(context.Background(), "localhost")
	var ce *Error
	if !errors.As(err, &ce) || ce.Op != "connect" || !strings.Contains(err.Error(), "want host:port") {
		t.Errorf("Dial(localhost) = %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, addr); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial with a cancelled context = %v", err)
	}
	if _, err := Dial(context.Background(), addr, WithTimeout(-1)); err == nil {
		t.Error("negative timeout accepted")
	}
	if _, err := Dial(context.Background(), addr, WithCodec(nil)); err == nil {
		t.Error("nil codec accepted")
	}
}

func TestTimeouts(t *testing.T) {
	silent := startServer(t, "127.0.0.1:0", switchboard.BaseHandler{})
	c := dial(t, silent, WithTimeout(100*time.Millisecond))
	start := time.Now()
	_, err := c.Request([]byte("anyone?"))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Request = %v, want a timeout", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 5*time.Second {
		t.Errorf("timed out after %v", el)
	}
	if want := "receive " + silent + ": timed out after 100ms"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}

	// An explicit deadline replaces the per-operation timeout.
	c2 := dial(t, silent, WithTimeout(time.Hour))
	c2.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c2.Receive(context.Background()); !errors.Is(err, ErrTimeout) || err.Error() != "receive "+silent+": timed out" {
		t.Fatalf("Receive with a deadline = %v", err)
	}
	c3 := dial(t, silent, WithTimeout(50*time.Millisecond))
	c3.SetDeadline(time.Now().Add(time.Hour))
	c3.SetDeadline(time.Time{}) // back to the 50ms timeout
	if _, err := c3.ReadAll(); !errors.Is(err, ErrTimeout) {
		t.Fatalf("ReadAll = %v, want a timeout", err)
	}
}

func TestEOFAndHalfClose(t *testing.T) {
	addr := startServer(t, "127.0.0.1:0", echo, switchboard.WithFraming("eof", 0))
	c := dial(t, addr, WithFraming("eof", 0))
	if err := c.Send([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Receive(context.Background())
	if err != nil || string(got) != "GET / HTTP/1.0\r\n\r\n" {
		t.Fatalf("Receive = %q, %v", got, err)
	}
	if _, err := c.Receive(context.Background()); err != io.EOF {
		t.Fatalf("second Receive = %v, want io.EOF", err)
	}
	if err := c.Send([]byte("more")); err == nil {
		t.Fatal("Send after CloseWrite succeeded")
	} else if !strings.HasPrefix(err.Error(), "send "+addr+": ") {
		t.Fatalf("Send after CloseWrite: %v", err)
	}

	// WriteTo streams the rest raw, including what Receive had buffered.
	raw := startServer(t, "127.0.0.1:0", echo, switchboard.WithFraming("line", 0))
	c2 := dial(t, raw, WithFraming("line", 0))
	if err := c2.SendBatch([]byte("one"), []byte("two"), []byte("three")); err != nil {
		t.Fatal(err)
	}
	if m, err := c2.Receive(context.Background()); err != nil || string(m) != "one" {
		t.Fatalf("Receive = %q, %v", m, err)
	}
	c2.CloseWrite()
	var sb strings.Builder
	n, err := c2.WriteTo(&sb)
	if err != nil || sb.String() != "two\nthree\n" || n != int64(sb.Len()) {
		t.Fatalf("WriteTo = %d, %v, %q", n, err, sb.String())
	}
}

func TestCloseWriteUnsupported(t *testing.T) {
	c, _ := pipeConn(t)
	if err := c.CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("CloseWrite on a pipe = %v", err)
	}
}

func TestConcurrentSendReceive(t *testing.T) {
	addr := startServer(t, "127.0.0.1:0", echo, switchboard.WithFraming("len:4", 0))
	c := dial(t, addr, WithFraming("len:4", 0))
	const n = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if err := c.Send(fmt.Appendf(nil, "msg %d", i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range n {
		got, err := c.Receive(context.Background())
		if err != nil || string(got) != fmt.Sprintf("msg %d", i) {
			t.Fatalf("message %d = %q, %v", i, got, err)
		}
	}
	wg.Wait()
}

func TestAddrsAndLocalAddr(t *testing.T) {
	addr := startServer(t, "127.0.0.1:0", echo)
	c := dial(t, addr, WithLocalAddr(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}))
	if c.RemoteAddr().String() != addr || c.NetConn().RemoteAddr().String() != addr {
		t.Errorf("RemoteAddr %v, want %s", c.RemoteAddr(), addr)
	}
	la, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok || !la.IP.Equal(net.IPv4(127, 0, 0, 1)) || la.Port == 0 {
		t.Errorf("LocalAddr %v", c.LocalAddr())
	}
}

func TestReceiveContext(t *testing.T) {
	// Each reply comes 200ms late, from the connection's own timer.
	late := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		reply := append([]byte(nil), msg...)
		c.AfterFunc(200*time.Millisecond, func() { c.Write(reply) })
	})
	addr := startServer(t, "127.0.0.1:0", late)
	c := dial(t, addr, WithFraming("line", 0))
	if err := c.Send([]byte("one")); err != nil {
		t.Fatal(err)
	}

	// Cancelling interrupts the read; the connection stays usable.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	if _, err := c.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a cancelled context = %v", err)
	}
	if _, err := c.Receive(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive with a context already done = %v", err)
	}
	// A context's deadline bounds the wait too.
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer dcancel()
	if _, err := c.Receive(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive past the context's deadline = %v", err)
	}
	got, err := c.Receive(context.Background())
	if err != nil || string(got) != "one" {
		t.Fatalf("Receive after the interruptions = %q, %v", got, err)
	}
}
