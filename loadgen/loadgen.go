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
	"crypto/tls"
	"errors"
	"time"

	"switchboard/framing"
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
	// TLS, when set, makes every connection speak TLS with this client
	// configuration; the handshake is part of connecting, and its time is
	// reported in Result.Handshakes. TLS connections run on the goroutine
	// driver, with crypto/tls over net.Conn (DriverAuto picks it; asking
	// for DriverEpoll is an error): the epoll driver has no TLS layer.
	TLS *tls.Config
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
