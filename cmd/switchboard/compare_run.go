package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"switchboard/loadgen"
)

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

// measure runs the schedule's jobs in order, reporting each on stderr.
func (cmp *comparer) measure(ctx context.Context) {
	jobs := cmp.schedule()
	per := cmp.f.warmup + cmp.f.duration + time.Second
	fmt.Fprintf(cmp.stderr, "switchboard compare: %s, about %v; %s\n",
		plural(len(jobs), "run"), (time.Duration(len(jobs)) * per).Round(time.Second), fmtPlacement(fmtCPUs(cmp.plan.server), fmtCPUs(cmp.plan.load)))
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
		srv, err = startServe(t.Name, append(serveArgs(t.Name, cmp.f.loops, cmp.codec.String(), cmp.maxFrame), cmp.f.tlsServer...), cmp.plan.server)
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

func runLine(r runRecord, idle bool) string {
	res := r.Result
	var b strings.Builder
	if res != nil {
		if idle {
			if s := res.Server; s != nil && res.Idle > 0 {
				fmt.Fprintf(&b, "RSS %s per idle connection", fmtBytes(float64(s.RSSConnected-s.RSSBefore)/float64(res.Idle)))
			}
		} else if r.Cell.Rate > 0 {
			rateRunLine(&b, r)
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
		if measuredNothing(r) {
			b.WriteString(", MEASURED NOTHING")
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
