package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"switchboard/loadgen"
)

func runBench(cmd *cobra.Command, f *benchFlags) error {
	s, err := f.setup(cmd)
	if f.cleanup != nil {
		defer f.cleanup()
	}
	if err != nil {
		return err
	}
	plan, notes, err := planCPUs(f.cpuServer, f.cpuLoad, f.connect == "")
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := signalContext(cmd.Context())
	defer cancel()

	stderr := cmd.ErrOrStderr()
	for _, n := range notes {
		fmt.Fprintln(stderr, "switchboard bench:", n)
	}
	cfg := s.cfg
	target := f.connect
	var scrapeCost float64
	if f.connect == "" {
		srv, err := startServe("switchboard serve", append(serveArgs(f.model, f.loops, f.framing, s.maxFrame), f.tlsServer...), plan.server)
		if err != nil {
			fmt.Fprintln(stderr, "switchboard bench:", err)
			return exitError{1}
		}
		defer srv.stop()
		cfg.Addr, cfg.ServerPID = srv.addr, srv.pid()
		if srv.metrics != "" {
			if read, cost, err := allocCounter(srv.metrics); err == nil {
				cfg.Counters, scrapeCost = read, cost
			}
		}
		target = fmt.Sprintf("%s (switchboard serve --model %s --loops %d, pid %d)", srv.addr, f.model, f.loops, srv.pid())
	} else {
		cfg.Addr = f.connect
	}
	if len(plan.load) > 0 {
		if err := pinSelf(plan.load); err != nil {
			fmt.Fprintln(stderr, "switchboard bench:", err)
			return exitError{1}
		}
	}
	meta := newRunMeta(cmd)
	out := cmd.OutOrStdout()
	if f.jsonPath == "-" {
		out = stderr // stdout carries the JSON alone
	}
	if s.slo != nil {
		return runSearch(ctx, cmd, f, s, cfg, target, plan, meta, out)
	}
	res, runErr := runLoad(ctx, cfg, stderr)
	if res == nil {
		fmt.Fprintln(stderr, "switchboard bench:", runErr)
		return exitError{1}
	}
	fmt.Fprintf(out, "switchboard bench: %s\n", target)
	fmt.Fprintf(out, "  %s\n", describeLoad(res, plan))
	printResult(out, res)
	if a := allocsPerMsg(res, scrapeCost); a >= 0 {
		fmt.Fprintf(out, "  allocations  %.3f per message in the server (Go runtime's count over the window)\n", a)
	}
	if err := f.writeOutputs(cmd, meta, benchReport{Run: meta, Result: res}, []*loadgen.Result{res}); err != nil {
		fmt.Fprintln(stderr, "switchboard bench:", err)
		return exitError{1}
	}
	return verdict(stderr, res, runErr)
}

// serveArgs are the arguments of the echo server bench and compare start.
func serveArgs(model string, loops int, framingSpec string, maxFrame int64) []string {
	return []string{
		"--listen", "127.0.0.1:0", "--model", model, "--loops", strconv.Itoa(loops),
		"--service", "echo", "--framing", framingSpec, "--max-frame", strconv.FormatInt(maxFrame, 10),
		"--log-level", "info", "--metrics", "127.0.0.1:0",
	}
}

// runLoad runs loadgen with a progress bar on stderr when it is a
// terminal.
func runLoad(ctx context.Context, cfg loadgen.Config, stderr io.Writer) (*loadgen.Result, error) {
	var bar *progressbar.ProgressBar
	if fd, ok := stderr.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(fd.Fd())) {
		total := int64(cfg.Warmup + cfg.Duration)
		if cfg.Duration == 0 {
			total = cfg.Requests
		}
		bar = progressbar.NewOptions64(max(total/int64(time.Millisecond), 1),
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetDescription("connecting"),
		)
		if cfg.Duration == 0 {
			bar.ChangeMax64(max(cfg.Requests, 1))
		}
		var last loadgen.Progress
		var lastAt time.Time
		cfg.Progress = func(p loadgen.Progress) {
			now := time.Now()
			rate := 0.0
			if !lastAt.IsZero() {
				rate = float64(p.Replies-last.Replies) / now.Sub(lastAt).Seconds()
			}
			last, lastAt = p, now
			switch p.Phase {
			case loadgen.PhaseConnect:
				bar.Describe(fmt.Sprintf("connecting %d/%d", p.Connected, cfg.Conns+cfg.Idle))
				return
			case loadgen.PhaseWarmup:
				bar.Describe(fmt.Sprintf("warm-up %s msgs/s", fmtCount(rate)))
				if cfg.Duration > 0 {
					bar.Set64(int64(p.Elapsed / time.Millisecond))
				}
			default:
				desc := fmt.Sprintf("%s msgs/s, errors %d", fmtCount(rate), p.Errors+p.Mismatches)
				bar.Describe(desc)
				if cfg.Duration > 0 {
					bar.Set64(int64((cfg.Warmup + p.Elapsed) / time.Millisecond))
				} else {
					bar.Set64(p.Measured)
				}
			}
		}
	}
	res, err := loadgen.Run(ctx, cfg)
	if bar != nil {
		bar.Finish()
		bar.Clear()
	}
	return res, err
}
