package loadgen

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// bottleneck judges what limited the run from the two CPU utilisations.
func bottleneck(r *Result) string {
	if r.Messages == 0 {
		return ""
	}
	srvSat := r.Server != nil && r.Server.Utilization >= SaturationThreshold
	if w := r.Elapsed.Seconds() * ContentionThreshold; w > 0 && !srvSat && !r.Load.Saturated &&
		(r.Load.RunQueueWait.Seconds() >= w || (r.Server != nil && r.Server.RunQueueWait.Seconds() >= w)) {
		return BottleneckContention
	}
	if r.Rate > 0 {
		switch {
		case srvSat:
			return BottleneckServer
		case r.Load.Saturated:
			return BottleneckLoad
		}
		return BottleneckRate
	}
	switch {
	case srvSat && r.Load.Saturated:
		return BottleneckBoth
	case srvSat:
		return BottleneckServer
	case r.Load.Saturated:
		return BottleneckLoad
	case r.Server != nil:
		return BottleneckLatency
	}
	return ""
}

// merge sums the workers' stats into agg (histograms too when res is
// set, which also receives the errors).
func merge(agg *stats, all []*stats, res *Result) {
	*agg = stats{}
	if res != nil {
		agg.hist = newHist()
	}
	var firstErrAt, firstMisAt int64
	for _, st := range all {
		st.mu.Lock()
		agg.replies += st.replies
		agg.measured += st.measured
		agg.lastDone = max(agg.lastDone, st.lastDone)
		agg.sendEnd = max(agg.sendEnd, st.sendEnd)
		agg.behind += st.behind
		agg.reconnects += st.reconnects
		agg.abandoned += st.abandoned
		agg.connectErrs += st.connectErrs
		agg.connErrs += st.connErrs
		agg.mismatches += st.mismatches
		agg.unanswered += st.unanswered
		if st.firstErr != "" && (agg.firstErr == "" || st.firstErrAt < firstErrAt) {
			agg.firstErr, firstErrAt = st.firstErr, st.firstErrAt
		}
		if st.firstMismatch != "" && (agg.firstMismatch == "" || st.firstMismatchAt < firstMisAt) {
			agg.firstMismatch, firstMisAt = st.firstMismatch, st.firstMismatchAt
		}
		if res != nil {
			agg.hist.Merge(st.hist)
		}
		st.mu.Unlock()
	}
	if res != nil {
		res.Errors = Errors{
			Connect: agg.connectErrs, Conn: agg.connErrs, Mismatches: agg.mismatches,
			Unanswered: agg.unanswered, First: agg.firstErr, FirstMismatch: agg.firstMismatch,
		}
	}
}

func latency(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	d := func(v int64) time.Duration { return time.Duration(v) }
	return Latency{
		Min: d(h.Min()), Mean: time.Duration(h.Mean()), StdDev: time.Duration(h.StdDev()),
		P50: d(h.ValueAtQuantile(50)), P90: d(h.ValueAtQuantile(90)), P99: d(h.ValueAtQuantile(99)),
		P999: d(h.ValueAtQuantile(99.9)), Max: d(h.Max()),
	}
}

// startProgress calls c.Progress every interval until the returned stop
// function is called.
func startProgress(c *config, all []*stats, phase *atomic.Value, phaseStart *atomic.Int64) func() {
	if c.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(c.ProgressInterval)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			var p Progress
			p.Phase = phase.Load().(Phase)
			p.Elapsed = time.Duration(now() - phaseStart.Load())
			for _, st := range all {
				p.Connected += st.prog.connected.Load()
				p.Replies += st.prog.replies.Load()
				p.Measured += st.prog.measured.Load()
				p.Errors += st.prog.errors.Load()
				p.Mismatches += st.prog.mismatches.Load()
			}
			c.Progress(p)
		}
	}()
	return func() { close(done); wg.Wait() }
}
