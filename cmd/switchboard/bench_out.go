package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"switchboard/framing"
	"switchboard/loadgen"
)

// Exit statuses of bench beyond 0 (success), 1 (errors, or nothing
// measured) and 2 (a bad command line).
const (
	// exitTarget: the run was clean but did not reach its --rate, or no
	// step of an SLO search met the objective.
	exitTarget = 3
)

// opFlags are the flags of bench for real protocols and operators.
type opFlags struct {
	slo          string
	replyFraming string
	closeIsError bool
	proxyHeader  string
	proxySource  string
	hdrLog       string
}

func (o *opFlags) registerOp(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&o.slo, "slo", "", "latency objective for --rate FROM:TO:STEP, e.g. 'p99<=1ms' (p50, p90, p99, p99.9 or max)")
	fl.StringVar(&o.replyFraming, "reply-framing", "", "framing of the replies when it differs from --framing's")
	fl.BoolVar(&o.closeIsError, "close-is-error", false, "count a connection the server closes as an error (default: reconnect and count it)")
	fl.StringVar(&o.proxyHeader, "proxy-header", "", "open every connection with a PROXY header: v1 or v2")
	fl.StringVar(&o.proxySource, "proxy-source", "", "client address the PROXY header announces, ip:port (default: each connection's own)")
	fl.StringVar(&o.hdrLog, "hdr-log", "", "write the latencies to FILE in HdrHistogram's interval log format (one interval per run or step)")
}

// objective parses --slo, which needs a rate to hold.
func (o *opFlags) objective(rates int) (*objective, error) {
	if o.slo == "" {
		if rates > 1 {
			return nil, usagef("--rate FROM:TO:STEP searches for the highest rate within an objective: give --slo too, e.g. --slo 'p99<=1ms'")
		}
		return nil, nil
	}
	obj, err := parseObjective(o.slo)
	if err != nil {
		return nil, usageError{err}
	}
	return obj, nil
}

// config fills the loadgen fields of these flags.
func (o *opFlags) configOp(cfg *loadgen.Config, maxFrame int) error {
	if o.replyFraming != "" {
		c, err := framing.Parse(o.replyFraming, maxFrame)
		if err != nil {
			return usagef("--reply-framing: %v", err)
		}
		cfg.ReplyCodec = c
	}
	switch o.proxyHeader {
	case "", "v1", "v2":
	default:
		return usagef("--proxy-header must be v1 or v2, not %q", o.proxyHeader)
	}
	if o.proxySource != "" && o.proxyHeader == "" {
		return usagef("--proxy-source needs --proxy-header v1 or v2")
	}
	cfg.CloseIsError = o.closeIsError
	cfg.ProxyHeader, cfg.ProxySource = o.proxyHeader, o.proxySource
	return nil
}

// runMeta says what ran, when and where: enough to tell two JSON files
// apart a year later.
type runMeta struct {
	Tool        string       `json:"tool"`
	Version     string       `json:"version"`
	Start       time.Time    `json:"start"`
	CommandLine []string     `json:"command_line"`
	Machine     benchMachine `json:"machine"`
}

type benchMachine struct {
	Hostname string `json:"hostname,omitempty"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	CPUs     int    `json:"cpus"`
	Kernel   string `json:"kernel,omitempty"`
	Go       string `json:"go"`
}

func newRunMeta(cmd *cobra.Command) runMeta {
	m := runMeta{Tool: "switchboard", Version: toolVersion(), Start: time.Now().UTC().Round(time.Millisecond)}
	m.CommandLine = strings.Fields(cmd.CommandPath())
	cmd.Flags().Visit(func(f *pflag.Flag) {
		m.CommandLine = append(m.CommandLine, "--"+f.Name+"="+f.Value.String())
	})
	m.CommandLine = append(m.CommandLine, cmd.Flags().Args()...)
	host, _ := os.Hostname()
	m.Machine = benchMachine{Hostname: host, OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Kernel: kernelRelease(), Go: runtime.Version()}
	return m
}

// toolVersion is the module version, or the VCS revision a development
// build was made from.
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" && (v == "" || v == "(devel)") {
		return "devel-" + rev[:min(12, len(rev))] + dirty
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

// benchReport is bench's JSON: what ran, then every figure of the run (at
// the top level, as before), or of each step of an SLO search.
type benchReport struct {
	Run runMeta `json:"run"`
	*loadgen.Result
	Search *searchReport `json:"slo_search,omitempty"`
}

// writeOutputs writes --json (to stdout for "-") and --hdr-log.
func (f *benchFlags) writeOutputs(cmd *cobra.Command, meta runMeta, rep any, runs []*loadgen.Result) error {
	if f.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if f.jsonPath == "-" {
			if _, err := cmd.OutOrStdout().Write(b); err != nil {
				return fmt.Errorf("--json: stdout: %w", err)
			}
		} else if err := os.WriteFile(f.jsonPath, b, 0o644); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if f.hdrLog != "" {
		if err := writeHdrLog(f.hdrLog, meta, runs); err != nil {
			return fmt.Errorf("--hdr-log: %w", err)
		}
	}
	return nil
}

// writeHdrLog writes one interval per run, tagged with its rate, in the
// format HdrHistogram's log tools (HistogramLogProcessor, the plotters)
// read. Values are nanoseconds; the log's max column is in milliseconds.
func writeHdrLog(path string, meta runMeta, runs []*loadgen.Result) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	lw := hdrhistogram.NewHistogramLogWriter(file)
	werr := func() error {
		if err := lw.OutputComment(fmt.Sprintf("switchboard %s: %s", meta.Version, strings.Join(meta.CommandLine, " "))); err != nil {
			return err
		}
		if err := lw.OutputLogFormatVersion(); err != nil {
			return err
		}
		start := meta.Start.UnixMilli()
		if len(runs) > 0 && runs[0].Histogram != nil {
			start = runs[0].Histogram.StartTimeMs()
		}
		lw.SetBaseTime(start)
		if err := lw.OutputStartTime(start); err != nil {
			return err
		}
		if err := lw.OutputComment("values are nanoseconds; the max column is in milliseconds"); err != nil {
			return err
		}
		if err := lw.OutputLegend(); err != nil {
			return err
		}
		for _, r := range runs {
			if r.Histogram == nil {
				continue
			}
			tag := "closed-loop"
			if r.Rate > 0 {
				tag = fmt.Sprintf("rate=%g", r.Rate)
			}
			r.Histogram.SetTag(tag)
			if err := lw.OutputIntervalHistogram(r.Histogram); err != nil {
				return err
			}
		}
		return nil
	}()
	if cerr := file.Close(); werr == nil {
		werr = cerr
	}
	return werr
}

// printOperator writes the lines of the open-loop verdict and of
// reconnections, when they apply.
func printOperator(w io.Writer, r *loadgen.Result) {
	if r.Rate > 0 {
		fmt.Fprintf(w, "  rate         offered %s msgs/s, achieved %s msgs/s", fmtCount(r.OfferedRate), fmtCount(r.AchievedRate))
		if r.RateMissed {
			fmt.Fprintf(w, ": %.1f%% short of the target", 100*r.Shortfall)
			if r.Behind > 0 {
				fmt.Fprintf(w, ", %s due messages never sent", fmtCount(float64(r.Behind)))
			}
			fmt.Fprintf(w, " (latency counts from each message's due time)\n")
		} else {
			fmt.Fprintf(w, ": target met\n")
		}
	}
	if r.Reconnects > 0 {
		fmt.Fprintf(w, "  reconnects   %s: the server closed connections cleanly (a keep-alive limit?); %s messages in flight on them abandoned\n",
			fmtCount(float64(r.Reconnects)), fmtCount(float64(r.Abandoned)))
	}
}

// verdict is the exit status of a single run, with its one line on
// stderr: an interruption or errors are failures, and so is a run that
// measured nothing; a clean run short of its --rate exits exitTarget.
func verdict(stderr io.Writer, res *loadgen.Result, runErr error) error {
	switch {
	case runErr != nil:
		fmt.Fprintln(stderr, "switchboard bench: interrupted:", runErr)
		return exitError{1}
	case res.Errors.Total() > 0:
		fmt.Fprintf(stderr, "switchboard bench: %d errors\n", res.Errors.Total())
		return exitError{1}
	case res.Messages == 0 && res.Conns > 0:
		fmt.Fprintln(stderr, "switchboard bench: no message was measured: not a result")
		return exitError{1}
	case res.RateMissed:
		fmt.Fprintf(stderr, "switchboard bench: target rate not reached: achieved %s of %s msgs/s (%.1f%% short)\n",
			fmtCount(res.AchievedRate), fmtCount(res.OfferedRate), 100*res.Shortfall)
		return exitError{exitTarget}
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	return nil
}
