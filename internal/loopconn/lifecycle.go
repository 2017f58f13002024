//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"context"
	"errors"
	"net"
	"sync"

	"switchboard/internal/engine"
)

// The server's life: Serve moves it from serverNew to serverServing,
// Shutdown or Close to serverDraining, and the loops' end to
// serverClosed. It is the same for every event-loop engine; what an
// engine brings is how its loops are built and run (Loops).

type serverState uint8

const (
	serverNew serverState = iota
	serverServing
	serverDraining
	serverClosed
)

// Loops is how an engine builds and runs its loops.
type Loops interface {
	// Setup builds the loops, gives listener i to loop i mod N and
	// records them (Server.SetLoops). It runs under Server.Mu, and frees
	// what it took if it fails.
	Setup(lns []net.Listener) error
	// Run runs loop i on its own goroutine until it stops. It sends on
	// ready once: nil when the loop serves, or why it cannot (it has
	// then stopped).
	Run(i int, ready chan<- error)
}

// lifecycle is the part of Server that Serve, Shutdown and Close move,
// under Server.Mu.
type lifecycle struct {
	state serverState
	lns   []net.Listener
	done  chan struct{} // closed when Serve's loops have all returned
	fatal error         // why a loop failed, if one did
}

// Serve builds the loops with e, starts them, and blocks until they have
// all stopped. A loop that fails to start, or fails later (Fail), takes
// the server down and Serve returns why.
func (s *Server[IO]) Serve(e Loops, lns []net.Listener) error {
	s.Mu.Lock()
	if s.life.state != serverNew {
		serving := s.life.state == serverServing
		s.Mu.Unlock()
		if serving {
			return errors.New("switchboard: engine already serving")
		}
		closeAll(lns)
		return engine.ErrServerClosed
	}
	err := errors.New("switchboard: Serve needs a listener")
	if len(lns) > 0 {
		err = e.Setup(lns)
	}
	if err != nil {
		s.life.state = serverClosed
		close(s.life.done)
		s.Mu.Unlock()
		closeAll(lns)
		return err
	}
	s.life.lns, s.life.state = lns, serverServing
	n := len(s.loops)
	s.Mu.Unlock()

	var wg sync.WaitGroup
	ready := make(chan error, n)
	for i := range n {
		wg.Go(func() { e.Run(i, ready) })
	}
	failed := false
	for range n {
		if err := <-ready; err != nil && !failed {
			failed = true
			s.Fail(err)
		}
	}
	wg.Wait()
	closeAll(lns)
	s.Mu.Lock()
	s.life.state = serverClosed
	err = s.life.fatal
	s.Mu.Unlock()
	close(s.life.done)
	if err != nil {
		return err
	}
	return engine.ErrServerClosed
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
func (s *Server[IO]) Shutdown(ctx context.Context) error {
	s.Mu.Lock()
	switch s.life.state {
	case serverNew:
		s.life.state = serverClosed
		close(s.life.done)
		s.Mu.Unlock()
		return nil
	case serverServing:
		s.life.state = serverDraining
		if d, ok := ctx.Deadline(); ok {
			s.SetDeadline(d)
		}
		s.broadcast(TaskDrain)
		closeAll(s.life.lns)
	}
	s.Mu.Unlock()
	select {
	case <-s.life.done:
		return nil
	case <-ctx.Done():
		s.Mu.Lock()
		s.broadcast(TaskClose)
		s.Mu.Unlock()
		<-s.life.done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection now.
func (s *Server[IO]) Close() error {
	s.Mu.Lock()
	switch s.life.state {
	case serverNew:
		s.life.state = serverClosed
		close(s.life.done)
	case serverServing, serverDraining:
		s.life.state = serverDraining
		s.broadcast(TaskClose)
		closeAll(s.life.lns)
	}
	s.Mu.Unlock()
	<-s.life.done
	return nil
}

// Fail records a loop's fatal error and takes the whole server down, so
// Serve returns it instead of serving on fewer loops. The first is
// logged.
func (s *Server[IO]) Fail(err error) {
	s.Mu.Lock()
	first := s.life.fatal == nil
	if first {
		s.life.fatal = err
	}
	s.broadcast(TaskClose)
	s.Mu.Unlock()
	if first {
		s.Log.Error("event loop failed", "model", s.Model, "err", err)
	}
}

// Started reports whether Serve has begun (for tests that must not race
// it).
func (s *Server[IO]) Started() bool {
	s.Mu.Lock()
	defer s.Mu.Unlock()
	return s.life.state != serverNew
}

// broadcast posts a task to every loop. Under Mu.
func (s *Server[IO]) broadcast(kind TaskKind) {
	for _, l := range s.loops {
		l.Post(Task[IO]{Kind: kind})
	}
}
