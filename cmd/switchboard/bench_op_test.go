package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"switchboard"
	"switchboard/internal/testserver"
)

var echoHandler = switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write(msg) })

// pauser answers every message after a pause: a server that falls
// behind.
type pauser struct {
	switchboard.BaseHandler
	pause time.Duration
}

func (p pauser) OnMessage(c switchboard.Conn, msg []byte) {
	time.Sleep(p.pause)
	c.Write(msg)
}

// report is the part of bench's JSON the tests read.
type report struct {
	Run struct {
		Version     string   `json:"version"`
		Start       string   `json:"start"`
		CommandLine []string `json:"command_line"`
		Machine     struct {
			CPUs   int    `json:"cpus"`
			Kernel string `json:"kernel"`
		} `json:"machine"`
	} `json:"run"`
	Messages     int64   `json:"messages"`
	RateMissed   bool    `json:"rate_missed"`
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Search       *struct {
		Steps []struct {
			Rate float64 `json:"rate"`
			Met  bool    `json:"met"`
			Why  string  `json:"why"`
		} `json:"steps"`
		HighestMet  *float64 `json:"highest_met"`
		FirstMissed *float64 `json:"first_missed"`
		Met         bool     `json:"met"`
	} `json:"slo_search"`
}

func decodeReport(t *testing.T, b []byte) report {
	t.Helper()
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("JSON: %v\n%s", err, b)
	}
	return r
}

// --json - puts the JSON alone on stdout, the summary on stderr, and the
// JSON says what ran where.
func TestBenchJSONStdout(t *testing.T) {
	addr := benchServer(t, echoHandler)
	code, out, errOut := benchCLI(t, "bench", "--connect", addr, "--conns", "2", "--requests", "100", "--warmup", "0s", "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	r := decodeReport(t, []byte(out))
	if r.Messages != 100 || r.Run.Version == "" || r.Run.Start == "" || r.Run.Machine.CPUs == 0 {
		t.Fatalf("report %+v", r)
	}
	if strings.Join(r.Run.CommandLine, " ") != "switchboard bench --connect="+addr+" --conns=2 --json=- --requests=100 --warmup=0s" {
		t.Fatalf("command line %q", r.Run.CommandLine)
	}
	if !strings.Contains(errOut, "throughput") {
		t.Fatalf("summary not on stderr:\n%s", errOut)
	}
}

// A server that falls behind --rate: bench reports the shortfall on one
// line and in the JSON, and exits 3.
func TestBenchRateMissed(t *testing.T) {
	addr := benchServer(t, pauser{pause: 5 * time.Millisecond})
	path := filepath.Join(t.TempDir(), "r.json")
	code, out, errOut := benchCLI(t, "bench", "--connect", addr, "--conns", "2", "--rate", "4000", "--duration", "300ms", "--warmup", "100ms", "--json", path)
	if code != exitTarget {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitTarget, out, errOut)
	}
	if !strings.Contains(errOut, "target rate not reached: achieved") || !strings.Contains(out, "short of the target") {
		t.Fatalf("no shortfall line:\n%s%s", out, errOut)
	}
	b, _ := os.ReadFile(path)
	r := decodeReport(t, b)
	if !r.RateMissed || r.OfferedRate != 4000 || r.AchievedRate <= 0 || r.AchievedRate > 1000 || r.Messages == 0 {
		t.Fatalf("report %+v", r)
	}
}

// A run in which nothing was measured is not a success, even without
// errors: here the one reply in flight from the warm-up comes after the
// window.
func TestBenchNothingMeasured(t *testing.T) {
	addr := benchServer(t, pauser{pause: 400 * time.Millisecond})
	code, out, errOut := benchCLI(t, "bench", "--connect", addr, "--conns", "1", "--duration", "100ms", "--warmup", "100ms")
	if code != 1 || !strings.Contains(errOut, "no message was measured") {
		t.Fatalf("exit %d, want 1 and a line\n%s%s", code, out, errOut)
	}
}

func TestBenchSLOSearch(t *testing.T) {
	// About 2 x 500 replies/s at most: 200/s meets a generous objective,
	// 1,600/s cannot be reached.
	addr := benchServer(t, pauser{pause: 2 * time.Millisecond})
	path := filepath.Join(t.TempDir(), "slo.json")
	hdr := filepath.Join(t.TempDir(), "slo.hlog")
	code, out, errOut := benchCLI(t, "bench", "--connect", addr, "--conns", "2", "--rate", "200:3000:1400", "--slo", "p99<=1s",
		"--duration", "300ms", "--warmup", "50ms", "--json", path, "--hdr-log", hdr)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"step 200", "step 1,600", "missed: rate not reached", "highest rate within p99<=1s: 200 msgs/s; first that was not: 1,600 msgs/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b, _ := os.ReadFile(path)
	r := decodeReport(t, b)
	s := r.Search
	if s == nil || len(s.Steps) != 2 || !s.Met || s.HighestMet == nil || *s.HighestMet != 200 || s.FirstMissed == nil || *s.FirstMissed != 1600 {
		t.Fatalf("search %+v", s)
	}
	// The interval log holds one histogram per step.
	f, err := os.Open(hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lr := hdrhistogram.NewHistogramLogReader(f)
	var n int
	for i := 0; i < 10; i++ {
		h, err := lr.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			break
		}
		if h.TotalCount() == 0 {
			t.Fatalf("interval %d is empty", i)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d intervals in the log, want 2", n)
	}

	// No step meets an impossible objective: exit 3, one line.
	code, out, errOut = benchCLI(t, "bench", "--connect", addr, "--conns", "2", "--rate", "100:300:100", "--slo", "max<=1ns",
		"--duration", "100ms", "--warmup", "0s", "--json", path)
	if code != exitTarget || !strings.Contains(errOut, "no step met max<=1ns: at 100 msgs/s, max") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	b, _ = os.ReadFile(path)
	if r := decodeReport(t, b); r.Search == nil || r.Search.Met || len(r.Search.Steps) != 1 || r.Search.HighestMet != nil {
		t.Fatalf("search %+v", r.Search)
	}
}

func TestParseObjective(t *testing.T) {
	for in, want := range map[string]string{"p99<=1ms": "p99<=1ms", "P99.9 < 250us": "p99.9<=250µs", "max<=2s": "max<=2s", "p50<=100µs": "p50<=100µs"} {
		o, err := parseObjective(in)
		if err != nil || o.text != want {
			t.Errorf("parseObjective(%q) = %v, %v; want %s", in, o, err, want)
		}
	}
	rates, err := parseRates("1000:5000:2000")
	if err != nil || len(rates) != 3 || rates[2] != 5000 {
		t.Fatalf("parseRates = %v, %v", rates, err)
	}
}

// proxySeen records the client address each connection announced.
type proxySeen struct {
	switchboard.BaseHandler
	mu    sync.Mutex
	addrs []string
}

func (p *proxySeen) OnOpen(c switchboard.Conn) {
	p.mu.Lock()
	p.addrs = append(p.addrs, c.RemoteAddr().String())
	p.mu.Unlock()
}
func (p *proxySeen) OnMessage(c switchboard.Conn, msg []byte) { c.Write(msg) }

func TestBenchProxyHeader(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		h := &proxySeen{}
		addr, _ := testserver.Start(t, "127.0.0.1:0", h, switchboard.WithModel(switchboard.ModelGoroutine), switchboard.WithProxyProtocol(true))
		code, out, errOut := benchCLI(t, "bench", "--connect", addr, "--conns", "2", "--requests", "50", "--warmup", "0s",
			"--proxy-header", v, "--proxy-source", "198.51.100.7:99")
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", v, code, out, errOut)
		}
		h.mu.Lock()
		if len(h.addrs) != 2 || h.addrs[0] != "198.51.100.7:99" {
			t.Fatalf("%s: the server saw %v", v, h.addrs)
		}
		h.mu.Unlock()
	}
}

// startRedis runs redis-server on a free loopback port until the test
// ends, or skips the test when it is not installed.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server): ", err)
	}
	addr := testserver.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if i == 200 {
			t.Fatalf("redis-server did not listen on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBenchRedis(t *testing.T) {
	addr := startRedis(t)
	for _, payload := range []string{"SET key:{rand:1-100000} {bytes:3}", "GET key:{rand:1-100000}"} {
		code, out, errOut := benchCLI(t, "bench", "--connect", addr, "--framing", "resp", "--payload", payload, "--expect", "any",
			"--conns", "4", "--pipeline", "4", "--requests", "2000", "--warmup", "0s")
		if code != 0 || !strings.Contains(out, "messages     2,000") {
			t.Fatalf("%q: exit %d\n%s%s", payload, code, out, errOut)
		}
	}
}
