package switchboard

import (
	"net"

	"switchboard/internal/engine"
)

// Conn is one client connection as a Handler sees it.
//
// All methods are safe to call from any goroutine, so a handler may keep a
// Conn and write to it later, from elsewhere (a broadcast reaching
// connections owned by other event loops, for example).
type Conn interface {
	// Write frames msg with the server's codec and queues it for sending.
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
	CloseWrite() error
	// LocalAddr is the server's address of this connection.
	LocalAddr() net.Addr
	// RemoteAddr is the peer's address, or the client address from the
	// PROXY header when the server expects one.
	RemoteAddr() net.Addr
	// Context returns the value last stored with SetContext, or nil.
	Context() any
	// SetContext stores one value with the connection, typically the
	// handler's per-connection state.
	SetContext(v any)
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
