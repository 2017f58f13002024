package uringengine

import (
	"switchboard/internal/loopconn"
	"switchboard/internal/sockfd"
)

// A connection is a loopconn.Conn, the same core the reactor's
// connections have: the handler's view, the state machine, timers and
// the request bits other goroutines set. What is this engine's own is
// what the connection has in the kernel.
//
// An idle connection costs that struct, a slot in its loop's table and
// one armed receive in the kernel: no buffer of any kind. Completions
// find a connection through its slot and a generation number, so a
// completion that arrives after the connection closed (its receive's
// cancellation, say) is recognised as stale.
type conn = loopconn.Conn[connIO]

// connIO is this engine's part of a connection (conn.IO): its slot in
// the loop's table, four bytes, which the core's layout has room for.
// What else the engine keeps per connection is by slot in the loop (the
// slot's generation, the sendmsg header in flight) or, for the few
// connections that have it, in a map (input held back by a pause).
type connIO struct {
	slot uint32
}

// This engine's flags (conn.Flags), beside the core's: which requests the
// connection has in the kernel and what the loop has promised to do with
// it before the next io_uring_enter.
const (
	connRecv     = loopconn.EngineFlag << iota // a multishot receive is armed (until a completion without F_MORE)
	connCancel                                 // a cancellation of that receive is on its way
	connSending                                // a send is in flight: its bytes are still the outbox's
	connDirty                                  // on l.dirty: start a send before the next enter
	connRearm                                  // on l.rearm: arm the receive before the next enter
	connSendWait                               // on l.sendWait: waiting for a free sendmsg header
	connEOFHeld                                // the peer's FIN came behind held input, not yet decoded
	connHeld                                   // l.held has input received while paused, not yet decoded
	connTLS                                    // the connection has a TLS layer (tlsOf, tls_linux.go)
	connTLSHold                                // TLS: no receive until the handshake moves on, or ever after the FIN

	// connOutstanding: output is on its way out (the write timer's and
	// the idle timer's concern).
	connOutstanding = connSending | connDirty | connSendWait
)

// listener is a listening socket with its multishot accept.
type listener struct {
	sockfd.Listener
	id          uint16 // in the server's table (loopconn.Server.AddListener)
	idx         int    // position in l.lns, carried in the accept's user data
	armed       bool   // the multishot accept is in the kernel
	resumeAfter int64  // re-arm no earlier than this (after a failure), 0 = now
	closed      bool   // CloseListeners ran: the accept is cancelled, never re-armed
	fdClosed    bool   // the loop's duplicate descriptor is closed
}
