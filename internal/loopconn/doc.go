//go:build linux || darwin || freebsd || netbsd || openbsd

// Package loopconn is the engine-independent half of an event-loop
// connection, written once for the readiness reactor (internal/reactor)
// and the completion engine (internal/uringengine): everything about a
// connection and a loop that does not depend on how bytes arrive and
// leave.
//
// It holds:
//
//   - Conn, the connection a handler sees: Write, Close and CloseWrite from
//     any goroutine framing into the outbox and asking the loop for
//     changes through request bits; the state (connstate), the frame loop
//     (framing.Accumulator), the timer slots, the AfterFunc list.
//   - Loop, one loop's engine-independent state: the connection table,
//     the two timer heaps (the connections' idle, write and frame timers,
//     and the handler's AfterFuncs and tick), the cross-goroutine task
//     queue, the loop clock, and the policy that runs on them: timers
//     firing, the close path (stats, the connection log, OnClose), the
//     drain, the callback batch (PROXY header, OnMessage with a recover
//     per batch, the frame timeout, OnPeerClose).
//   - Server, the configuration the loops read hot and the server's
//     lifecycle (Serve, Shutdown, Close, a loop's failure).
//
// An engine instantiates them with its own per-connection state as the
// type parameter IO (Conn[IO].IO: the descriptor's requests, interest or
// in-flight sends) and implements Engine, the few hooks the core calls
// where the engines differ: flushing after a callback batch, releasing a
// closing connection's descriptor, adopting a connection. The type
// parameter is a struct, never a pointer, so each engine gets its own
// instantiation: field accesses are direct, and nothing on the per-message
// path goes through an interface. The hot path calls back the other way:
// the engine calls Deliver for a batch of input and then flushes itself,
// so a batch costs no indirect call.
package loopconn
