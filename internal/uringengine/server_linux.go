package uringengine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"switchboard/internal/engine"
	"switchboard/internal/loopconn"
	"switchboard/internal/sockfd"
	"switchboard/internal/uring"
)

// Server states.
const (
	stateNew = iota
	stateServing
	stateDraining
	stateClosed
)

type server struct {
	loopconn.Server[connIO]
	opt   Options
	probe *uring.Probe

	// Under Mu.
	state int
	loops []*loop
	lns   []net.Listener
	done  chan struct{} // closed when Serve's loops have all returned
	fatal error         // why a loop failed, if one did
}

// New returns an io_uring engine running h. Where io_uring cannot be used
// (an old kernel, kernel.io_uring_disabled, a seccomp filter) the error
// wraps uring.ErrUnavailable and engine.ErrUnsupported and says why in
// one line; an unknown SWITCHBOARD_URING_OPTS name is an error too.
func New(cfg engine.Config, h engine.Handler) (engine.Engine, error) {
	probe, opt, err := check()
	if err != nil {
		return nil, err
	}
	s := &server{opt: opt, probe: probe, done: make(chan struct{})}
	s.Init(cfg, h)
	return s, nil
}

// Check reports whether New would succeed here: nil, or an error
// wrapping engine.ErrUnsupported and uring.ErrUnavailable that says why in
// one line, or one naming a bad SWITCHBOARD_URING_OPTS entry.
func Check() error {
	_, _, err := check()
	return err
}

func check() (*uring.Probe, Options, error) {
	probe, err := uring.Available()
	if err != nil {
		return nil, Options{}, fmt.Errorf("%w: model uring: %w", engine.ErrUnsupported, err)
	}
	opt, err := optionsFromEnv()
	if err != nil {
		return nil, Options{}, fmt.Errorf("%w: model uring: %w", engine.ErrUnsupported, err)
	}
	return probe, opt, nil
}

// Serve starts the loops, each of which sets up its ring on its own
// locked thread, gives them the listeners, and blocks until they have all
// stopped. A loop that cannot set up its ring fails Serve with the reason.
func (s *server) Serve(lns ...net.Listener) error {
	s.Mu.Lock()
	if s.state != stateNew {
		serving := s.state == stateServing
		s.Mu.Unlock()
		if serving {
			return errors.New("switchboard: engine already serving")
		}
		closeAll(lns)
		return engine.ErrServerClosed
	}
	loops, err := s.setup(lns)
	if err != nil {
		s.state = stateClosed
		close(s.done)
		s.Mu.Unlock()
		closeAll(lns)
		return err
	}
	s.loops, s.lns, s.state = loops, lns, stateServing
	s.Mu.Unlock()

	var wg sync.WaitGroup
	ready := make(chan error, len(loops))
	for _, l := range loops {
		wg.Go(func() { l.run(ready) })
	}
	var setupErr error
	for range loops {
		if err := <-ready; err != nil && setupErr == nil {
			setupErr = err
			s.fail(err)
		}
	}
	wg.Wait()
	closeAll(lns)
	s.Mu.Lock()
	s.state = stateClosed
	err = s.fatal
	s.Mu.Unlock()
	close(s.done)
	if err != nil {
		return err
	}
	return engine.ErrServerClosed
}

// setup builds the loops and gives listener i to loop i mod N. The rings
// are made later, by each loop on its own thread. It runs under s.Mu.
func (s *server) setup(lns []net.Listener) ([]*loop, error) {
	if len(lns) == 0 {
		return nil, errors.New("switchboard: Serve needs a listener")
	}
	loops := make([]*loop, s.Cfg.Loops)
	for i := range loops {
		loops[i] = newLoop(s, i)
	}
	for i, ln := range lns {
		l := loops[i%len(loops)]
		li, err := sockfd.NewListener(ln)
		if err != nil {
			for _, l := range loops {
				l.releaseListeners()
			}
			return nil, err
		}
		l.lns = append(l.lns, &listener{Listener: *li, idx: len(l.lns)})
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
// its own (or after engine.LingerWait). At ctx's end whatever is left is
// closed.
func (s *server) Shutdown(ctx context.Context) error {
	s.Mu.Lock()
	switch s.state {
	case stateNew:
		s.state = stateClosed
		close(s.done)
		s.Mu.Unlock()
		return nil
	case stateServing:
		s.state = stateDraining
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
	case stateNew:
		s.state = stateClosed
		close(s.done)
	case stateServing, stateDraining:
		s.state = stateDraining
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
		s.Log.Error("event loop failed", "model", "uring", "err", err)
	}
	s.broadcast(loopconn.TaskClose)
	s.Mu.Unlock()
}

// broadcast posts a task to every loop. Under s.Mu.
func (s *server) broadcast(kind loopconn.TaskKind) {
	for _, l := range s.loops {
		l.Post(task{Kind: kind})
	}
}
