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
	for _, model := range gaugedModels(t) {
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
			if err := testutil.GatherAndCompare(reg, strings.NewReader(expected(model)), exactNames...); err != nil {
				t.Fatal(err)
			}
			loops := len(srv.LoopIterations())
			if (model == switchboard.ModelGoroutine) != (loops == 0) {
				t.Fatalf("%s: %d loop histograms", model, loops)
			}
			if n := testutil.CollectAndCount(col); n != 26+loops {
				t.Fatalf("collector exports %d series, want %d", n, 26+loops)
			}
			checkTimeHistograms(t, reg, loops)
		})
	}
}

// exactNames are the metrics compared exactly; the two time histograms
// are checked by checkTimeHistograms.
var exactNames = []string{
	"switchboard_accept_errors_total", "switchboard_build_info",
	"switchboard_connections_accepted_total", "switchboard_connections_active",
	"switchboard_connections_closed_total", "switchboard_connections_rejected_total",
	"switchboard_messages_received_total", "switchboard_messages_sent_total",
	"switchboard_received_bytes_total", "switchboard_sent_bytes_total",
	"switchboard_connections_paused", "switchboard_pending_output_bytes",
}

// checkTimeHistograms asserts the duration histogram's count exactly (the
// three connections) and what the timings guarantee: the idle one lasted
// at least the idle timeout. Iterations are not countable ahead, but
// every connection's accept took one on some loop.
func checkTimeHistograms(t *testing.T, reg *prometheus.Registry, loops int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var durations, iterSeries int
	var iterations uint64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "switchboard_connection_duration_seconds":
			for _, m := range mf.GetMetric() {
				durations++
				h := m.GetHistogram()
				if h.GetSampleCount() != 3 {
					t.Errorf("connection durations counted %d, want 3", h.GetSampleCount())
				}
				if h.GetSampleSum() < 0.3 {
					t.Errorf("durations sum to %vs, less than the idle connection's 0.3s", h.GetSampleSum())
				}
				b := h.GetBucket()
				if len(b) != 8 || b[len(b)-1].GetUpperBound() != 3600 || b[len(b)-1].GetCumulativeCount() != 3 || b[2].GetCumulativeCount() > 2 {
					t.Errorf("duration buckets %v", b)
				}
			}
		case "switchboard_loop_iteration_seconds":
			for _, m := range mf.GetMetric() {
				iterSeries++
				h := m.GetHistogram()
				iterations += h.GetSampleCount()
				if b := h.GetBucket(); len(b) != 9 || b[len(b)-1].GetCumulativeCount() > h.GetSampleCount() {
					t.Errorf("iteration buckets %v for count %d", b, h.GetSampleCount())
				}
			}
		}
	}
	if durations != 1 || iterSeries != loops {
		t.Errorf("%d duration histograms, %d iteration histograms; want 1 and %d", durations, iterSeries, loops)
	}
	if loops > 0 && iterations < 3 {
		t.Errorf("loops counted %d iterations for three connections", iterations)
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
		"# HELP switchboard_connections_paused Connections whose reading is paused now because their pending output passed --max-pending (backpressure).",
		"# TYPE switchboard_connections_paused gauge",
		"switchboard_connections_paused{"+m+"} 0",
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
		"# HELP switchboard_pending_output_bytes Output queued and not yet written, over every connection.",
		"# TYPE switchboard_pending_output_bytes gauge",
		"switchboard_pending_output_bytes{"+m+"} 0",
		"# HELP switchboard_received_bytes_total Bytes read from connections.",
		"# TYPE switchboard_received_bytes_total counter",
		"switchboard_received_bytes_total{"+m+"} 26",
		"# HELP switchboard_sent_bytes_total Bytes written to connections.",
		"# TYPE switchboard_sent_bytes_total counter",
		"switchboard_sent_bytes_total{"+m+"} 6",
		"# HELP switchboard_tls_handshakes_total TLS handshakes that succeeded (failures are connections_closed_total{reason=\"handshake\"}).",
		"# TYPE switchboard_tls_handshakes_total counter",
		"switchboard_tls_handshakes_total{"+m+"} 0",
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

// gaugedModels are the models whose counting is each an engine's own:
// the stream engine's (goroutine), the reactor's (auto) and, where the
// kernel allows it, the io_uring engine's.
func gaugedModels(t *testing.T) []string {
	out := []string{switchboard.ModelGoroutine, mustResolve(t, "auto")}
	if switchboard.CheckModel(switchboard.ModelUring) == nil {
		out = append(out, switchboard.ModelUring)
	}
	return out
}

func mustResolve(t *testing.T, name string) string {
	m, err := switchboard.ResolveModel(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
