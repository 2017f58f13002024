// Package loadgen is a verifying load generator for message-oriented TCP
// servers: the engine behind "switchboard bench" and "switchboard compare".
//
// Run opens Config.Conns connections at a bounded connect rate, keeps
// Config.Pipeline messages of Config.Size bytes in flight on each, and
// checks every byte that comes back against what was sent. Payloads are
// windows of one seeded pseudo-random pattern chosen by connection and
// sequence number, so the check needs no stored copy of what was sent, and
// a reply that comes back corrupted, reordered or belonging to another
// connection does not match. A mismatch is counted and reported, never
// ignored.
//
// Two loads are offered. Closed loop (Rate 0) sends the next message as
// soon as a reply frees a pipeline slot: the server's full speed. Open loop
// (Rate > 0) sends on a fixed schedule and measures each message's latency
// from the time it was meant to be sent, not from when it went out, so a
// stalled server cannot hide its stall by holding the load back
// ("coordinated omission"; the method of wrk2). A server that falls behind
// gets every message that came due as soon as a pipeline slot frees, each
// carrying its wait; a message counts when it is sent inside the measured
// window, whenever it was due. One periodic timer per worker paces the
// schedule, never one per message, so the schedule holds up to what the
// load's CPUs can send. The Result gives the offered and the achieved
// rate, and says when the target was missed.
//
// Beyond echo servers: payload templates with per-message fields
// (Template), replies that are merely well framed (ExpectAny) or framed
// differently (ReplyCodec), Redis's protocol (framing resp), reconnection
// when a server closes connections cleanly (a keep-alive limit), and PROXY
// protocol headers (ProxyHeader).
//
// Latencies go into one HDR histogram per worker, merged at the end. A
// warm-up period is run first and left out of every figure. With
// Config.ServerPID the server's CPU time over the measured window (utime +
// stime from /proc) is reported per message, next to the load generator's
// own CPU use: on a shared machine, CPU per message is the figure that
// compares servers, and when the load generator's own CPU is saturated the
// Result says so, because then it, not the server, set the pace.
//
// On Linux the connections are driven by a few OS threads, each locked to
// its goroutine and running one epoll loop over many non-blocking sockets:
// far less CPU per message than a goroutine per connection, which matters
// when load generator and server share a small machine. Elsewhere (and on
// request) a portable driver runs two goroutines per connection over
// net.Conn.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"switchboard/framing"
	"switchboard/internal/netaddr"
)

// Expect says what a reply is.
type Expect string

const (
	// ExpectEcho: each reply is the message sent, byte for byte, and is
	// verified.
	ExpectEcho Expect = "echo"
	// ExpectAny: each request gets one framed reply whose content is not
	// checked (a line-protocol server such as redis-server answering PING
	// with +PONG). It needs a framing that delimits replies, not raw.
	ExpectAny Expect = "any"
)

// Driver names.
const (
	// DriverAuto picks DriverEpoll on Linux and DriverGoroutine elsewhere.
	DriverAuto = "auto"
	// DriverEpoll runs a few locked OS threads, each an epoll loop over
	// many non-blocking sockets (Linux only).
	DriverEpoll = "epoll"
	// DriverGoroutine runs a reader and a writer goroutine per connection
	// over net.Conn (every platform).
	DriverGoroutine = "goroutine"
)

// Defaults applied by Run to zero fields of Config.
const (
	DefaultSize           = 64
	DefaultConnectRate    = 2000 // connections per second
	DefaultConnectTimeout = 10 * time.Second
	DefaultDrainTimeout   = 5 * time.Second
	// MaxSourceIPs is the most 127.0.0.x source addresses SourceIPs can
	// spread over (127.0.0.1 to 127.0.0.254).
	MaxSourceIPs = 254
)

// ErrConfig is wrapped by every error Run returns for a Config it cannot
// run, so a command line can tell a usage error from a failed run.
var ErrConfig = errors.New("loadgen: bad config")

// Config describes one load test. The zero value of every field but Addr
// and one of Duration or Requests is usable.
type Config struct {
	// Addr is the server: "host:port", "[::1]:port" or "unix:/path".
	Addr string
	// Conns is the number of active connections; Idle more are opened and
	// held without traffic (to measure what idle connections cost a
	// server). Both may be zero, not together.
	Conns int
	Idle  int
	// Size is the message payload size in bytes (default 64). For a typed
	// framing it includes the type byte and must match one of its types.
	Size int
	// Payload, when set, is sent as every message instead of generated
	// data (Size is then len(Payload)); with ExpectEcho each reply is
	// compared with it.
	Payload []byte
	// Template, when set, renders every message afresh from its fields
	// (counter, random integers, random bytes); see Template. It excludes
	// Payload. With ExpectEcho each reply is compared with the message
	// rendered for it.
	Template *Template
	// Pipeline is the number of messages in flight per connection
	// (default 1).
	Pipeline int
	// Rate is the total messages per second, spread evenly over the
	// connections on a fixed schedule (open loop); 0 sends as fast as
	// replies come back (closed loop).
	Rate float64
	// Duration is how long to measure after Warmup; Requests is how many
	// messages to measure. With both, the first reached ends the run; at
	// least one must be set.
	Duration time.Duration
	Requests int64
	// Warmup runs the load for this long before measuring; nothing of it
	// enters the figures.
	Warmup time.Duration
	// Codec frames the messages (nil: raw, a byte stream in which each
	// reply is recognised by its length).
	Codec framing.Codec
	// ReplyCodec frames the replies when they are framed differently
	// from the requests (nil: Codec).
	ReplyCodec framing.Codec
	// Expect is ExpectEcho (default) or ExpectAny.
	Expect Expect
	// CloseIsError makes a connection the server closes an error. By
	// default a clean close (FIN, not a reset) after at least one reply is
	// a keep-alive limit: the connection is opened again and counted in
	// Result.Reconnects, and the messages it had in flight, never
	// answered, in Result.Abandoned. A reset is still an error: a server
	// that closes with requests unread (pipelined past its limit) resets
	// the connection, unless it lingers as nginx does.
	CloseIsError bool
	// ProxyHeader, "v1" or "v2", opens every connection with a PROXY
	// protocol header of that version, as a balancer would: the source is
	// the connection's own address, or ProxySource ("ip:port") when set,
	// the destination the server's address.
	ProxyHeader string
	ProxySource string
	// SourceIPs spreads the connections over the source addresses
	// 127.0.0.1 to 127.0.0.N (IP_BIND_ADDRESS_NO_PORT keeps the port free
	// until connect), so more connections than one source address's
	// ~28,000 ephemeral ports can reach a loopback server. 0 lets the
	// kernel choose. Only for an IPv4 loopback Addr.
	SourceIPs int
	// ConnectRate bounds new connections per second (default 2000), so
	// the server's listen backlog is not overrun.
	ConnectRate float64
	// ConnectTimeout fails a connection that has not completed within it
	// (default 10 s).
	ConnectTimeout time.Duration
	// DrainTimeout is how long to wait for the replies still in flight
	// when sending stops (default 5 s); those that do not come are counted
	// as unanswered errors.
	DrainTimeout time.Duration
	// Workers is the number of epoll threads (default: one per CPU this
	// process may run on, at most one per active connection).
	Workers int
	// Driver is DriverAuto (default), DriverEpoll or DriverGoroutine.
	Driver string
	// ServerPID, when non-zero, is the server process whose CPU time and
	// resident memory are reported (Linux /proc).
	ServerPID int
	// Counters, when set, is called at the start and at the end of the
	// measured window, and Result.Counters holds the change of each value
	// it returns: counters the server exports itself (compare reads the
	// Go runtime's allocation count of its servers this way).
	Counters func() (map[string]float64, error)
	// Progress, when set, is called every ProgressInterval (default
	// 250 ms) from a goroutine of Run's own with the figures so far.
	Progress         func(Progress)
	ProgressInterval time.Duration
}

// Phase is the stage a run is in.
type Phase string

// The phases of a run, in order. The measure phase includes the wait for
// the last replies after sending stops.
const (
	PhaseConnect Phase = "connect"
	PhaseWarmup  Phase = "warmup"
	PhaseMeasure Phase = "measure"
	PhaseDone    Phase = "done"
)

// Progress is a snapshot handed to Config.Progress.
type Progress struct {
	Phase Phase
	// Elapsed is the time since the phase began (for PhaseMeasure: since
	// measuring began).
	Elapsed time.Duration
	// Connected counts connections established so far, of Conns+Idle.
	Connected int64
	// Replies counts replies received so far, warm-up included; Measured
	// only those that enter the figures.
	Replies  int64
	Measured int64
	// Errors counts connect and connection errors, Mismatches replies
	// that differed from what was sent.
	Errors     int64
	Mismatches int64
}

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

// config is a validated Config with everything derived from it.
type config struct {
	Config
	network  string // "tcp" or "unix"
	address  string // for the net package
	tcpAddr  *net.TCPAddr
	proto    *proto
	proxySrc *net.TCPAddr
	workers  int
	cpus     int
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// validate checks cfg and fills its defaults.
func validate(cfg Config) (*config, error) {
	c := &config{Config: cfg}
	if c.Addr == "" {
		return nil, configErr("no server address")
	}
	network, address, err := netaddr.Split(c.Addr)
	if err != nil {
		return nil, configErr("%v", err)
	}
	c.network, c.address = network, address
	if network == "tcp" {
		a, err := net.ResolveTCPAddr("tcp", address)
		if err != nil {
			return nil, configErr("resolving %s: %v", c.Addr, err)
		}
		if a.IP == nil || a.IP.IsUnspecified() {
			// Like net.Dial, an empty or unspecified host means this machine.
			a.IP = net.IPv4(127, 0, 0, 1)
		}
		c.tcpAddr = a
	}
	switch {
	case c.Conns < 0 || c.Idle < 0:
		return nil, configErr("negative connection count")
	case c.Conns == 0 && c.Idle == 0:
		return nil, configErr("no connections: Conns and Idle are both 0")
	case c.Pipeline < 0:
		return nil, configErr("pipeline must be at least 1, got %d", c.Pipeline)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return nil, configErr("rate must be a positive number of messages per second, got %v", c.Rate)
	case c.Duration < 0 || c.Warmup < 0 || c.Requests < 0:
		return nil, configErr("negative duration, warm-up or request count")
	case c.Duration == 0 && c.Requests == 0:
		return nil, configErr("neither a duration nor a request count")
	case c.Requests > 0 && c.Conns == 0:
		return nil, configErr("a request count needs active connections")
	case c.SourceIPs < 0 || c.SourceIPs > MaxSourceIPs:
		return nil, configErr("source IPs must be between 0 and %d, got %d", MaxSourceIPs, c.SourceIPs)
	case c.ConnectRate < 0 || math.IsNaN(c.ConnectRate):
		return nil, configErr("connect rate must be positive, got %v", c.ConnectRate)
	case c.Workers < 0:
		return nil, configErr("negative worker count")
	}
	if c.SourceIPs > 0 {
		if c.tcpAddr == nil || c.tcpAddr.IP.To4() == nil || !c.tcpAddr.IP.IsLoopback() {
			return nil, configErr("source IPs 127.0.0.x only reach an IPv4 loopback server, not %s", c.Addr)
		}
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.ConnectRate == 0 {
		c.ConnectRate = DefaultConnectRate
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 250 * time.Millisecond
	}
	switch c.Expect {
	case "":
		c.Expect = ExpectEcho
	case ExpectEcho, ExpectAny:
	default:
		return nil, configErr("expect must be %q or %q, got %q", ExpectEcho, ExpectAny, c.Expect)
	}
	switch c.Driver {
	case "", DriverAuto:
		c.Driver = defaultDriver
	case DriverGoroutine:
	case DriverEpoll:
		if defaultDriver != DriverEpoll {
			return nil, configErr("the epoll driver needs Linux")
		}
	default:
		return nil, configErr("unknown driver %q: want auto, epoll or goroutine", c.Driver)
	}
	if c.Codec == nil {
		c.Codec = framing.Raw(0)
	}
	if c.ReplyCodec == nil {
		c.ReplyCodec = c.Codec
	}
	if c.Template != nil && c.Payload != nil {
		return nil, configErr("a payload and a template exclude each other")
	}
	switch c.ProxyHeader {
	case "", "v1", "v2":
	default:
		return nil, configErr("proxy header must be v1 or v2, not %q", c.ProxyHeader)
	}
	if c.ProxySource != "" {
		if c.ProxyHeader == "" {
			return nil, configErr("a proxy source needs a proxy header version")
		}
		ap, err := netip.ParseAddrPort(c.ProxySource)
		if err != nil {
			return nil, configErr("proxy source %q: want ip:port", c.ProxySource)
		}
		c.proxySrc = net.TCPAddrFromAddrPort(ap)
	}
	p, err := newProto(c)
	if err != nil {
		return nil, err
	}
	c.proto = p
	c.Size = p.msgLen

	c.cpus = allowedCPUs()
	c.workers = c.Workers
	if c.workers == 0 {
		c.workers = c.cpus
	}
	if n := max(c.Conns, 1); c.workers > n {
		c.workers = n
	}
	if c.Driver == DriverGoroutine {
		// Shards of the statistics, not threads; one per CPU keeps the
		// locks cold.
		c.workers = max(1, min(runtime.GOMAXPROCS(0), max(c.Conns, 1)))
	}
	return c, nil
}

// Run executes the load test described by cfg and returns its figures. It
// returns an error wrapping ErrConfig for a Config it cannot run, and an
// error when no connection at all could be made; everything that goes wrong
// on the wire after that is counted in Result.Errors, and the caller
// decides (a bench exits 1 when Errors.Total() > 0). Cancelling ctx stops
// the run early; the figures so far are returned with ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	c, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	return run(ctx, c)
}

// Check reports whether Run would accept cfg, without connecting: the error
// Run would return for it (wrapping ErrConfig), or nil.
func Check(cfg Config) error {
	_, err := validate(cfg)
	return err
}
