package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"switchboard"
	"switchboard/internal/netaddr"
	"switchboard/service"
)

type serveFlags struct {
	listen          string
	model           string
	loops           int
	reusePort       bool
	service         string
	framing         string
	maxFrame        string
	maxConns        int
	maxPending      string
	idleTimeout     time.Duration
	writeTimeout    time.Duration
	shutdownTimeout time.Duration
	metrics         string
	logFormat       string
	logLevel        string
	proxyProtocol   bool
}

func init() {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a TCP service on one of the I/O models",
		Long: `Run a TCP service (echo, discard, hello, chat) on one of the I/O models.

Without flags it is the socket tutorials' echo server on 127.0.0.1:8888.
It logs one line when it starts, and on SIGINT or SIGTERM stops accepting,
lets messages already received finish and exits 0 within --shutdown-timeout.
When started by systemd socket activation it serves the sockets it was
handed instead of --listen.

Models: ` + strings.Join(switchboard.Models(), ", ") + ` (auto picks ` + mustResolve("auto") + ` here).
Services: ` + strings.Join(service.Names(), ", ") + `.
Framing: raw, line, delim:HEX, fixed:N, len:N[be|le], digits:N, typed:T=N,..., eof.
Sizes take KiB, MiB and GiB suffixes; durations Go's syntax (500ms, 10s).`,
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("framing") {
				f.framing = "" // the service's own framing, or raw
			}
			return runServe(cmd.Context(), &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8888", "address: host:port, [::1]:port or unix:/path")
	fl.StringVar(&f.model, "model", "auto", "I/O model: auto, "+strings.Join(switchboard.Models(), ", "))
	fl.IntVar(&f.loops, "loops", 0, "event loops for the reactor models (0: one per CPU)")
	fl.BoolVar(&f.reusePort, "reuseport", false, "one SO_REUSEPORT listening socket per loop")
	fl.StringVar(&f.service, "service", "echo", "service: "+strings.Join(service.Names(), ", "))
	fl.StringVar(&f.framing, "framing", "raw", "message framing spec")
	fl.StringVar(&f.maxFrame, "max-frame", "1MiB", "largest frame accepted; bigger ones close the connection")
	fl.IntVar(&f.maxConns, "max-conns", 0, "connections over this many are closed at accept (0: descriptor limit only)")
	fl.StringVar(&f.maxPending, "max-pending", "4MiB", "pending output per connection above which reading pauses")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "close connections that send nothing for this long (0: never)")
	fl.DurationVar(&f.writeTimeout, "write-timeout", 60*time.Second, "close connections whose output does not drain for this long (0: never)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long to drain on SIGINT/SIGTERM")
	fl.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.BoolVar(&f.proxyProtocol, "proxy-protocol", false, "expect a PROXY v1/v2 header on every connection")
	rootCmd.AddCommand(cmd)
}

func mustResolve(name string) string {
	m, err := switchboard.ResolveModel(name)
	if err != nil {
		return "?"
	}
	return m
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("bad --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, usagef("bad --log-format %q: want text or json", format)
}

func runServe(ctx context.Context, f *serveFlags) error {
	log, err := newLogger(f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	svc, err := service.Lookup(f.service)
	if err != nil {
		return usageError{err}
	}
	if f.framing, err = svc.ResolveFraming(f.framing); err != nil {
		return usageError{err}
	}
	maxFrame, err := parseSize(f.maxFrame)
	if err != nil {
		return usagef("--max-frame: %v", err)
	}
	maxPending, err := parseSize(f.maxPending)
	if err != nil {
		return usagef("--max-pending: %v", err)
	}
	if f.maxConns < 0 || f.loops < 0 {
		return usagef("--max-conns and --loops take zero or a positive number")
	}
	if _, _, err := netaddr.Split(f.listen); err != nil {
		return usagef("--listen: %v", err)
	}
	srv, err := switchboard.NewServer(svc.New(),
		switchboard.WithModel(f.model),
		switchboard.WithLoops(f.loops),
		switchboard.WithReusePort(f.reusePort),
		switchboard.WithFraming(f.framing, int(maxFrame)),
		switchboard.WithMaxConns(f.maxConns),
		switchboard.WithMaxPending(int(maxPending)),
		switchboard.WithIdleTimeout(f.idleTimeout),
		switchboard.WithWriteTimeout(f.writeTimeout),
		switchboard.WithProxyProtocol(f.proxyProtocol),
		switchboard.WithLogger(log),
	)
	if errors.Is(err, switchboard.ErrUnsupported) {
		// Not a usage error: the flags are fine, this machine cannot
		// run the model (io_uring forbidden, say). Exit 1 with why.
		return err
	}
	if err != nil {
		return usageError{err}
	}

	lns, err := switchboard.ListenersFromEnv()
	if err != nil {
		return err
	}
	activated := lns != nil
	if !activated {
		if lns, err = srv.Listen(f.listen); err != nil {
			return err
		}
	}
	if f.metrics != "" {
		stop, err := serveMetrics(f.metrics, srv, log)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return err
		}
		defer stop()
	}

	log.Info("switchboard serving",
		"addr", netaddr.Format(lns[0].Addr()),
		"model", srv.Model(),
		"loops", loopsOf(srv),
		"service", svc.Name,
		"framing", srv.Codec().String(),
		"listeners", len(lns),
		"socket_activation", activated)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lns...) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case sig := <-sigs:
		log.Info("draining", "signal", sig.String(), "timeout", f.shutdownTimeout.String(), "active", srv.Stats().Active)
	}
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("drain deadline passed; closed the remaining connections", "err", err)
	}
	if err := <-served; !errors.Is(err, switchboard.ErrServerClosed) {
		return err
	}
	st := srv.Stats()
	log.Info("stopped", "accepted", st.Accepted, "rejected", st.Rejected, "bytes_in", st.BytesIn, "bytes_out", st.BytesOut)
	return nil
}

// loopsOf reports the loops that actually run: the goroutine and blocking
// models have none of their own.
func loopsOf(srv *switchboard.Server) int {
	if info, _ := switchboard.LookupModel(srv.Model()); !info.EventLoop {
		return 0
	}
	return srv.Loops()
}

// listenTCP is net.Listen for the metrics endpoint, with our error wording.
func listenTCP(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	return ln, nil
}

// serveMetrics exposes the server's counters for Prometheus.
func serveMetrics(addr string, srv *switchboard.Server, log *slog.Logger) (func(), error) {
	ln, err := listenTCP(addr)
	if err != nil {
		return nil, err
	}
	hs := &http.Server{Handler: metricsHandler(srv), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return func() { hs.Close() }, nil
}
