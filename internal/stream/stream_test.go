package stream

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard/internal/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type echoHandler struct{}

func (echoHandler) OnOpen(engine.Conn)                  {}
func (echoHandler) OnMessage(c engine.Conn, msg []byte) { c.Write(msg) }
func (echoHandler) OnClose(engine.Conn, error)          {}

func TestTemporaryAcceptErrors(t *testing.T) {
	for _, err := range []error{
		&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", errEMFILE)},
		&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", errENFILE)},
	} {
		if !temporaryAcceptError(err) {
			t.Errorf("%v should be retried", err)
		}
	}
	if temporaryAcceptError(net.ErrClosed) {
		t.Error("a closed listener is not temporary")
	}
}

func startGoroutine(t *testing.T, cfg engine.Config) (*server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eng, _ := NewGoroutine(cfg, echoHandler{})
	s := eng.(*server)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return s, ln.Addr().String()
}

func TestWriteLimitClosesSlowConsumer(t *testing.T) {
	cfg := engine.Config{MaxPending: 1 << 10}
	cfg.Normalize()
	s, addr := startGoroutine(t, cfg)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	// Find the server side and write to it from another goroutine,
	// unprompted, far past the limit, while the client reads nothing.
	var sc *conn
	s.mu.Lock()
	for k := range s.conns {
		sc = k
	}
	s.mu.Unlock()
	big := make([]byte, 64<<10)
	var werr error
	for range 10000 {
		if werr = sc.Write(big); werr != nil {
			break
		}
	}
	if werr != engine.ErrSlowConsumer {
		t.Fatalf("Write past the limit = %v, want ErrSlowConsumer", werr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.cfg.Stats.SlowConsumers.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.cfg.Stats.SlowConsumers.Load(); got != 1 {
		t.Fatalf("SlowConsumers = %d, want 1", got)
	}
	if err := sc.Write([]byte("y")); err != engine.ErrConnClosed {
		t.Fatalf("Write after close = %v, want ErrConnClosed", err)
	}
}

func TestWriteTimeout(t *testing.T) {
	cfg := engine.Config{MaxPending: 1 << 20, WriteTimeout: 200 * time.Millisecond}
	cfg.Normalize()
	s, addr := startGoroutine(t, cfg)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	// Send more than the socket buffers hold and never read the echo.
	go c.Write(make([]byte, 32<<20))
	deadline := time.Now().Add(10 * time.Second)
	for s.cfg.Stats.Timeouts.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s.cfg.Stats.Timeouts.Load() != 1 {
		t.Fatal("pending output that never drained did not time out")
	}
}
