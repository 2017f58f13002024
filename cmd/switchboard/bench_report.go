package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"switchboard/loadgen"
)

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
	if r.Handshakes != nil {
		fmt.Fprintf(w, "  handshakes   %s\n", describeHandshakes(r.Handshakes))
	}
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
