package switchboard

import (
	"log/slog"

	"switchboard/internal/engine"
)

// ConnInfo is what is known of a connection once it has closed: remote
// address (the PROXY header's client when there was one), local address,
// how long it was open, its counters, and the close reason as OnClose
// gets it (nil for an orderly close).
type ConnInfo = engine.ConnInfo

// HistogramSnapshot is a duration histogram read at one moment, with
// cumulative counts per upper bound (as Prometheus wants them).
type HistogramSnapshot = engine.HistogramSnapshot

// WithOnConnClose calls f once for every accepted connection after it has
// closed, before the handler's OnClose, on the goroutine or loop that ran
// the connection; f must not block. It replaces WithConnLog's logger, and
// the other way round: there is one hook.
func WithOnConnClose(f func(ConnInfo)) Option {
	return func(s *Server) error { s.cfg.OnConnClose = f; return nil }
}

// WithConnLog writes one line at info to l for every connection when it
// closes (the connection log): message "connection" with attributes
// remote, local, duration, bytes_in, bytes_out, messages_in,
// messages_out, reason (a close-reason label as in the metrics: peer,
// idle, protocol_error, ...) and, when the close had an error, error (its
// text). A nil l turns the log off.
func WithConnLog(l *slog.Logger) Option {
	if l == nil {
		return WithOnConnClose(nil)
	}
	return WithOnConnClose(engine.ConnLogger(l))
}

// LoopIterations returns each event loop's histogram of iteration times
// (from a wake-up with work to the next wait), in loop order: how long
// the connections on a loop can wait behind each other. It is nil on the
// goroutine-per-connection models, which have no loops, and before Serve.
func (s *Server) LoopIterations() []HistogramSnapshot {
	s.mu.Lock()
	eng := s.eng
	s.mu.Unlock()
	if li, ok := eng.(engine.LoopIterationser); ok {
		return li.LoopIterations()
	}
	return nil
}
