package loadgen

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
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
