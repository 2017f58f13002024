package main

// compare --rate: every server offered the same open-loop load, compared
// by the CPU it spends per message at that load. A closed loop stops
// separating servers once the load generator, not the server, sets the
// pace (on a 2-CPU machine it does against every fast server); at a fixed
// rate both sides do the same work, so CPU per message still tells them
// apart, as long as every server actually held the rate.

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"switchboard/loadgen"
)

// maxCompareRates bounds --rate's list: each rate multiplies the cells.
const maxCompareRates = 16

// parseCompareRates parses --rate: a rate or a comma-separated list of
// them, each a positive number of messages per second, duplicates
// dropped, in the order given.
func parseCompareRates(s string) ([]float64, error) {
	if strings.Contains(s, ":") {
		return nil, usagef("--rate: compare takes a rate or a list R1,R2,...; FROM:TO:STEP with --slo is bench's search, not %q", s)
	}
	var out []float64
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		r, err := strconv.ParseFloat(part, 64)
		switch {
		case err != nil || math.IsNaN(r) || math.IsInf(r, 0):
			return nil, usagef("--rate: %q is not a number of messages per second", part)
		case r <= 0:
			return nil, usagef("--rate: %q must be positive (leave --rate out for the closed loop)", part)
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	if len(out) > maxCompareRates {
		return nil, usagef("--rate: %d rates, at most %d", len(out), maxCompareRates)
	}
	return out, nil
}

// withRates is every cell at every rate, each cell's rates together.
func withRates(cells []cell, rates []float64) []cell {
	var out []cell
	for _, c := range cells {
		for _, r := range rates {
			c.Rate = r
			out = append(out, c)
		}
	}
	return out
}

// rateSummary is what a summary of a fixed-rate cell adds: whether the
// server held the rate, and what fell short when it did not.
type rateSummary struct {
	Offered   float64 `json:"offered_rate"`
	Achieved  stat    `json:"achieved_rate"`
	Shortfall stat    `json:"shortfall"`
	P50       stat    `json:"p50_us"`
	// ServerUtil and LoadUtil are the CPU utilisations of the server and
	// of the load generator (0-1, per CPU they may use): the two figures
	// that tell a server that could not keep up from a load generator
	// that could not offer the rate.
	ServerUtil stat `json:"server_utilization"`
	LoadUtil   stat `json:"load_utilization"`
	// Held: the median shortfall is within loadgen.RateTolerance. Missed
	// counts the runs that were not, MissedBy those by cause (missCause).
	Held     bool           `json:"held"`
	Missed   int            `json:"runs_missed"`
	MissedBy map[string]int `json:"missed_by,omitempty"`
	// VsBase is ServerCPU's median over the baseline's in the same cell,
	// 0 without it. NotSameRate names the references (the baseline or a
	// ratioRefs target) whose ratio compares this server with one that
	// did not hold the rate, or did not itself hold it.
	Baseline    string   `json:"baseline,omitempty"`
	VsBase      float64  `json:"server_cpu_vs_baseline,omitempty"`
	NotSameRate []string `json:"ratios_not_at_same_rate,omitempty"`
}

// Causes of a missed rate, as missCause names them.
const (
	missServer     = "server"
	missLoad       = "load generator"
	missBoth       = "both CPUs"
	missContention = "CPU contention"
	missRoundTrip  = "round trip"
)

// missCause says what fell short in a run that missed its rate, or ""
// when it did not miss. A saturated load generator beside a server with
// CPU to spare did not offer the rate: that is the tool's limit, not the
// server's. With neither CPU full, either other processes held the CPUs
// (contention) or the replies were too slow for the pipeline to keep up.
func missCause(res *loadgen.Result) string {
	if !res.RateMissed {
		return ""
	}
	srv := res.Server != nil && res.Server.Utilization >= loadgen.SaturationThreshold
	switch {
	case srv && res.Load.Saturated:
		return missBoth
	case srv:
		return missServer
	case res.Load.Saturated:
		return missLoad
	case res.Bottleneck == loadgen.BottleneckContention:
		return missContention
	}
	return missRoundTrip
}

// rateSummaryOf folds the runs of a fixed-rate cell.
func rateSummaryOf(c cell, runs []runRecord) *rateSummary {
	rs := &rateSummary{Offered: c.Rate}
	var achieved, short, p50, su, lu []float64
	for _, r := range runs {
		res := r.Result
		if res == nil {
			continue
		}
		achieved = append(achieved, res.AchievedRate)
		short = append(short, res.Shortfall)
		p50 = append(p50, float64(res.Latency.P50)/1e3)
		lu = append(lu, res.Load.Utilization)
		if res.Server != nil {
			su = append(su, res.Server.Utilization)
		}
		if why := missCause(res); why != "" {
			rs.Missed++
			if rs.MissedBy == nil {
				rs.MissedBy = map[string]int{}
			}
			rs.MissedBy[why]++
		}
	}
	rs.Achieved, rs.Shortfall, rs.P50 = statOf(achieved), statOf(short), statOf(p50)
	rs.ServerUtil, rs.LoadUtil = statOf(su), statOf(lu)
	rs.Held = len(achieved) > 0 && rs.Shortfall.Median <= loadgen.RateTolerance
	return rs
}

// setRateRatios gives the fixed-rate summaries their ratio to baseline
// and flags every ratio, to the baseline or to a reference, between two
// servers that did not both hold the rate.
func setRateRatios(sums []summary, baseline string) {
	for i := range sums {
		s := &sums[i]
		if s.Fixed == nil {
			continue
		}
		s.Fixed.Baseline = baseline
		for _, ref := range sums {
			if ref.Cell == s.Cell && ref.Target == baseline && ref.ServerCPU.Median > 0 {
				s.Fixed.VsBase = s.ServerCPU.Median / ref.ServerCPU.Median
			}
			if ref.Cell != s.Cell || ref.Target == s.Target || ref.Fixed == nil || ref.ServerCPU.Median == 0 {
				continue
			}
			isRef := ref.Target == baseline
			for _, r := range ratioRefs {
				isRef = isRef || r.target == ref.Target
			}
			if isRef && (!s.Fixed.Held || !ref.Fixed.Held) && !slices.Contains(s.Fixed.NotSameRate, ref.Target) {
				s.Fixed.NotSameRate = append(s.Fixed.NotSameRate, ref.Target)
			}
		}
	}
}

// missedRate reports whether a server did not hold its rate in a cell.
func missedRate(sums []summary) bool {
	return slices.ContainsFunc(sums, func(s summary) bool { return s.Fixed != nil && !s.Fixed.Held })
}

// measuredNothing: a run of a cell with active connections that counted
// no reply. It is never a success, whatever else it says.
func measuredNothing(r runRecord) bool {
	return r.Cell.Conns > 0 && r.Result != nil && r.Result.Messages == 0
}

// fmtPct formats a share (0-1) as a percentage.
func fmtPct(v float64) string { return strconv.FormatFloat(v*100, 'f', 1, 64) + "%" }

// rateColumns are the ratio columns of a fixed-rate table: the baseline
// first, then every reference that ran and is not the baseline.
func rateColumns(sums []summary) (baseline string, refs []int) {
	for _, s := range sums {
		if s.Fixed != nil && s.Fixed.Baseline != "" {
			baseline = s.Fixed.Baseline
			break
		}
	}
	for i, r := range ratioRefs {
		if r.target == baseline {
			continue
		}
		if slices.ContainsFunc(sums, func(s summary) bool { return *r.ratio(&s) > 0 }) {
			refs = append(refs, i)
		}
	}
	return baseline, refs
}

// printRateCell writes the table of one fixed-rate cell: sums are its
// summaries, in the order of the targets.
func printRateCell(w io.Writer, sums []summary) {
	c := sums[0].Cell
	fmt.Fprintf(w, "\ncell %s: %d connections, %s messages, pipeline %d, %s msgs/s offered (%s per connection)",
		c, c.Conns, fmtBytes(float64(c.Size)), c.Pipeline, fmtCount(c.Rate), fmtPerConn(c.Rate/float64(c.Conns)))
	if c.HoldIdle > 0 {
		fmt.Fprintf(w, ", %d idle held", c.HoldIdle)
	}
	fmt.Fprintln(w)
	baseline, refs := rateColumns(sums)
	hasAllocs := slices.ContainsFunc(sums, func(s summary) bool { return s.Allocs != nil })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hdr := "  server\toffered\tachieved\t(min-max)\tshort\tp50\tp99\t(min-max)\tserver µs/msg\t(min-max)\tserver CPU\tload CPU"
	if baseline != "" {
		hdr += "\t×" + baseline
	}
	for _, i := range refs {
		hdr += "\t×" + ratioRefs[i].target
	}
	if hasAllocs {
		hdr += "\tallocs/msg"
	}
	fmt.Fprintln(tw, hdr+"\trate\terrors\t")
	var starred, banged bool
	var loadShort []string
	for _, s := range sums {
		fx := s.Fixed
		cpu := fmt.Sprintf("%.2f", s.ServerCPU.Median)
		if !fx.Held {
			cpu += "*"
			starred = true
		}
		ratio := func(target string, r float64) string {
			t := fmtRatio(r)
			if r > 0 && slices.Contains(fx.NotSameRate, target) {
				t += "!"
				banged = true
			}
			return t
		}
		row := fmt.Sprintf("  %s\t%s\t%s\t(%s-%s)\t%s\t%s\t%s\t(%s-%s)\t%s\t(%.2f-%.2f)\t%s\t%s", s.Target,
			fmtCount(fx.Offered), fmtCount(fx.Achieved.Median), fmtCount(fx.Achieved.Min), fmtCount(fx.Achieved.Max),
			fmtPct(fx.Shortfall.Median), fmtUs(fx.P50.Median), fmtUs(s.P99.Median), fmtUs(s.P99.Min), fmtUs(s.P99.Max),
			cpu, s.ServerCPU.Min, s.ServerCPU.Max, fmtPct(fx.ServerUtil.Median), fmtPct(fx.LoadUtil.Median))
		if baseline != "" {
			row += "\t" + ratio(baseline, fx.VsBase)
		}
		for _, i := range refs {
			row += "\t" + ratio(ratioRefs[i].target, *ratioRefs[i].ratio(&s))
		}
		if hasAllocs {
			if s.Allocs != nil {
				row += fmt.Sprintf("\t%.3f", s.Allocs.Median)
			} else {
				row += "\t-"
			}
		}
		if n := fx.MissedBy[missLoad]; n > 0 {
			loadShort = append(loadShort, fmt.Sprintf("%s in %d/%d runs", s.Target, n, s.Runs))
		}
		errs := strconv.FormatInt(s.Errors, 10)
		if s.Contended > 0 {
			errs += fmt.Sprintf(" (CPU contention in %d/%d runs)", s.Contended, s.Runs)
		}
		fmt.Fprintln(tw, row+"\t"+rateStatus(s)+"\t"+errs+"\t")
	}
	tw.Flush()
	if starred {
		fmt.Fprintf(w, "  * did not hold the offered rate (median shortfall over %s): CPU per message at a lower rate\n", fmtPct(loadgen.RateTolerance))
	}
	if banged {
		fmt.Fprintln(w, "  ! one of the two servers did not hold the rate: not a comparison at the same rate")
	}
	if len(loadShort) > 0 {
		fmt.Fprintf(w, "  the load generator could not offer the rate against %s (its CPU full, the server's not): lower --rate\n", strings.Join(loadShort, ", "))
	}
}

// sameCell is the summaries at the head of sums that share its first
// one's cell (summarise lists each cell's together).
func sameCell(sums []summary) []summary {
	n := 1
	for n < len(sums) && sums[n].Cell == sums[0].Cell {
		n++
	}
	return sums[:n]
}

// rateStatus is the rate column: held, or MISSED and by what, in how
// many of the runs.
func rateStatus(s summary) string {
	fx := s.Fixed
	var causes []string
	for _, why := range []string{missServer, missLoad, missBoth, missContention, missRoundTrip} {
		if n := fx.MissedBy[why]; n > 0 {
			causes = append(causes, fmt.Sprintf("%s %d", why, n))
		}
	}
	switch {
	case fx.Held && fx.Missed == 0:
		return "held"
	case fx.Held:
		return fmt.Sprintf("held (missed in %d/%d: %s)", fx.Missed, s.Runs, strings.Join(causes, ", "))
	case fx.Missed == 0:
		return "MISSED (nothing measured)"
	}
	return fmt.Sprintf("MISSED in %d/%d: %s", fx.Missed, s.Runs, strings.Join(causes, ", "))
}

// fmtPerConn formats a per-connection rate, which may be under one
// message per second.
func fmtPerConn(r float64) string {
	if r >= 10 {
		return fmtCount(r)
	}
	return strconv.FormatFloat(r, 'g', 3, 64)
}

// rateRunLine is runLine's text for a fixed-rate run.
func rateRunLine(b *strings.Builder, r runRecord) {
	res := r.Result
	fmt.Fprintf(b, "offered %s, achieved %s msgs/s (short %s), p50 %s, p99 %s", fmtCount(res.OfferedRate), fmtCount(res.AchievedRate),
		fmtPct(res.Shortfall), fmtDur(res.Latency.P50), fmtDur(res.Latency.P99))
	if s := res.Server; s != nil {
		fmt.Fprintf(b, ", server %.2f µs/msg at %s CPU", s.CPUPerMsg, fmtPct(s.Utilization))
	}
	fmt.Fprintf(b, ", load %s CPU", fmtPct(res.Load.Utilization))
	if r.AllocsPerMsg >= 0 {
		fmt.Fprintf(b, ", %.3f allocs/msg", r.AllocsPerMsg)
	}
	if why := missCause(res); why != "" {
		fmt.Fprintf(b, " (RATE MISSED: %s)", why)
	} else if res.Bottleneck == loadgen.BottleneckContention {
		b.WriteString(" (contended)")
	}
}
