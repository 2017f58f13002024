package engine

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// ConnInfo is what is known of a connection once it has closed: what the
// connection log writes and Config.OnConnClose receives.
type ConnInfo struct {
	// Remote is the client's address: the one the PROXY header carried,
	// when there was one, else the socket's peer.
	Remote net.Addr
	// Local is the address the connection was accepted on.
	Local net.Addr
	// Duration is how long the connection was open, from accept to
	// close. Event-loop engines measure it with the loop's clock, which
	// is read once per loop iteration, so it can be short by one
	// iteration's work.
	Duration time.Duration
	// Stats are the connection's counters at close.
	Stats ConnStats
	// Err is the close reason as OnClose gets it: nil for an orderly close.
	Err error
}

// Closed does what every engine does once a connection is closed and
// before OnClose: counts the reason, records the lifetime in the
// histogram, writes the debug or warning line for the reason, and hands
// info to Config.OnConnClose. Keeping it here means a new engine gets all
// of it by calling one function.
func Closed(cfg *Config, info ConnInfo) {
	st := cfg.Stats
	st.CountClose(info.Err)
	st.Durations.Observe(info.Duration)
	LogClose(cfg.Logger, info.Remote, info.Err)
	if cfg.OnConnClose != nil {
		cfg.OnConnClose(info)
	}
}

// ConnLogger returns an OnConnClose that writes one info line per
// connection to l: remote and local address, duration, bytes and messages
// each way, and the reason (CloseReasonOf's label, and the error's text
// when there is one). The attributes are built without reflection and
// the record only if l is enabled for info, so a disabled level costs a
// check.
func ConnLogger(l *slog.Logger) func(ConnInfo) {
	return func(i ConnInfo) {
		ctx := context.Background()
		if !l.Enabled(ctx, slog.LevelInfo) {
			return
		}
		attrs := [10]slog.Attr{
			slog.String("remote", addrString(i.Remote)),
			slog.String("local", addrString(i.Local)),
			slog.Duration("duration", i.Duration),
			slog.Int64("bytes_in", i.Stats.BytesIn),
			slog.Int64("bytes_out", i.Stats.BytesOut),
			slog.Int64("messages_in", i.Stats.MessagesIn),
			slog.Int64("messages_out", i.Stats.MessagesOut),
			slog.String("reason", CloseReasonOf(i.Err).String()),
		}
		n := 8
		if i.Err != nil {
			attrs[n] = slog.String("error", i.Err.Error())
			n++
		}
		l.LogAttrs(ctx, slog.LevelInfo, "connection", attrs[:n]...)
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// DurationBounds are the upper bounds of the connection-duration
// histogram's buckets, from a request-reply exchange to a long-lived
// session; a last bucket counts everything longer.
var DurationBounds = [...]time.Duration{
	time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond,
	time.Second, 10 * time.Second, time.Minute, 10 * time.Minute, time.Hour,
}

// IterationBounds are the upper bounds of the event-loop iteration
// histogram's buckets: a loop's work between two waits, from a few reads
// to a stall that every connection on the loop feels.
var IterationBounds = [...]time.Duration{
	10 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
}

// Histogram counts durations in fixed buckets with atomic counters, so
// observing costs a few comparisons and two adds, and reading needs no
// lock. Counts[i] counts observations <= Bounds[i] (not cumulative); the
// last count is for those above every bound.
type Histogram struct {
	Bounds []time.Duration // nil: DurationBounds
	Counts [16]atomic.Int64
	Sum    atomic.Int64 // nanoseconds
}

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	b := h.Bounds
	if b == nil {
		b = DurationBounds[:]
	}
	i := 0
	for i < len(b) && d > b[i] {
		i++
	}
	h.Counts[i].Add(1)
	h.Sum.Add(int64(d))
}

// HistogramSnapshot is a Histogram read at one moment: cumulative counts
// per upper bound, as Prometheus wants them.
type HistogramSnapshot struct {
	Bounds     []time.Duration
	Cumulative []uint64 // Cumulative[i]: observations <= Bounds[i]
	Count      uint64
	Sum        time.Duration
}

// Snapshot reads h. Counters are read one at a time, so under load the
// total can be a few observations ahead of a bucket, never behind.
func (h *Histogram) Snapshot() HistogramSnapshot {
	b := h.Bounds
	if b == nil {
		b = DurationBounds[:]
	}
	s := HistogramSnapshot{Bounds: b, Cumulative: make([]uint64, len(b))}
	var run uint64
	for i := range b {
		run += uint64(h.Counts[i].Load())
		s.Cumulative[i] = run
	}
	s.Count = run + uint64(h.Counts[len(b)].Load())
	s.Sum = time.Duration(h.Sum.Load())
	return s
}

// LoopIterationser is implemented by the event-loop engines: each loop's
// histogram of iteration times (IterationBounds), in loop order.
type LoopIterationser interface {
	LoopIterations() []HistogramSnapshot
}
