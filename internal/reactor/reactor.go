//go:build linux || darwin || freebsd || netbsd || openbsd

// Package reactor is the event-loop engine behind the "select", "poll",
// "epoll" and "kqueue" models: N loops, each a goroutine locked to an OS
// thread that owns one poller, its connections and its timers.
//
// A loop iteration is: wait for readiness; for each ready connection read
// once into the loop's buffer, decode every complete frame in place and
// hand it to the handler, then flush that connection's output once; run the
// work other goroutines queued (new connections handed over by the
// accepting loop, writes and closes from outside); fire due timers. In a
// steady request/response exchange that is one read and one write system
// call per readiness and no poller changes, allocations or contended locks.
//
// Choices, and why:
//
//   - Level-triggered everywhere, with write interest only while output is
//     pending; ARCHITECTURE.md ("Why level-triggered") gives the
//     measurements behind it.
//   - One listener per loop (SO_REUSEPORT) keeps each accepted connection
//     on its loop; a single listener's loop hands connections to the loop
//     with the fewest, through that loop's queue.
//   - Conn methods take a per-connection mutex. Go cannot tell a loop's own
//     goroutine from another without a system call, and an uncontended
//     lock is two atomic instructions; a write from inside a callback is
//     then a copy into a pooled chunk, and the loop flushes once per batch.
//   - Connection structs are never reused, so a stale Conn kept by a
//     handler sees ErrConnClosed and never someone else's descriptor.
//   - Timers are a heap per loop (internal/timerheap), moved lazily (see
//     timer.go); a connection's life is an internal/connstate.State.
//   - The file layout follows the loop's concerns: loop.go, accept.go,
//     input.go, output.go, close.go, timer.go.
package reactor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/poller"
	"switchboard/internal/sockfd"
	"switchboard/internal/tlsloop"
)

// serverState is where the engine is in its life: Serve moves it from
// serverNew to serverServing, Shutdown or Close to serverDraining, and the
// loops' end to serverClosed.
type serverState uint8

const (
	serverNew serverState = iota
	serverServing
	serverDraining
	serverClosed
)

type server struct {
	backend string
	cfg     engine.Config
	h       engine.Handler
	log     *slog.Logger
	stats   *engine.Stats
	epoch   time.Time // the loops' clock counts nanoseconds from here

	// Hot configuration, copied out of cfg so the loops do not chase it.
	codec      framing.Codec
	reply      framing.Codec // frames Writes: Config.ReplyCodec
	overhead   int           // reply's
	maxPending int
	lowWater   int
	writeLimit int
	idle       int64 // ns, 0 = off
	writeTO    int64 // ns, 0 = off
	headerWait int64 // ns: engine.Config.ProxyHeaderTimeout
	frameTO    int64 // ns, 0 = off

	perIP *engine.AddrLimiter // nil without MaxConnsPerIP; shared by the loops
	tls   *tlsloop.Config     // nil without TLS

	nconns atomic.Int64 // open connections, for MaxConns

	mu       sync.Mutex
	state    serverState
	loops    []*loop
	lns      []net.Listener
	local    bool          // every loop has a listener: keep what it accepts
	deadline int64         // Shutdown's deadline on the loop clock, 0 = none
	done     chan struct{} // closed when Serve's loops have all returned
	fatal    error         // why a loop failed, if one did
}

// New returns an engine running h on the named poller backend ("select",
// "poll", "epoll", "kqueue"). A backend this platform lacks returns an
// error wrapping engine.ErrUnsupported.
func New(backend string, cfg engine.Config, h engine.Handler) (engine.Engine, error) {
	p, err := newPoller(backend)
	if err != nil {
		return nil, err
	}
	p.Close()
	cfg.Normalize()
	s := &server{
		backend:    backend,
		cfg:        cfg,
		h:          h,
		log:        cfg.Logger,
		stats:      cfg.Stats,
		epoch:      time.Now(),
		codec:      cfg.Codec,
		reply:      cfg.ReplyCodec,
		overhead:   cfg.ReplyCodec.Overhead(),
		maxPending: cfg.MaxPending,
		lowWater:   cfg.LowWater(),
		writeLimit: cfg.WriteLimit(),
		idle:       int64(max(cfg.IdleTimeout, 0)),
		writeTO:    int64(max(cfg.WriteTimeout, 0)),
		headerWait: int64(cfg.ProxyHeaderTimeout()),
		frameTO:    int64(max(cfg.FrameTimeout, 0)),
		perIP:      engine.NewAddrLimiter(cfg.MaxConnsPerIP),
		done:       make(chan struct{}),
	}
	if cfg.TLS != nil {
		var err error
		if s.tls, err = tlsloop.NewServerConfig(cfg.TLS, cfg.HandshakeTimeout, cfg.MaxHandshakes); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Constructor returns an engine.Constructor for backend, for the public
// package's model table.
func Constructor(backend string) engine.Constructor {
	return func(cfg engine.Config, h engine.Handler) (engine.Engine, error) {
		return New(backend, cfg, h)
	}
}

// LoopIterations reads each loop's histogram of iteration times, in loop
// order; nil before Serve.
func (s *server) LoopIterations() []engine.HistogramSnapshot {
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	out := make([]engine.HistogramSnapshot, len(loops))
	for i, l := range loops {
		out[i] = l.iter.Snapshot()
	}
	return out
}

// clock reads the loops' monotonic clock.
func (s *server) clock() int64 { return int64(time.Since(s.epoch)) }

// Serve starts the loops, gives them the listeners and blocks until they
// have all stopped.
func (s *server) Serve(lns ...net.Listener) error {
	s.mu.Lock()
	if s.state != serverNew {
		serving := s.state == serverServing
		s.mu.Unlock()
		if serving {
			return errors.New("switchboard: engine already serving")
		}
		closeAll(lns)
		return engine.ErrServerClosed
	}
	loops, err := s.setup(lns)
	if err != nil {
		s.state = serverClosed
		close(s.done)
		s.mu.Unlock()
		closeAll(lns)
		return err
	}
	s.loops, s.lns, s.state = loops, lns, serverServing
	s.mu.Unlock()

	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(l.run)
	}
	wg.Wait()
	closeAll(lns)
	s.mu.Lock()
	s.state = serverClosed
	err = s.fatal
	s.mu.Unlock()
	close(s.done)
	if err != nil {
		return err
	}
	return engine.ErrServerClosed
}

// setup builds the loops and gives listener i to loop i mod N. It runs
// under s.mu.
func (s *server) setup(lns []net.Listener) ([]*loop, error) {
	if len(lns) == 0 {
		return nil, errors.New("switchboard: Serve needs a listener")
	}
	loops := make([]*loop, s.cfg.Loops)
	fail := func(err error) ([]*loop, error) {
		for _, l := range loops {
			if l != nil {
				l.release()
			}
		}
		return nil, err
	}
	for i := range loops {
		l, err := newLoop(s, i)
		if err != nil {
			return fail(err)
		}
		loops[i] = l
	}
	for i, ln := range lns {
		l := loops[i%len(loops)]
		li, err := newListener(ln)
		if err != nil {
			return fail(err)
		}
		if err := l.p.Add(li.Fd, true, false); err != nil {
			unix.Close(li.Fd)
			return fail(fmt.Errorf("switchboard: listener %s: %w", ln.Addr(), err))
		}
		l.lns = append(l.lns, li)
		if l.spare < 0 {
			l.spare = sockfd.OpenSpare()
		}
	}
	s.local = len(lns) >= len(loops)
	return loops, nil
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}

// Shutdown asks every loop to drain: close its listeners, stop reading,
// flush, send FIN, and close each connection when the peer answers with
// its own (or after engine.LingerWait). At ctx's end whatever is left is closed.
func (s *server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case serverNew:
		s.state = serverClosed
		close(s.done)
		s.mu.Unlock()
		return nil
	case serverServing:
		s.state = serverDraining
		if d, ok := ctx.Deadline(); ok {
			s.deadline = max(int64(time.Until(d))+s.clock(), 1)
		}
		s.broadcast(taskDrain)
		closeAll(s.lns)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		s.broadcast(taskClose)
		s.mu.Unlock()
		<-s.done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection now.
func (s *server) Close() error {
	s.mu.Lock()
	switch s.state {
	case serverNew:
		s.state = serverClosed
		close(s.done)
	case serverServing, serverDraining:
		s.state = serverDraining
		s.broadcast(taskClose)
		closeAll(s.lns)
	}
	s.mu.Unlock()
	<-s.done
	return nil
}

// fail records a loop's fatal error and takes the whole server down, so
// Serve returns it instead of serving on fewer loops.
func (s *server) fail(err error) {
	s.mu.Lock()
	if s.fatal == nil {
		s.fatal = err
	}
	s.broadcast(taskClose)
	s.mu.Unlock()
	s.log.Error("event loop failed", "model", s.backend, "err", err)
}

// broadcast posts a task to every loop. Under s.mu.
func (s *server) broadcast(kind taskKind) {
	for _, l := range s.loops {
		l.post(task{kind: kind})
	}
}

// Backends lists the poller backends this platform runs, each a model name:
// select and poll everywhere, epoll on Linux, kqueue on BSD and macOS.
func Backends() []string { return poller.Names() }

// MaxFD returns the descriptor ceiling of backend (select's FD_SETSIZE), or
// 0 when it has none.
func MaxFD(backend string) int { return poller.MaxFD(backend) }

// newPoller opens a poller of the named backend, reporting one this
// platform lacks as engine.ErrUnsupported: the poller package is a leaf
// with a sentinel of its own.
func newPoller(backend string) (poller.Poller, error) {
	p, err := poller.New(backend)
	if errors.Is(err, poller.ErrUnsupported) {
		return nil, fmt.Errorf("%w: %w", engine.ErrUnsupported, err)
	}
	return p, err
}
