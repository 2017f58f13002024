//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/sockfd"
)

// Server is what the loops of one server share: the configuration they
// read hot, the handler, the counters, and the server's lifecycle.
type Server[IO any] struct {
	// Cfg is the normalised configuration.
	Cfg engine.Config
	// H is the handler.
	H engine.Handler
	// Log is Cfg.Logger.
	Log *slog.Logger
	// Stats is Cfg.Stats.
	Stats *engine.Stats
	epoch time.Time // the loops' clock counts nanoseconds from here

	// Hot configuration, copied out of Cfg so the loops do not chase it.

	// Codec decodes input: Cfg.Codec.
	Codec framing.Codec
	// Reply frames Writes: Cfg.ReplyCodec.
	Reply    framing.Codec
	overhead int // Reply's
	// MaxPending is the output above which reading pauses, LowWater
	// where it resumes, WriteLimit where a Write closes the connection.
	MaxPending, LowWater, WriteLimit int
	// Idle, WriteTO, HeaderWait and FrameTO are the timeouts in
	// nanoseconds, 0 for none (HeaderWait is always set).
	Idle, WriteTO, HeaderWait, FrameTO int64

	// PerIP is the per-address limit, nil without MaxConnsPerIP; shared
	// by the loops.
	PerIP *engine.AddrLimiter
	// NConns counts open connections, for MaxConns.
	NConns atomic.Int64

	// Model names the engine's model, for logs.
	Model string

	// Mu guards the lifecycle.
	Mu       sync.Mutex
	life     lifecycle
	deadline int64 // Shutdown's deadline on the loop clock, 0 = none

	// Set before the loops run, read-only after.
	loops []*Loop[IO]
	local bool               // every loop has a listener: keep what it accepts
	lns   []*sockfd.Listener // by index: Conn.lnfam (AddListener)
}

// SetLoops records the loops, before they run (Loops.Setup); local says
// every loop has a listener of its own, so a connection stays where it
// was accepted.
func (s *Server[IO]) SetLoops(loops []*Loop[IO], local bool) {
	s.loops, s.local = loops, local
}

// Init fills s from cfg, which it normalises, for handler h, serving
// the named model.
func (s *Server[IO]) Init(model string, cfg engine.Config, h engine.Handler) {
	cfg.Normalize()
	s.Model = model
	s.life.done = make(chan struct{})
	s.Cfg = cfg
	s.H = h
	s.Log = cfg.Logger
	s.Stats = cfg.Stats
	s.epoch = time.Now()
	s.Codec = cfg.Codec
	s.Reply = cfg.ReplyCodec
	s.overhead = cfg.ReplyCodec.Overhead()
	s.MaxPending = cfg.MaxPending
	s.LowWater = cfg.LowWater()
	s.WriteLimit = cfg.WriteLimit()
	s.Idle = int64(max(cfg.IdleTimeout, 0))
	s.WriteTO = int64(max(cfg.WriteTimeout, 0))
	s.HeaderWait = int64(cfg.ProxyHeaderTimeout())
	s.FrameTO = int64(max(cfg.FrameTimeout, 0))
	s.PerIP = engine.NewAddrLimiter(cfg.MaxConnsPerIP)
}

// LoopIterations reads each loop's histogram of iteration times
// (Loop.Iterated), in loop order; nil before Serve. It makes every
// engine on the core an engine.LoopIterationser.
func (s *Server[IO]) LoopIterations() []engine.HistogramSnapshot {
	s.Mu.Lock()
	loops := s.loops
	s.Mu.Unlock()
	out := make([]engine.HistogramSnapshot, len(loops))
	for i, l := range loops {
		out[i] = l.iter.Snapshot()
	}
	return out
}

// Clock reads the loops' monotonic clock.
func (s *Server[IO]) Clock() int64 { return int64(time.Since(s.epoch)) }

// SetDeadline records Shutdown's deadline d on the loop clock. Under Mu.
func (s *Server[IO]) SetDeadline(d time.Time) {
	s.deadline = max(int64(time.Until(d))+s.Clock(), 1)
}
