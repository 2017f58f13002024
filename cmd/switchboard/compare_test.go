package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"switchboard"
	"switchboard/framing"
	"switchboard/loadgen"
)

// parseCompare parses a compare command line with fresh flags and
// validates it, running nothing.
func parseCompare(t *testing.T, args ...string) (*comparer, error) {
	t.Helper()
	cmd, f := newCompareCommand()
	cmd.SetErr(io.Discard)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("%q: flags: %v", args, err)
	}
	return newComparer(cmd, f)
}

// TestCompareValidation: every check of the command line is a usage
// error (exit 2) that names what is wrong.
func TestCompareValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "-1s"}, "cannot be negative"},
		{[]string{"--duration", "0s"}, "--duration must be positive"},
		{[]string{"--connect-rate", "0"}, "--connect-rate"},
		{[]string{"--workers", "-1"}, "--workers"},
		{[]string{"--loops", "0"}, "--loops"},
		{[]string{"--source-ips", "300"}, "--source-ips"},
		{[]string{"--connect-timeout", "0s"}, "--connect-timeout"},
		{[]string{"--driver", "threads"}, "--driver"},
		{[]string{"--repeat", "0"}, "--repeat must be at least 1"},
		{[]string{"--idle", "-5"}, "--idle cannot be negative"},
		{[]string{"--idle-scaling", "--hold-idle", "5"}, "drop --hold-idle"},
		{[]string{"--plot", "chart.png"}, "FILE.svg"},
		{[]string{"--models", "nosuch"}, "--models"},
		{[]string{"--models", "goroutine,nosuch"}, "nosuch"},
		{[]string{"--peers=c-epoll,nosuch"}, `unknown peer "nosuch"`},
		{[]string{"--hold-idle", "-1"}, "--hold-idle"},
		{[]string{"--hold-idle", "x"}, "--hold-idle"},
		{[]string{"--cells", "none"}, "--cells none leaves nothing to run without --idle"},
		{[]string{"--cells", "100x64x1", "--conns", "5"}, "give one or the other"},
		{[]string{"--cells", "100x64x1", "--pipeline", "5"}, "give one or the other"},
		{[]string{"--cells", "100x64"}, "is not CONNSxSIZExPIPELINE"},
		{[]string{"--cells", "0x64x1"}, "positive numbers"},
		{[]string{"--cells", "100x4KBx1"}, "positive numbers"},
		{[]string{"--cells", "100x64x0"}, "positive numbers"},
		{[]string{"--conns", "0"}, "--conns"},
		{[]string{"--conns", "1,,2"}, "--conns"},
		{[]string{"--pipeline", "0"}, "--pipeline"},
		{[]string{"--size", "4KB"}, "--size: bad size"},
		{[]string{"--size", "0"}, "--size: bad size"},
		{[]string{"--framing", "nosuch"}, "--framing"},
		{[]string{"--framing", "eof"}, "cell 1x64x1"},
		{[]string{"--cpu-server", "x"}, "--cpu-server"},
	} {
		_, err := parseCompare(t, tc.args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", tc.args, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %q does not say %q", tc.args, err, tc.want)
		}
	}
}

// TestCompareValid: accepted command lines give the cells and targets
// asked for, in order, without duplicates.
func TestCompareValid(t *testing.T) {
	cmp, err := parseCompare(t, "--models", "goroutine,auto,goroutine", "--conns", "1,100,1", "--size", "64,1KiB", "--pipeline", "1")
	if err != nil {
		t.Fatal(err)
	}
	auto, _ := switchboard.ResolveModel("auto")
	want := []string{switchboard.ModelGoroutine}
	if auto != switchboard.ModelGoroutine {
		want = append(want, auto)
	}
	if got := cmp.targetNames(); !slices.Equal(got, want) {
		t.Errorf("targets %v, want %v", got, want)
	}
	var cells []string
	for _, c := range cmp.cells {
		cells = append(cells, c.String())
	}
	if w := []string{"1x64x1", "100x64x1", "1x1024x1", "100x1024x1"}; !slices.Equal(cells, w) {
		t.Errorf("cells %v, want %v", cells, w)
	}
	// --idle-scaling defaults to the seeds' cell.
	cmp, err = parseCompare(t, "--idle-scaling")
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.cells) != 1 || cmp.cells[0] != (cell{Conns: 100, Size: 64, Pipeline: 1}) {
		t.Errorf("--idle-scaling cells %v", cmp.cells)
	}
	if cmp, err = parseCompare(t, "--cells", "none", "--idle", "10"); err != nil || len(cmp.cells) != 0 {
		t.Errorf("--cells none --idle 10: %v, %v", cmp, err)
	}
}

// testComparer is a comparer of targets, without flags from a command
// line.
func testComparer(f compareFlags, codec string, targets ...target) *comparer {
	if f.repeat == 0 {
		f.repeat = 1
	}
	c, err := framing.Parse(codec, 0)
	if err != nil {
		panic(err)
	}
	return &comparer{f: &f, codec: c, targets: targets, holdIdle: []int{0}, stderr: io.Discard}
}

// modelTarget is the target of model, skipping the test when this build
// cannot run it.
func modelTarget(t *testing.T, model string) target {
	t.Helper()
	if _, err := switchboard.LookupModel(model); err != nil {
		t.Skip(err)
	}
	return target{Name: model}
}

func TestCompareSkipReasons(t *testing.T) {
	blocking := target{Name: switchboard.ModelBlocking}
	sel := modelTarget(t, switchboard.ModelSelect)
	peer := target{Name: "c-epoll", Peer: true}
	ceiling := maxConnsOf(sel)
	if ceiling <= 0 || maxConnsOf(blocking) != 0 || maxConnsOf(peer) != 0 {
		t.Fatalf("ceilings: select %d, blocking %d, peer %d", ceiling, maxConnsOf(blocking), maxConnsOf(peer))
	}
	raw := testComparer(compareFlags{}, "raw")
	line := testComparer(compareFlags{}, "line")
	for _, tc := range []struct {
		cmp  *comparer
		t    target
		c    cell
		want string // "" for none
	}{
		{raw, blocking, cell{Conns: 1, Size: 64, Pipeline: 4}, ""},
		{raw, blocking, cell{Conns: 2, Size: 64, Pipeline: 1}, "one connection at a time"},
		{raw, blocking, cell{Conns: 1, Size: 64, Pipeline: 1, HoldIdle: 1}, "one connection at a time"},
		{raw, sel, cell{Conns: ceiling, Size: 64, Pipeline: 1}, ""},
		{raw, sel, cell{Conns: ceiling - 10, Size: 64, Pipeline: 1, HoldIdle: 11}, fmt.Sprintf("more than %d connections", ceiling)},
		{raw, peer, cell{Conns: 10000, Size: 64, Pipeline: 1, HoldIdle: 10000}, ""},
		{line, peer, cell{Conns: 1, Size: 64, Pipeline: 1}, "echo raw bytes only; skipped with --framing line"},
		{line, target{Name: switchboard.ModelGoroutine}, cell{Conns: 1, Size: 64, Pipeline: 1}, ""},
	} {
		got := tc.cmp.skipReason(tc.t, tc.c)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s %s (%s): skip %q, want %q", tc.t.Name, tc.c, tc.cmp.codec, got, tc.want)
		}
	}
}

// TestCompareIdleScaling: the idle counts each model holds in the
// idle-scaling experiment, and the union the tables are laid out by.
func TestCompareIdleScaling(t *testing.T) {
	sel := modelTarget(t, switchboard.ModelSelect)
	blocking, gor := target{Name: switchboard.ModelBlocking}, target{Name: switchboard.ModelGoroutine}
	cmp := testComparer(compareFlags{idleScaling: true}, "raw", blocking, gor, sel)
	m := maxConnsOf(sel)
	for _, tc := range []struct {
		t    target
		want []int
	}{
		{blocking, []int{0}},
		{gor, []int{0, 1000, 5000, 10000}},
		{sel, []int{0, m / 2, m * 9 / 10}},
	} {
		if got := cmp.holdIdleFor(tc.t); !slices.Equal(got, tc.want) {
			t.Errorf("%s holds %v, want %v", tc.t.Name, got, tc.want)
		}
	}
	if m != 1000 {
		t.Logf("select's ceiling is %d here, not FD_SETSIZE 1024 less the headroom", m)
	}
	want := []int{0, m / 2, m * 9 / 10, 1000, 5000, 10000}
	slices.Sort(want)
	if got := cmp.allHoldIdle(); !slices.Equal(got, want) {
		t.Errorf("union %v, want %v", got, want)
	}
	// Without the experiment every target holds what --hold-idle says.
	cmp = testComparer(compareFlags{}, "raw", blocking, gor)
	cmp.holdIdle = []int{0, 50}
	if got := cmp.holdIdleFor(blocking); !slices.Equal(got, []int{0, 50}) {
		t.Errorf("--hold-idle 0,50: blocking holds %v", got)
	}
}

// TestCompareSchedule: each repeat starts with the next target, so none is
// always first after a cell change; what cannot run is skipped once, with
// the reason, and the idle-memory cell follows each repeat's cells.
func TestCompareSchedule(t *testing.T) {
	a, b := target{Name: switchboard.ModelGoroutine}, target{Name: switchboard.ModelBlocking}
	p := target{Name: "c-epoll", Peer: true}
	cmp := testComparer(compareFlags{repeat: 3, idle: 10}, "raw", a, b, p)
	cmp.cells = []cell{{Conns: 1, Size: 64, Pipeline: 1}, {Conns: 100, Size: 64, Pipeline: 1}}
	var got []string
	for _, j := range cmp.schedule() {
		s := fmt.Sprintf("%d %s %s", j.repeat, j.c, j.t.Name)
		if j.idle {
			s += " idle"
		}
		got = append(got, s)
	}
	want := []string{
		"0 1x64x1 goroutine", "0 1x64x1 blocking", "0 1x64x1 c-epoll",
		"0 100x64x1 goroutine", "0 100x64x1 c-epoll",
		"0 0x0x0+10idle goroutine idle", "0 0x0x0+10idle c-epoll idle",
		"1 1x64x1 blocking", "1 1x64x1 c-epoll", "1 1x64x1 goroutine",
		"1 100x64x1 c-epoll", "1 100x64x1 goroutine",
		"1 0x0x0+10idle c-epoll idle", "1 0x0x0+10idle goroutine idle",
		"2 1x64x1 c-epoll", "2 1x64x1 goroutine", "2 1x64x1 blocking",
		"2 100x64x1 c-epoll", "2 100x64x1 goroutine",
		"2 0x0x0+10idle c-epoll idle", "2 0x0x0+10idle goroutine idle",
	}
	if !slices.Equal(got, want) {
		t.Errorf("schedule:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(cmp.skipped) != 2 || !strings.Contains(cmp.skipped[0], "blocking 100x64x1: serves one connection at a time") ||
		!strings.Contains(cmp.skipped[1], "blocking idle memory: accepts one connection at a time") {
		t.Errorf("skipped %q", cmp.skipped)
	}
}

func TestCompareScheduleFDCeiling(t *testing.T) {
	sel := modelTarget(t, switchboard.ModelSelect)
	cmp := testComparer(compareFlags{repeat: 2, idle: 5000}, "raw", sel)
	if jobs := cmp.schedule(); len(jobs) != 0 {
		t.Errorf("select given %d idle-memory jobs of 5000 connections", len(jobs))
	}
	if len(cmp.skipped) != 1 || !strings.Contains(cmp.skipped[0], "select idle memory: 5000 connections exceed what it can watch") {
		t.Errorf("skipped %q", cmp.skipped)
	}
}

func TestStatOfEdges(t *testing.T) {
	if s := statOf(nil); s != (stat{}) {
		t.Errorf("statOf(nil) = %+v", s)
	}
	if s := statOf([]float64{7}); s != (stat{7, 7, 7}) {
		t.Errorf("statOf(7) = %+v", s)
	}
	in := []float64{5, -1, 3, 9, 0}
	if s := statOf(in); s != (stat{Median: 3, Min: -1, Max: 9}) {
		t.Errorf("statOf(%v) = %+v", in, s)
	}
	if !slices.Equal(in, []float64{5, -1, 3, 9, 0}) {
		t.Errorf("statOf reordered its input: %v", in)
	}
}

// result is a loadgen result of the figures summarise reads.
func result(rate float64, p99 time.Duration, serverCPU float64, bottleneck string, errs int64) *loadgen.Result {
	r := &loadgen.Result{MsgsPerSec: rate, Bottleneck: bottleneck}
	r.Latency.P99 = p99
	r.Load.CPUPerMsg = serverCPU / 2
	r.Errors.Mismatches = errs
	if serverCPU > 0 {
		r.Server = &loadgen.ServerStats{CPUPerMsg: serverCPU}
	}
	return r
}

func TestCompareSummarise(t *testing.T) {
	c1 := cell{Conns: 100, Size: 64, Pipeline: 1}
	c2 := cell{Conns: 100, Size: 64, Pipeline: 16}
	ep, gor := target{Name: switchboard.ModelEpoll}, target{Name: switchboard.ModelGoroutine}
	ce, cu := target{Name: "c-epoll", Peer: true}, target{Name: "c-uring", Peer: true}
	cmp := testComparer(compareFlags{repeat: 3}, "raw", gor, ep, ce, cu)
	cmp.cells = []cell{c1, c2}
	run := func(t target, c cell, res *loadgen.Result, allocs float64, errText string) {
		cmp.runs = append(cmp.runs, runRecord{Target: t.Name, Cell: c, Result: res, AllocsPerMsg: allocs, Error: errText})
	}
	// c1: everyone; epoll's three runs give the median and range.
	run(ep, c1, result(100, 3*time.Millisecond, 4, loadgen.BottleneckLoad, 0), 0.5, "")
	run(ep, c1, result(300, 1*time.Millisecond, 2, loadgen.BottleneckContention, 2), 0.1, "")
	run(ep, c1, result(200, 2*time.Millisecond, 3, "", 0), 0.3, "")
	run(ep, c1, nil, -1, "epoll exited during the run")
	run(gor, c1, result(150, time.Millisecond, 6, "", 0), 0, "")
	run(ce, c1, result(250, time.Millisecond, 2, "", 0), -1, "")
	run(cu, c1, result(280, time.Millisecond, 1.5, "", 0), -1, "")
	// c2: no reference but goroutine; c-epoll measured no server CPU.
	run(ep, c2, result(1000, time.Millisecond, 0.5, "", 0), 0, "")
	run(gor, c2, result(900, time.Millisecond, 1, "", 0), 0, "")
	run(ce, c2, result(1100, time.Millisecond, 0, "", 0), -1, "")

	sums := cmp.summarise()
	find := func(name string, c cell) summary {
		for _, s := range sums {
			if s.Target == name && s.Cell == c {
				return s
			}
		}
		t.Fatalf("no summary of %s %s in %+v", name, c, sums)
		return summary{}
	}
	e := find("epoll", c1)
	if e.Runs != 4 || e.Errors != 3 || e.LoadBound != 1 || e.Contended != 1 {
		t.Errorf("epoll counts: runs %d errors %d load-bound %d contended %d", e.Runs, e.Errors, e.LoadBound, e.Contended)
	}
	if e.MsgsPerS != (stat{200, 100, 300}) || e.P99 != (stat{2000, 1000, 3000}) || e.ServerCPU != (stat{3, 2, 4}) || e.LoadCPU != (stat{1.5, 1, 2}) {
		t.Errorf("epoll stats: %+v %+v %+v %+v", e.MsgsPerS, e.P99, e.ServerCPU, e.LoadCPU)
	}
	if e.Allocs == nil || *e.Allocs != (stat{0.3, 0.1, 0.5}) {
		t.Errorf("epoll allocs %+v", e.Allocs)
	}
	if e.VsC != 1.5 || e.VsURing != 2 || e.VsGo != 0.5 {
		t.Errorf("epoll ratios: ×c-epoll %v ×c-uring %v ×goroutine %v", e.VsC, e.VsURing, e.VsGo)
	}
	if s := find("c-epoll", c1); s.Allocs != nil || s.VsC != 1 {
		t.Errorf("c-epoll: allocs %+v, ×c-epoll %v", s.Allocs, s.VsC)
	}
	// Without a reference (or one that measured no CPU) the ratio is 0,
	// which the table and the JSON leave out.
	if s := find("epoll", c2); s.VsC != 0 || s.VsURing != 0 || s.VsGo != 0.5 {
		t.Errorf("epoll c2 ratios: %v %v %v", s.VsC, s.VsURing, s.VsGo)
	}
	if len(sums) != 7 {
		t.Errorf("%d summaries, want 7 (c-uring did not run c2)", len(sums))
	}

	var out bytes.Buffer
	cmp.printTables(&out, machine{ServerCPU: "0", LoadCPU: "1"}, sums, nil)
	text := out.String()
	for _, want := range []string{"×c-epoll  ×c-uring  ×goroutine", "epoll      200", "(100-300)", "2.00ms", "(1.00ms-3.00ms)",
		"1.50      2.00      0.50", "3 (load-bound in 1/4 runs) (CPU contention in 1/4 runs)", "server on CPU 0, load on CPU 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
}

func TestFmtPlacement(t *testing.T) {
	for _, tc := range [][3]string{
		{"0", "1", "server on CPU 0, load on CPU 1"},
		{fmtCPUs(nil), fmtCPUs(nil), "server and load not pinned (they share every CPU)"},
		{"0", fmtCPUs(nil), "server on CPU 0, load not pinned"},
		{"", "1-3", "server not pinned, load on CPU 1-3"},
	} {
		if got := fmtPlacement(tc[0], tc[1]); got != tc[2] {
			t.Errorf("fmtPlacement(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
	if got := plural(1, "loop") + ", " + plural(4, "loop"); got != "1 loop, 4 loops" {
		t.Errorf("plural: %q", got)
	}
}

// TestCompareReplay: --from prints the tables of every committed report
// and plots them, with the placement said plainly.
func TestCompareReplay(t *testing.T) {
	files, _ := filepath.Glob("../../bench/results/*.json")
	if len(files) == 0 {
		t.Fatal("no reports in bench/results")
	}
	for _, path := range files {
		svg := filepath.Join(t.TempDir(), "chart.svg")
		code, out, errOut := benchCLI(t, "compare", "--from", path, "--plot", svg)
		if code != 0 {
			t.Errorf("%s: exit %d\n%s%s", path, code, out, errOut)
			continue
		}
		if strings.Contains(out, "CPU any CPU") || !strings.Contains(out, "server on CPU 0, load on CPU 1") {
			t.Errorf("%s: placement:\n%s", path, out)
		}
		b, err := os.ReadFile(svg)
		if err != nil || !bytes.Contains(b, []byte("<svg")) {
			t.Errorf("%s: no SVG written (%v)", path, err)
		}
	}
	// The chart of targets.json: a column per cell, a latency row, one
	// whisker per bar (three servers, four cells, three figures).
	svg := filepath.Join(t.TempDir(), "targets.svg")
	if code, out, errOut := benchCLI(t, "compare", "--from", "../../bench/results/targets.json", "--plot", svg); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	b, _ := os.ReadFile(svg)
	for _, want := range []string{"p99 latency", "server µs/message", "100 conns, 64 B, P=1", "100 conns, 4.00 KiB, P=4", "goroutine", "c-epoll", "median of 5 runs"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("chart lacks %q", want)
		}
	}
	code, out, _ := benchCLI(t, "compare", "--from", "../../bench/results/targets.json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	// The committed table, figure for figure.
	for _, want := range []string{
		"cell 100x64x1: 100 connections, 64 B messages, pipeline 1",
		"  server     msgs/s   (min-max)          p99     (min-max)        server µs/msg  (min-max)    ×c-epoll  ×goroutine  allocs/msg  errors",
		"  goroutine  197,598  (119,362-212,822)  1.21ms  (1.07ms-4.72ms)  4.80           (4.65-6.62)  1.26      1.00        0.000       0 (CPU contention in 1/5 runs)",
		"cell 100x4096x4: 100 connections, 4.00 KiB messages, pipeline 4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay lacks %q:\n%s", want, out)
		}
	}
}

func TestCompareReplayErrors(t *testing.T) {
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "x.json")
	os.WriteFile(notJSON, []byte("switchboard compare: not json"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--from", notJSON, "--repeat", "2"}, 2},
		{[]string{"--from", notJSON, "--peers"}, 2},
		{[]string{"--from", notJSON, "--plot", "x.png"}, 2},
		{[]string{"--from", filepath.Join(dir, "missing.json")}, 1},
		{[]string{"--from", notJSON}, 1},
	} {
		if code, _, _ := benchCLI(t, append([]string{"compare"}, tc.args...)...); code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
	}
}

func TestFindPeersDir(t *testing.T) {
	if _, err := findPeersDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "holds no c-epoll/echo.c") {
		t.Errorf("empty --peers-dir: %v", err)
	}
	// From cmd/switchboard, the repository's bench/peers is found above.
	dir, err := findPeersDir("")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.Abs("../../bench/peers"); dir != want {
		t.Errorf("found %s, want %s", dir, want)
	}
}

// peersFixture is a bench/peers holding c-epoll's source (which marks the
// directory) and files, with a comparer asking for every peer.
func peersFixture(t *testing.T, files map[string]string) *comparer {
	t.Helper()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	dir := t.TempDir()
	src, err := os.ReadFile("../../bench/peers/c-epoll/echo.c")
	if err != nil {
		t.Fatal(err)
	}
	files["c-epoll/echo.c"] = string(src)
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return testComparer(compareFlags{peers: "all", peersDir: dir}, "raw")
}

// TestComparePeers: each way a peer cannot be prepared is skipped with
// its reason, and one that can is run as PROG PORT.
func TestComparePeers(t *testing.T) {
	if _, err := lookCC(); err != nil {
		t.Skip("no C compiler:", err)
	}
	cmp := peersFixture(t, map[string]string{"broken/echo.c": "this is not C"})
	table := []peer{
		peerTable[0], // c-epoll, the real source
		{name: "c-uring", src: "c-uring/echo.c", prepare: cPeer{}.prepare},
		{name: "broken", src: "broken/echo.c", prepare: cPeer{}.prepare},
		{name: "needs-lib", src: "c-epoll/echo.c", prepare: cPeer{libs: []string{"-lswitchboard-nosuch"},
			probe: "#include <switchboard-nosuch.h>\nint main(void) { return 0; }\n", missing: "nosuch is missing (apt-get install nosuch-dev)"}.prepare},
		{name: "kernel-off", src: "c-epoll/echo.c", prepare: cPeer{check: func() error { return errors.New("off here") }}.prepare},
	}
	cmp.addPeers(context.Background(), table)
	if names := cmp.targetNames(); !slices.Equal(names, []string{"c-epoll"}) {
		t.Fatalf("targets %v, want c-epoll only", names)
	}
	tg := cmp.targets[0]
	if argv := tg.argv(4242); len(argv) != 2 || argv[1] != "4242" || !tg.Peer {
		t.Errorf("c-epoll argv %q", argv)
	} else if _, err := os.Stat(argv[0]); err != nil {
		t.Errorf("c-epoll not built: %v", err)
	}
	for i, want := range []string{
		"c-uring: its source bench/peers/c-uring/echo.c is not there",
		"broken: ",
		"needs-lib: nosuch is missing (apt-get install nosuch-dev)",
		"kernel-off: off here",
	} {
		if i >= len(cmp.skipped) || !strings.HasPrefix(cmp.skipped[i], want) {
			t.Errorf("skip %d: %q, want %q", i, cmp.skipped, want)
		}
	}
	if len(cmp.skipped) > 1 && !strings.Contains(cmp.skipped[1], "failed") {
		t.Errorf("broken source: %q", cmp.skipped[1])
	}
}

func TestComparePeersNoCompiler(t *testing.T) {
	cmp := peersFixture(t, map[string]string{})
	t.Setenv("CC", "switchboard-no-such-cc")
	cmp.addPeers(context.Background(), peerTable[:2])
	if len(cmp.targets) != 0 || len(cmp.skipped) != 2 {
		t.Fatalf("targets %v, skipped %q", cmp.targetNames(), cmp.skipped)
	}
	if !strings.HasPrefix(cmp.skipped[0], "c-epoll: no C compiler") && !strings.Contains(cmp.skipped[0], "needs Linux") {
		t.Errorf("c-epoll: %q", cmp.skipped[0])
	}
	if !strings.HasPrefix(cmp.skipped[1], "c-uring: its source") {
		t.Errorf("c-uring: %q", cmp.skipped[1])
	}
	// Asked for by name, only those are prepared.
	cmp = peersFixture(t, map[string]string{})
	cmp.f.peers = "c-uring"
	cmp.addPeers(context.Background(), peerTable)
	if len(cmp.skipped) != 1 || !strings.HasPrefix(cmp.skipped[0], "c-uring:") {
		t.Errorf("--peers=c-uring: skipped %q", cmp.skipped)
	}
	cmp = testComparer(compareFlags{peers: "all", peersDir: t.TempDir()}, "raw")
	cmp.addPeers(context.Background(), peerTable)
	if len(cmp.skipped) != 1 || !strings.Contains(cmp.skipped[0], "peers: --peers-dir") {
		t.Errorf("bad --peers-dir: skipped %q", cmp.skipped)
	}
}

// TestPeerTable: every peer has a name, a source and a preparation, and
// every source but c-uring's (written on its own branch) is committed.
func TestPeerTable(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range peerTable {
		if p.name == "" || p.src == "" || p.prepare == nil || seen[p.name] {
			t.Errorf("peer %+v", p)
		}
		seen[p.name] = true
		if _, err := os.Stat(filepath.Join("../../bench/peers", p.src)); err != nil && p.name != "c-uring" {
			t.Errorf("%s: %v", p.name, err)
		}
	}
	if !seen["c-uring"] || !seen["c-epoll"] {
		t.Errorf("peers %v", peerNames())
	}
}

func TestPlotTicks(t *testing.T) {
	for in, want := range map[string]string{"8.00ms": "8ms", "2.50ms": "2.5ms", "16.0ms": "16ms", "810µs": "810µs", "0ns": "0", "1.25s": "1.25s"} {
		if got := trimZeros(in); got != want {
			t.Errorf("trimZeros(%q) = %q, want %q", in, got, want)
		}
	}
	var labels []string
	for _, tk := range (usTicks{}).Ticks(0, 5000) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if !slices.Contains(labels, "0") || !slices.Contains(labels, "2.5ms") || !slices.Contains(labels, "5ms") {
		t.Errorf("ticks of 0-5000µs: %q", labels)
	}
}

func TestPlotNothing(t *testing.T) {
	if err := plotCompare(filepath.Join(t.TempDir(), "x.svg"), nil, nil, nil); err == nil || !strings.Contains(err.Error(), "nothing to plot") {
		t.Errorf("empty plot: %v", err)
	}
}

// TestComparePeerURing: the c-uring entry builds with -luring where
// liburing is installed, and says what to install where it is not.
func TestComparePeerURing(t *testing.T) {
	if _, err := lookCC(); err != nil {
		t.Skip("no C compiler:", err)
	}
	src, err := os.ReadFile("../../bench/peers/c-epoll/echo.c")
	if err != nil {
		t.Fatal(err)
	}
	// Any C echo server of the convention stands in for the source.
	cmp := peersFixture(t, map[string]string{"c-uring/echo.c": string(src)})
	cmp.f.peers = "c-uring"
	cmp.addPeers(context.Background(), peerTable)
	_, statErr := os.Stat("/usr/include/liburing.h")
	switch {
	case len(cmp.targets) == 1:
		if statErr != nil {
			t.Logf("liburing found outside /usr/include")
		}
		if argv := cmp.targets[0].argv(7); len(argv) != 2 || !strings.HasSuffix(argv[0], "c-uring-echo") || argv[1] != "7" {
			t.Errorf("c-uring argv %q", argv)
		}
	case len(cmp.skipped) == 1 && strings.Contains(cmp.skipped[0], "io_uring is disabled"):
		t.Skip(cmp.skipped[0])
	default:
		if len(cmp.skipped) != 1 || !strings.Contains(cmp.skipped[0], "c-uring: liburing is missing (Debian: apt-get install liburing-dev)") {
			t.Errorf("c-uring skipped %q", cmp.skipped)
		}
		if statErr == nil {
			t.Errorf("liburing.h is installed, yet c-uring was skipped: %q", cmp.skipped)
		}
	}
}
