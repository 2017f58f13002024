// Package stream holds the two I/O models built on Go's net package:
// "blocking", the iterative server of the first socket tutorials (accept,
// serve that one connection to the end, accept the next), and "goroutine",
// one goroutine per connection as in the threaded tutorial servers, with
// Go's runtime poller doing the multiplexing underneath.
//
// Both share one connection implementation: a reader that decodes frames
// into the handler, and an outbox that the reader flushes inline after each
// batch of messages (so a request/response exchange costs no goroutine
// switch) and that a short-lived flusher goroutine drains when another
// goroutine writes.
package stream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
)

// server implements engine.Engine for both models.
type server struct {
	cfg       engine.Config
	h         engine.Handler
	iterative bool
	split     *framing.Splitter // the frame loop's codec and buffering
	// Derived from cfg once, not on every Write.
	writeLimit, lowWater int
	overhead             int                 // the codec's framing bytes per message
	perIP                *engine.AddrLimiter // nil without MaxConnsPerIP

	mu       sync.Mutex
	lns      []net.Listener
	conns    map[*conn]struct{}
	stopping bool          // no new connections; Serve returns
	ticking  bool          // the OnTick goroutine has started
	draining chan struct{} // closed when Shutdown begins
	deadline time.Time     // Shutdown's deadline, zero if none
	conwg    sync.WaitGroup
	acceptwg sync.WaitGroup
}

// NewBlocking returns the iterative model: each listener serves one
// connection at a time, accepting the next only when the current one has
// closed. Connections that arrive meanwhile wait in the kernel's backlog.
// It exists to show, and measure, what the tutorials' first server does.
func NewBlocking(cfg engine.Config, h engine.Handler) (engine.Engine, error) {
	return newServer(cfg, h, true), nil
}

// NewGoroutine returns the goroutine-per-connection model.
func NewGoroutine(cfg engine.Config, h engine.Handler) (engine.Engine, error) {
	return newServer(cfg, h, false), nil
}

func newServer(cfg engine.Config, h engine.Handler, iterative bool) *server {
	cfg.Normalize()
	return &server{
		// A 16 KiB read buffer per connection keeps idle ones cheap; it
		// grows only while a frame larger than it is being assembled.
		split: framing.NewSplitter(cfg.Codec, framing.SplitterOptions{
			Initial: initialReadBuf, Keep: initialReadBuf,
		}),
		writeLimit: cfg.WriteLimit(),
		overhead:   cfg.Codec.Overhead(),
		lowWater:   cfg.LowWater(),
		perIP:      engine.NewAddrLimiter(cfg.MaxConnsPerIP),
		cfg:        cfg,
		h:          h,
		iterative:  iterative,
		conns:      make(map[*conn]struct{}),
		draining:   make(chan struct{}),
	}
}

func (s *server) Serve(lns ...net.Listener) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		for _, ln := range lns {
			ln.Close()
		}
		return engine.ErrServerClosed
	}
	s.lns = append(s.lns, lns...)
	if s.cfg.OnTick != nil && !s.ticking {
		s.ticking = true
		s.acceptwg.Add(1)
		go func() {
			defer s.acceptwg.Done()
			s.tick()
		}()
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		s.acceptwg.Add(1)
		go func() {
			defer s.acceptwg.Done()
			errc <- s.acceptLoop(ln)
		}()
	}
	s.mu.Unlock()
	s.acceptwg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			// A listener failed for good while the server was running:
			// take the rest down rather than serve half-heartedly.
			s.Close()
			return err
		}
	}
	return engine.ErrServerClosed
}

// tick runs OnTick on a goroutine of its own: at once, then after each
// delay it returns, until it returns one <= 0 or Shutdown or Close begins.
func (s *server) tick() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.draining:
			return
		}
		if s.isDraining() {
			return
		}
		d := s.cfg.OnTick()
		if d <= 0 {
			return
		}
		t.Reset(d)
	}
}

// temporaryAcceptError reports accept failures worth retrying: the process
// or system ran out of descriptors or memory, or the connection died in the
// queue. Go's net package already retries EINTR and ECONNABORTED.
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR) ||
		errors.Is(err, syscall.EPROTO)
}

func (s *server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

func (s *server) acceptLoop(ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isStopping() {
				return nil
			}
			if temporaryAcceptError(err) {
				s.cfg.Stats.CountAcceptError(err)
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.cfg.Logger.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				select {
				case <-time.After(backoff):
				case <-s.draining:
				}
				continue
			}
			return err
		}
		backoff = 0
		if max := s.cfg.MaxConns; max > 0 && s.cfg.Stats.Active.Load() >= int64(max) {
			s.cfg.Stats.Rejected.Add(1)
			s.cfg.Logger.Debug("connection refused: limit reached", "remote", nc.RemoteAddr(), "max_conns", max)
			abortConn(nc)
			continue
		}
		ip := remoteIP(nc)
		if !s.perIP.Acquire(ip) {
			s.cfg.Stats.Rejected.Add(1)
			s.cfg.Stats.RejectedPerIP.Add(1)
			s.cfg.Logger.Debug("connection refused: per-address limit reached", "remote", nc.RemoteAddr(), "max_conns_per_ip", s.cfg.MaxConnsPerIP)
			abortConn(nc)
			continue
		}
		c := s.track(nc, ip)
		if c == nil {
			return nil
		}
		if s.iterative {
			c.serve()
		} else {
			go c.serve()
		}
	}
}

// abortConn closes with SO_LINGER 0 so a refused connection costs no
// TIME_WAIT slot on the server.
func abortConn(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	nc.Close()
}

// remoteIP is the peer's IP address for the per-address limit; invalid for
// a Unix socket, which the limit does not count.
func remoteIP(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr()
	}
	return netip.Addr{}
}

func (s *server) track(nc net.Conn, ip netip.Addr) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		s.perIP.Release(ip)
		s.conwg.Add(1)
		go s.lateAccept(nc)
		return nil
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(s.cfg.NoDelay)
		if s.cfg.KeepAlive > 0 {
			tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: s.cfg.KeepAlive, Interval: s.cfg.KeepAlive})
		} else if s.cfg.KeepAlive < 0 {
			tc.SetKeepAlive(false)
		}
	}
	c := newConn(s, nc)
	c.ip = ip
	s.conns[c] = struct{}{}
	s.conwg.Add(1)
	s.cfg.Stats.Accepted.Add(1)
	s.cfg.Stats.Active.Add(1)
	return c
}

func (s *server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.perIP.Release(c.ip)
	s.cfg.Stats.Active.Add(-1)
	s.conwg.Done()
}

// stop closes the listeners once and reports whether this call did it.
func (s *server) stop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.stopping = true
	for _, ln := range s.lns {
		ln.Close()
	}
	return true
}

func (s *server) Shutdown(ctx context.Context) error {
	if s.stop() {
		s.mu.Lock()
		s.deadline, _ = ctx.Deadline()
		close(s.draining)
		for c := range s.conns {
			c.interruptRead()
		}
		s.mu.Unlock()
	}
	done := make(chan struct{})
	go func() {
		s.acceptwg.Wait()
		s.conwg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeAll(engine.ErrShutdown)
		<-done
		return ctx.Err()
	}
}

func (s *server) Close() error {
	if s.stop() {
		s.mu.Lock()
		close(s.draining)
		s.mu.Unlock()
	}
	s.closeAll(nil)
	s.acceptwg.Wait()
	s.conwg.Wait()
	return nil
}

func (s *server) closeAll(err error) {
	s.mu.Lock()
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.closeWith(err)
	}
}

func (s *server) isDraining() bool {
	select {
	case <-s.draining:
		return true
	default:
		return false
	}
}

// lingerDeadline bounds how long a draining connection waits for the peer
// to close after our FIN: engine.LingerWait, or Shutdown's deadline if
// sooner.
func (s *server) lingerDeadline() time.Time {
	d := time.Now().Add(engine.LingerWait)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.deadline.IsZero() && s.deadline.Before(d) {
		return s.deadline
	}
	return d
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
