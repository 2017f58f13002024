package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"switchboard/framing"
)

// epoch is the origin of the package's clock. Times are int64 nanoseconds
// since it, read from Go's monotonic clock (vDSO, no system call).
var epoch = time.Now()

// now returns the monotonic time in nanoseconds since epoch, always > 0 so
// that a negated time can mark an unmeasured message.
func now() int64 { return int64(time.Since(epoch)) + 1 }

// Histogram range: 1 ns to 100 s at 3 significant digits. Latencies above
// the top are clamped to it, not dropped.
const (
	histMin = 1
	histMax = int64(100 * time.Second)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }

// timeline is the schedule of a run, fixed before traffic starts and read
// by every worker.
type timeline struct {
	t0 int64 // traffic starts
	ms int64 // measuring starts (t0 + warm-up)
	me int64 // measuring ends and sending stops (ms + duration, or MaxInt64)
}

// stats is one worker's tally. An epoll worker owns its stats; the
// goroutine driver shares each among several connections under mu.
type stats struct {
	mu   sync.Mutex
	hist *hdrhistogram.Histogram

	replies  int64 // all replies, warm-up included
	measured int64 // replies that entered the figures
	lastDone int64 // when the last measured reply arrived
	sendEnd  int64 // when this worker stopped sending
	behind   int64 // open loop: messages due before sendEnd never sent

	reconnects int64 // connections closed cleanly and opened again
	abandoned  int64 // messages in flight on them

	connectErrs int64
	connErrs    int64
	mismatches  int64
	unanswered  int64

	firstErr, firstMismatch     string
	firstErrAt, firstMismatchAt int64

	prog *progress
}

// progress holds the counters Config.Progress reports, written by workers
// and read by the progress goroutine. Padded so workers do not share a
// cache line.
type progress struct {
	connected  atomic.Int64
	replies    atomic.Int64
	measured   atomic.Int64
	errors     atomic.Int64
	mismatches atomic.Int64
	sentBytes  atomic.Int64
	_          [16]byte
}

func newStats() *stats { return &stats{hist: newHist(), prog: new(progress)} }

// complete records the reply to message seq of f, which arrived at t.
func (st *stats) complete(f *flow, seq uint64, t int64) {
	st.replies++
	sentAt := f.times[seq%f.pipe].Load()
	if sentAt <= 0 {
		return // sent during the warm-up, or after the window
	}
	lat := t - sentAt
	if lat < histMin {
		lat = histMin
	} else if lat > histMax {
		lat = histMax
	}
	_ = st.hist.RecordValue(lat) // cannot fail: lat is in range
	st.measured++
	if t > st.lastDone {
		st.lastDone = t
	}
}

func (st *stats) connError(t int64, format string, args ...any) {
	st.connErrs++
	st.noteErr(t, format, args...)
}

func (st *stats) connectError(t int64, format string, args ...any) {
	st.connectErrs++
	st.noteErr(t, format, args...)
}

func (st *stats) noteErr(t int64, format string, args ...any) {
	st.prog.errors.Add(1)
	if st.firstErr == "" {
		st.firstErr = fmt.Sprintf(format, args...)
		st.firstErrAt = t
	}
}

func (st *stats) mismatch(t int64, desc func() string) {
	st.mismatches++
	st.prog.mismatches.Add(1)
	if st.firstMismatch == "" {
		st.firstMismatch = desc()
		st.firstMismatchAt = t
	}
}

// publish makes the counters visible to the progress goroutine.
func (st *stats) publish() {
	st.prog.replies.Store(st.replies)
	st.prog.measured.Store(st.measured)
}

// flow is the message bookkeeping of one active connection, common to both
// drivers. The send side (sent, times) is written by whoever sends; the
// receive side (recvd, off, bad, in) by whoever receives. They may be
// two goroutines (goroutine driver), hence the atomics.
type flow struct {
	p    *proto
	id   int    // connection number: seeds the payloads
	pipe uint64 // messages in flight at most

	sent  atomic.Uint64
	recvd atomic.Uint64
	// times[k % pipe] is when message k was sent (closed loop) or due
	// (open loop), negated when it is not measured.
	times []atomic.Int64

	off     int    // raw: bytes of the current reply received so far
	bad     bool   // raw: the current reply has differed somewhere
	scratch []byte // typed framing: a message with its type byte

	// Framed replies: in holds a partial one between reads, cut by split
	// (the driver's); inRoom says the last recvBuf lent in's own room.
	in     framing.Accumulator
	split  *framing.Splitter
	inRoom bool

	// A template's messages: msgs[k % pipe] is message k as rendered,
	// kept until its reply is checked; rng the connection's generator,
	// text scratch space for a RESP command's text.
	msgs  [][]byte
	rng   uint64
	text  []byte
	tally *progress // counts the bytes of measured messages sent
}

func newFlow(p *proto, id, pipeline int, tally *progress, split *framing.Splitter) *flow {
	f := &flow{p: p, id: id, pipe: uint64(pipeline), times: make([]atomic.Int64, pipeline), tally: tally, split: split}
	if p.tmpl != nil {
		f.msgs = make([][]byte, pipeline)
		f.rng = seedFor(id)
	}
	return f
}

// expected returns message seq as sent (without its framing), for
// checking its reply.
func (f *flow) expected(seq uint64) []byte {
	if f.msgs != nil {
		return f.msgs[seq%f.pipe]
	}
	return f.p.body(f.id, seq)
}

// errUnsolicited: the server sent more replies than it was sent messages.
var errUnsolicited = errors.New("reply to no request: the server sent more than it was sent")

// appendNext frames message k = sent into dst, recording at (negated when
// not measured), and advances sent.
func (f *flow) appendNext(dst []byte, at int64, measured bool) []byte {
	k := f.sent.Load()
	var msg []byte
	if f.msgs != nil {
		msg = f.p.render(f.msgs[k%f.pipe], &f.text, f.id, k, &f.rng)
		f.msgs[k%f.pipe] = msg
	} else {
		msg = f.p.message(f.scratch[:0], f.id, k)
		if len(f.p.prefix) > 0 {
			f.scratch = msg
		}
	}
	if measured {
		f.tally.sentBytes.Add(int64(len(msg)))
	}
	// Append cannot fail: newProto framed this size and alphabet already.
	dst, _ = f.p.codec.Append(dst, msg)
	if !measured {
		at = -at
	}
	f.times[k%f.pipe].Store(at)
	f.sent.Store(k + 1)
	return dst
}

// inflight is the number of messages sent and not yet answered.
func (f *flow) inflight() uint64 { return f.sent.Load() - f.recvd.Load() }

// schedule computes open-loop send times: message k of the connection in
// slot idx of n is due at t0 + (k*n + idx) * tick.
type schedule struct {
	t0   int64
	tick float64 // ns between two sends of one worker
	n    uint64
}

func (s schedule) due(k uint64, idx int) int64 {
	return s.t0 + int64(float64(k*s.n+uint64(idx))*s.tick)
}

// dueBefore counts the messages of slot idx due before end.
func (s schedule) dueBefore(end int64, idx int) uint64 {
	slots := math.Ceil(float64(end-s.t0)/s.tick - float64(idx))
	if slots <= 0 {
		return 0
	}
	return uint64(math.Ceil(slots / float64(s.n)))
}

// limiter spreads connects over time: at most rate per second after a
// burst, shared by every worker.
type limiter struct {
	start   int64
	rate    float64
	burst   int64
	claimed atomic.Int64
}

func newLimiter(rate float64) *limiter {
	return &limiter{start: now(), rate: rate, burst: max(1, int64(rate/50))}
}

// take claims one connect if the rate allows it at t; otherwise it returns
// how long to wait.
func (l *limiter) take(t int64) (bool, time.Duration) {
	for {
		c := l.claimed.Load()
		allowed := l.burst + int64(float64(t-l.start)*l.rate/1e9)
		if c >= allowed {
			next := l.start + int64(float64(c-l.burst+1)*1e9/l.rate)
			return false, time.Duration(max(next-t, int64(time.Millisecond)/10))
		}
		if l.claimed.CompareAndSwap(c, c+1) {
			return true, 0
		}
	}
}

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
