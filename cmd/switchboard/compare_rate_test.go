package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"switchboard"
	"switchboard/loadgen"
)

// TestCompareRateValidation: every bad --rate is a usage error that says
// what is wrong.
func TestCompareRateValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "x"}, `--rate: "x" is not a number`},
		{[]string{"--rate", "-5"}, "must be positive"},
		{[]string{"--rate", "0"}, "leave --rate out for the closed loop"},
		{[]string{"--rate", "NaN"}, "is not a number"},
		{[]string{"--rate", "Inf"}, "is not a number"},
		{[]string{"--rate", "1e400"}, "is not a number"},
		{[]string{"--rate", "1000,,2000"}, `"" is not a number`},
		{[]string{"--rate", "1000,"}, `"" is not a number`},
		{[]string{"--rate", ""}, "give a rate"},
		{[]string{"--rate", " "}, "give a rate"},
		{[]string{"--rate", "10000:100000:10000"}, "FROM:TO:STEP with --slo is bench's"},
		{[]string{"--rate", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"}, "17 rates, at most 16"},
		{[]string{"--cells", "none", "--idle", "10", "--rate", "1000"}, "--rate needs cells"},
		{[]string{"--cells", "1000x64x1", "--rate", "100", "--duration", "5s"}, "--rate 100 over 1000 connections sends less than one message per connection in --duration 5s"},
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
	// Replaying a report runs nothing, so a rate cannot apply.
	if code, _, _ := benchCLI(t, "compare", "--from", "../../bench/results/targets.json", "--rate", "1000"); code != 2 {
		t.Errorf("--from with --rate: exit %d, want 2", code)
	}
}

// TestCompareRateCells: every cell runs at every rate, in the order
// given, duplicates dropped, and the load generator is given the rate.
func TestCompareRateCells(t *testing.T) {
	cmp, err := parseCompare(t, "--cells", "100x64x1,1000x64x1", "--rate", "50000, 1e5,50000")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cmp.cells {
		got = append(got, c.String())
	}
	if want := []string{"100x64x1@50000", "100x64x1@100000", "1000x64x1@50000", "1000x64x1@100000"}; !slices.Equal(got, want) {
		t.Errorf("cells %v, want %v", got, want)
	}
	if !slices.Equal(cmp.rates, []float64{50000, 100000}) || !cmp.runningRates() {
		t.Errorf("rates %v", cmp.rates)
	}
	if cfg := cmp.config(cmp.cells[1]); cfg.Rate != 100000 || cfg.Conns != 100 {
		t.Errorf("config rate %v conns %d", cfg.Rate, cfg.Conns)
	}
	if st := cmp.settings(); !slices.Equal(st.Rates, cmp.rates) || st.RateTolerance != loadgen.RateTolerance {
		t.Errorf("settings rates %v tolerance %v", st.Rates, st.RateTolerance)
	}
	// Without --rate nothing changes: closed-loop cells, no rate settings.
	cmp, err = parseCompare(t, "--cells", "100x64x1")
	if err != nil {
		t.Fatal(err)
	}
	if cmp.cells[0].Rate != 0 || cmp.runningRates() || cmp.config(cmp.cells[0]).Rate != 0 || cmp.settings().RateTolerance != 0 {
		t.Errorf("closed loop: %+v", cmp.cells)
	}
	// Idle scaling at a fixed rate: the rate is part of every cell.
	cmp, err = parseCompare(t, "--idle-scaling", "--rate", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if len(cmp.cells) != 1 || cmp.cells[0] != (cell{Conns: 100, Size: 64, Pipeline: 1, Rate: 1000}) {
		t.Errorf("--idle-scaling --rate cells %v", cmp.cells)
	}
}

// rateResult is an open-loop result: offered and achieved rates, p50
// and p99, server CPU per message and both CPU utilisations.
func rateResult(offered, achieved float64, p50 time.Duration, cpu, srvUtil, loadUtil float64) *loadgen.Result {
	r := &loadgen.Result{Rate: offered, OfferedRate: offered, AchievedRate: achieved, MsgsPerSec: achieved, Messages: int64(achieved * 3)}
	r.Shortfall = max(0, 1-achieved/offered)
	r.RateMissed = r.Shortfall > loadgen.RateTolerance
	r.Latency.P50, r.Latency.P99 = p50, 4*p50
	r.Server = &loadgen.ServerStats{CPUPerMsg: cpu, Utilization: srvUtil}
	r.Load.Utilization = loadUtil
	r.Load.Saturated = loadUtil >= loadgen.SaturationThreshold
	r.Bottleneck = loadgen.BottleneckRate
	return r
}

func TestMissCause(t *testing.T) {
	held := rateResult(1000, 995, time.Millisecond, 5, 0.95, 0.95)
	contended := rateResult(1000, 500, time.Millisecond, 5, 0.3, 0.3)
	contended.Bottleneck = loadgen.BottleneckContention
	for _, tc := range []struct {
		res  *loadgen.Result
		want string
	}{
		{held, ""}, // both CPUs full, yet the rate held: no cause to give
		{rateResult(1000, 500, time.Millisecond, 5, 0.95, 0.5), missServer},
		{rateResult(1000, 500, time.Millisecond, 5, 0.5, 0.95), missLoad},
		{rateResult(1000, 500, time.Millisecond, 5, 0.95, 0.95), missBoth},
		{contended, missContention},
		{rateResult(1000, 500, time.Millisecond, 5, 0.3, 0.3), missRoundTrip},
	} {
		if got := missCause(tc.res); got != tc.want {
			t.Errorf("server %.2f load %.2f short %.2f: %q, want %q", tc.res.Server.Utilization, tc.res.Load.Utilization, tc.res.Shortfall, got, tc.want)
		}
	}
}

// rateComparer is a comparer at a fixed rate of 100,000 msgs/s over 100
// connections, with three runs each of epoll (the baseline), uring,
// goroutine and c-epoll: uring holds the rate at less CPU, goroutine
// misses it because its own CPU is full, and c-epoll because the load
// generator's is, in two of three runs.
func rateComparer() (*comparer, cell) {
	c := cell{Conns: 100, Size: 64, Pipeline: 1, Rate: 100000}
	ep, ur := target{Name: switchboard.ModelEpoll}, target{Name: "uring"}
	gor, ce := target{Name: switchboard.ModelGoroutine}, target{Name: "c-epoll", Peer: true}
	cmp := testComparer(compareFlags{repeat: 3}, "raw", ep, ur, gor, ce)
	cmp.cells, cmp.rates = []cell{c}, []float64{c.Rate}
	add := func(t target, res *loadgen.Result) {
		cmp.runs = append(cmp.runs, runRecord{Target: t.Name, Cell: c, Result: res, AllocsPerMsg: -1})
	}
	ms := time.Millisecond
	add(ep, rateResult(1e5, 99900, 100*time.Microsecond, 4, 0.40, 0.7))
	add(ep, rateResult(1e5, 99800, 200*time.Microsecond, 5, 0.50, 0.7))
	add(ep, rateResult(1e5, 99700, 300*time.Microsecond, 6, 0.60, 0.7))
	add(ur, rateResult(1e5, 99900, 100*time.Microsecond, 3, 0.30, 0.7))
	add(ur, rateResult(1e5, 97000, 100*time.Microsecond, 3.5, 0.35, 0.7)) // 3% short, one run
	add(ur, rateResult(1e5, 99950, 100*time.Microsecond, 4, 0.40, 0.7))
	add(gor, rateResult(1e5, 60000, 50*ms, 15, 0.99, 0.5))
	add(gor, rateResult(1e5, 61000, 60*ms, 15.5, 0.99, 0.5))
	add(gor, rateResult(1e5, 62000, 70*ms, 16, 0.99, 0.5))
	add(ce, rateResult(1e5, 80000, ms, 2, 0.25, 0.97))
	add(ce, rateResult(1e5, 81000, ms, 2, 0.25, 0.97))
	add(ce, rateResult(1e5, 99500, ms, 2.5, 0.30, 0.80))
	return cmp, c
}

// TestCompareRateSummarise: medians, held or missed and by what, the
// ratios to the baseline and the references, and the flags on ratios
// between servers that did not both hold the rate.
func TestCompareRateSummarise(t *testing.T) {
	cmp, c := rateComparer()
	sums := cmp.summarise()
	if len(sums) != 4 {
		t.Fatalf("%d summaries", len(sums))
	}
	get := func(name string) *rateSummary {
		for _, s := range sums {
			if s.Target == name && s.Cell == c && s.Fixed != nil {
				return s.Fixed
			}
		}
		t.Fatalf("no fixed-rate summary of %s", name)
		return nil
	}
	e, u, g, p := get("epoll"), get("uring"), get("goroutine"), get("c-epoll")
	if e.Offered != 1e5 || e.Achieved != (stat{99800, 99700, 99900}) || e.P50 != (stat{200, 100, 300}) ||
		e.ServerUtil != (stat{0.5, 0.4, 0.6}) || e.LoadUtil != (stat{0.7, 0.7, 0.7}) {
		t.Errorf("epoll: %+v", e)
	}
	if !e.Held || e.Missed != 0 || e.Baseline != "epoll" || e.VsBase != 1 {
		t.Errorf("epoll held %v missed %d baseline %q ×base %v", e.Held, e.Missed, e.Baseline, e.VsBase)
	}
	// uring: one run 3% short, the median held; 3.5 / 5 of epoll.
	if !u.Held || u.Missed != 1 || u.MissedBy[missRoundTrip] != 1 || u.VsBase != 0.7 || len(u.NotSameRate) != 2 {
		t.Errorf("uring held %v missed %d by %v ×base %v not-same %v", u.Held, u.Missed, u.MissedBy, u.VsBase, u.NotSameRate)
	}
	if g.Held || g.Missed != 3 || g.MissedBy[missServer] != 3 || g.VsBase != 3.1 {
		t.Errorf("goroutine held %v missed %d by %v ×base %v", g.Held, g.Missed, g.MissedBy, g.VsBase)
	}
	if p.Held || p.Missed != 2 || p.MissedBy[missLoad] != 2 || p.VsBase != 0.4 {
		t.Errorf("c-epoll held %v missed %d by %v ×base %v", p.Held, p.Missed, p.MissedBy, p.VsBase)
	}
	// Ratios to a server that missed, or of one, are flagged; epoll and
	// uring held, so their ratio to each other is not.
	if slices.Contains(u.NotSameRate, "epoll") || !slices.Contains(u.NotSameRate, "goroutine") || !slices.Contains(u.NotSameRate, "c-epoll") {
		t.Errorf("uring's flagged ratios %v", u.NotSameRate)
	}
	if !slices.Contains(g.NotSameRate, "epoll") || !slices.Contains(p.NotSameRate, "epoll") || slices.Contains(g.NotSameRate, "goroutine") {
		t.Errorf("flagged: goroutine %v, c-epoll %v", g.NotSameRate, p.NotSameRate)
	}
	if !missedRate(sums) {
		t.Error("missedRate: false with two servers short")
	}
	if missedRate(sums[:2]) {
		t.Error("missedRate: true with epoll and uring held")
	}
	// The references' ratios of the closed loop are there too.
	for _, s := range sums {
		if s.Target == "uring" && (s.VsC != 1.75 || s.VsGo != 3.5/15.5) {
			t.Errorf("uring ×c-epoll %v ×goroutine %v", s.VsC, s.VsGo)
		}
	}
}

// TestCompareRateTable: the fixed-rate table, column for column, with
// the marks on what did not hold the rate.
func TestCompareRateTable(t *testing.T) {
	cmp, _ := rateComparer()
	var out bytes.Buffer
	cmp.printTables(&out, machine{ServerCPU: "0", LoadCPU: "1"}, cmp.summarise(), nil)
	text := out.String()
	for _, want := range []string{
		"open loop: each cell's rate spread evenly over its connections, latency from each message's due time",
		"within 2.0% of the offered one",
		"cell 100x64x1@100000: 100 connections, 64 B messages, pipeline 1, 100,000 msgs/s offered (1,000 per connection)",
		"  server     offered  achieved  (min-max)        short  p50     p99     (min-max)        server µs/msg  (min-max)      server CPU  load CPU  ×epoll  ×c-epoll  ×goroutine  rate                                errors",
		"  epoll      100,000  99,800    (99,700-99,900)  0.2%   200µs   800µs   (400µs-1.20ms)   5.00           (4.00-6.00)    50.0%       70.0%     1.00    2.50!     0.32!       held                                0",
		"  uring      100,000  99,900    (97,000-99,950)  0.1%   100µs   400µs   (400µs-400µs)    3.50           (3.00-4.00)    35.0%       70.0%     0.70    1.75!     0.23!       held (missed in 1/3: round trip 1)  0",
		"  goroutine  100,000  61,000    (60,000-62,000)  39.0%  60.0ms  240ms   (200ms-280ms)    15.50*         (15.00-16.00)  99.0%       50.0%     3.10!   7.75!     1.00        MISSED in 3/3: server 3             0",
		"  c-epoll    100,000  81,000    (80,000-99,500)  19.0%  1.00ms  4.00ms  (4.00ms-4.00ms)  2.00*          (2.00-2.50)    25.0%       97.0%     0.40!   1.00      0.13!       MISSED in 2/3: load generator 2     0",
		"  * did not hold the offered rate (median shortfall over 2.0%): CPU per message at a lower rate",
		"  ! one of the two servers did not hold the rate: not a comparison at the same rate",
		"  the load generator could not offer the rate against c-epoll in 2/3 runs (its CPU full, the server's not): lower --rate",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
	// Each run's line on stderr says the same of it.
	var b strings.Builder
	rateRunLine(&b, cmp.runs[9])
	if want := "offered 100,000, achieved 80,000 msgs/s (short 20.0%), p50 1.00ms, p99 4.00ms, server 2.00 µs/msg at 25.0% CPU, load 97.0% CPU (RATE MISSED: load generator)"; b.String() != want {
		t.Errorf("run line %q, want %q", b.String(), want)
	}
	if got := runLine(runRecord{Cell: cmp.cells[0], Result: &loadgen.Result{OfferedRate: 1e5}, AllocsPerMsg: -1}, false); !strings.Contains(got, "MEASURED NOTHING") {
		t.Errorf("a run of no reply: %q", got)
	}
}

// TestCompareRateReplay: a fixed-rate report written as --json gives the
// same table and a chart again with --from, its rate drawn in.
func TestCompareRateReplay(t *testing.T) {
	cmp, _ := rateComparer()
	sums := cmp.summarise()
	m := machine{CPU: "test CPU", CPUs: 2, ServerCPU: "0", LoadCPU: "1"}
	dir := t.TempDir()
	path := filepath.Join(dir, "rate.json")
	if err := writeJSON(path, compareReport{Machine: m, Settings: cmp.settings(), Summary: sums, Runs: cmp.runs}); err != nil {
		t.Fatal(err)
	}
	var direct bytes.Buffer
	cmp.printTables(&direct, m, sums, nil)
	svg := filepath.Join(dir, "rate.svg")
	code, out, errOut := benchCLI(t, "compare", "--from", path, "--plot", svg)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	// The replay's header says the duration recorded; the tables match.
	_, wantTables, _ := strings.Cut(direct.String(), "\ncell ")
	_, gotTables, _ := strings.Cut(out, "\ncell ")
	if gotTables != wantTables || wantTables == "" {
		t.Errorf("replayed tables differ:\n%s\nwant:\n%s", gotTables, wantTables)
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"100 conns, 64 B, P=1, at 100,000/s", "stroke-dasharray", "open loop: dashed, the rate offered to every server", ">*<"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("chart lacks %q", want)
		}
	}
}
