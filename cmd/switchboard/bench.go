package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"switchboard"
	"switchboard/framing"
	"switchboard/internal/netaddr"
	"switchboard/loadgen"
)

// loadFlags are the load-shaping flags bench and compare share.
type loadFlags struct {
	duration       time.Duration
	warmup         time.Duration
	framing        string
	expect         string
	sourceIPs      int
	connectRate    float64
	connectTimeout time.Duration
	drainTimeout   time.Duration
	workers        int
	driver         string
	cpuServer      string
	cpuLoad        string
	loops          int
	jsonPath       string
}

func (f *loadFlags) register(cmd *cobra.Command, duration, warmup time.Duration) {
	fl := cmd.Flags()
	fl.DurationVar(&f.duration, "duration", duration, "how long to measure, after the warm-up")
	fl.DurationVar(&f.warmup, "warmup", warmup, "load run before measuring, left out of every figure")
	fl.StringVar(&f.framing, "framing", "raw", "message framing: raw, line, delim:HEX, fixed:N, len:N[be|le], digits:N, typed:T=N,..., resp")
	fl.IntVar(&f.sourceIPs, "source-ips", 0, "spread connections over source addresses 127.0.0.1-N (loopback servers; passes one address's ~28k ports)")
	fl.Float64Var(&f.connectRate, "connect-rate", loadgen.DefaultConnectRate, "new connections per second at most")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", loadgen.DefaultConnectTimeout, "a connection not established within this fails")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", loadgen.DefaultDrainTimeout, "wait this long for replies in flight when sending stops; later ones are errors")
	fl.IntVar(&f.workers, "workers", 0, "load generator epoll threads (0: one per load CPU)")
	fl.StringVar(&f.driver, "driver", loadgen.DriverAuto, "load generator driver: auto, epoll (Linux) or goroutine")
	fl.StringVar(&f.cpuServer, "cpu-server", "auto", "CPUs for the server this command starts: auto (the first), none, or a list such as 0 or 0-1")
	fl.StringVar(&f.cpuLoad, "cpu-load", "auto", "CPUs for the load generator: auto (the others), none, or a list such as 1 or 2-3")
	fl.IntVar(&f.loops, "loops", 1, "event loops of the server this command starts (reactor models)")
	fl.StringVar(&f.jsonPath, "json", "", "write every figure to FILE as JSON")
}

// validate checks what the flags can be checked for alone.
func (f *loadFlags) validate() error {
	switch {
	case f.duration < 0 || f.warmup < 0:
		return usagef("--duration and --warmup cannot be negative")
	case f.sourceIPs < 0 || f.sourceIPs > loadgen.MaxSourceIPs:
		return usagef("--source-ips must be between 0 and %d", loadgen.MaxSourceIPs)
	case f.connectRate <= 0:
		return usagef("--connect-rate must be positive")
	case f.workers < 0:
		return usagef("--workers cannot be negative")
	case f.loops < 1:
		return usagef("--loops must be at least 1")
	case f.connectTimeout <= 0 || f.drainTimeout <= 0:
		return usagef("--connect-timeout and --drain-timeout must be positive")
	}
	switch f.driver {
	case loadgen.DriverAuto, loadgen.DriverEpoll, loadgen.DriverGoroutine:
	default:
		return usagef("--driver must be auto, epoll or goroutine, not %q", f.driver)
	}
	return nil
}

// config fills the loadgen fields the shared flags set.
func (f *loadFlags) config(cfg *loadgen.Config) {
	cfg.Duration = f.duration
	cfg.Warmup = f.warmup
	cfg.SourceIPs = f.sourceIPs
	cfg.ConnectRate = f.connectRate
	cfg.ConnectTimeout = f.connectTimeout
	cfg.DrainTimeout = f.drainTimeout
	cfg.Workers = f.workers
	cfg.Driver = f.driver
}

type benchFlags struct {
	loadFlags
	connect   string
	model     string
	conns     int
	idle      int
	size      sizeFlag
	payload   string
	pipeline  int
	rate      string
	requests  int64
	serverPID int
	opFlags
}

func init() {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test a server and verify every echoed byte",
		Long: `Load-test a message server: --conns connections, each with --pipeline
messages of --size bytes in flight, for --duration after --warmup.

Every reply is checked byte for byte against what was sent (payloads are
derived from the connection and message number, so nothing is stored); a
mismatch, a lost connection or a reply that never comes is an error, and
any error makes bench exit 1. With --rate the messages go out on a fixed
schedule (open loop) and latency counts from when each was due, so a stall
of the server cannot hide itself (no coordinated omission, as wrk2).

Without --connect, bench starts "switchboard serve --model M" itself, pins
it to one CPU and the load to the others (--cpu-server, --cpu-load), and
reports the server's CPU time per message, the figure that compares
servers on a shared machine. --server-pid does the same for a server
started elsewhere.

Under --rate a server that falls behind is measured, not hidden: each
message's latency runs from when it was due, and the result gives the
offered rate, the achieved rate and the shortfall. A run short of its
target by more than 2% says so on one line and exits 3; a run that
measured nothing exits 1. --rate FROM:TO:STEP with --slo steps the rate up
and reports the highest rate that met the objective and the first that
did not (exit 3 when none did):

  switchboard bench --connect 127.0.0.1:8888 --rate 20000:200000:20000 --slo 'p99<=1ms' --duration 5s

--payload is a template: {counter} (shared by all connections), {seq},
{conn}, {rand:A-B} and {bytes:N} (random letters and digits) change with
every message; {{ and }} are literal braces. --expect any awaits one framed
reply per request and does not compare it, and --reply-framing reads
replies framed differently from requests. With --framing resp the payload
is a Redis command, sent as an array of bulk strings:

  switchboard bench --connect 127.0.0.1:6379 --framing resp --expect any --payload 'GET key:{rand:1-100000}'

A connection the server closes cleanly after replying (a keep-alive
limit) is opened again and counted, not an error (--close-is-error makes
it one). --proxy-header v1|v2 opens every
connection with a PROXY header carrying its own address, or
--proxy-source's, for a server behind a balancer:

  switchboard bench --connect 127.0.0.1:8888 --proxy-header v2

--json FILE (- for stdout, the summary then going to stderr) writes every
figure with the tool's version, start time, command line and machine;
--hdr-log FILE the latencies in HdrHistogram's interval log format.

Exit status: 0 success; 1 errors, nothing measured, or a failure to run;
2 a bad command line; 3 the target rate was missed, or no step met --slo.

Sizes take KiB, MiB and GiB suffixes; durations Go's syntax (500ms, 10s).`,
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd, &f)
		},
	}
	f.register(cmd, 10*time.Second, 2*time.Second)
	fl := cmd.Flags()
	fl.StringVar(&f.connect, "connect", "", "server address: host:port, [::1]:port or unix:/path (default: start a server of --model)")
	fl.StringVar(&f.model, "model", "auto", "I/O model of the server bench starts: auto, "+strings.Join(switchboard.Models(), ", "))
	fl.IntVar(&f.conns, "conns", 100, "active connections")
	fl.IntVar(&f.idle, "idle", 0, "more connections opened and held without traffic")
	f.size = 64
	fl.Var(&f.size, "size", "message payload size (B, KiB, MiB)")
	fl.StringVar(&f.payload, "payload", "", "send this text as every message instead of generated bytes; fields {counter} {seq} {conn} {rand:A-B} {bytes:N} change per message ({{ for a brace)")
	fl.IntVar(&f.pipeline, "pipeline", 1, "messages in flight per connection")
	fl.StringVar(&f.rate, "rate", "0", "total messages per second on a fixed schedule (0: as fast as replies come), or FROM:TO:STEP with --slo")
	fl.Int64Var(&f.requests, "requests", 0, "stop after this many measured messages (with the default --duration, instead of it)")
	fl.StringVar(&f.expect, "expect", "echo", "echo: replies must equal the messages; any: one framed reply per message, not compared")
	fl.IntVar(&f.serverPID, "server-pid", 0, "report this process's CPU time per message and memory (Linux /proc)")
	f.opFlags.registerOp(cmd)
	rootCmd.AddCommand(cmd)
}

// benchSetup is a bench's validated configuration.
type benchSetup struct {
	cfg      loadgen.Config
	maxFrame int64
	rates    []float64 // one, or the steps of an SLO search
	slo      *objective
}

func (f *benchFlags) setup(cmd *cobra.Command) (*benchSetup, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	fl := cmd.Flags()
	if f.connect != "" && fl.Changed("model") {
		return nil, usagef("--connect and --model exclude each other: bench either loads a server or starts one")
	}
	if f.connect == "" && fl.Changed("server-pid") {
		return nil, usagef("--server-pid is for a server given with --connect; bench knows its own server")
	}
	if f.connect != "" && (fl.Changed("loops") || fl.Changed("cpu-server")) {
		return nil, usagef("--loops and --cpu-server are for the server bench starts, not one given with --connect")
	}
	if f.connect != "" {
		if _, _, err := netaddr.Split(f.connect); err != nil {
			return nil, usagef("--connect: %v", err)
		}
	} else if _, err := switchboard.ResolveModel(f.model); err != nil {
		return nil, usagef("--model: %v", err)
	}
	if f.conns < 0 || f.idle < 0 || f.conns+f.idle == 0 {
		return nil, usagef("--conns and --idle cannot be negative, nor both 0")
	}
	if f.pipeline < 1 {
		return nil, usagef("--pipeline must be at least 1")
	}
	if f.requests < 0 || f.serverPID < 0 {
		return nil, usagef("--requests and --server-pid cannot be negative")
	}
	rates, err := parseRates(f.rate)
	if err != nil {
		return nil, usageError{err}
	}
	size := int64(f.size)
	if size < 1 || size > 1<<30 {
		return nil, usagef("--size must be between 1 B and 1 GiB")
	}
	s := &benchSetup{maxFrame: max(size, framing.DefaultMaxFrame), rates: rates}
	if s.slo, err = f.opFlags.objective(len(rates)); err != nil {
		return nil, err
	}
	codec, err := framing.Parse(f.framing, int(s.maxFrame))
	if err != nil {
		return nil, usagef("--framing: %v", err)
	}
	if f.payload != "" {
		s.maxFrame = max(int64(len(f.payload)), framing.DefaultMaxFrame)
	}
	cfg := &s.cfg
	f.config(cfg)
	if fl.Changed("requests") && !fl.Changed("duration") {
		cfg.Duration = 0 // the request count alone ends the run
	}
	if cfg.Duration == 0 && f.requests == 0 {
		return nil, usagef("--duration 0 needs --requests")
	}
	cfg.Conns, cfg.Idle, cfg.Size, cfg.Pipeline = f.conns, f.idle, int(size), f.pipeline
	if !fl.Changed("size") && strings.HasPrefix(f.framing, "fixed:") {
		cfg.Size = 0 // the fixed size, whatever --size's default
	}
	if f.payload != "" {
		if cfg.Template, err = loadgen.ParseTemplate(f.payload); err != nil {
			return nil, usagef("--payload: %v", err)
		}
	}
	if err := f.opFlags.configOp(cfg, int(s.maxFrame)); err != nil {
		return nil, err
	}
	cfg.Rate, cfg.Requests = rates[0], f.requests
	cfg.Codec = codec
	cfg.Expect = loadgen.Expect(f.expect)
	cfg.ServerPID = f.serverPID
	if f.expect != "echo" && f.expect != "any" {
		return nil, usagef("--expect must be echo or any, not %q", f.expect)
	}
	// Let loadgen judge the rest of the combination (framing and size,
	// expect and framing...) before anything is started.
	probe := *cfg
	probe.Addr = "127.0.0.1:1"
	if f.connect != "" {
		probe.Addr = f.connect
	}
	if err := loadgen.Check(probe); err != nil {
		return nil, usageError{err}
	}
	return s, nil
}

func runBench(cmd *cobra.Command, f *benchFlags) error {
	s, err := f.setup(cmd)
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
		srv, err := startServe("switchboard serve", serveArgs(f.model, f.loops, f.framing, s.maxFrame), plan.server)
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

// describeLoad is the one-line description of what was run.
func describeLoad(r *loadgen.Result, plan cpuPlan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d connections", r.Conns)
	if r.Idle > 0 {
		fmt.Fprintf(&b, " (+%d idle)", r.Idle)
	}
	fmt.Fprintf(&b, ", %s messages, pipeline %d, framing %s", fmtBytes(float64(r.Size)), r.Pipeline, r.Framing)
	if r.Expect == loadgen.ExpectAny {
		b.WriteString(", replies not compared")
	}
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", open loop at %s msgs/s", fmtCount(r.Rate))
	} else {
		b.WriteString(", closed loop")
	}
	if r.Duration > 0 {
		fmt.Fprintf(&b, ", %v", r.Duration)
	}
	if r.Requests > 0 {
		fmt.Fprintf(&b, ", %d requests", r.Requests)
	}
	if r.Warmup > 0 {
		fmt.Fprintf(&b, " after %v warm-up", r.Warmup)
	}
	if r.Driver == loadgen.DriverEpoll {
		fmt.Fprintf(&b, "; load: %d epoll thread(s)", r.Workers)
	} else {
		fmt.Fprintf(&b, "; load: %s driver", r.Driver)
	}
	switch {
	case len(plan.server) > 0:
		fmt.Fprintf(&b, "; server on CPU %s, load on CPU %s", fmtCPUs(plan.server), fmtCPUs(plan.load))
	case len(plan.load) > 0:
		fmt.Fprintf(&b, "; load on CPU %s", fmtCPUs(plan.load))
	}
	return b.String()
}

// printResult writes the human summary of one run.
func printResult(w io.Writer, r *loadgen.Result) {
	fmt.Fprintf(w, "  connected    %d in %s\n", r.Connected, fmtDur(r.ConnectTime))
	fmt.Fprintf(w, "  messages     %s in %s\n", fmtCount(float64(r.Messages)), fmtDur(r.Elapsed))
	fmt.Fprintf(w, "  throughput   %s msgs/s, %.2f MB/s each way\n", fmtCount(r.MsgsPerSec), r.MBPerSec)
	printOperator(w, r)
	l := r.Latency
	if r.Messages > 0 {
		fmt.Fprintf(w, "  latency      p50 %s, p90 %s, p99 %s, p99.9 %s, max %s (min %s, mean %s)\n",
			fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.P999), fmtDur(l.Max), fmtDur(l.Min), fmtDur(l.Mean))
	}
	e := r.Errors
	switch {
	case e.Total() == 0 && r.Expect == loadgen.ExpectAny:
		fmt.Fprintf(w, "  errors       0 (one reply per message, not compared)\n")
	case e.Total() == 0:
		fmt.Fprintf(w, "  errors       0 (every reply verified)\n")
	default:
		fmt.Fprintf(w, "  errors       %d: %d connect, %d connection, %d mismatched replies, %d unanswered\n",
			e.Total(), e.Connect, e.Conn, e.Mismatches, e.Unanswered)
		if e.First != "" {
			fmt.Fprintf(w, "               first error: %s\n", e.First)
		}
		if e.FirstMismatch != "" {
			fmt.Fprintf(w, "               first mismatch: %s\n", e.FirstMismatch)
		}
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(w, "  server CPU   %.2f µs/msg (%.0f%% of %d CPU%s), RSS %s (%s before connecting)\n",
			s.CPUPerMsg, 100*s.Utilization, s.CPUs, waited(s.RunQueueWait, r.Elapsed), fmtBytes(float64(s.RSSEnd)), fmtBytes(float64(s.RSSBefore)))
	}
	fmt.Fprintf(w, "  load CPU     %.2f µs/msg (%.0f%% of %d CPU%s)\n", r.Load.CPUPerMsg, 100*r.Load.Utilization, r.Load.CPUs, waited(r.Load.RunQueueWait, r.Elapsed))
	switch r.Bottleneck {
	case loadgen.BottleneckLoad:
		fmt.Fprintf(w, "  bottleneck   the load generator: its CPU was saturated and the server's was not; the throughput is a floor, not the server's limit\n")
	case loadgen.BottleneckServer:
		fmt.Fprintf(w, "  bottleneck   the server: its CPU was saturated\n")
	case loadgen.BottleneckBoth:
		fmt.Fprintf(w, "  bottleneck   both CPUs were saturated: compare servers on CPU per message\n")
	case loadgen.BottleneckLatency:
		fmt.Fprintf(w, "  bottleneck   neither CPU was saturated: round trips set the pace (raise --pipeline or --conns)\n")
	case loadgen.BottleneckContention:
		fmt.Fprintf(w, "  bottleneck   other processes: server or load waited for a CPU they held; trust CPU per message more than throughput\n")
	case loadgen.BottleneckRate:
		fmt.Fprintf(w, "  bottleneck   none: the --rate schedule set the pace\n")
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "  note         %s\n", warn)
	}
}

// waited notes the time a process's threads waited for a CPU, when it is
// more than 1% of the window: the sign of other work on the same CPUs.
func waited(wait, window time.Duration) string {
	if window <= 0 || wait*100 < window {
		return ""
	}
	return fmt.Sprintf("; waited %s for a CPU: other processes ran there", fmtDur(wait))
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
