// Package uringengine is the completion-based engine behind the "uring"
// model: N loops, each a goroutine locked to an OS thread that owns one
// io_uring (internal/uring), its connections and its timers.
//
// Where the readiness reactor asks "which sockets can I read?" and then
// reads, this engine keeps requests armed in the kernel and is told what
// they did. Each listener has one multishot accept; each connection has
// one multishot receive that takes its buffer from the loop's
// provided-buffer ring only when bytes arrive, so an idle connection owns
// no buffer; each connection has at most one send in flight, a send of
// its outbox's first chunk or a sendmsg over a chain of them. A loop
// iteration is one io_uring_enter that submits everything the previous
// iteration prepared and waits for at least one completion, then the
// completions it reaped, the work other goroutines queued, and due timers.
// In a steady request/response exchange that is one system call per
// iteration however many connections were served in it.
//
// What it shares with the reactor, and does not copy: the connection
// state machine (internal/connstate), the frame loop (framing.Accumulator,
// with inbuf's free lists), the outbox (internal/outbox), the timer heap
// (internal/timerheap), the policy on linger, PROXY headers and logging
// (internal/engine), and the socket plumbing (internal/sockfd). What
// differs is only how bytes move: see input_linux.go and output_linux.go.
//
// It is Linux-only. New fails with an error wrapping uring.ErrUnavailable,
// and saying why, where io_uring cannot be used; SWITCHBOARD_URING_OPTS
// (see ParseOptions) turns single io_uring features off for measurement.
package uringengine
