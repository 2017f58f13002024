package loadgen

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency summarises the measured latencies. Durations are nanoseconds in
// JSON.
type Latency struct {
	Min    time.Duration `json:"min_ns"`
	Mean   time.Duration `json:"mean_ns"`
	StdDev time.Duration `json:"stddev_ns"`
	P50    time.Duration `json:"p50_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	P999   time.Duration `json:"p99_9_ns"`
	Max    time.Duration `json:"max_ns"`
}

// Errors counts what went wrong. Any non-zero count fails a bench.
type Errors struct {
	// Connect counts connections that could not be established.
	Connect int64 `json:"connect"`
	// Conn counts established connections lost: closed or reset by the
	// server, or sending bytes the codec rejects or nobody asked for.
	Conn int64 `json:"conn"`
	// Mismatches counts replies whose bytes differ from what was sent.
	Mismatches int64 `json:"mismatches"`
	// Unanswered counts messages whose reply had not come when the drain
	// timeout ended the run.
	Unanswered int64 `json:"unanswered"`
	// First describes the first connect or connection error, FirstMismatch
	// the first mismatch (connection, message, offset, bytes).
	First         string `json:"first,omitempty"`
	FirstMismatch string `json:"first_mismatch,omitempty"`
}

// Total is the sum of every count.
func (e Errors) Total() int64 { return e.Connect + e.Conn + e.Mismatches + e.Unanswered }

// ServerStats is what /proc says about the server over the measured window.
type ServerStats struct {
	PID int `json:"pid"`
	// CPUSeconds is the server's user + system CPU time over the window;
	// CPUPerMsg is that per measured message, in microseconds.
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPerMsg  float64 `json:"cpu_us_per_msg"`
	// CPUs is the number of CPUs the server may run on (its affinity), and
	// Utilization its CPU time over the window's wall time, divided by CPUs.
	CPUs        int     `json:"cpus"`
	Utilization float64 `json:"utilization"`
	// RunQueueWait is how long the server's threads were ready to run but
	// waited for a CPU during the window (Linux schedstat): the disturbance
	// from other processes on a shared machine.
	RunQueueWait time.Duration `json:"run_queue_wait_ns"`
	// RSSBefore is the server's resident memory before any connection was
	// opened, RSSConnected once every connection was up and the warm-up
	// had run, RSSEnd at the end of the window, in bytes.
	RSSBefore    int64 `json:"rss_before_bytes"`
	RSSConnected int64 `json:"rss_connected_bytes"`
	RSSEnd       int64 `json:"rss_end_bytes"`
	// RSSPerConn is (RSSConnected - RSSBefore) / (Conns + Idle).
	RSSPerConn float64 `json:"rss_per_conn_bytes"`
}

// LoadStats is the load generator's own CPU use over the measured window.
type LoadStats struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPerMsg  float64 `json:"cpu_us_per_msg"`
	// CPUs is how many CPUs the load could use: the process's affinity,
	// and no more than one per epoll worker thread.
	CPUs        int     `json:"cpus"`
	Utilization float64 `json:"utilization"`
	// Saturated is set when Utilization reached SaturationThreshold: the
	// load generator had no CPU to spare.
	Saturated bool `json:"saturated"`
	// RunQueueWait is how long the load generator's threads waited for a
	// CPU during the window, as ServerStats.RunQueueWait.
	RunQueueWait time.Duration `json:"run_queue_wait_ns"`
}

// RateTolerance is the shortfall of the achieved rate below the offered
// one that Result.RateMissed tolerates: the schedule's own granularity and
// the replies still in flight when sending stops.
const RateTolerance = 0.02

// SaturationThreshold is the CPU utilisation from which a process counts as
// saturated.
const SaturationThreshold = 0.9

// Bottleneck values of Result.
const (
	BottleneckServer = "server"
	BottleneckLoad   = "load generator"
	BottleneckBoth   = "both"
	// BottleneckLatency: neither side had its CPU full; the pipeline depth
	// and the round trip limited throughput.
	BottleneckLatency = "latency"
	// BottleneckRate: open loop; the schedule set the pace.
	BottleneckRate = "rate"
	// BottleneckContention: the server or the load generator spent at
	// least ContentionThreshold of the window waiting for a CPU that other
	// processes held; the throughput says more about the machine than
	// about the server (CPU per message still compares).
	BottleneckContention = "contention"
)

// ContentionThreshold is the share of the window a process's threads may
// wait for a CPU before the run counts as disturbed by other processes.
const ContentionThreshold = 0.1

// Result is every figure of a run. It marshals to JSON as is.
type Result struct {
	// The configuration run, defaults filled in. Workers counts the epoll
	// driver's threads (0 for the goroutine driver, which runs two
	// goroutines per connection).
	Addr     string  `json:"addr"`
	Driver   string  `json:"driver"`
	Workers  int     `json:"workers"`
	Conns    int     `json:"conns"`
	Idle     int     `json:"idle"`
	Size     int     `json:"size"`
	Pipeline int     `json:"pipeline"`
	Rate     float64 `json:"rate"`
	Framing  string  `json:"framing"`
	// ReplyFraming is set when replies are framed differently; Payload
	// is the payload or template given, if any.
	ReplyFraming string        `json:"reply_framing,omitempty"`
	Payload      string        `json:"payload,omitempty"`
	ProxyHeader  string        `json:"proxy_header,omitempty"`
	Expect       Expect        `json:"expect"`
	Warmup       time.Duration `json:"warmup_ns"`
	Duration     time.Duration `json:"duration_ns"`
	Requests     int64         `json:"requests"`

	// Connected is how many connections were established, ConnectTime how
	// long that took.
	Connected   int           `json:"connected"`
	ConnectTime time.Duration `json:"connect_time_ns"`
	// Elapsed is the measured window: from the end of the warm-up to the
	// last measured reply.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Messages is the number of measured replies (each one a full round
	// trip); Bytes their payload bytes, counted once (sent and echoed
	// back are the same bytes).
	Messages   int64   `json:"messages"`
	Bytes      int64   `json:"bytes"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// MBPerSec is payload megabytes (10^6) per second in each direction.
	MBPerSec float64 `json:"mb_per_sec"`
	// Open loop only. OfferedRate is the rate asked for; AchievedRate the
	// measured replies per second of the sending window; Shortfall is
	// 1 - AchievedRate/OfferedRate (0 when the rate was met); Behind counts
	// the messages due in the window that were never sent, because the
	// pipeline was full of unanswered ones. RateMissed is set when the
	// shortfall passed RateTolerance: the run did not reach its target,
	// and its latencies are those of an overloaded server.
	OfferedRate  float64 `json:"offered_rate,omitempty"`
	AchievedRate float64 `json:"achieved_rate,omitempty"`
	Shortfall    float64 `json:"shortfall,omitempty"`
	Behind       int64   `json:"behind,omitempty"`
	RateMissed   bool    `json:"rate_missed,omitempty"`
	// Handshakes summarises the TLS handshakes, when Config.TLS is set.
	Handshakes *HandshakeStats `json:"handshakes,omitempty"`
	// Reconnects counts connections the server closed cleanly and that
	// were opened again; Abandoned the messages they had in flight.
	Reconnects int64   `json:"reconnects,omitempty"`
	Abandoned  int64   `json:"abandoned,omitempty"`
	Latency    Latency `json:"latency"`
	Errors     Errors  `json:"errors"`

	Server *ServerStats `json:"server,omitempty"`
	Load   LoadStats    `json:"load"`
	// Bottleneck names what most likely limited throughput: one of the
	// Bottleneck constants, or "" when it cannot be told (no ServerPID).
	Bottleneck string `json:"bottleneck,omitempty"`
	// Counters is the change of Config.Counters over the window.
	Counters map[string]float64 `json:"counters,omitempty"`
	// Warnings are figures that could not be taken, and why.
	Warnings []string `json:"warnings,omitempty"`
	// Histogram holds every measured latency (nanoseconds), its start and
	// end times set to the measured window's wall-clock times, for an
	// HdrHistogram interval log. It is not part of the JSON.
	Histogram *hdrhistogram.Histogram `json:"-"`
}

// HandshakeStats are the TLS handshakes of a run: the initial connects and
// reconnects. PerSec is the handshakes completed during the connect phase
// over its length (connects are paced by ConnectRate, so it is a
// server's handshake rate only when that pacing is not the limit).
// Latency is from the TCP connection being established to the client's
// handshake completing.
//
// ServerCPUPerHandshake is the server's CPU time (µs) over the connect
// phase divided by the connections made, when Config.ServerPID is set:
// its inverse is the handshakes one core of that server can do per second,
// whatever paced the connects. The process's CPU time has a 10 ms
// granularity, so it wants a connect phase of a second or more.
type HandshakeStats struct {
	Count                 int64   `json:"count"`
	PerSec                float64 `json:"per_sec"`
	ServerCPUPerHandshake float64 `json:"server_cpu_us_per_handshake,omitempty"`
	Latency               Latency `json:"latency"`
}
