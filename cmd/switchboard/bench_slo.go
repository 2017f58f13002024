package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"switchboard/loadgen"
)

// maxSteps bounds an SLO search, so a typo in STEP cannot start a
// thousand runs.
const maxSteps = 200

// parseRates parses --rate: one rate (0 for closed loop), or FROM:TO:STEP,
// the rates FROM, FROM+STEP, ... up to TO.
func parseRates(s string) ([]float64, error) {
	num := func(what, v string) (float64, error) {
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			return 0, fmt.Errorf("--rate: %s %q is not a number of messages per second", what, v)
		}
		return r, nil
	}
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 1:
		r, err := num("rate", s)
		return []float64{r}, err
	case 3:
	default:
		return nil, fmt.Errorf("--rate: want a rate or FROM:TO:STEP, e.g. 10000:100000:10000, not %q", s)
	}
	from, err := num("FROM", parts[0])
	if err != nil {
		return nil, err
	}
	to, err := num("TO", parts[1])
	if err != nil {
		return nil, err
	}
	step, err := num("STEP", parts[2])
	if err != nil {
		return nil, err
	}
	switch {
	case from <= 0 || step <= 0:
		return nil, fmt.Errorf("--rate %s: FROM and STEP must be positive", s)
	case to < from:
		return nil, fmt.Errorf("--rate %s: TO is below FROM", s)
	case (to-from)/step+1 > maxSteps:
		return nil, fmt.Errorf("--rate %s: %.0f steps, at most %d", s, math.Floor((to-from)/step)+1, maxSteps)
	}
	var rates []float64
	for i := 0; i < maxSteps; i++ {
		r := from + float64(i)*step
		if r > to*(1+1e-9) || (i > 0 && r <= rates[i-1]) {
			break // past TO, or a step too small to tell at this magnitude
		}
		rates = append(rates, r)
	}
	return rates, nil
}

// objective is a latency objective: a quantile of the run at most limit.
type objective struct {
	text     string
	quantile string // p50, p90, p99, p99.9 or max
	limit    time.Duration
}

// parseObjective parses "p99<=1ms" (also "<"; spaces allowed).
func parseObjective(s string) (*objective, error) {
	bad := func(why string) error {
		return fmt.Errorf("--slo %q: %s; want QUANTILE<=DURATION, e.g. 'p99<=1ms' (p50, p90, p99, p99.9 or max)", s, why)
	}
	t := strings.ReplaceAll(s, " ", "")
	i := strings.IndexByte(t, '<')
	if i < 0 {
		return nil, bad("no <=")
	}
	q, rest := strings.ToLower(t[:i]), strings.TrimPrefix(t[i+1:], "=")
	switch q {
	case "p50", "p90", "p99", "p99.9", "max":
	case "":
		return nil, bad("no quantile")
	default:
		return nil, bad(fmt.Sprintf("unknown quantile %q", q))
	}
	d, err := time.ParseDuration(strings.ReplaceAll(rest, "us", "µs"))
	if err != nil || d <= 0 {
		return nil, bad(fmt.Sprintf("%q is not a positive duration", rest))
	}
	return &objective{text: q + "<=" + d.String(), quantile: q, limit: d}, nil
}

// value is the objective's quantile of a run.
func (o *objective) value(l loadgen.Latency) time.Duration {
	switch o.quantile {
	case "p50":
		return l.P50
	case "p90":
		return l.P90
	case "p99":
		return l.P99
	case "p99.9":
		return l.P999
	}
	return l.Max
}

// judge says whether a run met the objective, and why not: the rate must
// have been reached, without errors, with something measured.
func (o *objective) judge(r *loadgen.Result) (bool, string) {
	v := o.value(r.Latency)
	switch {
	case r.Errors.Total() > 0:
		return false, fmt.Sprintf("%d errors", r.Errors.Total())
	case r.Messages == 0:
		return false, "nothing measured"
	case r.RateMissed:
		return false, fmt.Sprintf("rate not reached (achieved %s msgs/s)", fmtCount(r.AchievedRate))
	case v > o.limit:
		return false, fmt.Sprintf("%s %s > %s", o.quantile, fmtDur(v), fmtDur(o.limit))
	}
	return true, ""
}

// searchReport is the JSON of an SLO search.
type searchReport struct {
	Objective string      `json:"objective"`
	Quantile  string      `json:"quantile"`
	LimitNS   int64       `json:"limit_ns"`
	Steps     []stepEntry `json:"steps"`
	// HighestMet is the highest rate that met the objective, FirstMissed
	// the first that did not (nil: none; the search stops there).
	HighestMet  *float64 `json:"highest_met"`
	FirstMissed *float64 `json:"first_missed"`
	Met         bool     `json:"met"`
}

type stepEntry struct {
	Rate   float64         `json:"rate"`
	Met    bool            `json:"met"`
	Why    string          `json:"why,omitempty"`
	Result *loadgen.Result `json:"result"`
}

// runSearch steps the rate up until a step misses the objective, one line
// per step, then the highest rate that met it and the first that did not.
func runSearch(ctx context.Context, cmd *cobra.Command, f *benchFlags, s *benchSetup, cfg loadgen.Config,
	target string, plan cpuPlan, meta runMeta, out io.Writer) error {
	stderr := cmd.ErrOrStderr()
	obj := s.slo
	rep := &searchReport{Objective: obj.text, Quantile: obj.quantile, LimitNS: int64(obj.limit)}
	var runs []*loadgen.Result
	fmt.Fprintf(out, "switchboard bench: %s\n", target)
	fmt.Fprintf(out, "  searching for the highest rate within %s, %d steps of %v\n", obj.text, len(s.rates), cfg.Duration)
	var interrupted error
	for i, rate := range s.rates {
		cfg.Rate = rate
		res, err := runLoad(ctx, cfg, stderr)
		if res == nil {
			fmt.Fprintln(stderr, "switchboard bench:", err)
			return exitError{1}
		}
		if i == 0 {
			fmt.Fprintf(out, "  %s\n", describeLoad(res, plan))
		}
		runs = append(runs, res)
		ok, why := obj.judge(res)
		if err != nil {
			ok, why, interrupted = false, "interrupted", err
		}
		rep.Steps = append(rep.Steps, stepEntry{Rate: rate, Met: ok, Why: why, Result: res})
		l := res.Latency
		verdict := "met"
		if !ok {
			verdict = "missed: " + why
		}
		fmt.Fprintf(out, "  step %-12s achieved %-12s p50 %-8s p99 %-8s p99.9 %-8s max %-8s %s\n",
			fmtCount(rate), fmtCount(res.AchievedRate), fmtDur(l.P50), fmtDur(l.P99), fmtDur(l.P999), fmtDur(l.Max), verdict)
		if ok {
			r := rate
			rep.HighestMet = &r
			continue
		}
		r := rate
		rep.FirstMissed = &r
		break
	}
	rep.Met = rep.HighestMet != nil
	switch {
	case rep.HighestMet != nil && rep.FirstMissed != nil:
		fmt.Fprintf(out, "  result       highest rate within %s: %s msgs/s; first that was not: %s msgs/s\n",
			obj.text, fmtCount(*rep.HighestMet), fmtCount(*rep.FirstMissed))
	case rep.HighestMet != nil:
		fmt.Fprintf(out, "  result       every step met %s, up to %s msgs/s: raise TO to find the limit\n", obj.text, fmtCount(*rep.HighestMet))
	}
	if err := f.writeOutputs(cmd, meta, benchReport{Run: meta, Search: rep}, runs); err != nil {
		fmt.Fprintln(stderr, "switchboard bench:", err)
		return exitError{1}
	}
	switch {
	case interrupted != nil:
		fmt.Fprintln(stderr, "switchboard bench: interrupted:", interrupted)
		return exitError{1}
	case !rep.Met:
		fmt.Fprintf(stderr, "switchboard bench: no step met %s: at %s msgs/s, %s\n", obj.text, fmtCount(s.rates[0]), rep.Steps[0].Why)
		return exitError{exitTarget}
	}
	return nil
}
