package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"switchboard"
	"switchboard/internal/testserver"
	"switchboard/loadgen"
)

// benchCLI runs the command line with fresh flag values (cobra keeps the
// values and the Changed marks of an earlier Execute) and returns the
// exit status and what the command wrote.
func benchCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var reset func(*cobra.Command)
	reset = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			f.Value.Set(f.DefValue)
			f.Changed = false
		})
		for _, sub := range c.Commands() {
			reset(sub)
		}
	}
	reset(rootCmd)
	var out, errOut bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&errOut)
	defer func() {
		rootCmd.SetOut(nil)
		rootCmd.SetErr(nil)
	}()
	code := run(args)
	return code, out.String(), errOut.String()
}

// benchServer serves h on 127.0.0.1:0 in this process.
func benchServer(t *testing.T, h switchboard.Handler) string {
	t.Helper()
	a, _ := testserver.Start(t, "127.0.0.1:0", h, switchboard.WithModel(switchboard.ModelGoroutine))
	return a
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--conns", "0"},
		{"bench", "--size", "4KB"},
		{"bench", "--size", "0"},
		{"bench", "--pipeline", "0"},
		{"bench", "--connect", "127.0.0.1:1", "--model", "epoll"},
		{"bench", "--connect", "127.0.0.1:1", "--loops", "2"},
		{"bench", "--connect", "nowhere"},
		{"bench", "--model", "nosuch"},
		{"bench", "--server-pid", "1"},
		{"bench", "--framing", "eof"},
		{"bench", "--framing", "line", "--payload", "a\nb"},
		{"bench", "--expect", "any"},
		{"bench", "--expect", "maybe"},
		{"bench", "--duration", "0"},
		{"bench", "--rate", "-1"},
		{"bench", "--rate", "1:2"},
		{"bench", "--rate", "5:1:1", "--slo", "p99<=1ms"},
		{"bench", "--rate", "1:100:0", "--slo", "p99<=1ms"},
		{"bench", "--rate", "1:1000000:1", "--slo", "p99<=1ms"},
		{"bench", "--rate", "1:10:1"},
		{"bench", "--rate", "fast"},
		{"bench", "--slo", "p99"},
		{"bench", "--slo", "p42<=1ms"},
		{"bench", "--slo", "p99<=fast"},
		{"bench", "--slo", "<=1ms"},
		{"bench", "--proxy-header", "v3"},
		{"bench", "--proxy-source", "10.0.0.1:1"},
		{"bench", "--proxy-header", "v1", "--proxy-source", "nowhere"},
		{"bench", "--reply-framing", "bogus"},
		{"bench", "--payload", "{nope}"},
		{"bench", "--payload", "GET {rand:9-1}"},
		{"bench", "--framing", "resp"},
		{"bench", "--source-ips", "300"},
		{"bench", "--driver", "threads"},
		{"bench", "--cpu-load", "x"},
		{"bench", "extra"},
		{"compare", "--cells", "100x64"},
		{"compare", "--cells", "100x64x1", "--conns", "5"},
		{"compare", "--repeat", "0"},
		{"compare", "--plot", "chart.png"},
		{"compare", "--models", "nosuch"},
		{"compare", "--hold-idle", "-1"},
		{"compare", "--idle-scaling", "--hold-idle", "5"},
		{"compare", "--framing", "eof"},
	} {
		if code, _, _ := benchCLI(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestBenchEchoJSON(t *testing.T) {
	addr := benchServer(t, switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write(msg) }))
	path := filepath.Join(t.TempDir(), "bench.json")
	code, out, errOut := benchCLI(t, "bench", "--connect", addr, "--conns", "4", "--pipeline", "2", "--size", "1KiB",
		"--duration", "300ms", "--warmup", "100ms", "--json", path, "--server-pid", "0")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"throughput", "msgs/s", "MB/s", "p99.9", "errors       0"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res loadgen.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Messages == 0 || res.Size != 1024 || res.Latency.P99 == 0 {
		t.Fatalf("JSON figures: %+v", res)
	}
}

// TestBenchMismatchExit1: a server that corrupts one byte makes bench
// count and report the mismatch and exit 1.
func TestBenchMismatchExit1(t *testing.T) {
	var n atomic.Int64
	addr := benchServer(t, switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		if n.Add(1) == 20 {
			b := bytes.Clone(msg)
			b[0] ^= 1
			c.Write(b)
			return
		}
		c.Write(msg)
	}))
	code, out, errOut := benchCLI(t, "bench", "--connect", addr, "--conns", "2", "--duration", "300ms", "--warmup", "0s")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "1 mismatched replies") || !strings.Contains(out, "first mismatch: connection") {
		t.Fatalf("mismatch not reported:\n%s", out)
	}
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "1-3": "1-3", "0,2": "0,2", "0-1,3": "0-1,3", "none": "any CPU"} {
		got, err := parseCPUs(in)
		if err != nil || fmtCPUs(got) != want {
			t.Errorf("parseCPUs(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"x", "3-1", "-1", "1,"} {
		if _, err := parseCPUs(bad); err == nil {
			t.Errorf("parseCPUs(%q) accepted", bad)
		}
	}
}

func TestStatOf(t *testing.T) {
	s := statOf([]float64{3, 1, 2})
	if s != (stat{Median: 2, Min: 1, Max: 3}) {
		t.Fatalf("statOf = %+v", s)
	}
	if s := statOf([]float64{4, 1, 2, 3}); s.Median != 2.5 {
		t.Fatalf("even median = %v", s.Median)
	}
}
