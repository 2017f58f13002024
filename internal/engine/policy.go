package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"switchboard/framing"
	"switchboard/internal/proxyproto"
	"switchboard/internal/tlsloop"
)

// Policy every engine applies the same way, whatever its I/O model. An
// engine that decides one of these things on its own has drifted.

// LingerWait bounds how long a draining connection waits for the peer's
// FIN after sending its own, so a peer that ignores EOF cannot hold
// Shutdown up to its deadline. Shutdown's deadline, when sooner, wins.
const LingerWait = 3 * time.Second

// ProxyHeaderWait bounds the wait for a PROXY header on a new connection,
// unless the idle timeout is shorter (see Config.ProxyHeaderTimeout).
const ProxyHeaderWait = 10 * time.Second

// MaxProxyHeader is the most bytes a PROXY header may take: version 2 with
// the largest TLV block. A connection that sends more without completing
// one is refused.
const MaxProxyHeader = proxyproto.MaxHeaderLen

// ProxyHeaderTimeout is how long a connection may take to send its PROXY
// header: ProxyHeaderWait, capped by the idle timeout when there is one,
// since a connection silent that long would be closed anyway.
func (cfg *Config) ProxyHeaderTimeout() time.Duration {
	if cfg.IdleTimeout > 0 {
		return min(ProxyHeaderWait, cfg.IdleTimeout)
	}
	return ProxyHeaderWait
}

// The reasons a connection is refused for its PROXY header, each wrapping
// ErrProxyHeader, worded alike on every model.

// ProxyHeaderEOF: the peer closed before the header was complete.
func ProxyHeaderEOF() error {
	return fmt.Errorf("%w: connection closed before the header was complete", ErrProxyHeader)
}

// ProxyHeaderTooLong: MaxProxyHeader bytes arrived without a header.
func ProxyHeaderTooLong() error {
	return fmt.Errorf("%w: header longer than %d bytes", ErrProxyHeader, MaxProxyHeader)
}

// ProxyHeaderLate: no complete header within d.
func ProxyHeaderLate(d time.Duration) error {
	return fmt.Errorf("%w: no header within %v", ErrProxyHeader, d)
}

// LogClose writes the line for a connection's end: the peer's protocol
// errors, failed TLS handshakes, slow consumers, frame timeouts (a
// slowloris) and handler panics
// are worth a warning, other reasons are routine, and an orderly
// close says nothing.
func LogClose(l *slog.Logger, remote net.Addr, err error) {
	switch {
	case err == nil:
	case IsProtocolError(err), errors.Is(err, ErrSlowConsumer), errors.Is(err, ErrFrameTimeout), errors.Is(err, ErrPanic),
		errors.Is(err, framing.ErrCodec), errors.Is(err, ErrHandshake):
		l.Warn("connection closed", "remote", remote, "reason", err)
	default:
		l.Debug("connection closed", "remote", remote, "reason", err)
	}
}

// HandshakeTimeout is a handshake that did not finish within d, the wait
// for a slot included.
func HandshakeTimeout(d time.Duration) error {
	return fmt.Errorf("%w: timed out after %v", ErrHandshake, d)
}

// HandshakeEOF: the peer closed before the handshake was done.
func HandshakeEOF() error {
	return fmt.Errorf("%w: connection closed by the peer", ErrHandshake)
}

// HandshakeFailed wraps crypto/tls's reason for a failed handshake, as
// the event loops' handshakes do (tlsloop.HandshakeFailed).
func HandshakeFailed(err error) error { return tlsloop.HandshakeFailed(err) }

// FrameTimedOut is the reason given for a frame not completed within d.
func FrameTimedOut(d time.Duration) error {
	return fmt.Errorf("%w (%v)", ErrFrameTimeout, d)
}

// Recovered turns a recovered panic in the named callback into the close
// reason for its connection, counts it and logs it with the stack, so a
// handler bug ends one connection and leaves a trace, not the process.
// Engines call it from a deferred recover around each batch of callbacks.
func Recovered(l *slog.Logger, stats *Stats, remote net.Addr, callback string, v any) error {
	stats.Panics.Add(1)
	l.Error("handler panicked; closing its connection", "callback", callback, "remote", remote,
		"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	return fmt.Errorf("%w in %s: %v", ErrPanic, callback, v)
}

// HalfCloseWait is the default bound on how long a connection whose peer
// has sent its FIN stays open for a HalfCloser handler's writes.
const HalfCloseWait = 10 * time.Second
