package metrics_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"switchboard"
	"switchboard/internal/testserver"
	"switchboard/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echo replies to every message with the message.
type echo struct{}

func (echo) OnOpen(switchboard.Conn)                  {}
func (echo) OnMessage(c switchboard.Conn, msg []byte) { c.Write(msg) }
func (echo) OnClose(switchboard.Conn, error)          {}

// TestCollectorAfterScriptedExchange runs a known exchange and asserts every
// metric the collector exports, exactly: one connection that echoes two
// lines and hangs up, one that breaks the framing, one left idle.
func TestCollectorAfterScriptedExchange(t *testing.T) {
	for _, model := range []string{switchboard.ModelGoroutine, mustResolve(t, "auto")} {
		t.Run(model, func(t *testing.T) {
			addr, srv := testserver.Start(t, "127.0.0.1:0", echo{},
				switchboard.WithModel(model),
				switchboard.WithFraming("line", 16),
				switchboard.WithIdleTimeout(300*time.Millisecond))

			// 1: two lines echoed, then the peer closes.
			c1 := dial(t, addr)
			c1.Write([]byte("ab\ncd\n"))
			r := bufio.NewReader(c1)
			for _, want := range []string{"ab\n", "cd\n"} {
				if got, err := r.ReadString('\n'); err != nil || got != want {
					t.Fatalf("echo: %q, %v", got, err)
				}
			}
			c1.Close()
			waitClosed(t, srv, 1)

			// 2: a 20-byte line over the 16-byte maximum frame.
			c2 := dial(t, addr)
			c2.Write([]byte(strings.Repeat("x", 20)))
			if n, _ := io.Copy(io.Discard, c2); n != 0 {
				t.Fatalf("got %d bytes back from a frame over the limit", n)
			}
			c2.Close()
			waitClosed(t, srv, 2)

			// 3: says nothing until the idle timeout closes it.
			c3 := dial(t, addr)
			io.Copy(io.Discard, c3)
			c3.Close()
			waitClosed(t, srv, 3)

			col := metrics.New(srv, metrics.Options{Version: "v1.2.3-test"})
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(col)
			if err := testutil.GatherAndCompare(reg, strings.NewReader(expected(model))); err != nil {
				t.Fatal(err)
			}
			if n := testutil.CollectAndCount(col); n != 22 {
				t.Fatalf("collector exports %d series, want 22", n)
			}
		})
	}
}

func expected(model string) string {
	m := `model="` + model + `"`
	lines := []string{
		"# HELP switchboard_accept_errors_total Failed accepts, by errno: emfile, enfile, enomem (ENOMEM and ENOBUFS), other.",
		"# TYPE switchboard_accept_errors_total counter",
	}
	for _, k := range []string{"emfile", "enfile", "enomem", "other"} {
		lines = append(lines, fmt.Sprintf(`switchboard_accept_errors_total{kind=%q,%s} 0`, k, m))
	}
	lines = append(lines,
		"# HELP switchboard_build_info Always 1; the labels say what is running.",
		"# TYPE switchboard_build_info gauge",
		fmt.Sprintf(`switchboard_build_info{go_version=%q,%s,version="v1.2.3-test"} 1`, runtime.Version(), m),
		"# HELP switchboard_connections_accepted_total Connections accepted and handed to the handler.",
		"# TYPE switchboard_connections_accepted_total counter",
		"switchboard_connections_accepted_total{"+m+"} 3",
		"# HELP switchboard_connections_active Connections open now.",
		"# TYPE switchboard_connections_active gauge",
		"switchboard_connections_active{"+m+"} 0",
		"# HELP switchboard_connections_closed_total Closed connections, by reason.",
		"# TYPE switchboard_connections_closed_total counter",
	)
	want := map[string]int{"peer": 1, "protocol_error": 1, "idle": 1}
	for _, r := range []string{"error", "frame_timeout", "handshake", "idle", "panic", "peer", "protocol_error", "shutdown", "slow_consumer", "write_timeout"} {
		lines = append(lines, fmt.Sprintf(`switchboard_connections_closed_total{%s,reason=%q} %d`, m, r, want[r]))
	}
	lines = append(lines,
		"# HELP switchboard_connections_rejected_total Connections closed at accept by a limit (--max-conns, or shed when out of descriptors).",
		"# TYPE switchboard_connections_rejected_total counter",
		"switchboard_connections_rejected_total{"+m+"} 0",
		"# HELP switchboard_messages_received_total Frames decoded and delivered to the handler.",
		"# TYPE switchboard_messages_received_total counter",
		"switchboard_messages_received_total{"+m+"} 2",
		"# HELP switchboard_messages_sent_total Frames the handler queued for sending.",
		"# TYPE switchboard_messages_sent_total counter",
		"switchboard_messages_sent_total{"+m+"} 2",
		"# HELP switchboard_received_bytes_total Bytes read from connections.",
		"# TYPE switchboard_received_bytes_total counter",
		"switchboard_received_bytes_total{"+m+"} 26",
		"# HELP switchboard_sent_bytes_total Bytes written to connections.",
		"# TYPE switchboard_sent_bytes_total counter",
		"switchboard_sent_bytes_total{"+m+"} 6",
	)
	return strings.Join(lines, "\n") + "\n"
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// waitClosed waits (bounded) until n connections have closed: the close is
// counted on the server's side after the client has seen it.
func waitClosed(t *testing.T, srv *switchboard.Server, n int64) {
	t.Helper()
	for range 500 {
		st := srv.Stats()
		if st.Active == 0 && st.Accepted-st.Active == n && sumCloses(st.Closes) == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("connections never closed: %+v", srv.Stats())
}

func sumCloses(c switchboard.CloseCounts) int64 {
	return c.Peer + c.Error + c.Idle + c.WriteTimeout + c.FrameTimeout + c.SlowConsumer +
		c.ProtocolError + c.Panic + c.Shutdown + c.Handshake
}

func mustResolve(t *testing.T, name string) string {
	m, err := switchboard.ResolveModel(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
