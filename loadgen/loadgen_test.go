package loadgen_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard"
	"switchboard/framing"
	"switchboard/internal/testserver"
	"switchboard/loadgen"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve runs h on an in-process goroutine-model server on 127.0.0.1:0 and
// returns its address.
func serve(t *testing.T, h switchboard.Handler, spec string) string {
	t.Helper()
	a, _ := testserver.Start(t, "127.0.0.1:0", h, switchboard.WithModel(switchboard.ModelGoroutine), switchboard.WithFraming(spec, 0))
	return a
}

var echo = switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write(msg) })

func drivers() []string {
	if runtime.GOOS == "linux" {
		return []string{loadgen.DriverEpoll, loadgen.DriverGoroutine}
	}
	return []string{loadgen.DriverGoroutine}
}

func run(t *testing.T, cfg loadgen.Config) *loadgen.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func noErrors(t *testing.T, res *loadgen.Result) {
	t.Helper()
	if res.Errors.Total() != 0 {
		t.Fatalf("errors: %+v", res.Errors)
	}
}

func TestClosedLoopEcho(t *testing.T) {
	addr := serve(t, echo, "raw")
	for _, drv := range drivers() {
		t.Run(drv, func(t *testing.T) {
			res := run(t, loadgen.Config{
				Addr: addr, Conns: 8, Pipeline: 4, Size: 100, Duration: 300 * time.Millisecond,
				Warmup: 100 * time.Millisecond, Driver: drv, Workers: 2, ServerPID: os.Getpid(),
			})
			noErrors(t, res)
			if res.Messages == 0 || res.MsgsPerSec <= 0 || res.Bytes != res.Messages*100 {
				t.Fatalf("no throughput: %+v", res)
			}
			l := res.Latency
			if !(l.Min > 0 && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
				t.Fatalf("latency not ordered: %+v", l)
			}
			if res.Elapsed < 250*time.Millisecond {
				t.Fatalf("elapsed %v, want about the 300ms duration", res.Elapsed)
			}
			if runtime.GOOS == "linux" && (res.Server == nil || res.Server.RSSBefore == 0) {
				t.Fatalf("no server figures: %+v %v", res.Server, res.Warnings)
			}
			if res.Connected != 8 {
				t.Fatalf("connected %d, want 8", res.Connected)
			}
		})
	}
}

func TestFramings(t *testing.T) {
	for _, tc := range []struct {
		spec string
		size int
	}{
		{"line", 50},
		{"delim:0d0a", 30},
		{"len:2", 1000},
		{"len:4le", 5000},
		{"digits:5", 20},
		{"fixed:16", 16},
		{"typed:a=4,b=9", 10},
	} {
		addr := serve(t, echo, tc.spec)
		codec, err := framing.Parse(tc.spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, drv := range drivers() {
			t.Run(tc.spec+"/"+drv, func(t *testing.T) {
				res := run(t, loadgen.Config{
					Addr: addr, Conns: 3, Pipeline: 3, Size: tc.size, Codec: codec,
					Duration: 50 * time.Millisecond, Driver: drv,
				})
				noErrors(t, res)
				if res.Messages == 0 {
					t.Fatal("no messages")
				}
			})
		}
	}
}

func TestRequests(t *testing.T) {
	addr := serve(t, echo, "raw")
	for _, drv := range drivers() {
		t.Run(drv, func(t *testing.T) {
			res := run(t, loadgen.Config{
				Addr: addr, Conns: 7, Pipeline: 2, Requests: 1001, Warmup: 50 * time.Millisecond, Driver: drv, Workers: 3,
			})
			noErrors(t, res)
			if res.Messages != 1001 {
				t.Fatalf("measured %d messages, want 1001", res.Messages)
			}
		})
	}
}

func TestOpenLoopRate(t *testing.T) {
	addr := serve(t, echo, "raw")
	for _, drv := range drivers() {
		t.Run(drv, func(t *testing.T) {
			res := run(t, loadgen.Config{
				Addr: addr, Conns: 4, Pipeline: 2, Rate: 2000, Duration: 400 * time.Millisecond, Driver: drv,
			})
			noErrors(t, res)
			// 2000/s for 0.4 s is 800 messages on schedule; the bound is
			// loose, a loaded test machine may fall behind, never ahead.
			if res.Messages == 0 || res.Messages > 801 {
				t.Fatalf("measured %d messages, want at most 800", res.Messages)
			}
			// Closed-loop verdicts make no sense on a schedule.
			switch res.Bottleneck {
			case loadgen.BottleneckBoth, loadgen.BottleneckLatency:
				t.Fatalf("bottleneck %q in open loop", res.Bottleneck)
			}
		})
	}
}

// corrupter echoes, but flips one byte of the 10th message it sees.
type corrupter struct{ n atomic.Int64 }

func (c *corrupter) OnOpen(switchboard.Conn)         {}
func (c *corrupter) OnClose(switchboard.Conn, error) {}
func (c *corrupter) OnMessage(conn switchboard.Conn, msg []byte) {
	if c.n.Add(1) == 10 {
		b := bytes.Clone(msg)
		b[len(b)/2] ^= 0x20
		conn.Write(b)
		return
	}
	conn.Write(msg)
}

func TestMismatchDetected(t *testing.T) {
	for _, spec := range []string{"raw", "len:4"} {
		codec, _ := framing.Parse(spec, 0)
		for _, drv := range drivers() {
			t.Run(spec+"/"+drv, func(t *testing.T) {
				addr := serve(t, &corrupter{}, spec)
				res := run(t, loadgen.Config{
					Addr: addr, Conns: 2, Size: 64, Codec: codec, Duration: 200 * time.Millisecond, Driver: drv,
				})
				if res.Errors.Mismatches != 1 || res.Errors.Total() != 1 {
					t.Fatalf("errors %+v, want exactly one mismatch (messages %d, elapsed %v, connect %v)", res.Errors, res.Messages, res.Elapsed, res.ConnectTime)
				}
				if res.Errors.FirstMismatch == "" {
					t.Fatal("mismatch not described")
				}
				t.Log(res.Errors.FirstMismatch)
			})
		}
	}
}

// closer echoes 5 messages per connection, then closes it.
type closer struct{ switchboard.BaseHandler }

func (closer) OnOpen(c switchboard.Conn) { c.SetValue(new(int)) }
func (closer) OnMessage(c switchboard.Conn, msg []byte) {
	n := c.Value().(*int)
	if *n++; *n > 5 {
		c.Close()
		return
	}
	c.Write(msg)
}

// A server that closes connections is an error when asked; by default
// the load reconnects, which TestReconnect checks.
func TestServerCloses(t *testing.T) {
	codec, _ := framing.Parse("line", 0)
	for _, drv := range drivers() {
		t.Run(drv, func(t *testing.T) {
			addr := serve(t, closer{}, "line")
			res := run(t, loadgen.Config{Addr: addr, Conns: 3, Codec: codec, Duration: 200 * time.Millisecond, Driver: drv, CloseIsError: true})
			if res.Errors.Conn != 3 || res.Errors.First == "" || res.Reconnects != 0 {
				t.Fatalf("errors %+v, reconnects %d, want 3 lost connections", res.Errors, res.Reconnects)
			}
		})
	}
}

// swallower echoes every message but the 3rd.
type swallower struct{ n atomic.Int64 }

func (s *swallower) OnOpen(switchboard.Conn)         {}
func (s *swallower) OnClose(switchboard.Conn, error) {}
func (s *swallower) OnMessage(c switchboard.Conn, msg []byte) {
	if s.n.Add(1) != 3 {
		c.Write(msg)
	}
}

func TestUnanswered(t *testing.T) {
	codec, _ := framing.Parse("line", 0)
	for _, drv := range drivers() {
		t.Run(drv, func(t *testing.T) {
			addr := serve(t, &swallower{}, "line")
			res := run(t, loadgen.Config{
				Addr: addr, Conns: 1, Pipeline: 4, Codec: codec, Duration: 100 * time.Millisecond,
				DrainTimeout: 100 * time.Millisecond, Driver: drv,
			})
			// The swallowed message's reply never comes, and the replies
			// after it are taken for it: framed, so they mismatch too.
			if res.Errors.Unanswered == 0 {
				t.Fatalf("errors %+v, want unanswered messages", res.Errors)
			}
		})
	}
}

func TestExpectAny(t *testing.T) {
	pong := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write([]byte("+PONG")) })
	addr := serve(t, pong, "line")
	codec, _ := framing.Parse("line", 0)
	for _, drv := range drivers() {
		t.Run(drv, func(t *testing.T) {
			res := run(t, loadgen.Config{
				Addr: addr, Conns: 2, Pipeline: 8, Payload: []byte("PING"), Codec: codec,
				Expect: loadgen.ExpectAny, Duration: 100 * time.Millisecond, Driver: drv,
			})
			noErrors(t, res)
			if res.Messages == 0 || res.Size != 4 {
				t.Fatalf("messages %d size %d", res.Messages, res.Size)
			}
			// The same replies fail when they are expected to echo.
			res = run(t, loadgen.Config{
				Addr: addr, Conns: 1, Payload: []byte("PING"), Codec: codec, Requests: 5, Driver: drv,
			})
			if res.Errors.Mismatches != 5 {
				t.Fatalf("errors %+v, want 5 mismatches", res.Errors)
			}
		})
	}
}

// opens records the distinct remote IPs of the connections it sees.
type opens struct {
	switchboard.BaseHandler
	mu  sync.Mutex
	ips map[string]bool
}

func (o *opens) OnOpen(c switchboard.Conn) {
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	o.mu.Lock()
	o.ips[host] = true
	o.mu.Unlock()
}

func TestIdleAndSourceIPs(t *testing.T) {
	for _, drv := range drivers() {
		t.Run(drv, func(t *testing.T) {
			h := &opens{ips: map[string]bool{}}
			addr := serve(t, h, "raw")
			res := run(t, loadgen.Config{
				Addr: addr, Idle: 40, SourceIPs: 4, ConnectRate: 10000, Duration: 100 * time.Millisecond,
				Driver: drv, ServerPID: os.Getpid(), Rate: 100, // a rate with nothing to send
			})
			noErrors(t, res)
			if res.Connected != 40 || res.Messages != 0 {
				t.Fatalf("connected %d, messages %d", res.Connected, res.Messages)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.ips) != 4 {
				t.Fatalf("connections came from %v, want 127.0.0.1-4", h.ips)
			}
		})
	}
}

func TestConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, drv := range drivers() {
		_, err := loadgen.Run(context.Background(), loadgen.Config{Addr: addr, Conns: 2, Duration: time.Second, Driver: drv})
		if err == nil || errors.Is(err, loadgen.ErrConfig) {
			t.Fatalf("%s: err = %v, want a connect error", drv, err)
		}
	}
}

func TestCancel(t *testing.T) {
	addr := serve(t, echo, "raw")
	for _, drv := range drivers() {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		start := time.Now()
		res, err := loadgen.Run(ctx, loadgen.Config{Addr: addr, Conns: 4, Duration: time.Minute, Driver: drv})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || res == nil {
			t.Fatalf("%s: err = %v", drv, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s: cancel took %v", drv, d)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	path := t.TempDir() + "/s.sock"
	srv, err := switchboard.NewServer(echo, switchboard.WithModel(switchboard.ModelGoroutine))
	if err != nil {
		t.Fatal(err)
	}
	lns, err := srv.Listen("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(lns...) }()
	defer func() { srv.Close(); <-done }()
	for _, drv := range drivers() {
		res := run(t, loadgen.Config{Addr: "unix:" + path, Conns: 4, Pipeline: 2, Duration: 100 * time.Millisecond, Driver: drv})
		noErrors(t, res)
		if res.Messages == 0 {
			t.Fatalf("%s: no messages", drv)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	line, _ := framing.Parse("line", 0)
	eof, _ := framing.Parse("eof", 0)
	typed, _ := framing.Parse("typed:a=4", 0)
	fixed, _ := framing.Parse("fixed:8", 0)
	ok := loadgen.Config{Addr: "127.0.0.1:1", Conns: 1, Duration: time.Second}
	for name, mod := range map[string]func(*loadgen.Config){
		"no addr":          func(c *loadgen.Config) { c.Addr = "" },
		"bad addr":         func(c *loadgen.Config) { c.Addr = "nowhere" },
		"no conns":         func(c *loadgen.Config) { c.Conns = 0 },
		"no end":           func(c *loadgen.Config) { c.Duration = 0 },
		"negative rate":    func(c *loadgen.Config) { c.Rate = -1 },
		"expect":           func(c *loadgen.Config) { c.Expect = "maybe" },
		"any raw":          func(c *loadgen.Config) { c.Expect = loadgen.ExpectAny },
		"eof":              func(c *loadgen.Config) { c.Codec = eof },
		"typed size":       func(c *loadgen.Config) { c.Codec = typed; c.Size = 7 },
		"fixed size":       func(c *loadgen.Config) { c.Codec = fixed; c.Size = 9 },
		"payload newline":  func(c *loadgen.Config) { c.Codec = line; c.Payload = []byte("a\nb") },
		"source ips v6":    func(c *loadgen.Config) { c.Addr = "[::1]:1"; c.SourceIPs = 2 },
		"source ips range": func(c *loadgen.Config) { c.SourceIPs = 300 },
		"driver":           func(c *loadgen.Config) { c.Driver = "threads" },
		"too large":        func(c *loadgen.Config) { c.Size = 2 << 20 },
		"proxy version":    func(c *loadgen.Config) { c.ProxyHeader = "v3" },
		"proxy source":     func(c *loadgen.Config) { c.ProxyHeader = "v1"; c.ProxySource = "nowhere" },
		"source no header": func(c *loadgen.Config) { c.ProxySource = "10.0.0.1:5" },
		"resp no payload":  func(c *loadgen.Config) { c.Codec, _ = framing.Parse("resp", 0) },
		"payload and tmpl": func(c *loadgen.Config) { c.Payload = []byte("x"); c.Template, _ = loadgen.ParseTemplate("{seq}") },
		"any raw reply":    func(c *loadgen.Config) { c.Codec = line; c.ReplyCodec = framing.Raw(0); c.Expect = loadgen.ExpectAny },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := loadgen.Run(context.Background(), cfg); !errors.Is(err, loadgen.ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
}
