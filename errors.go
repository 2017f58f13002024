package switchboard

import "switchboard/internal/engine"

// Sentinel errors, for errors.Is. Framing errors (oversized or malformed
// frames) are the framing package's: framing.ErrFrameTooLarge and its
// siblings.
var (
	// ErrServerClosed is returned by Serve and ListenAndServe after
	// Shutdown or Close.
	ErrServerClosed = engine.ErrServerClosed
	// ErrConnClosed is returned by Conn.Write on a closed connection.
	ErrConnClosed = engine.ErrConnClosed
	// ErrIdleTimeout closes a connection that received nothing for the
	// idle timeout.
	ErrIdleTimeout = engine.ErrIdleTimeout
	// ErrWriteTimeout closes a connection whose pending output made no
	// progress for the write timeout.
	ErrWriteTimeout = engine.ErrWriteTimeout
	// ErrSlowConsumer closes a connection whose pending output would have
	// passed its hard limit: the peer does not read fast enough.
	ErrSlowConsumer = engine.ErrSlowConsumer
	// ErrHalfCloseTimeout closes a HalfCloser's connection that was still
	// open the half-close timeout after the peer's FIN.
	ErrHalfCloseTimeout = engine.ErrHalfCloseTimeout
	// ErrShutdown closes connections still open when Shutdown's deadline
	// passes.
	ErrShutdown = engine.ErrShutdown
	// ErrFrameTimeout closes a connection that started a frame and did not
	// finish it within the frame timeout (WithFrameTimeout): a peer
	// trickling a request a byte at a time.
	ErrFrameTimeout = engine.ErrFrameTimeout
	// ErrPanic closes a connection whose handler panicked in a callback;
	// the panic is recovered, logged with its stack and counted, and
	// every other connection carries on.
	ErrPanic = engine.ErrPanic
	// ErrUnsupported reports a model that this platform cannot run.
	ErrUnsupported = engine.ErrUnsupported
	// ErrUnknownModel reports a model name switchboard does not know.
	ErrUnknownModel = errUnknownModel
	// ErrProxyHeader closes a connection that did not start with a valid
	// PROXY protocol header while the server expects one.
	ErrProxyHeader = engine.ErrProxyHeader
)
