// Package connstate is the life of one connection on an event-loop
// engine, written once so that every such engine (the readiness reactor,
// a completion engine beside it) moves through the same states for the
// same events. It holds no I/O: an engine asks it what an event means and
// does what it says (close, send its FIN, arm the linger timer).
//
//	state          meaning                                      next
//	Header         accepted; waiting for the PROXY header;      Open (header parsed: OnOpen)
//	               the handler has not heard of it              closed (bad header, EOF, timeout)
//	Open           serving: reading, decoding, writing          Finishing (peer's FIN)
//	                                                            PeerShut (peer's FIN, handler keeps it)
//	                                                            ShuttingWrite (CloseWrite)
//	ShuttingWrite  our write half shuts once the output is      WriteShut (output flushed: FIN sent)
//	               flushed; reading goes on                     Finishing (peer's FIN)
//	WriteShut      our FIN is out; reading until the peer's     Finishing (peer's FIN)
//	PeerShut       the peer's FIN arrived and the handler       Finishing (CloseWrite)
//	               keeps the connection: the rest was decoded   closed (half-close timeout)
//	               with atEOF, OnPeerClose ran; nothing more
//	               is read, Writes are sent as they come
//	Finishing      the peer's FIN arrived: the rest was decoded Closed (output flushed: OnClose(nil))
//	               with atEOF; the replies flush, then close
//	Closed         descriptor closed, OnClose called (if OnOpen was)
//
// Any state goes to Closed on Close, a read or write error, a framing
// error, the idle or write timeout, or a Write past the write limit.
//
// The peer's FIN leads to PeerShut only from Open, and only when the
// handler asked to hear of it (a HalfCloser): it may still owe replies
// from other goroutines, so the connection stays writable until the
// handler calls CloseWrite (flush, then close) or Close, or the engine's
// half-close timeout (engine.HalfCloseWait by default) closes it with
// engine.ErrHalfCloseTimeout. Other handlers keep the simpler rule an echo
// server wants: the replies to what was received flush, then the
// connection closes (Finishing).
//
// Shutdown drains: Drain moves a connection in Header, Open or
// ShuttingWrite to ShuttingWrite, so its output flushes and our FIN
// follows; from then on the engine reads and drops its input, the peer's
// FIN closes it at once, and once our FIN is out (WriteShut) the linger
// timer bounds the wait for the peer's (engine.LingerWait, or Shutdown's
// deadline if sooner). A connection in Finishing finishes as it would
// have anyway; one in PeerShut moves to Finishing, so what it has queued
// flushes and it closes.
package connstate

// State is where a connection is in its life. The zero value is Header,
// a connection accepted and not yet opened.
type State uint8

// The states; see the package documentation for the transitions.
const (
	Header State = iota
	Open
	ShuttingWrite
	WriteShut
	PeerShut
	Finishing
	Closed
)

var names = [...]string{"header", "open", "shutting-write", "write-shut", "peer-shut", "finishing", "closed"}

// String names the state, for logs and test failures.
func (s State) String() string {
	if int(s) < len(names) {
		return names[s]
	}
	return "invalid"
}

// Reading reports whether more input can come: not after the peer's FIN.
func (s State) Reading() bool { return s != PeerShut && s != Finishing && s != Closed }

// AtEOF reports whether what is buffered is the end of the stream, to be
// decoded with atEOF.
func (s State) AtEOF() bool { return s == PeerShut || s == Finishing }

// CloseWrite applies the handler's CloseWrite: an open connection shuts
// its write half once its output is flushed; one whose peer has shut
// already closes once its output is flushed.
func (s *State) CloseWrite() {
	switch *s {
	case Open:
		*s = ShuttingWrite
	case PeerShut:
		*s = Finishing
	}
}

// PeerEOF records the peer's FIN on a connection that goes on (not in
// Header, not draining: those close). keep says the handler wants to hear
// of it and go on writing (a HalfCloser); it matters only in Open.
func (s *State) PeerEOF(keep bool) {
	if keep && *s == Open {
		*s = PeerShut
		return
	}
	*s = Finishing
}

// Flushed is what an empty outbox means.
type Flushed uint8

const (
	// Stay: nothing changes.
	Stay Flushed = iota
	// CloseNow: close the connection, OnClose(nil).
	CloseNow
	// SendFIN: shut down the write half now (the state is WriteShut
	// already); when draining, arm the linger timer.
	SendFIN
)

// Flushed moves the state on once all output is written.
func (s *State) Flushed() Flushed {
	switch *s {
	case Finishing:
		return CloseNow
	case ShuttingWrite:
		*s = WriteShut
		return SendFIN
	}
	return Stay
}

// Drain applies Shutdown. It reports whether our FIN is out already, so
// the linger timer must start now rather than after the flush.
func (s *State) Drain() (finSent bool) {
	switch *s {
	case Header, Open:
		*s = ShuttingWrite
	case WriteShut:
		return true
	case PeerShut:
		*s = Finishing
	}
	return false
}
