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
	"net"
	"sync"

	"golang.org/x/sys/unix"

	"switchboard/internal/engine"
	"switchboard/internal/loopconn"
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
	loopconn.Server[connIO]
	backend string
	tls     *tlsloop.Config // nil without TLS

	// Under Mu.
	state serverState
	loops []*loop
	lns   []net.Listener
	done  chan struct{} // closed when Serve's loops have all returned
	fatal error         // why a loop failed, if one did
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
	s := &server{backend: backend, done: make(chan struct{})}
	s.Init(cfg, h)
	if s.Cfg.TLS != nil {
		lim, err := tlsloop.NewLimiter(s.Cfg.MaxHandshakes)
		if err != nil {
			return nil, err
		}
		s.tls = &tlsloop.Config{TLS: s.Cfg.TLS, HandshakeTimeout: s.Cfg.HandshakeTimeout, Limiter: lim}
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
	s.Mu.Lock()
	loops := s.loops
	s.Mu.Unlock()
	out := make([]engine.HistogramSnapshot, len(loops))
	for i, l := range loops {
		out[i] = l.iter.Snapshot()
	}
	return out
}

// Serve starts the loops, gives them the listeners and blocks until they
// have all stopped.
func (s *server) Serve(lns ...net.Listener) error {
	s.Mu.Lock()
	if s.state != serverNew {
		serving := s.state == serverServing
		s.Mu.Unlock()
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
		s.Mu.Unlock()
		closeAll(lns)
		return err
	}
	s.loops, s.lns, s.state = loops, lns, serverServing
	s.Mu.Unlock()

	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Go(l.run)
	}
	wg.Wait()
	closeAll(lns)
	s.Mu.Lock()
	s.state = serverClosed
	err = s.fatal
	s.Mu.Unlock()
	close(s.done)
	if err != nil {
		return err
	}
	return engine.ErrServerClosed
}

// setup builds the loops and gives listener i to loop i mod N. It runs
// under s.Mu.
func (s *server) setup(lns []net.Listener) ([]*loop, error) {
	if len(lns) == 0 {
		return nil, errors.New("switchboard: Serve needs a listener")
	}
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
		if err := l.p.Add(li.Fd, true, false); err != nil {
			unix.Close(li.Fd)
			return fail(fmt.Errorf("switchboard: listener %s: %w", ln.Addr(), err))
		}
		l.lns = append(l.lns, li)
		if l.spare < 0 {
			l.spare = sockfd.OpenSpare()
		}
	}
	cores := make([]*loopconn.Loop[connIO], len(loops))
	for i, l := range loops {
		cores[i] = &l.Loop
	}
	s.SetLoops(cores, len(lns) >= len(loops))
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
	s.Mu.Lock()
	switch s.state {
	case serverNew:
		s.state = serverClosed
		close(s.done)
		s.Mu.Unlock()
		return nil
	case serverServing:
		s.state = serverDraining
		if d, ok := ctx.Deadline(); ok {
			s.SetDeadline(d)
		}
		s.broadcast(loopconn.TaskDrain)
		closeAll(s.lns)
	}
	s.Mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.Mu.Lock()
		s.broadcast(loopconn.TaskClose)
		s.Mu.Unlock()
		<-s.done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection now.
func (s *server) Close() error {
	s.Mu.Lock()
	switch s.state {
	case serverNew:
		s.state = serverClosed
		close(s.done)
	case serverServing, serverDraining:
		s.state = serverDraining
		s.broadcast(loopconn.TaskClose)
		closeAll(s.lns)
	}
	s.Mu.Unlock()
	<-s.done
	return nil
}

// fail records a loop's fatal error and takes the whole server down, so
// Serve returns it instead of serving on fewer loops.
func (s *server) fail(err error) {
	s.Mu.Lock()
	if s.fatal == nil {
		s.fatal = err
	}
	s.broadcast(loopconn.TaskClose)
	s.Mu.Unlock()
	s.Log.Error("event loop failed", "model", s.backend, "err", err)
}

// broadcast posts a task to every loop. Under s.Mu.
func (s *server) broadcast(kind loopconn.TaskKind) {
	for _, l := range s.loops {
		l.post(task{Kind: kind})
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
