package switchboard

import (
	"context"
	"net"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
)

// Conn is one client connection as a Handler sees it.
//
// All methods are safe to call from any goroutine, so a handler may keep a
// Conn and write to it later, from elsewhere (a broadcast reaching
// connections owned by other event loops, for example).
type Conn interface {
	// Write frames msg with the reply codec (the server's codec unless
	// WithReplyCodec, SetCodec or SetReplyCodec said otherwise) and queues
	// it for sending.
	// It never waits for the peer: output beyond the pending limit closes
	// the connection with ErrSlowConsumer instead of growing memory. msg
	// may be reused as soon as Write returns. It returns ErrConnClosed once
	// the connection is closed, and the codec's error for a message it
	// cannot frame.
	Write(msg []byte) error
	// Close closes the connection at once, dropping unsent output.
	// OnClose follows with a nil error.
	Close() error
	// CloseWrite sends what is queued, then shuts down the write half, so
	// the peer reads EOF; the server keeps reading until the peer closes.
	// After the peer's FIN (see HalfCloser) it sends what is queued and
	// closes.
	CloseWrite() error
	// LocalAddr is the server's address of this connection.
	LocalAddr() net.Addr
	// RemoteAddr is the peer's address, or the client address from the
	// PROXY header when the server expects one.
	RemoteAddr() net.Addr
	// Value returns the value last stored with SetValue, or nil.
	Value() any
	// SetValue stores one value with the connection, typically the
	// handler's per-connection state.
	SetValue(v any)
	// Context returns a context.Context that is cancelled when the
	// connection closes, for work a handler starts on its behalf. It is
	// made on the first call: connections that never ask pay nothing.
	Context() context.Context
	// Stats returns the connection's counters so far.
	Stats() ConnStats
	// SetIdleTimeout replaces the server's idle timeout (WithIdleTimeout)
	// for this connection: it is closed with ErrIdleTimeout once nothing
	// has been received for d, counted from the last data received.
	// d == 0 turns it off for this connection.
	SetIdleTimeout(d time.Duration)
	// AfterFunc calls f once, after d, unless the connection has closed by
	// then. f is a callback like the Handler's: it never overlaps the
	// connection's other callbacks, and what it writes is flushed after
	// it. On the event-loop models it runs on the connection's loop, from
	// the loop's timer heap (no goroutine per timer); on blocking and
	// goroutine, on a timer's goroutine.
	AfterFunc(d time.Duration, f func())
	// SetCodec switches the connection to another codec, for a protocol
	// that changes framing mid-stream (a handshake, then frames; an
	// upgrade). Called from OnMessage, it applies from the next message:
	// bytes already received after this one are decoded with the new
	// codec. Replies written after the call are framed with it too.
	SetCodec(c framing.Codec)
	// SetReplyCodec changes only how later Writes are framed.
	SetReplyCodec(c framing.Codec)
}

// ConnStats are one connection's counters: bytes as the framing sees them
// (framing included; over TLS the plaintext, not the records, on every
// model), messages decoded (in) and written (out).
type ConnStats = engine.ConnStats

// HalfCloser is a Handler that wants to hear of the peer's FIN and may
// still write afterwards: typically one that replies from other
// goroutines. After the peer's FIN, the messages before it are handled,
// then OnPeerClose runs, and the connection stays writable until the
// handler calls CloseWrite (what is queued is sent, then the connection
// closes) or Close (at once), or the half-close timeout passes
// (WithHalfCloseTimeout, 10 s by default: OnClose gets
// ErrHalfCloseTimeout). Nothing more is read meanwhile. Shutdown ends the
// wait as CloseWrite would. On the blocking model, which serves one
// connection at a time, the next connection waits meanwhile.
//
// A Handler that is not a HalfCloser keeps the rule an echo server
// wants: after the peer's FIN the replies already queued are sent and
// the connection closes, so a later Write returns ErrConnClosed.
type HalfCloser interface {
	OnPeerClose(c Conn)
}

// Ticker is a Handler with a timer of the server's own: OnTick is called
// once when Serve starts and then after each delay it returns, until it
// returns a delay <= 0 or Shutdown or Close begins. On the event-loop
// models it runs on the first event loop (loop 0), between that loop's
// connection callbacks; on blocking and goroutine, on a goroutine of its
// own. Either way it runs concurrently with callbacks of other
// connections, so state it shares with them needs a lock.
type Ticker interface {
	OnTick() time.Duration
}

// PartialFramer is implemented by the Conn of every model. A handler that
// assembles frames itself on raw framing — the hello service parses HTTP
// request heads out of whatever each read returned — calls
// PartialFrame(true) when it holds the start of a frame it cannot finish
// yet and PartialFrame(false) once it has finished it, so that the frame
// timeout (WithFrameTimeout) covers its frames as it covers the codec's.
// The engine checks the mark after each batch of messages, so setting it
// costs one atomic store.
type PartialFramer interface {
	PartialFrame(started bool)
}

// Handler is the application: one set of callbacks that every I/O model
// runs unchanged.
//
// A callback that panics is recovered by the engine: the panic and its
// stack are logged, Stats.Panics counts it, and its connection alone is
// closed with ErrPanic (given to OnClose, unless OnClose itself panicked).
//
// Calls for one connection never overlap and arrive in order: OnOpen, then
// OnMessage for each decoded frame, then OnClose exactly once. Calls for
// different connections may run at the same time on different goroutines.
// Callbacks run on the engine's own goroutine (an event loop, on the
// reactor models), so they must not block: hand slow work to another
// goroutine and Write the result from there.
type Handler interface {
	// OnOpen is called when a connection has been accepted.
	OnOpen(c Conn)
	// OnMessage is called with each complete frame. msg is only valid
	// until OnMessage returns: engines decode in place from their read
	// buffer. Copy it to keep it.
	OnMessage(c Conn, msg []byte)
	// OnClose is called once the connection is closed. err is nil for an
	// orderly close (the peer closed, or the handler called Close) and
	// says why otherwise: errors.Is(err, ErrIdleTimeout),
	// errors.Is(err, framing.ErrFrameTooLarge) and so on.
	OnClose(c Conn, err error)
}

// BaseHandler implements every Handler method as a no-op. Embed it to
// write only the callbacks you need.
type BaseHandler struct{}

// OnOpen does nothing.
func (BaseHandler) OnOpen(Conn) {}

// OnMessage does nothing.
func (BaseHandler) OnMessage(Conn, []byte) {}

// OnClose does nothing.
func (BaseHandler) OnClose(Conn, error) {}

// HandlerFunc turns a function of one message into a Handler.
type HandlerFunc func(c Conn, msg []byte)

// OnOpen does nothing.
func (HandlerFunc) OnOpen(Conn) {}

// OnMessage calls f.
func (f HandlerFunc) OnMessage(c Conn, msg []byte) { f(c, msg) }

// OnClose does nothing.
func (HandlerFunc) OnClose(Conn, error) {}

// adapter lets the engines, which know only engine.Conn, call a Handler
// written against the public Conn. The method sets are identical, so the
// conversion is an interface-to-interface assignment, with no allocation.
type adapter struct{ h Handler }

func (a adapter) OnOpen(c engine.Conn)                { a.h.OnOpen(c) }
func (a adapter) OnMessage(c engine.Conn, msg []byte) { a.h.OnMessage(c, msg) }
func (a adapter) OnClose(c engine.Conn, err error)    { a.h.OnClose(c, err) }
