package loadgen

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// driver is one way of running the connections: epoll threads or
// goroutines.
type driver interface {
	// connect opens every connection and returns once all are up or have
	// failed.
	connect(ctx context.Context)
	// traffic runs the load on tl until sending ends and the replies are in
	// (or the drain timeout passes), or ctx ends.
	traffic(ctx context.Context, tl *timeline)
	// close closes every connection and frees the driver's resources.
	close()
	stats() []*stats
}

// run drives a validated config.
func run(ctx context.Context, c *config) (*Result, error) {
	res := &Result{
		Addr: c.Addr, Driver: c.Driver, Conns: c.Conns, Idle: c.Idle,
		Size: c.proto.msgLen, Pipeline: c.Pipeline, Rate: c.Rate, Framing: c.Codec.String(),
		Expect: c.Expect, Warmup: c.Warmup, Duration: c.Duration, Requests: c.Requests,
		ProxyHeader: c.ProxyHeader,
	}
	if c.ReplyCodec.String() != c.Codec.String() {
		res.ReplyFraming = c.ReplyCodec.String()
	}
	switch {
	case c.Template != nil:
		res.Payload = c.Template.String()
	case c.Payload != nil:
		res.Payload = string(c.Payload)
	}
	if c.Driver == DriverEpoll {
		res.Workers = c.workers
	}
	var srv0 procSample
	if c.ServerPID != 0 {
		var err error
		if srv0, err = sampleProc(c.ServerPID); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("server figures unavailable: %v", err))
			c.ServerPID = 0
		}
	}

	var phase atomic.Value
	phase.Store(PhaseConnect)
	var phaseStart atomic.Int64
	phaseStart.Store(now())
	setPhase := func(p Phase, t int64) { phase.Store(p); phaseStart.Store(t) }

	d, err := newDriver(c)
	if err != nil {
		return nil, err
	}
	defer d.close()
	stopProgress := startProgress(c, d.stats(), &phase, &phaseStart)
	defer stopProgress()

	t := now()
	d.connect(ctx)
	res.ConnectTime = time.Duration(now() - t)
	var agg stats
	merge(&agg, d.stats(), nil)
	for _, st := range d.stats() {
		res.Connected += int(st.prog.connected.Load())
	}
	if nd, ok := d.(*netDriver); ok && c.TLS != nil {
		// The server's CPU over the connect phase is its handshakes' (and
		// accepts'), for the CPU each one costs.
		var hsCPU time.Duration
		if c.ServerPID != 0 {
			if sc, err := sampleProc(c.ServerPID); err == nil {
				hsCPU = sc.cpu - srv0.cpu
			}
		}
		defer func() {
			res.Handshakes = nd.hs.summary(res.Connected, res.ConnectTime)
			if hsCPU > 0 && res.Connected > 0 {
				res.Handshakes.ServerCPUPerHandshake = float64(hsCPU.Microseconds()) / float64(res.Connected)
			}
		}()
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Connected == 0 {
		return nil, fmt.Errorf("loadgen: no connection to %s could be made: %s", c.Addr, agg.firstErr)
	}

	wall0 := time.Now()
	tl := &timeline{t0: now()}
	tl.ms = tl.t0 + int64(c.Warmup)
	tl.me = math.MaxInt64
	if c.Duration > 0 {
		tl.me = tl.ms + int64(c.Duration)
	}
	if c.Warmup > 0 {
		setPhase(PhaseWarmup, tl.t0)
	} else {
		setPhase(PhaseMeasure, tl.t0)
	}

	// Sample CPU and memory at the start of the window, from this goroutine,
	// while the workers run.
	type sample struct {
		srv      procSample
		self     time.Duration
		selfWait time.Duration
		counters map[string]float64
		cntErr   error
		at       int64
		err      error
	}
	startCh := make(chan sample, 1)
	go func() {
		if w := time.Duration(tl.ms - now()); w > 0 {
			tm := time.NewTimer(w)
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
			}
		}
		var s sample
		s.at = now()
		setPhase(PhaseMeasure, s.at)
		s.self = selfCPU()
		s.selfWait = selfWait()
		if c.Counters != nil {
			s.counters, s.cntErr = c.Counters()
		}
		if c.ServerPID != 0 {
			s.srv, s.err = sampleProc(c.ServerPID)
		}
		startCh <- s
	}()
	d.traffic(ctx, tl)
	endAt := now()
	s0 := <-startCh
	self1, selfWait1 := selfCPU(), selfWait()
	setPhase(PhaseDone, endAt)

	merge(&agg, d.stats(), res)
	res.Latency = latency(agg.hist)
	res.Histogram = agg.hist
	msStart := wall0.Add(c.Warmup)
	agg.hist.SetStartTimeMs(msStart.UnixMilli())
	agg.hist.SetEndTimeMs(msStart.Add(time.Duration(max(endAt-tl.ms, 0))).UnixMilli())
	res.Reconnects, res.Abandoned = agg.reconnects, agg.abandoned
	res.Messages = agg.measured
	res.Bytes = agg.measured * int64(c.proto.msgLen)
	if c.proto.tmpl != nil {
		res.Bytes = 0
		for _, st := range d.stats() {
			res.Bytes += st.prog.sentBytes.Load()
		}
	}
	window := endAt - s0.at
	elapsed := window
	if agg.measured > 0 && agg.lastDone > 0 {
		elapsed = agg.lastDone - tl.ms
	}
	res.Elapsed = time.Duration(max(elapsed, 0))
	if res.Elapsed > 0 {
		sec := res.Elapsed.Seconds()
		res.MsgsPerSec = float64(res.Messages) / sec
		res.MBPerSec = float64(res.Bytes) / sec / 1e6
	}

	if c.Rate > 0 && c.Conns > 0 {
		res.OfferedRate = c.Rate
		res.Behind = agg.behind
		if send := agg.sendEnd - tl.ms; send > 0 {
			res.AchievedRate = float64(res.Messages) / time.Duration(send).Seconds()
		}
		res.Shortfall = max(0, 1-res.AchievedRate/res.OfferedRate)
		res.RateMissed = res.Shortfall > RateTolerance
	}

	loadCPU := (self1 - s0.self).Seconds()
	res.Load.CPUSeconds = loadCPU
	res.Load.RunQueueWait = selfWait1 - s0.selfWait
	res.Load.CPUs = c.cpus
	if c.Driver == DriverEpoll {
		res.Load.CPUs = min(c.cpus, c.workers)
	}
	if window > 0 {
		res.Load.Utilization = loadCPU / time.Duration(window).Seconds() / float64(res.Load.CPUs)
	}
	res.Load.Saturated = res.Load.Utilization >= SaturationThreshold
	if res.Messages > 0 {
		res.Load.CPUPerMsg = loadCPU * 1e6 / float64(res.Messages)
	}

	if c.ServerPID != 0 {
		srv1, err := sampleProc(c.ServerPID)
		if err == nil {
			err = s0.err
		}
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("server figures unavailable: %v", err))
		} else {
			ss := &ServerStats{PID: c.ServerPID, CPUs: srv1.cpus,
				RSSBefore: srv0.rss, RSSConnected: s0.srv.rss, RSSEnd: srv1.rss}
			ss.CPUSeconds = (srv1.cpu - s0.srv.cpu).Seconds()
			ss.RunQueueWait = max(srv1.wait-s0.srv.wait, 0)
			if res.Messages > 0 {
				ss.CPUPerMsg = ss.CPUSeconds * 1e6 / float64(res.Messages)
			}
			if window > 0 && ss.CPUs > 0 {
				ss.Utilization = ss.CPUSeconds / time.Duration(window).Seconds() / float64(ss.CPUs)
			}
			if n := res.Connected; n > 0 {
				ss.RSSPerConn = float64(ss.RSSConnected-ss.RSSBefore) / float64(n)
			}
			res.Server = ss
		}
	}
	if c.Counters != nil {
		end, err := c.Counters()
		if err == nil {
			err = s0.cntErr
		}
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("counters unavailable: %v", err))
		} else {
			res.Counters = map[string]float64{}
			for k, v := range end {
				if v0, ok := s0.counters[k]; ok {
					res.Counters[k] = v - v0
				}
			}
		}
	}
	res.Bottleneck = bottleneck(res)
	return res, ctx.Err()
}

// assign returns the connection numbers a worker of n handles: active
// connections first, then idle ones, round robin.
func assign(c *config, worker int) (active, idle []int) {
	n := c.workers
	for i := worker; i < c.Conns; i += n {
		active = append(active, i)
	}
	for i := worker; i < c.Idle; i += n {
		idle = append(idle, c.Conns+i)
	}
	return active, idle
}

// quota splits Requests over the workers in proportion to their active
// connections.
func quota(c *config, nActive int, worker int) int64 {
	if c.Requests == 0 || c.Conns == 0 {
		return 0
	}
	q := c.Requests * int64(nActive) / int64(c.Conns)
	// Give the rounding remainder to worker 0.
	if worker == 0 {
		var sum int64
		for w := 0; w < c.workers; w++ {
			a, _ := assign(c, w)
			sum += c.Requests * int64(len(a)) / int64(c.Conns)
		}
		q += c.Requests - sum
	}
	return q
}

// sourceIP returns the source address of connection i with SourceIPs set:
// 127.0.0.1 to 127.0.0.SourceIPs in turn.
func sourceIP(c *config, i int) [4]byte {
	return [4]byte{127, 0, 0, byte(1 + i%c.SourceIPs)}
}

// closedBy says why a read ended a connection: an error, or none for the
// server closing it.
func closedBy(err error) string {
	if err == nil {
		return "closed by the server"
	}
	return err.Error()
}
