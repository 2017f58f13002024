package uringengine

import (
	"fmt"
	"net"

	"switchboard/internal/engine"
	"switchboard/internal/loopconn"
	"switchboard/internal/sockfd"
	"switchboard/internal/tlsloop"
	"switchboard/internal/uring"
)

// server is the engine: the shared core's server (configuration, the
// lifecycle: Shutdown and Close are its) and what the probe found.
type server struct {
	loopconn.Server[connIO]
	opt   Options
	probe *uring.Probe
	loops []*loop         // set by Setup, under Mu
	tls   *tlsloop.Config // nil without TLS; its Limiter is shared by the loops
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
	s := &server{opt: opt, probe: probe}
	s.Init("uring", cfg, h)
	if s.Cfg.TLS != nil {
		if s.tls, err = tlsloop.NewServerConfig(s.Cfg.TLS, s.Cfg.HandshakeTimeout, s.Cfg.MaxHandshakes); err != nil {
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

// Serve runs the loops over the listeners until Shutdown or Close
// (loopconn.Server.Serve). Each loop sets up its ring on its own locked
// thread; one that cannot fails Serve with the reason.
func (s *server) Serve(lns ...net.Listener) error { return s.Server.Serve(s, lns) }

// Setup is loopconn.Loops.Setup; the rings are made later, by Run.
func (s *server) Setup(lns []net.Listener) error {
	loops, err := s.setup(lns)
	if err == nil {
		s.loops = loops
	}
	return err
}

// Run is loopconn.Loops.Run: the loop reports once its ring is set up.
func (s *server) Run(i int, ready chan<- error) { s.loops[i].run(ready) }

// setup builds the loops and gives listener i to loop i mod N. The rings
// are made later, by each loop on its own thread. It runs under s.Mu.
func (s *server) setup(lns []net.Listener) ([]*loop, error) {
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
		lw := &listener{Listener: *li, idx: len(l.lns)}
		l.lns = append(l.lns, lw)
		var ok bool
		if lw.id, ok = s.AddListener(&lw.Listener); !ok {
			for _, l := range loops {
				l.releaseListeners()
			}
			return nil, fmt.Errorf("switchboard: at most %d listeners", loopconn.MaxListeners)
		}
	}
	cores := make([]*loopconn.Loop[connIO], len(loops))
	for i, l := range loops {
		cores[i] = &l.Loop
	}
	s.SetLoops(cores, len(lns) >= len(loops))
	return loops, nil
}
