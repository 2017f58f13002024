package uringengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/sockfd"
	"switchboard/internal/tlsloop"
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
	cfg   engine.Config
	opt   Options
	probe *uring.Probe
	h     engine.Handler
	log   *slog.Logger
	stats *engine.Stats
	epoch time.Time // the loops' clock counts nanoseconds from here

	// Hot configuration, copied out of cfg so the loops do not chase it.
	codec      framing.Codec
	reply      framing.Codec // frames Writes: Config.ReplyCodec
	overhead   int           // reply's
	maxPending int
	lowWater   int
	writeLimit int
	idle       int64 // ns, 0 = off
	writeTO    int64 // ns, 0 = off
	frameTO    int64 // ns, 0 = off

	perIP *engine.AddrLimiter // nil without MaxConnsPerIP; shared by the loops
	tls   *tlsloop.Config     // nil without TLS; its Limiter is shared by the loops

	nconns atomic.Int64 // open connections, for MaxConns

	mu       sync.Mutex
	state    int
	loops    []*loop
	lns      []net.Listener
	local    bool          // every loop has a listener: keep what it accepts
	deadline int64         // Shutdown's deadline on the loop clock, 0 = none
	done     chan struct{} // closed when Serve's loops have all returned
	fatal    error         // why a loop failed, if one did
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
	cfg.Normalize()
	s := &server{
		cfg:        cfg,
		opt:        opt,
		probe:      probe,
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
		frameTO:    int64(max(cfg.FrameTimeout, 0)),
		perIP:      engine.NewAddrLimiter(cfg.MaxConnsPerIP),
		done:       make(chan struct{}),
	}
	if cfg.TLS != nil {
		if s.tls, err = tlsloop.NewServerConfig(cfg.TLS, cfg.HandshakeTimeout, cfg.MaxHandshakes); err != nil {
			return nil, err
		}
	}
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

// clock reads the loops' monotonic clock.
func (s *server) clock() int64 { return int64(time.Since(s.epoch)) }

// Serve starts the loops, each of which sets up its ring on its own
// locked thread, gives them the listeners, and blocks until they have all
// stopped. A loop that cannot set up its ring fails Serve with the reason.
func (s *server) Serve(lns ...net.Listener) error {
	s.mu.Lock()
	if s.state != stateNew {
		serving := s.state == stateServing
		s.mu.Unlock()
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
		s.mu.Unlock()
		closeAll(lns)
		return err
	}
	s.loops, s.lns, s.state = loops, lns, stateServing
	s.mu.Unlock()

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
	s.mu.Lock()
	s.state = stateClosed
	err = s.fatal
	s.mu.Unlock()
	close(s.done)
	if err != nil {
		return err
	}
	return engine.ErrServerClosed
}

// setup builds the loops and gives listener i to loop i mod N. The rings
// are made later, by each loop on its own thread. It runs under s.mu.
func (s *server) setup(lns []net.Listener) ([]*loop, error) {
	if len(lns) == 0 {
		return nil, errors.New("switchboard: Serve needs a listener")
	}
	loops := make([]*loop, s.cfg.Loops)
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
// its own (or after engine.LingerWait). At ctx's end whatever is left is
// closed.
func (s *server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case stateNew:
		s.state = stateClosed
		close(s.done)
		s.mu.Unlock()
		return nil
	case stateServing:
		s.state = stateDraining
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
	case stateNew:
		s.state = stateClosed
		close(s.done)
	case stateServing, stateDraining:
		s.state = stateDraining
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
		s.log.Error("event loop failed", "model", "uring", "err", err)
	}
	s.broadcast(taskClose)
	s.mu.Unlock()
}

// broadcast posts a task to every loop. Under s.mu.
func (s *server) broadcast(kind taskKind) {
	for _, l := range s.loops {
		l.post(task{kind: kind})
	}
}
