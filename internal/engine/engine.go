// Package engine holds the contract between the public switchboard package
// and the I/O models that run its handlers. Engines (internal/stream,
// internal/reactor) import this package and never the public one, so the
// public API can change shape without touching an event loop.
package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"switchboard/framing"
	"switchboard/internal/proxyproto"
	"switchboard/internal/tlsloop"
)

// Conn is the engine's view of one connection as a handler sees it. The
// public switchboard.Conn has the same method set.
type Conn interface {
	// Write frames msg with the server's codec and queues it. It never
	// blocks on the peer; msg may be reused as soon as Write returns. It is
	// safe from any goroutine.
	Write(msg []byte) error
	// Close flushes nothing more and closes the connection. OnClose follows
	// with a nil error.
	Close() error
	// CloseWrite sends the queued output, then shuts down the write half.
	CloseWrite() error
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Value returns the value last stored with SetValue.
	Value() any
	SetValue(v any)
	// Context is cancelled when the connection closes. It is made on the
	// first call, so connections that never ask pay nothing for it.
	Context() context.Context
	// Stats counts the connection's traffic so far.
	Stats() ConnStats
	// SetIdleTimeout replaces the server's idle timeout for this
	// connection (0: none), counted from the last data received.
	SetIdleTimeout(d time.Duration)
	// AfterFunc runs f after d, serialised with the connection's other
	// callbacks (on its loop, on the event-loop models), unless the
	// connection has closed by then.
	AfterFunc(d time.Duration, f func())
	// SetCodec changes the codec that decodes the messages still to come
	// (bytes already received included) and frames later Writes.
	SetCodec(c framing.Codec)
	// SetReplyCodec changes only the codec that frames later Writes.
	SetReplyCodec(c framing.Codec)
}

// ConnStats are one connection's counters. Bytes are as the framing sees
// them (framing included; over TLS the plaintext, which every engine
// counts, not the records); messages are frames decoded and Writes
// queued.
type ConnStats struct {
	BytesIn, BytesOut       int64
	MessagesIn, MessagesOut int64
}

// Handler receives a connection's events. Calls for one connection never
// overlap; calls for different connections may run concurrently.
type Handler interface {
	OnOpen(c Conn)
	// OnMessage gets one decoded frame. msg is valid only until OnMessage
	// returns: engines decode in place from their read buffer.
	OnMessage(c Conn, msg []byte)
	// OnClose is called once, last. err is nil for an orderly close (the
	// peer closed, or the handler called Close) and says why otherwise.
	OnClose(c Conn, err error)
}

// Engine runs a Handler over listeners.
type Engine interface {
	// Serve accepts on every listener until Shutdown or Close, then
	// returns ErrServerClosed. The engine owns the listeners.
	Serve(lns ...net.Listener) error
	// Shutdown stops accepting, lets complete messages already received be
	// handled and their replies flushed, and closes each connection once its
	// output is sent. Connections still open at ctx's deadline are closed and
	// ctx.Err() is returned.
	Shutdown(ctx context.Context) error
	// Close closes the listeners and every connection at once.
	Close() error
}

// Constructor builds an engine for a model.
type Constructor func(cfg Config, h Handler) (Engine, error)

// Sentinel errors shared by every engine; the public package re-exports them.
var (
	ErrServerClosed = errors.New("switchboard: server closed")
	ErrConnClosed   = errors.New("switchboard: connection closed")
	ErrIdleTimeout  = errors.New("switchboard: idle timeout")
	ErrWriteTimeout = errors.New("switchboard: write timeout: pending output did not drain")
	// ErrSlowConsumer: a Write would have pushed the connection's pending
	// output past its hard limit; the connection is closed with this reason.
	ErrSlowConsumer = errors.New("switchboard: pending output limit exceeded")
	ErrShutdown     = errors.New("switchboard: server shutting down")
	// ErrFrameTimeout: a frame's first byte arrived and the whole frame did
	// not follow within Config.FrameTimeout (a slowloris peer).
	ErrFrameTimeout = errors.New("switchboard: frame timeout: frame not complete in time")
	// ErrPanic: a handler callback panicked on this connection; the panic
	// was recovered and only this connection closed.
	ErrPanic = errors.New("switchboard: handler panicked")
	// ErrHalfCloseTimeout: after the peer's FIN the handler neither closed
	// the connection nor let it drain within HalfCloseTimeout.
	ErrHalfCloseTimeout = errors.New("switchboard: half-close timeout: the handler did not close after the peer's FIN")
	// ErrUnsupported: the model cannot run on this platform or with this
	// configuration.
	ErrUnsupported = errors.New("switchboard: unsupported")
)

// Config is everything an engine needs besides the handler. Zero values are
// replaced by Normalize.
type Config struct {
	Codec framing.Codec
	// ReplyCodec frames Writes; nil means Codec.
	ReplyCodec framing.Codec
	// HalfCloseTimeout bounds how long a connection stays open for the
	// handler's writes after the peer's FIN, when OnPeerClose is set
	// (0: HalfCloseWait).
	HalfCloseTimeout time.Duration
	// OnPeerClose, when set, is called once the peer's FIN has arrived and
	// every message before it was handled; the connection then stays
	// writable until the handler closes it (CloseWrite: after its output
	// has gone) or HalfCloseTimeout passes. Unset, the connection closes
	// as soon as the replies already queued are flushed.
	OnPeerClose func(c Conn)
	// OnTick, when set, is called once when serving starts and then after
	// each delay it returns, until it returns a delay <= 0 or Shutdown or
	// Close begins. Event-loop engines run it on their first loop; the
	// others on a goroutine of its own.
	OnTick func() time.Duration
	// OnConnClose, when set, is called once per accepted connection after
	// it has closed (before OnClose), with what the connection log
	// records. It runs on the engine's goroutine for the connection, so
	// it must not block.
	OnConnClose func(ConnInfo)
	// MaxPending is the high-water mark of queued output per connection:
	// above it the engine stops reading that connection until the queue is
	// below LowWater.
	MaxPending int
	// IdleTimeout closes a connection that has received nothing for this
	// long (0: never).
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose pending output made no progress
	// for this long (0: never).
	WriteTimeout time.Duration
	// FrameTimeout closes a connection once a frame has been started (its
	// first byte received, or the handler said so with PartialFrame) and
	// not completed within it (0: never). Between frames the idle timeout
	// applies instead.
	FrameTimeout time.Duration
	// MaxConns caps open connections; 0 means the descriptor limit alone.
	MaxConns int
	// MaxConnsPerIP caps open connections from one client IP address, as
	// the socket sees it; 0 means no cap. Unix sockets have no address
	// and are not counted.
	MaxConnsPerIP int
	// Loops is the number of event loops (reactor models only).
	Loops int
	// ReusePort asks for one listening socket per loop.
	ReusePort bool
	// NoDelay sets TCP_NODELAY on accepted TCP connections.
	NoDelay bool
	// KeepAlive is the TCP keepalive period; negative disables it.
	KeepAlive time.Duration
	// ProxyProtocol expects a PROXY v1 or v2 header first on every
	// connection and reports the address it carries as RemoteAddr.
	ProxyProtocol bool
	// TLS, when not nil, makes every connection speak TLS with this
	// configuration (after the PROXY header, when one is expected). The
	// handler hears of a connection only once its handshake has
	// succeeded, and sees decrypted frames.
	TLS *tls.Config
	// HandshakeTimeout bounds a TLS handshake, including any wait for a
	// handshake slot; 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds how many TLS handshakes run at once; 0 means
	// DefaultMaxHandshakes.
	MaxHandshakes int
	Logger        *slog.Logger
	Stats         *Stats
}

// DefaultHandshakeTimeout bounds a TLS handshake unless configured.
const DefaultHandshakeTimeout = tlsloop.DefaultHandshakeTimeout

// DefaultMaxHandshakes returns the default bound on concurrent TLS
// handshakes: 64 per GOMAXPROCS. A handshake spends most of its wall time
// waiting a round trip for the peer's next flight and well under a
// millisecond of CPU (ECDSA P-256), so 64 per core keeps every core busy
// even across a 30 ms WAN round trip, while a flood of connections that
// never finish can pin at most that many goroutines and key exchanges
// (roughly 2 MiB per core) before the rest wait in a queue that costs no
// goroutine.
func DefaultMaxHandshakes() int { return 64 * runtime.GOMAXPROCS(0) }

// DefaultMaxPending is the default high-water mark of queued output.
const DefaultMaxPending = 4 << 20

// ReadBufferSize is the size engines read into per syscall.
const ReadBufferSize = 64 << 10

// Normalize fills defaults in place and returns cfg for chaining.
func (cfg *Config) Normalize() *Config {
	if cfg.Codec == nil {
		cfg.Codec = framing.Raw(framing.DefaultMaxFrame)
	}
	if cfg.ReplyCodec == nil {
		cfg.ReplyCodec = cfg.Codec
	}
	if cfg.HalfCloseTimeout <= 0 {
		cfg.HalfCloseTimeout = HalfCloseWait
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Loops <= 0 {
		cfg.Loops = 1
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Stats == nil {
		cfg.Stats = new(Stats)
	}
	return cfg
}

// LowWater is where reading resumes after a pause: half the high-water mark.
func (cfg *Config) LowWater() int { return cfg.MaxPending / 2 }

// WriteLimit is the hard cap on pending output. Reading pauses at
// MaxPending, but one read already taken in can still produce replies (an
// echo of a whole read buffer, or of one maximum-size frame), so the cap
// leaves room for that; only output a handler produces unprompted (a
// broadcast to a consumer that does not read) can reach it.
func (cfg *Config) WriteLimit() int {
	slack := cfg.MaxPending
	if one := cfg.Codec.MaxFrame() + cfg.Codec.Overhead() + ReadBufferSize; one > slack {
		slack = one
	}
	return cfg.MaxPending + slack
}

// Stats are the server's counters, updated atomically by the engines.
// They are read at scrape time (switchboard/metrics), so every field is a
// plain counter an engine bumps where the event happens.
type Stats struct {
	Accepted       atomic.Int64 // connections accepted and handed to the handler
	Rejected       atomic.Int64 // connections closed at accept (limits)
	Active         atomic.Int64 // connections open now
	AcceptErrors   atomic.Int64 // temporary accept failures (EMFILE, ...)
	ProtocolErrors atomic.Int64 // connections closed for a framing or PROXY error
	Timeouts       atomic.Int64 // connections closed by the idle, write or frame timeout
	SlowConsumers  atomic.Int64 // connections closed for exceeding WriteLimit
	RejectedPerIP  atomic.Int64 // of Rejected, those over MaxConnsPerIP
	Panics         atomic.Int64 // handler panics recovered
	BytesIn        atomic.Int64
	BytesOut       atomic.Int64
	MessagesIn     atomic.Int64 // frames handed to OnMessage
	MessagesOut    atomic.Int64 // frames queued by Conn.Write
	// Closes counts closed connections by CloseReasonOf their error.
	Closes [NumCloseReasons]atomic.Int64
	// AcceptErrorKinds splits AcceptErrors by AcceptErrorKindOf.
	AcceptErrorKinds [NumAcceptErrorKinds]atomic.Int64
	// Handshakes counts TLS handshakes that succeeded, HandshakeFailures
	// connections closed because theirs did not (a timeout, plaintext or
	// garbage, a refused certificate).
	Handshakes        atomic.Int64
	HandshakeFailures atomic.Int64
	// Paused counts connections whose reading is paused now because
	// their pending output passed MaxPending (backpressure).
	Paused atomic.Int64
	// PendingBytes is the output queued and not yet written, over every
	// connection; engines add their changes in batches (per loop
	// iteration, per flush), so it lags by at most one of those.
	PendingBytes atomic.Int64
	// Durations is the histogram of closed connections' lifetimes.
	Durations Histogram
}

// CloseReason classifies why a connection closed, for the metrics.
type CloseReason uint8

// Close reasons; Handshake is any error wrapping ErrHandshake.
const (
	ClosePeer          CloseReason = iota // orderly: the peer's EOF or the handler's Close
	CloseError                            // the socket failed (reset, broken pipe, ...)
	CloseIdle                             // ErrIdleTimeout, ErrHalfCloseTimeout
	CloseWriteTimeout                     // ErrWriteTimeout
	CloseFrameTimeout                     // a frame did not complete in time
	CloseSlowConsumer                     // ErrSlowConsumer
	CloseProtocolError                    // framing or PROXY header error
	ClosePanic                            // the handler panicked
	CloseShutdown                         // still open at Shutdown's deadline, or Close
	CloseHandshake                        // a TLS (or other) handshake failed
	NumCloseReasons
)

var closeReasonNames = [NumCloseReasons]string{
	"peer", "error", "idle", "write_timeout", "frame_timeout", "slow_consumer",
	"protocol_error", "panic", "shutdown", "handshake",
}

// String is the reason's metric label.
func (r CloseReason) String() string {
	if r < NumCloseReasons {
		return closeReasonNames[r]
	}
	return "unknown"
}

// CloseReasonOf classifies a close error.
func CloseReasonOf(err error) CloseReason {
	switch {
	case err == nil:
		return ClosePeer
	case errors.Is(err, ErrIdleTimeout), errors.Is(err, ErrHalfCloseTimeout):
		// A half-closed connection the handler left open counts as idle:
		// nothing happened on it for the half-close wait.
		return CloseIdle
	case errors.Is(err, ErrWriteTimeout):
		return CloseWriteTimeout
	case errors.Is(err, ErrFrameTimeout):
		return CloseFrameTimeout
	case errors.Is(err, ErrPanic):
		return ClosePanic
	case errors.Is(err, ErrSlowConsumer):
		return CloseSlowConsumer
	case errors.Is(err, ErrShutdown), errors.Is(err, ErrServerClosed):
		return CloseShutdown
	case errors.Is(err, ErrHandshake):
		return CloseHandshake
	case IsProtocolError(err):
		return CloseProtocolError
	}
	return CloseError
}

// AcceptErrorKind classifies a failed accept, for the metrics.
type AcceptErrorKind uint8

// Accept error kinds: the descriptor limits, memory (ENOMEM, ENOBUFS), and
// anything else.
const (
	AcceptEMFILE AcceptErrorKind = iota
	AcceptENFILE
	AcceptENOMEM
	AcceptOther
	NumAcceptErrorKinds
)

var acceptKindNames = [NumAcceptErrorKinds]string{"emfile", "enfile", "enomem", "other"}

// String is the kind's metric label.
func (k AcceptErrorKind) String() string {
	if k < NumAcceptErrorKinds {
		return acceptKindNames[k]
	}
	return "unknown"
}

// AcceptErrorKindOf classifies an accept error; errno values wrapped by
// the net package match too.
func AcceptErrorKindOf(err error) AcceptErrorKind {
	switch {
	case errors.Is(err, syscall.EMFILE):
		return AcceptEMFILE
	case errors.Is(err, syscall.ENFILE):
		return AcceptENFILE
	case errors.Is(err, syscall.ENOMEM), errors.Is(err, syscall.ENOBUFS):
		return AcceptENOMEM
	}
	return AcceptOther
}

// CountAcceptError counts one failed accept, in total and by kind.
func (s *Stats) CountAcceptError(err error) {
	s.AcceptErrors.Add(1)
	s.AcceptErrorKinds[AcceptErrorKindOf(err)].Add(1)
}

// CountClose adds a connection closed for err to the matching counters.
func (s *Stats) CountClose(err error) {
	r := CloseReasonOf(err)
	s.Closes[r].Add(1)
	switch r {
	case CloseIdle, CloseWriteTimeout, CloseFrameTimeout:
		s.Timeouts.Add(1)
	case CloseSlowConsumer:
		s.SlowConsumers.Add(1)
	case CloseProtocolError:
		s.ProtocolErrors.Add(1)
	case CloseHandshake:
		s.HandshakeFailures.Add(1)
	}
}

// ErrHandshake is wrapped by every TLS handshake failure, on every model:
// it is tlsloop's own sentinel, so the event loops' errors match too.
var ErrHandshake = tlsloop.ErrHandshake

// IsProtocolError reports whether err came from the peer breaking the wire
// format (framing or PROXY header).
func IsProtocolError(err error) bool {
	return errors.Is(err, framing.ErrFrameTooLarge) || errors.Is(err, framing.ErrMalformed) ||
		errors.Is(err, framing.ErrUnknownType) || errors.Is(err, framing.ErrTruncated) ||
		errors.Is(err, ErrProxyHeader)
}

// ErrProxyHeader: a connection did not begin with a valid PROXY header
// while the server expects one. It is the parser's own sentinel, so its
// detailed errors match with errors.Is.
var ErrProxyHeader = proxyproto.ErrBadHeader
