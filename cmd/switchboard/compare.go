package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"switchboard"
	"switchboard/framing"
	"switchboard/loadgen"
)

type compareFlags struct {
	loadFlags
	models      string
	conns       string
	sizes       string
	pipelines   string
	cells       string
	repeat      int
	idle        int
	holdIdle    string
	idleScaling bool
	peers       string
	peersDir    string
	plot        string
	from        string
}

func init() {
	var f compareFlags
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Benchmark every model, and peers, side by side",
		Long: `Run the same echo benchmark against every I/O model, each in a
"switchboard serve" child process pinned to its own CPU (the first one
available) while the load runs on the others, and print one table: the
median and the min-max over --repeat runs of throughput, p99 latency and
the server's CPU time per message, the figure that compares servers on a
shared machine. Runs alternate between servers, so a disturbance of the
machine spreads over all of them instead of falling on one.

Cells are --conns x --size x --pipeline, or --cells 100x64x1,1000x64x1,...
(connections x bytes x pipeline). --hold-idle K,... adds K idle connections
held open during each cell; --idle-scaling runs the seeds' claim (100
active connections while K are idle: K = 0, 500, 900 for select, whose
descriptors must stay below FD_SETSIZE 1024; 0, 1000, 5000, 10000 for the
others). --idle N measures the server's memory per idle connection.

--peers adds other servers users would pick, run the same way: a minimal
single-threaded C epoll echo (built with the system C compiler), Node's net
echo, Python asyncio on uvloop and cloudwego/netpoll. Their sources are in
bench/peers; a peer that cannot be built or run here is skipped with the
reason.`,
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return runCompare(cmd, &f) },
	}
	f.register(cmd, 5*time.Second, time.Second)
	fl := cmd.Flags()
	fl.StringVar(&f.models, "models", "all", "models to run, comma-separated, or all: "+strings.Join(switchboard.Models(), ", "))
	fl.StringVar(&f.conns, "conns", "1,100,1000", "connection counts, comma-separated")
	fl.StringVar(&f.sizes, "size", "64", "message sizes, comma-separated (B, KiB, MiB)")
	fl.StringVar(&f.pipelines, "pipeline", "1", "messages in flight per connection, comma-separated")
	fl.StringVar(&f.cells, "cells", "", "cells as CONNSxSIZExPIPELINE, comma-separated (instead of --conns, --size and --pipeline), or none (with --idle)")
	fl.IntVar(&f.repeat, "repeat", 3, "runs of each cell and server; the table shows the median and the range")
	fl.IntVar(&f.idle, "idle", 0, "also measure server memory (RSS) per idle connection with this many held open")
	fl.StringVar(&f.holdIdle, "hold-idle", "0", "idle connections held open during each cell, comma-separated")
	fl.BoolVar(&f.idleScaling, "idle-scaling", false, "run the idle-scaling experiment: --hold-idle per model as the seeds claim (default cell 100x64x1)")
	fl.StringVar(&f.peers, "peers", "", "also run peers: --peers for all, or --peers=NAME,... among "+strings.Join(peerNames, ","))
	fl.Lookup("peers").NoOptDefVal = "all"
	fl.StringVar(&f.peersDir, "peers-dir", "", "directory of the peers' sources (default: bench/peers of the repository around the current directory)")
	fl.StringVar(&f.plot, "plot", "", "draw the tables as an SVG chart into FILE.svg")
	fl.StringVar(&f.from, "from", "", "run nothing: print the tables of an earlier --json report (and --plot them)")
	rootCmd.AddCommand(cmd)
}

// cell is one load shape.
type cell struct {
	Conns    int `json:"conns"`
	Size     int `json:"size"`
	Pipeline int `json:"pipeline"`
	HoldIdle int `json:"hold_idle"`
}

func (c cell) String() string {
	s := fmt.Sprintf("%dx%dx%d", c.Conns, c.Size, c.Pipeline)
	if c.HoldIdle > 0 {
		s += fmt.Sprintf("+%didle", c.HoldIdle)
	}
	return s
}

func (c cell) base() cell { c.HoldIdle = 0; return c }

// target is a server compare runs: a model of switchboard serve, or a
// peer.
type target struct {
	Name string `json:"name"`
	Peer bool   `json:"peer"`
	// argv starts a peer listening on port.
	argv func(port int) []string
	dir  string
}

// fdHeadroom is how many descriptors below a model's ceiling (select's
// FD_SETSIZE) the server process keeps for its own: stdio, the listener, the
// poller's wake-up pipe.
const fdHeadroom = 24

// capsOf returns what the model behind t can do; peers are not models and
// have no limits of that kind.
func capsOf(t target) switchboard.ModelInfo {
	if t.Peer {
		return switchboard.ModelInfo{Name: t.Name}
	}
	info, _ := switchboard.LookupModel(t.Name)
	return info
}

// maxConnsOf is how many connections t is given, 0 for no limit.
func maxConnsOf(t target) int {
	if m := capsOf(t).MaxFD; m > 0 {
		return m - fdHeadroom
	}
	return 0
}

// skipReason says why target cannot run c, or "".
func (cmp *comparer) skipReason(t target, c cell) string {
	caps := capsOf(t)
	switch max := maxConnsOf(t); {
	case t.Peer && cmp.codec.String() != "raw":
		return "the peers echo raw bytes only; skipped with --framing " + cmp.codec.String()
	case caps.Iterative && (c.Conns > 1 || c.HoldIdle > 0):
		return "serves one connection at a time (the seeds' first server); only cells of 1 connection and no idle ones"
	case max > 0 && c.Conns+c.HoldIdle > max:
		return fmt.Sprintf("%s cannot watch descriptors >= %d; skipped cells of more than %d connections", t.Name, caps.MaxFD, max)
	}
	return ""
}

// holdIdleFor lists the idle counts held for t.
func (cmp *comparer) holdIdleFor(t target) []int {
	if !cmp.f.idleScaling {
		return cmp.holdIdle
	}
	if capsOf(t).Iterative {
		return []int{0}
	}
	if max := maxConnsOf(t); max > 0 {
		// The seeds' claim within what select can watch: 0, 500, 900.
		return []int{0, max / 2, max * 9 / 10}
	}
	return []int{0, 1000, 5000, 10000}
}

// runRecord is one measurement.
type runRecord struct {
	Target string          `json:"target"`
	Cell   cell            `json:"cell"`
	Repeat int             `json:"repeat"`
	Error  string          `json:"error,omitempty"`
	Result *loadgen.Result `json:"result,omitempty"`
	// AllocsPerMsg is the server's heap allocations per message (Go
	// runtime's count; switchboard models only), -1 when not counted.
	AllocsPerMsg float64 `json:"allocs_per_msg"`
}

// summary is the median and range of a target's runs of a cell.
type summary struct {
	Target    string  `json:"target"`
	Cell      cell    `json:"cell"`
	Runs      int     `json:"runs"`
	Errors    int64   `json:"errors"`
	MsgsPerS  stat    `json:"msgs_per_sec"`
	P99       stat    `json:"p99_us"`
	ServerCPU stat    `json:"server_cpu_us_per_msg"`
	LoadCPU   stat    `json:"load_cpu_us_per_msg"`
	Allocs    *stat   `json:"allocs_per_msg,omitempty"`
	VsC       float64 `json:"server_cpu_vs_c_epoll,omitempty"`
	VsGo      float64 `json:"server_cpu_vs_goroutine,omitempty"`
	LoadBound int     `json:"runs_load_bound"`
	Contended int     `json:"runs_contended"`
}

// idleSummary is the idle-memory cell of a target.
type idleSummary struct {
	Target      string `json:"target"`
	Idle        int    `json:"idle"`
	Runs        int    `json:"runs"`
	Errors      int64  `json:"errors"`
	RSSBefore   stat   `json:"rss_before_bytes"`
	RSSWithIdle stat   `json:"rss_with_idle_bytes"`
	PerConn     stat   `json:"rss_per_idle_conn_bytes"`
}

// stat is a median and a range.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func statOf(vs []float64) stat {
	if len(vs) == 0 {
		return stat{}
	}
	s := slices.Clone(vs)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// compareReport is what --json writes.
type compareReport struct {
	Machine  machine         `json:"machine"`
	Settings compareSettings `json:"settings"`
	Summary  []summary       `json:"summary"`
	Idle     []idleSummary   `json:"idle,omitempty"`
	Skipped  []string        `json:"skipped,omitempty"`
	Runs     []runRecord     `json:"runs"`
}

type machine struct {
	CPU       string `json:"cpu"`
	CPUs      int    `json:"cpus"`
	OS        string `json:"os"`
	Kernel    string `json:"kernel,omitempty"`
	Go        string `json:"go"`
	ServerCPU string `json:"server_cpus"`
	LoadCPU   string `json:"load_cpus"`
}

// comparer holds a compare run's state.
type comparer struct {
	f        *compareFlags
	codec    framing.Codec
	maxFrame int64
	plan     cpuPlan
	targets  []target
	cells    []cell
	holdIdle []int
	stderr   io.Writer
	skipped  []string
	runs     []runRecord
}

func runCompare(cmd *cobra.Command, f *compareFlags) error {
	if f.from != "" {
		return replay(cmd, f)
	}
	cmp, err := newComparer(cmd, f)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext(cmd.Context())
	defer cancel()
	if f.peers != "" {
		cmp.addPeers(ctx)
	}
	if len(cmp.plan.load) > 0 {
		if err := pinSelf(cmp.plan.load); err != nil {
			fmt.Fprintln(cmp.stderr, "switchboard compare:", err)
			return exitError{1}
		}
	}
	cmp.measure(ctx)

	out := cmd.OutOrStdout()
	m := machineInfo(cmp.plan)
	sums := cmp.summarise()
	idles := cmp.summariseIdle()
	cmp.printTables(out, m, sums, idles)
	failed := ctx.Err() != nil
	for _, r := range cmp.runs {
		if r.Error != "" || (r.Result != nil && r.Result.Errors.Total() > 0) {
			failed = true
		}
	}
	if f.jsonPath != "" {
		rep := compareReport{Machine: m, Settings: cmp.settings(), Summary: sums, Idle: idles, Skipped: cmp.skipped, Runs: cmp.runs}
		if err := writeJSON(f.jsonPath, rep); err != nil {
			fmt.Fprintln(cmp.stderr, "switchboard compare:", err)
			failed = true
		}
	}
	if f.plot != "" {
		if err := plotCompare(f.plot, sums, idles, cmp.targetNames()); err != nil {
			fmt.Fprintln(cmp.stderr, "switchboard compare: --plot:", err)
			failed = true
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(cmp.stderr, "switchboard compare: interrupted; the tables hold the runs that finished")
	}
	if failed {
		return exitError{1}
	}
	return nil
}

func newComparer(cmd *cobra.Command, f *compareFlags) (*comparer, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	fl := cmd.Flags()
	if f.repeat < 1 {
		return nil, usagef("--repeat must be at least 1")
	}
	if f.idle < 0 {
		return nil, usagef("--idle cannot be negative")
	}
	if f.duration <= 0 {
		return nil, usagef("--duration must be positive")
	}
	if f.idleScaling && fl.Changed("hold-idle") {
		return nil, usagef("--idle-scaling sets the idle counts itself; drop --hold-idle")
	}
	if f.plot != "" && !strings.HasSuffix(strings.ToLower(f.plot), ".svg") {
		return nil, usagef("--plot writes SVG: give a FILE.svg")
	}
	cmp := &comparer{f: f, stderr: cmd.ErrOrStderr()}

	// Servers.
	names := switchboard.Models()
	if f.models != "all" {
		names = nil
		for m := range strings.SplitSeq(f.models, ",") {
			m = strings.TrimSpace(m)
			r, err := switchboard.ResolveModel(m)
			if err != nil {
				return nil, usagef("--models: %v", err)
			}
			if !slices.Contains(names, r) {
				names = append(names, r)
			}
		}
	}
	for _, m := range names {
		cmp.targets = append(cmp.targets, target{Name: m})
	}

	// Cells.
	var err error
	if f.peers != "" && f.peers != "all" {
		for p := range strings.SplitSeq(f.peers, ",") {
			if !slices.Contains(peerNames, strings.TrimSpace(p)) {
				return nil, usagef("--peers: unknown peer %q (want all or some of %s)", p, strings.Join(peerNames, ","))
			}
		}
	}
	if cmp.holdIdle, err = parseInts(f.holdIdle, "--hold-idle", 0); err != nil {
		return nil, err
	}
	var maxSize int64
	if f.cells == "none" {
		if f.idle == 0 {
			return nil, usagef("--cells none leaves nothing to run without --idle")
		}
	} else if f.cells != "" {
		if fl.Changed("conns") || fl.Changed("size") || fl.Changed("pipeline") {
			return nil, usagef("--cells replaces --conns, --size and --pipeline; give one or the other")
		}
		for spec := range strings.SplitSeq(f.cells, ",") {
			parts := strings.Split(strings.TrimSpace(spec), "x")
			if len(parts) != 3 {
				return nil, usagef("--cells: %q is not CONNSxSIZExPIPELINE, e.g. 100x64x1", spec)
			}
			c, err1 := strconv.Atoi(parts[0])
			s, err2 := parseSize(parts[1])
			p, err3 := strconv.Atoi(parts[2])
			if err1 != nil || err2 != nil || err3 != nil || c < 1 || s < 1 || p < 1 {
				return nil, usagef("--cells: %q is not CONNSxSIZExPIPELINE with positive numbers", spec)
			}
			cmp.cells = append(cmp.cells, cell{Conns: c, Size: int(s), Pipeline: p})
			maxSize = max(maxSize, s)
		}
	} else {
		if f.idleScaling && !fl.Changed("conns") && !fl.Changed("size") && !fl.Changed("pipeline") {
			f.conns, f.sizes, f.pipelines = "100", "64", "1"
		}
		conns, err := parseInts(f.conns, "--conns", 1)
		if err != nil {
			return nil, err
		}
		pipes, err := parseInts(f.pipelines, "--pipeline", 1)
		if err != nil {
			return nil, err
		}
		var sizes []int
		for s := range strings.SplitSeq(f.sizes, ",") {
			n, err := parseSize(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return nil, usagef("--size: bad size %q", s)
			}
			sizes = append(sizes, int(n))
			maxSize = max(maxSize, n)
		}
		for _, s := range sizes {
			for _, p := range pipes {
				for _, c := range conns {
					cmp.cells = append(cmp.cells, cell{Conns: c, Size: s, Pipeline: p})
				}
			}
		}
	}
	cmp.maxFrame = max(maxSize, framing.DefaultMaxFrame)
	if cmp.codec, err = framing.Parse(f.framing, int(cmp.maxFrame)); err != nil {
		return nil, usagef("--framing: %v", err)
	}
	for _, c := range cmp.cells {
		cfg := cmp.config(c)
		cfg.Addr = "127.0.0.1:1"
		if err := loadgen.Check(cfg); err != nil {
			return nil, usageError{fmt.Errorf("cell %s: %w", c, err)}
		}
	}
	plan, notes, err := planCPUs(f.cpuServer, f.cpuLoad, true)
	if err != nil {
		return nil, usageError{err}
	}
	cmp.plan = plan
	for _, n := range notes {
		fmt.Fprintln(cmp.stderr, "switchboard compare:", n)
	}
	return cmp, nil
}

// parseInts parses a comma-separated list of integers of at least lo.
func parseInts(s, flag string, lo int) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < lo {
			return nil, usagef("%s: %q is not a number of at least %d", flag, part, lo)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// config is the loadgen configuration of a cell, without the address.
func (cmp *comparer) config(c cell) loadgen.Config {
	var cfg loadgen.Config
	cmp.f.config(&cfg)
	cfg.Conns, cfg.Size, cfg.Pipeline, cfg.Idle = c.Conns, c.Size, c.Pipeline, c.HoldIdle
	cfg.Codec = cmp.codec
	cfg.Expect = loadgen.ExpectEcho
	return cfg
}

// compareSettings records how a compare ran, in its --json report, so
// --from can print and plot it again.
type compareSettings struct {
	Duration    time.Duration `json:"duration_ns"`
	Warmup      time.Duration `json:"warmup_ns"`
	Repeat      int           `json:"repeat"`
	Framing     string        `json:"framing"`
	Loops       int           `json:"loops"`
	Cells       []cell        `json:"cells"`
	Idle        int           `json:"idle"`
	IdleScaling bool          `json:"idle_scaling"`
	HoldIdle    []int         `json:"hold_idle"`
	Targets     []string      `json:"targets"`
	Driver      string        `json:"driver"`
	Workers     int           `json:"workers"`
}

func (cmp *comparer) settings() compareSettings {
	f := cmp.f
	return compareSettings{
		Duration: f.duration, Warmup: f.warmup, Repeat: f.repeat, Framing: cmp.codec.String(),
		Loops: f.loops, Cells: cmp.cells, Idle: f.idle, IdleScaling: f.idleScaling, HoldIdle: cmp.holdIdle,
		Targets: cmp.targetNames(), Driver: f.driver, Workers: f.workers,
	}
}

// replay prints the tables of an earlier compare's --json report, and
// draws --plot from it, without running anything.
func replay(cmd *cobra.Command, f *compareFlags) error {
	for _, name := range []string{"json", "peers", "idle", "idle-scaling", "hold-idle", "cells", "conns", "size", "pipeline", "models", "repeat"} {
		if cmd.Flags().Changed(name) {
			return usagef("--from replays a report as it was run; --%s does not apply", name)
		}
	}
	if f.plot != "" && !strings.HasSuffix(strings.ToLower(f.plot), ".svg") {
		return usagef("--plot writes SVG: give a FILE.svg")
	}
	b, err := os.ReadFile(f.from)
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "switchboard compare:", err)
		return exitError{1}
	}
	var rep compareReport
	if err := json.Unmarshal(b, &rep); err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "switchboard compare: %s is not a compare --json report: %v\n", f.from, err)
		return exitError{1}
	}
	st := rep.Settings
	f.duration, f.warmup, f.repeat, f.loops, f.idle, f.idleScaling = st.Duration, st.Warmup, st.Repeat, st.Loops, st.Idle, st.IdleScaling
	cmp := &comparer{f: f, stderr: cmd.ErrOrStderr(), cells: st.Cells, holdIdle: st.HoldIdle, skipped: rep.Skipped}
	if cmp.codec, err = framing.Parse(st.Framing, 0); err != nil {
		cmp.codec = framing.Raw(0)
	}
	if len(cmp.holdIdle) == 0 {
		// Reports written before hold_idle was recorded.
		for _, s := range rep.Summary {
			if !slices.Contains(cmp.holdIdle, s.Cell.HoldIdle) {
				cmp.holdIdle = append(cmp.holdIdle, s.Cell.HoldIdle)
			}
		}
	}
	for _, name := range st.Targets {
		cmp.targets = append(cmp.targets, target{Name: name})
	}
	cmp.printTables(cmd.OutOrStdout(), rep.Machine, rep.Summary, rep.Idle)
	if f.plot != "" {
		if err := plotCompare(f.plot, rep.Summary, rep.Idle, st.Targets); err != nil {
			fmt.Fprintln(cmd.ErrOrStderr(), "switchboard compare: --plot:", err)
			return exitError{1}
		}
	}
	return nil
}

func (cmp *comparer) targetNames() []string {
	var out []string
	for _, t := range cmp.targets {
		out = append(out, t.Name)
	}
	return out
}

func (cmp *comparer) skip(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if !slices.Contains(cmp.skipped, line) {
		cmp.skipped = append(cmp.skipped, line)
		fmt.Fprintln(cmp.stderr, "switchboard compare: skip:", line)
	}
}

// measure runs every (repeat, cell, target), alternating the targets, then
// the idle-memory cell.
func (cmp *comparer) measure(ctx context.Context) {
	type job struct {
		t      target
		c      cell
		repeat int
		idle   bool
	}
	var jobs []job
	for r := 0; r < cmp.f.repeat; r++ {
		for _, base := range cmp.cells {
			for _, k := range cmp.allHoldIdle() {
				c := base
				c.HoldIdle = k
				// Each repeat starts with a different server, so none is
				// always first after a cell change.
				for i := range cmp.targets {
					t := cmp.targets[(i+r)%len(cmp.targets)]
					if !slices.Contains(cmp.holdIdleFor(t), k) {
						continue
					}
					if why := cmp.skipReason(t, c); why != "" {
						cmp.skip("%s %s: %s", t.Name, c, why)
						continue
					}
					jobs = append(jobs, job{t: t, c: c, repeat: r})
				}
			}
		}
		if cmp.f.idle > 0 {
			c := cell{HoldIdle: cmp.f.idle}
			for i := range cmp.targets {
				t := cmp.targets[(i+r)%len(cmp.targets)]
				switch max := maxConnsOf(t); {
				case capsOf(t).Iterative:
					cmp.skip("%s idle memory: accepts one connection at a time; the others wait in the kernel's backlog", t.Name)
					continue
				case max > 0 && cmp.f.idle > max:
					cmp.skip("%s idle memory: %d connections exceed what it can watch (descriptors below %d)", t.Name, cmp.f.idle, capsOf(t).MaxFD)
					continue
				}
				jobs = append(jobs, job{t: t, c: c, repeat: r, idle: true})
			}
		}
	}
	per := cmp.f.warmup + cmp.f.duration + time.Second
	fmt.Fprintf(cmp.stderr, "switchboard compare: %d runs, about %v; server on CPU %s, load on CPU %s\n",
		len(jobs), (time.Duration(len(jobs)) * per).Round(time.Second), fmtCPUs(cmp.plan.server), fmtCPUs(cmp.plan.load))
	for i, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		var cfg loadgen.Config
		if j.idle {
			cfg = cmp.config(cell{Conns: 0, Size: 64, Pipeline: 1})
			cfg.Idle = j.c.HoldIdle
			cfg.Warmup = max(cmp.f.warmup, time.Second) // let the server settle before reading its RSS
			cfg.Duration = time.Second
		} else {
			cfg = cmp.config(j.c)
		}
		label := j.c.String()
		if j.idle {
			label = fmt.Sprintf("idle %d", j.c.HoldIdle)
		}
		r := runRecord{Target: j.t.Name, Cell: j.c, Repeat: j.repeat}
		res, allocs, err := cmp.runOne(ctx, j.t, cfg)
		r.Result, r.AllocsPerMsg = res, allocs
		if err != nil {
			r.Error = err.Error()
		}
		cmp.runs = append(cmp.runs, r)
		fmt.Fprintf(cmp.stderr, "%-9s %-13s %-18s #%d  %s\n", fmt.Sprintf("[%d/%d]", i+1, len(jobs)), j.t.Name, label, j.repeat+1, runLine(r, j.idle))
	}
}

// allHoldIdle is the union of every target's idle counts, in order.
func (cmp *comparer) allHoldIdle() []int {
	var ks []int
	for _, t := range cmp.targets {
		for _, k := range cmp.holdIdleFor(t) {
			if !slices.Contains(ks, k) {
				ks = append(ks, k)
			}
		}
	}
	slices.Sort(ks)
	return ks
}

func runLine(r runRecord, idle bool) string {
	res := r.Result
	var b strings.Builder
	if res != nil {
		if idle {
			if s := res.Server; s != nil && res.Idle > 0 {
				fmt.Fprintf(&b, "RSS %s per idle connection", fmtBytes(float64(s.RSSConnected-s.RSSBefore)/float64(res.Idle)))
			}
		} else {
			fmt.Fprintf(&b, "%s msgs/s, p99 %s", fmtCount(res.MsgsPerSec), fmtDur(res.Latency.P99))
			if s := res.Server; s != nil {
				fmt.Fprintf(&b, ", server %.2f µs/msg", s.CPUPerMsg)
			}
			if r.AllocsPerMsg >= 0 {
				fmt.Fprintf(&b, ", %.3f allocs/msg", r.AllocsPerMsg)
			}
			switch res.Bottleneck {
			case loadgen.BottleneckLoad:
				b.WriteString(" (load-bound)")
			case loadgen.BottleneckContention:
				var sw time.Duration
				if res.Server != nil {
					sw = res.Server.RunQueueWait
				}
				fmt.Fprintf(&b, " (contended: server waited %s, load %s for a CPU)", fmtDur(sw), fmtDur(res.Load.RunQueueWait))
			}
		}
		if n := res.Errors.Total(); n > 0 {
			fmt.Fprintf(&b, ", %d ERRORS: %s%s", n, res.Errors.First, res.Errors.FirstMismatch)
		}
	}
	if r.Error != "" {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString("FAILED: " + r.Error)
	}
	return b.String()
}

// runOne starts t's server, runs cfg against it and stops it. It returns
// the server's allocations per message too, or -1 when they cannot be
// counted (peers).
func (cmp *comparer) runOne(ctx context.Context, t target, cfg loadgen.Config) (*loadgen.Result, float64, error) {
	var srv *child
	var err error
	if t.Peer {
		port, perr := freePort("127.0.0.1")
		if perr != nil {
			return nil, -1, perr
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		srv, err = startPeer(t.Name, addr, t.argv(port), t.dir, cmp.plan.server)
	} else {
		srv, err = startServe(t.Name, serveArgs(t.Name, cmp.f.loops, cmp.codec.String(), cmp.maxFrame), cmp.plan.server)
	}
	if err != nil {
		return nil, -1, err
	}
	defer srv.stop()
	cfg.Addr, cfg.ServerPID = srv.addr, srv.pid()
	var scrapeCost float64
	if srv.metrics != "" {
		if read, cost, err := allocCounter(srv.metrics); err == nil {
			cfg.Counters, scrapeCost = read, cost
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	allocs := -1.0
	if res != nil {
		allocs = allocsPerMsg(res, scrapeCost)
	}
	if dead, werr := srv.exited(); dead {
		return res, allocs, fmt.Errorf("%s exited during the run (%v): %s", t.Name, werr, srv.out.last())
	}
	return res, allocs, err
}

// summarise folds the runs into one summary per target and cell.
func (cmp *comparer) summarise() []summary {
	var out []summary
	for _, base := range cmp.cells {
		for _, k := range cmp.allHoldIdle() {
			c := base
			c.HoldIdle = k
			for _, t := range cmp.targets {
				s := summary{Target: t.Name, Cell: c}
				var rate, p99, srv, load, allocs []float64
				for _, r := range cmp.runs {
					if r.Target != t.Name || r.Cell != c {
						continue
					}
					s.Runs++
					if r.Error != "" {
						s.Errors++
					}
					if r.Result == nil {
						continue
					}
					res := r.Result
					s.Errors += res.Errors.Total()
					switch res.Bottleneck {
					case loadgen.BottleneckLoad:
						s.LoadBound++
					case loadgen.BottleneckContention:
						s.Contended++
					}
					rate = append(rate, res.MsgsPerSec)
					p99 = append(p99, float64(res.Latency.P99)/1e3)
					load = append(load, res.Load.CPUPerMsg)
					if r.AllocsPerMsg >= 0 {
						allocs = append(allocs, r.AllocsPerMsg)
					}
					if res.Server != nil {
						srv = append(srv, res.Server.CPUPerMsg)
					}
				}
				if s.Runs == 0 {
					continue
				}
				s.MsgsPerS, s.P99, s.ServerCPU, s.LoadCPU = statOf(rate), statOf(p99), statOf(srv), statOf(load)
				if len(allocs) > 0 {
					a := statOf(allocs)
					s.Allocs = &a
				}
				out = append(out, s)
			}
		}
	}
	// Ratios of server CPU per message to the C floor and to goroutine.
	for i := range out {
		for _, ref := range out {
			if ref.Cell != out[i].Cell || ref.ServerCPU.Median == 0 {
				continue
			}
			switch ref.Target {
			case "c-epoll":
				out[i].VsC = out[i].ServerCPU.Median / ref.ServerCPU.Median
			case switchboard.ModelGoroutine:
				out[i].VsGo = out[i].ServerCPU.Median / ref.ServerCPU.Median
			}
		}
	}
	return out
}

func (cmp *comparer) summariseIdle() []idleSummary {
	if cmp.f.idle == 0 {
		return nil
	}
	var out []idleSummary
	for _, t := range cmp.targets {
		s := idleSummary{Target: t.Name, Idle: cmp.f.idle}
		var before, with, per []float64
		for _, r := range cmp.runs {
			if r.Target != t.Name || r.Cell != (cell{HoldIdle: cmp.f.idle}) {
				continue
			}
			s.Runs++
			if r.Error != "" {
				s.Errors++
			}
			if r.Result == nil || r.Result.Server == nil {
				continue
			}
			s.Errors += r.Result.Errors.Total()
			sv := r.Result.Server
			before = append(before, float64(sv.RSSBefore))
			with = append(with, float64(sv.RSSConnected))
			per = append(per, float64(sv.RSSConnected-sv.RSSBefore)/float64(cmp.f.idle))
		}
		if s.Runs == 0 {
			continue
		}
		s.RSSBefore, s.RSSWithIdle, s.PerConn = statOf(before), statOf(with), statOf(per)
		out = append(out, s)
	}
	return out
}

// printTables writes the compare table, the idle-scaling table and the
// idle-memory table.
func (cmp *comparer) printTables(w io.Writer, m machine, sums []summary, idles []idleSummary) {
	f := cmp.f
	fmt.Fprintf(w, "switchboard compare: %s, %d CPUs, %s %s, %s\n", m.CPU, m.CPUs, m.OS, m.Kernel, m.Go)
	if len(cmp.cells) > 0 {
		fmt.Fprintf(w, "  runs per cell: %d, servers alternated; %v measured after %v warm-up; %s framing; server on CPU %s (%d loop), load on CPU %s\n",
			f.repeat, f.duration, f.warmup, cmp.codec, m.ServerCPU, f.loops, m.LoadCPU)
		fmt.Fprintf(w, "  median (min-max); server µs/msg is the server's CPU time (user+system) per echoed message\n")
	} else {
		fmt.Fprintf(w, "  runs per server: %d, servers alternated; server on CPU %s, load on CPU %s; median (min-max)\n", f.repeat, m.ServerCPU, m.LoadCPU)
	}
	hasC, hasGo, hasAllocs := false, false, false
	for _, s := range sums {
		hasC = hasC || s.VsC > 0
		hasGo = hasGo || s.VsGo > 0
		hasAllocs = hasAllocs || s.Allocs != nil
	}
	var lastCell cell
	var tw *tabwriter.Writer
	for i, s := range sums {
		if s.Cell.HoldIdle != 0 && len(cmp.allHoldIdle()) > 1 {
			continue // in the idle-scaling table
		}
		if i == 0 || s.Cell != lastCell {
			if tw != nil {
				tw.Flush()
			}
			lastCell = s.Cell
			fmt.Fprintf(w, "\ncell %s: %d connections, %s messages, pipeline %d", s.Cell, s.Cell.Conns, fmtBytes(float64(s.Cell.Size)), s.Cell.Pipeline)
			if s.Cell.HoldIdle > 0 {
				fmt.Fprintf(w, ", %d idle held", s.Cell.HoldIdle)
			}
			fmt.Fprintln(w)
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			hdr := "  server\tmsgs/s\t(min-max)\tp99\t(min-max)\tserver µs/msg\t(min-max)"
			if hasC {
				hdr += "\t×c-epoll"
			}
			if hasGo {
				hdr += "\t×goroutine"
			}
			if hasAllocs {
				hdr += "\tallocs/msg"
			}
			fmt.Fprintln(tw, hdr+"\terrors\t")
		}
		row := fmt.Sprintf("  %s\t%s\t(%s-%s)\t%s\t(%s-%s)\t%.2f\t(%.2f-%.2f)", s.Target,
			fmtCount(s.MsgsPerS.Median), fmtCount(s.MsgsPerS.Min), fmtCount(s.MsgsPerS.Max),
			fmtUs(s.P99.Median), fmtUs(s.P99.Min), fmtUs(s.P99.Max),
			s.ServerCPU.Median, s.ServerCPU.Min, s.ServerCPU.Max)
		if hasC {
			row += "\t" + fmtRatio(s.VsC)
		}
		if hasGo {
			row += "\t" + fmtRatio(s.VsGo)
		}
		if hasAllocs {
			if s.Allocs != nil {
				row += fmt.Sprintf("\t%.3f", s.Allocs.Median)
			} else {
				row += "\t-"
			}
		}
		errs := strconv.FormatInt(s.Errors, 10)
		if s.LoadBound > 0 {
			errs += fmt.Sprintf(" (load-bound in %d/%d runs)", s.LoadBound, s.Runs)
		}
		if s.Contended > 0 {
			errs += fmt.Sprintf(" (CPU contention in %d/%d runs)", s.Contended, s.Runs)
		}
		fmt.Fprintln(tw, row+"\t"+errs+"\t")
	}
	if tw != nil {
		tw.Flush()
	}

	if ks := cmp.allHoldIdle(); len(ks) > 1 {
		for _, base := range cmp.cells {
			fmt.Fprintf(w, "\nidle scaling, cell %s: msgs/s median (server µs/msg) with K idle connections held open\n", base)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			hdr := "  server"
			for _, k := range ks {
				hdr += fmt.Sprintf("\tK=%d", k)
			}
			fmt.Fprintln(tw, hdr+"\t")
			for _, t := range cmp.targets {
				row := "  " + t.Name
				any := false
				for _, k := range ks {
					c := base
					c.HoldIdle = k
					cellText := "-"
					for _, s := range sums {
						if s.Target == t.Name && s.Cell == c {
							cellText = fmt.Sprintf("%s (%.2f)", fmtCount(s.MsgsPerS.Median), s.ServerCPU.Median)
							if s.Errors > 0 {
								cellText += fmt.Sprintf(" %d errors", s.Errors)
							}
							any = true
						}
					}
					row += "\t" + cellText
				}
				if any {
					fmt.Fprintln(tw, row+"\t")
				}
			}
			tw.Flush()
		}
	}

	if len(idles) > 0 {
		fmt.Fprintf(w, "\nidle memory: server RSS with %s idle connections held open\n", fmtCount(float64(f.idle)))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  server\tRSS before\tRSS with idle\tper connection\t(min-max)\terrors\t")
		for _, s := range idles {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t(%s-%s)\t%d\t\n", s.Target, fmtBytes(s.RSSBefore.Median), fmtBytes(s.RSSWithIdle.Median),
				fmtBytes(s.PerConn.Median), fmtBytes(s.PerConn.Min), fmtBytes(s.PerConn.Max), s.Errors)
		}
		tw.Flush()
	}
	if len(cmp.skipped) > 0 {
		fmt.Fprintln(w, "\nskipped:")
		for _, s := range cmp.skipped {
			fmt.Fprintln(w, "  "+s)
		}
	}
}

func fmtUs(us float64) string { return fmtDur(time.Duration(us * 1e3)) }

func fmtRatio(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

// machineInfo describes the machine for the report.
func machineInfo(plan cpuPlan) machine {
	m := machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Go: runtime.Version(), CPU: "unknown CPU",
		ServerCPU: fmtCPUs(plan.server), LoadCPU: fmtCPUs(plan.load)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// ------------------------------------------------------------------ peers

// addPeers builds what the peers need and adds those that can run; the
// others are skipped with the reason.
func (cmp *comparer) addPeers(ctx context.Context) {
	want := func(name string) bool {
		if cmp.f.peers == "all" {
			return true
		}
		for p := range strings.SplitSeq(cmp.f.peers, ",") {
			if strings.TrimSpace(p) == name {
				return true
			}
		}
		return false
	}
	dir, err := findPeersDir(cmp.f.peersDir)
	if err != nil {
		cmp.skip("peers: %v", err)
		return
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cache = filepath.Join(cache, "switchboard", "peers")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		cmp.skip("peers: cannot create the build directory: %v", err)
		return
	}
	switch {
	case !want("c-epoll"):
	case runtime.GOOS != "linux":
		cmp.skip("c-epoll: epoll is Linux's")
	default:
		cc, err := lookCC()
		if err != nil {
			cmp.skip("c-epoll: no C compiler: %v", err)
			break
		}
		bin := filepath.Join(cache, "c-epoll-echo")
		if out, err := exec.CommandContext(ctx, cc, "-O2", "-o", bin, filepath.Join(dir, "c-epoll", "echo.c")).CombinedOutput(); err != nil {
			cmp.skip("c-epoll: %s -O2 echo.c failed: %s", cc, firstLine(out, err))
		} else {
			cmp.addPeer("c-epoll", dir, func(port int) []string { return []string{bin, strconv.Itoa(port)} })
		}
	}
	if want("node") {
		if node, err := exec.LookPath("node"); err != nil {
			cmp.skip("node: Node.js is not installed (no node in PATH)")
		} else {
			js := filepath.Join(dir, "node", "echo.js")
			cmp.addPeer("node", dir, func(port int) []string { return []string{node, js, strconv.Itoa(port)} })
		}
	}
	if want("python-uvloop") {
		// Debian's python3-uvloop belongs to the system Python, which a
		// pyenv or virtualenv python3 earlier in PATH would not see.
		py := "/usr/bin/python3"
		if _, err := os.Stat(py); err != nil {
			py, _ = exec.LookPath("python3")
		}
		if py == "" {
			cmp.skip("python-uvloop: no python3")
		} else if out, err := exec.CommandContext(ctx, py, "-c", "import uvloop").CombinedOutput(); err != nil {
			cmp.skip("python-uvloop: %s cannot import uvloop (Debian: apt-get install python3-uvloop): %s", py, firstLine(out, err))
		} else {
			script := filepath.Join(dir, "python", "echo_uvloop.py")
			cmp.addPeer("python-uvloop", dir, func(port int) []string { return []string{py, script, strconv.Itoa(port)} })
		}
	}
	if want("netpoll") {
		if goBin, err := exec.LookPath("go"); err != nil {
			cmp.skip("netpoll: no go command to build it")
		} else {
			bin := filepath.Join(cache, "netpoll-echo")
			build := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
			build.Dir = filepath.Join(dir, "netpoll")
			if out, err := build.CombinedOutput(); err != nil {
				cmp.skip("netpoll: go build failed (module proxy or network?): %s", firstLine(out, err))
			} else {
				cmp.addPeer("netpoll", dir, func(port int) []string { return []string{bin, strconv.Itoa(port)} })
			}
		}
	}
}

// peerNames are the peers --peers knows, in the order they run.
var peerNames = []string{"c-epoll", "node", "python-uvloop", "netpoll"}

func (cmp *comparer) addPeer(name, dir string, argv func(int) []string) {
	cmp.targets = append(cmp.targets, target{Name: name, Peer: true, argv: argv, dir: dir})
}

// lookCC finds the system C compiler: $CC, cc, gcc or clang.
func lookCC() (string, error) {
	if cc := os.Getenv("CC"); cc != "" {
		return exec.LookPath(cc)
	}
	var firstErr error
	for _, name := range []string{"cc", "gcc", "clang"} {
		p, err := exec.LookPath(name)
		if err == nil {
			return p, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", firstErr
}

// findPeersDir locates bench/peers: the flag, or the first bench/peers in
// the current directory or its parents, or beside the executable.
func findPeersDir(flag string) (string, error) {
	ok := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "c-epoll", "echo.c"))
		return err == nil
	}
	if flag != "" {
		if !ok(flag) {
			return "", fmt.Errorf("--peers-dir %s holds no c-epoll/echo.c", flag)
		}
		return filepath.Abs(flag)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, d := range starts {
		for {
			if c := filepath.Join(d, "bench", "peers"); ok(c) {
				return c, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", fmt.Errorf("bench/peers not found around the current directory; run from the repository or give --peers-dir")
}

func firstLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}
