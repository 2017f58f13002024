package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
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

// summary is the median and range of a target's runs of a cell.
type summary struct {
	Target    string `json:"target"`
	Cell      cell   `json:"cell"`
	Runs      int    `json:"runs"`
	Errors    int64  `json:"errors"`
	MsgsPerS  stat   `json:"msgs_per_sec"`
	P99       stat   `json:"p99_us"`
	ServerCPU stat   `json:"server_cpu_us_per_msg"`
	LoadCPU   stat   `json:"load_cpu_us_per_msg"`
	Allocs    *stat  `json:"allocs_per_msg,omitempty"`
	// VsC, VsURing and VsGo are ServerCPU's median over that of c-epoll,
	// c-uring and goroutine in the same cell (ratioRefs), 0 without it.
	VsC       float64 `json:"server_cpu_vs_c_epoll,omitempty"`
	VsURing   float64 `json:"server_cpu_vs_c_uring,omitempty"`
	VsGo      float64 `json:"server_cpu_vs_goroutine,omitempty"`
	LoadBound int     `json:"runs_load_bound"`
	Contended int     `json:"runs_contended"`
	// Fixed holds the figures of a fixed-rate cell (compare --rate).
	Fixed *rateSummary `json:"fixed_rate,omitempty"`
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
	// Rates is --rate's list (none for the closed loop), RateTolerance
	// the shortfall a server may have and still hold the rate.
	Rates         []float64 `json:"rates,omitempty"`
	RateTolerance float64   `json:"rate_tolerance,omitempty"`
}

func (cmp *comparer) settings() compareSettings {
	f := cmp.f
	st := compareSettings{
		Duration: f.duration, Warmup: f.warmup, Repeat: f.repeat, Framing: cmp.codec.String(),
		Loops: f.loops, Cells: cmp.cells, Idle: f.idle, IdleScaling: f.idleScaling, HoldIdle: cmp.holdIdle,
		Targets: cmp.targetNames(), Driver: f.driver, Workers: f.workers, Rates: cmp.rates,
	}
	if len(cmp.rates) > 0 {
		st.RateTolerance = loadgen.RateTolerance
	}
	return st
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
				var mine []runRecord
				for _, r := range cmp.runs {
					if r.Target != t.Name || r.Cell != c {
						continue
					}
					mine = append(mine, r)
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
				if c.Rate > 0 {
					s.Fixed = rateSummaryOf(c, mine)
				}
				out = append(out, s)
			}
		}
	}
	setRatios(out)
	if len(cmp.targets) > 0 {
		setRateRatios(out, cmp.targets[0].Name)
	}
	return out
}

// runningRates says whether the tables hold fixed-rate cells.
func (cmp *comparer) runningRates() bool {
	return slices.ContainsFunc(cmp.cells, func(c cell) bool { return c.Rate > 0 })
}

// ratioRefs are the servers whose CPU per message the others are divided
// by: the C floors, epoll's and io_uring's, and Go's goroutine per
// connection. Each is a column of the table when it ran.
var ratioRefs = []struct {
	target string
	ratio  func(*summary) *float64
}{
	{"c-epoll", func(s *summary) *float64 { return &s.VsC }},
	{"c-uring", func(s *summary) *float64 { return &s.VsURing }},
	{switchboard.ModelGoroutine, func(s *summary) *float64 { return &s.VsGo }},
}

// setRatios fills each summary's ratios to the references that ran the
// same cell and measured their CPU.
func setRatios(sums []summary) {
	for i := range sums {
		for _, ref := range sums {
			if ref.Cell != sums[i].Cell || ref.ServerCPU.Median == 0 {
				continue
			}
			for _, r := range ratioRefs {
				if r.target == ref.Target {
					*r.ratio(&sums[i]) = sums[i].ServerCPU.Median / ref.ServerCPU.Median
				}
			}
		}
	}
}

// summariseIdle folds the idle-memory runs into one summary per target.
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
		fmt.Fprintf(w, "  runs per cell: %d, servers alternated; %v measured after %v warm-up; %s framing; %s; %s\n",
			f.repeat, f.duration, f.warmup, cmp.codec, plural(f.loops, "server loop"), fmtPlacement(m.ServerCPU, m.LoadCPU))
		fmt.Fprintf(w, "  median (min-max); server µs/msg is the server's CPU time (user+system) per echoed message\n")
		if cmp.runningRates() {
			fmt.Fprintf(w, "  open loop: each cell's rate spread evenly over its connections, latency from each message's due time;\n")
			fmt.Fprintf(w, "  a server holds the rate when its median achieved rate is within %s of the offered one\n", fmtPct(loadgen.RateTolerance))
		}
	} else {
		fmt.Fprintf(w, "  runs per server: %d, servers alternated; %s; median (min-max)\n", f.repeat, fmtPlacement(m.ServerCPU, m.LoadCPU))
	}
	hasAllocs := false
	refs := make([]bool, len(ratioRefs)) // which ratio columns to print
	for _, s := range sums {
		hasAllocs = hasAllocs || s.Allocs != nil
		for i, r := range ratioRefs {
			refs[i] = refs[i] || *r.ratio(&s) > 0
		}
	}
	var lastCell cell
	var tw *tabwriter.Writer
	for i, s := range sums {
		if s.Cell.HoldIdle != 0 && len(cmp.allHoldIdle()) > 1 {
			continue // in the idle-scaling table
		}
		if s.Fixed != nil {
			if i == 0 || s.Cell != lastCell {
				if tw != nil {
					tw.Flush()
					tw = nil
				}
				lastCell = s.Cell
				printRateCell(w, sameCell(sums[i:]))
			}
			continue
		}
		if tw == nil || s.Cell != lastCell {
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
			for i, r := range ratioRefs {
				if refs[i] {
					hdr += "\t×" + r.target
				}
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
		for i, r := range ratioRefs {
			if refs[i] {
				row += "\t" + fmtRatio(*r.ratio(&s))
			}
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

// replay prints the tables of an earlier compare's --json report, and
// draws --plot from it, without running anything.
func replay(cmd *cobra.Command, f *compareFlags) error {
	for _, name := range []string{"json", "peers", "idle", "idle-scaling", "hold-idle", "cells", "conns", "size", "pipeline", "models", "repeat", "rate"} {
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
	cmp := &comparer{f: f, stderr: cmd.ErrOrStderr(), cells: st.Cells, holdIdle: st.HoldIdle, skipped: rep.Skipped, rates: st.Rates}
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
