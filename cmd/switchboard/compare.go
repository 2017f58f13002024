package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"switchboard"
	"switchboard/framing"
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
	rate        string
}

func init() {
	cmd, _ := newCompareCommand()
	rootCmd.AddCommand(cmd)
}

// newCompareCommand builds the compare command around a fresh set of flag
// values, which it returns too, so a test can parse a command line and
// check it without running anything.
func newCompareCommand() (*cobra.Command, *compareFlags) {
	f := new(compareFlags)
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

--peers adds other servers users would pick, run the same way: minimal
single-threaded C echo servers on epoll and on io_uring (built with the
system C compiler; c-uring links Debian's liburing-dev), Node's net echo,
Python asyncio on uvloop and cloudwego/netpoll. Their sources are in
bench/peers; a peer that cannot be built or run here is skipped with the
reason. Server CPU per message is also given as a ratio to c-epoll's,
c-uring's and goroutine's in the same cell, for those that ran.

--rate R offers every server the same open-loop load instead: R messages
per second in total, spread evenly over the cell's connections on a fixed
schedule, as bench --rate does, latency measured from each message's due
time. --rate R1,R2,... runs every cell at each rate; each rate must give
every connection at least one message in --duration. The table gives,
per server, the offered and achieved rates, the shortfall, p50 and p99,
server CPU per message and the CPU utilisation of the server and of the
load generator, with server CPU per message as a ratio to the first
of --models (the baseline) as well as to the references above. A server holds the rate when
its median achieved rate is within 2% of the offered one. One that does
not is marked MISSED with what fell short: the server (its CPU full),
the load generator (its CPU full and the server's not: lower --rate),
both, CPU contention from other processes, or the round trip (neither CPU
full). Its CPU per message is marked *, and every ratio between two
servers of which one did not hold the rate is marked !, since it no
longer compares the same work.

Exit status: 0; 1 when a run failed, had errors or measured nothing;
2 for a bad command line; 3 when the runs were clean but a server did not
hold its --rate.`,
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return runCompare(cmd, f) },
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
	fl.StringVar(&f.peers, "peers", "", "also run peers: --peers for all, or --peers=NAME,... among "+strings.Join(peerNames(), ","))
	fl.Lookup("peers").NoOptDefVal = "all"
	fl.StringVar(&f.peersDir, "peers-dir", "", "directory of the peers' sources (default: bench/peers of the repository around the current directory)")
	fl.StringVar(&f.plot, "plot", "", "draw the tables as an SVG chart into FILE.svg")
	fl.StringVar(&f.from, "from", "", "run nothing: print the tables of an earlier --json report (and --plot them)")
	fl.StringVar(&f.rate, "rate", "", "offer every server the same open-loop load: total messages per second, or a list R1,R2,... (default: closed loop)")
	return cmd, f
}

// target is a server compare runs: a model of switchboard serve, or a
// peer.
type target struct {
	Name string `json:"name"`
	Peer bool   `json:"peer"`
	// argv starts a peer listening on port.
	argv func(port int) []string
	dir  string
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
	rates    []float64 // --rate's, in order; none for closed loop
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
	if f.peers != "" && (f.tls.on || f.tls.insecure || f.tls.ca != "" || f.tls.serverName != "") {
		return usagef("--peers with --tls: the peers speak plaintext")
	}
	cleanup, err := f.setupTLS(true)
	defer cleanup()
	if err != nil {
		return err
	}
	ctx, cancel := signalContext(cmd.Context())
	defer cancel()
	if f.peers != "" {
		cmp.addPeers(ctx, peerTable)
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
		if r.Error != "" || (r.Result != nil && r.Result.Errors.Total() > 0) || measuredNothing(r) {
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
	if missedRate(sums) {
		fmt.Fprintln(cmp.stderr, "switchboard compare: a server did not hold its --rate (MISSED in the table)")
		return exitError{exitTarget}
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
