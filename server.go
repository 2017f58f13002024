// Package switchboard is a TCP server library with several I/O models
// behind one handler interface.
//
// A Handler written once runs unchanged on every model: "blocking" (one
// connection at a time, as in the simplest socket tutorial), "goroutine"
// (one goroutine per connection on Go's net package), and the event-loop
// models "select", "poll", "epoll" (Linux) and "kqueue" (BSD, macOS).
// Messages reach the handler already framed by a codec from the framing
// package; output is queued per connection and bounded, so a peer that
// stops reading pauses its own input instead of growing server memory; idle
// and write timeouts close dead peers; Shutdown drains like
// http.Server.Shutdown.
package switchboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
)

// Server runs a Handler on one I/O model. Configure it with options to
// NewServer; the zero Server is not usable.
type Server struct {
	handler Handler
	model   string
	cfg     engine.Config

	mu         sync.Mutex
	onShutdown []func()
	eng        engine.Engine
	lns        []net.Listener
	closed     bool
	stats      engine.Stats
}

// Option configures a Server.
type Option func(*Server) error

// NewServer returns a server for h. Defaults: model auto, raw framing with
// a 1 MiB maximum frame, 4 MiB of pending output per connection, a 60 s
// write timeout, a 60 s frame timeout (DefaultFrameTimeout), no idle
// timeout, GOMAXPROCS event loops, TCP_NODELAY on, TCP keepalive every
// 15 s, no connection limit.
func NewServer(h Handler, opts ...Option) (*Server, error) {
	if h == nil {
		return nil, errors.New("switchboard: nil handler")
	}
	s := &Server{
		handler: h,
		model:   ModelAuto,
		cfg: engine.Config{
			MaxPending:   engine.DefaultMaxPending,
			WriteTimeout: 60 * time.Second,
			FrameTimeout: DefaultFrameTimeout,
			Loops:        runtime.GOMAXPROCS(0),
			NoDelay:      true,
			KeepAlive:    15 * time.Second,
		},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	info, err := LookupModel(s.model)
	if err != nil {
		return nil, err
	}
	if err := CheckModel(info.Name); err != nil {
		return nil, err
	}
	if s.cfg.TLS != nil && !info.TLS {
		return nil, fmt.Errorf("%w: model %q does not speak TLS (models that do: %v)", ErrUnsupported, info.Name, tlsModels())
	}
	s.model = info.Name
	if s.cfg.Logger == nil {
		s.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s.cfg.Stats = &s.stats
	s.cfg.Normalize()
	return s, nil
}

// WithModel picks the I/O model by name (see Models and ResolveModel).
func WithModel(name string) Option {
	return func(s *Server) error { s.model = name; return nil }
}

// WithCodec sets the framing codec; its MaxFrame is the server's maximum
// frame size.
func WithCodec(c framing.Codec) Option {
	return func(s *Server) error {
		if c == nil {
			return errors.New("switchboard: nil codec")
		}
		s.cfg.Codec = c
		return nil
	}
}

// WithReplyCodec frames what handlers Write with c instead of the request
// codec, for protocols whose replies are framed differently from their
// requests: framing.Raw, for example, sends each Write as it is, for a
// handler that frames its replies itself (RESP, HTTP).
func WithReplyCodec(c framing.Codec) Option {
	return func(s *Server) error {
		if c == nil {
			return errors.New("switchboard: nil reply codec")
		}
		s.cfg.ReplyCodec = c
		return nil
	}
}

// WithHalfCloseTimeout bounds how long a HalfCloser's connection stays
// open after the peer's FIN (default 10 s; d <= 0 keeps the default).
func WithHalfCloseTimeout(d time.Duration) Option {
	return func(s *Server) error { s.cfg.HalfCloseTimeout = d; return nil }
}

// WithOnShutdown registers f to be called when Shutdown begins, before
// connections drain (see RegisterOnShutdown).
func WithOnShutdown(f func()) Option {
	return func(s *Server) error {
		if f == nil {
			return errors.New("switchboard: nil shutdown hook")
		}
		s.onShutdown = append(s.onShutdown, f)
		return nil
	}
}

// WithFraming parses a framing spec ("line", "len:4", ...) with the given
// maximum frame size (0: framing.DefaultMaxFrame) and uses it.
func WithFraming(spec string, maxFrame int) Option {
	return func(s *Server) error {
		c, err := framing.Parse(spec, maxFrame)
		if err != nil {
			return err
		}
		s.cfg.Codec = c
		return nil
	}
}

// WithMaxPending sets the per-connection high-water mark of queued output:
// above it the server stops reading that connection until half of it has
// drained.
func WithMaxPending(n int) Option {
	return func(s *Server) error {
		if n <= 0 {
			return fmt.Errorf("switchboard: max pending must be positive, got %d", n)
		}
		s.cfg.MaxPending = n
		return nil
	}
}

// WithIdleTimeout closes connections that receive nothing for d (0: off).
func WithIdleTimeout(d time.Duration) Option {
	return func(s *Server) error { s.cfg.IdleTimeout = max(d, 0); return nil }
}

// WithWriteTimeout closes connections whose pending output makes no
// progress for d (0: off).
func WithWriteTimeout(d time.Duration) Option {
	return func(s *Server) error { s.cfg.WriteTimeout = max(d, 0); return nil }
}

// DefaultFrameTimeout is how long a frame may take to arrive once its first
// byte has: a minute, as nginx gives a request head (client_header_timeout).
// A client that is merely slow gets far more than it needs — a maximum-size
// 1 MiB frame at 20 KiB/s, a poor mobile link, takes under a minute, and a
// request head of a few hundred bytes a fraction of a second — while a
// slowloris peer that trickles a byte at a time under the idle timeout
// holds its connection for a minute at most, not forever. Services whose
// frames are whole streams (the eof framing, long uploads) should raise it
// or turn it off with WithFrameTimeout(0).
const DefaultFrameTimeout = 60 * time.Second

// WithFrameTimeout closes a connection whose frame, once its first byte has
// arrived, is not complete within d (0: off), with ErrFrameTimeout. For a
// handler that assembles its own frames on raw framing (the hello
// service's request heads), the frame is what it marks with PartialFrame.
// Between frames the idle timeout applies instead. The check lives in the
// engine's timers: it costs nothing per byte or per message.
func WithFrameTimeout(d time.Duration) Option {
	return func(s *Server) error { s.cfg.FrameTimeout = max(d, 0); return nil }
}

// WithMaxConnsPerIP caps the connections open at once from one client IP
// address; the ones over it are closed at accept and counted (Stats
// RejectedPerIP, and Rejected). 0 means no cap. The address is the
// socket's: behind a load balancer that sends PROXY headers it is the
// balancer's, so the cap limits the balancer, not its clients.
func WithMaxConnsPerIP(n int) Option {
	return func(s *Server) error { s.cfg.MaxConnsPerIP = max(n, 0); return nil }
}

// WithMaxConns caps open connections; connections over it are closed at
// accept and counted as rejected. 0 means no cap beyond the descriptor
// limit.
func WithMaxConns(n int) Option {
	return func(s *Server) error { s.cfg.MaxConns = max(n, 0); return nil }
}

// WithLoops sets the number of event loops of the reactor models.
func WithLoops(n int) Option {
	return func(s *Server) error {
		if n > 0 {
			s.cfg.Loops = n
		}
		return nil
	}
}

// WithReusePort makes ListenAndServe open one SO_REUSEPORT listening
// socket per loop, so the kernel spreads connections over them.
func WithReusePort(on bool) Option {
	return func(s *Server) error { s.cfg.ReusePort = on; return nil }
}

// WithNoDelay sets TCP_NODELAY on accepted connections (default on).
func WithNoDelay(on bool) Option {
	return func(s *Server) error { s.cfg.NoDelay = on; return nil }
}

// WithKeepAlive sets the TCP keepalive period; d < 0 turns keepalive off.
func WithKeepAlive(d time.Duration) Option {
	return func(s *Server) error { s.cfg.KeepAlive = d; return nil }
}

// WithProxyProtocol expects a PROXY protocol v1 or v2 header at the start
// of every connection, as sent by HAProxy and other L4 load balancers, and
// reports the client address it carries as Conn.RemoteAddr.
func WithProxyProtocol(on bool) Option {
	return func(s *Server) error { s.cfg.ProxyProtocol = on; return nil }
}

// WithLogger sets the logger for connection errors and lifecycle events.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) error { s.cfg.Logger = l; return nil }
}

// Model returns the resolved model name.
func (s *Server) Model() string { return s.model }

// Codec returns the framing codec in use.
func (s *Server) Codec() framing.Codec { return s.cfg.Codec }

// Loops returns the configured number of event loops.
func (s *Server) Loops() int { return s.cfg.Loops }

// Serve accepts connections on the listeners until Shutdown or Close and
// then returns ErrServerClosed. The server owns the listeners and closes
// them.
func (s *Server) Serve(lns ...net.Listener) error {
	if len(lns) == 0 {
		return errors.New("switchboard: Serve needs a listener")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		for _, ln := range lns {
			ln.Close()
		}
		return ErrServerClosed
	}
	if s.eng != nil {
		s.mu.Unlock()
		return errors.New("switchboard: server already serving")
	}
	cfg := s.cfg
	if hc, ok := s.handler.(HalfCloser); ok {
		cfg.OnPeerClose = func(c engine.Conn) { hc.OnPeerClose(c) }
	}
	if tk, ok := s.handler.(Ticker); ok {
		cfg.OnTick = tk.OnTick
	}
	ctor := lookupCtor(s.model)
	eng, err := ctor(cfg, adapter{s.handler})
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.eng = eng
	s.lns = lns
	s.mu.Unlock()
	return eng.Serve(lns...)
}

// ListenAndServe listens on addr ("host:port", "[::1]:port" or
// "unix:/path") and serves. With WithReusePort it opens one listener per
// loop.
func (s *Server) ListenAndServe(addr string) error {
	lns, err := s.Listen(addr)
	if err != nil {
		return err
	}
	return s.Serve(lns...)
}

// Listen opens the listeners ListenAndServe would use, so a caller can learn
// the bound address (port 0) before calling Serve.
func (s *Server) Listen(addr string) ([]net.Listener, error) {
	n := 1
	if s.cfg.ReusePort {
		n = s.cfg.Loops
		if info, _ := LookupModel(s.model); !info.EventLoop {
			n = runtime.GOMAXPROCS(0)
		}
	}
	first, err := Listen(addr, s.cfg.ReusePort)
	if err != nil {
		return nil, err
	}
	lns := []net.Listener{first}
	// Later sockets bind the port the first one got, which matters for ":0".
	for i := 1; i < n; i++ {
		ln, err := Listen(first.Addr().String(), true)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// Addr returns the address of the first listener once Serve has started,
// or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lns) == 0 {
		return nil
	}
	return s.lns[0].Addr()
}

// Shutdown stops accepting, lets messages already received be handled and
// their replies sent, and closes each connection once its output has gone.
// If ctx ends first, the remaining connections are closed and ctx's error
// is returned. Serve returns ErrServerClosed.
//
// The shutdown hooks (RegisterOnShutdown, WithOnShutdown) run first, once,
// in the order registered, on the caller's goroutine, before any
// connection starts draining: what they Write is sent before the FIN.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	hooks := s.onShutdown
	s.onShutdown = nil
	s.mu.Unlock()
	for _, f := range hooks {
		f()
	}
	eng := s.stop()
	if eng == nil {
		return nil
	}
	return eng.Shutdown(ctx)
}

// RegisterOnShutdown registers f to be called when Shutdown begins, like
// http.Server's: before connections drain, so a handler can tell its
// clients (a pub/sub server's subscribers, say) while they can still be
// written to. f runs on the goroutine that called Shutdown and should
// not block for long: Shutdown's drain waits for it. Close does not run
// the hooks.
func (s *Server) RegisterOnShutdown(f func()) {
	if f == nil {
		return
	}
	s.mu.Lock()
	s.onShutdown = append(s.onShutdown, f)
	s.mu.Unlock()
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	eng := s.stop()
	if eng == nil {
		return nil
	}
	return eng.Close()
}

func (s *Server) stop() engine.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.eng
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	Accepted       int64 // connections accepted
	Rejected       int64 // connections closed at accept by a limit
	Active         int64 // connections open now
	AcceptErrors   int64 // temporary accept failures (EMFILE, ENFILE, ...)
	ProtocolErrors int64 // connections closed for a framing or PROXY error
	Timeouts       int64 // connections closed by the idle, write or frame timeout
	SlowConsumers  int64 // connections closed for not reading their output
	RejectedPerIP  int64 // of Rejected, connections over WithMaxConnsPerIP
	Panics         int64 // handler panics recovered (each closed its connection)
	BytesIn        int64
	BytesOut       int64
	MessagesIn     int64 // frames delivered to OnMessage
	MessagesOut    int64 // frames queued by Conn.Write
	// Closes splits closed connections by reason (see CloseCounts).
	Closes CloseCounts
	// AcceptErrorKinds splits AcceptErrors by errno.
	AcceptErrorKinds AcceptErrorCounts
	// Handshakes counts TLS handshakes that succeeded; HandshakeFailures
	// connections closed because theirs failed.
	Handshakes        int64
	HandshakeFailures int64
	// Paused is the number of connections whose reading is paused now
	// because their pending output passed WithMaxPending.
	Paused int64
	// PendingBytes is the output queued and not yet written, over every
	// connection (updated per loop iteration or per write, so it lags by
	// at most one).
	PendingBytes int64
	// Durations is the histogram of closed connections' lifetimes.
	Durations HistogramSnapshot
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	return Stats{
		Accepted:       st.Accepted.Load(),
		Rejected:       st.Rejected.Load(),
		Active:         st.Active.Load(),
		AcceptErrors:   st.AcceptErrors.Load(),
		ProtocolErrors: st.ProtocolErrors.Load(),
		Timeouts:       st.Timeouts.Load(),
		SlowConsumers:  st.SlowConsumers.Load(),
		RejectedPerIP:  st.RejectedPerIP.Load(),
		Panics:         st.Panics.Load(),
		BytesIn:        st.BytesIn.Load(),
		BytesOut:       st.BytesOut.Load(),
		MessagesIn:     st.MessagesIn.Load(),
		MessagesOut:    st.MessagesOut.Load(),
		Closes:         closeCounts(st),
		AcceptErrorKinds: AcceptErrorCounts{
			EMFILE: st.AcceptErrorKinds[engine.AcceptEMFILE].Load(),
			ENFILE: st.AcceptErrorKinds[engine.AcceptENFILE].Load(),
			ENOMEM: st.AcceptErrorKinds[engine.AcceptENOMEM].Load(),
			Other:  st.AcceptErrorKinds[engine.AcceptOther].Load(),
		},
		Handshakes:        st.Handshakes.Load(),
		HandshakeFailures: st.HandshakeFailures.Load(),
		Paused:            st.Paused.Load(),
		PendingBytes:      st.PendingBytes.Load(),
		Durations:         st.Durations.Snapshot(),
	}
}
