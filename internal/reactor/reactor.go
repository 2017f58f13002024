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
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"switchboard/internal/engine"
	"switchboard/internal/loopconn"
	"switchboard/internal/poller"
	"switchboard/internal/tlsloop"
)

// server is the engine: the shared core's server (configuration, the
// lifecycle: Shutdown and Close are its) and the poller backend.
type server struct {
	loopconn.Server[connIO]
	backend string
	tls     *tlsloop.Config // nil without TLS
	loops   []*loop         // set by Setup, under Mu
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
	s := &server{backend: backend}
	s.Init(backend, cfg, h)
	if s.Cfg.TLS != nil {
		var err error
		if s.tls, err = tlsloop.NewServerConfig(s.Cfg.TLS, s.Cfg.HandshakeTimeout, s.Cfg.MaxHandshakes); err != nil {
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

// Serve runs the loops over the listeners until Shutdown or Close
// (loopconn.Server.Serve).
func (s *server) Serve(lns ...net.Listener) error { return s.Server.Serve(s, lns) }

// Setup is loopconn.Loops.Setup: it builds the loops and their pollers.
func (s *server) Setup(lns []net.Listener) error {
	loops, err := s.setup(lns)
	if err == nil {
		s.loops = loops
	}
	return err
}

// Run is loopconn.Loops.Run: a poller loop is ready as soon as it runs.
func (s *server) Run(i int, ready chan<- error) {
	ready <- nil
	s.loops[i].run()
}

// setup builds the loops and gives listener i to loop i mod N. It runs
// under s.Mu.
func (s *server) setup(lns []net.Listener) ([]*loop, error) {
	loops := make([]*loop, s.Cfg.Loops)
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
		var ok bool
		if li.id, ok = s.AddListener(&li.Listener); !ok {
			unix.Close(li.Fd)
			return fail(errTooManyListeners)
		}
		if err := l.p.Add(li.Fd, true, false); err != nil {
			unix.Close(li.Fd)
			return fail(fmt.Errorf("switchboard: listener %s: %w", ln.Addr(), err))
		}
		l.lns = append(l.lns, li)
		l.OpenSpare()
	}
	cores := make([]*loopconn.Loop[connIO], len(loops))
	for i, l := range loops {
		cores[i] = &l.Loop
	}
	s.SetLoops(cores, len(lns) >= len(loops))
	return loops, nil
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
