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
	"strconv"
	"strings"
	"sync"
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
	tls             serverTLSFlags
	handshake       time.Duration
	pprof           bool
	pidFile         string
	upgradeTimeout  time.Duration
	frameTimeout    time.Duration
	maxConnsPerIP   int
	connLog         bool
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

On SIGHUP it upgrades without downtime: it starts a new copy of its own
executable with the same arguments, hands it the listening sockets, and
once the new process reports that it serves, drains as on SIGTERM and
exits 0. If the new process fails to start or to report ready within
--upgrade-timeout, this one keeps serving and logs why. Under systemd
(NOTIFY_SOCKET) it reports READY=1, RELOADING=1, MAINPID and STOPPING=1,
and pings the watchdog when WATCHDOG_USEC is set. See OPERATIONS.md.

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
	f.tls.register(fl)
	fl.DurationVar(&f.handshake, "handshake-timeout", switchboard.DefaultHandshakeTimeout, "close connections whose TLS handshake takes longer")
	fl.BoolVar(&f.pprof, "pprof", false, "also serve /debug/pprof/ on the --metrics address")
	fl.StringVar(&f.pidFile, "pid-file", "", "write the serving process's pid here (kept right across SIGHUP upgrades)")
	fl.DurationVar(&f.upgradeTimeout, "upgrade-timeout", 30*time.Second, "how long a SIGHUP upgrade waits for the new process to serve")
	fl.DurationVar(&f.frameTimeout, "frame-timeout", switchboard.DefaultFrameTimeout, "close connections whose frame (hello: request head) is not complete this long after its first byte (0: never)")
	fl.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", 0, "connections from one client IP over this many are closed at accept (0: no limit)")
	fl.BoolVar(&f.connLog, "conn-log", false, "log one line at info per connection when it closes: addresses, duration, bytes, messages, reason")
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
	if f.maxConnsPerIP < 0 || f.frameTimeout < 0 {
		return usagef("--max-conns-per-ip and --frame-timeout take zero or a positive value")
	}
	if _, _, err := netaddr.Split(f.listen); err != nil {
		return usagef("--listen: %v", err)
	}
	if f.pprof && f.metrics == "" {
		return usagef("--pprof serves on the --metrics address: give --metrics too")
	}
	if f.upgradeTimeout <= 0 {
		return usagef("--upgrade-timeout must be positive")
	}
	parent, err := takeSuccessorSide()
	if err != nil {
		return err
	}
	var connLog *slog.Logger
	if f.connLog {
		connLog = log
	}
	if f.handshake <= 0 {
		return usagef("--handshake-timeout must be positive")
	}
	tlsCfg, err := f.tls.config()
	if err != nil {
		return err
	}
	opts := []switchboard.Option{switchboard.WithHandshakeTimeout(f.handshake)}
	if tlsCfg != nil {
		opts = append(opts, switchboard.WithTLS(tlsCfg))
	}
	srv, err := switchboard.NewServer(svc.New(), append(opts,
		switchboard.WithModel(f.model),
		switchboard.WithLoops(f.loops),
		switchboard.WithReusePort(f.reusePort),
		switchboard.WithFraming(f.framing, int(maxFrame)),
		switchboard.WithMaxConns(f.maxConns),
		switchboard.WithMaxPending(int(maxPending)),
		switchboard.WithIdleTimeout(f.idleTimeout),
		switchboard.WithWriteTimeout(f.writeTimeout),
		switchboard.WithProxyProtocol(f.proxyProtocol),
		switchboard.WithFrameTimeout(f.frameTimeout),
		switchboard.WithMaxConnsPerIP(f.maxConnsPerIP),
		switchboard.WithLogger(log),
		switchboard.WithConnLog(connLog),
	)...)
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
	activated := lns != nil && parent.ready == nil
	if lns == nil {
		if lns, err = srv.Listen(f.listen); err != nil {
			return err
		}
	} else if parent.ready != nil {
		ownUnixSocketFiles(lns)
	}
	var metricsLn net.Listener
	if f.metrics != "" {
		ln, stop, err := serveMetrics(f.metrics, parent.metricsLn, srv, f.pprof, log)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return err
		}
		metricsLn = ln
		defer stop()
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lns...) }()
	if err := awaitServing(srv, served); err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	// Before any readiness is reported: a successor that cannot name
	// itself fails its upgrade, and the old process (still named) serves on.
	if err := writePidFile(f.pidFile, os.Getpid()); err != nil {
		srv.Close()
		<-served
		return err
	}

	log.Info("switchboard serving",
		"addr", netaddr.Format(lns[0].Addr()),
		"model", srv.Model(),
		"loops", loopsOf(srv),
		"service", svc.Name,
		"framing", srv.Codec().String(),
		"listeners", len(lns),
		"tls", onOff(srv.TLS()),
		"socket_activation", activated,
		"upgraded", parent.ready != nil,
		"pid", os.Getpid())
	defer removePidFile(f.pidFile)
	sd := newNotifier()
	notify := func(lines ...string) {
		if err := sd.send(lines...); err != nil {
			log.Warn("systemd notify", "err", err)
		}
	}
	notify("MAINPID="+strconv.Itoa(os.Getpid()), "READY=1")
	if err := parent.reportReady(); err != nil {
		log.Warn("could not tell the old process we serve; it will time out and keep serving", "err", err)
	}
	stopWatchdog := make(chan struct{})
	stopDog := sync.OnceFunc(func() { close(stopWatchdog) })
	defer stopDog()
	if every, err := watchdogInterval(); err != nil {
		log.Warn("systemd watchdog off", "err", err)
	} else if every > 0 {
		go sd.watchdog(every, stopWatchdog, func(err error) { log.Warn("systemd watchdog", "err", err) })
	}

	type upgradeResult struct {
		pid int
		err error
	}
	var (
		upgrading     chan upgradeResult
		cancelUpgrade context.CancelFunc = func() {}
		leaving       bool
	)
	defer func() { cancelUpgrade() }()
	for !leaving {
		select {
		case err := <-served:
			return fmt.Errorf("serve: %w", err)
		case res := <-upgrading:
			upgrading = nil
			if res.err != nil {
				log.Error("upgrade failed; still serving", "err", res.err)
				notify("READY=1", "STATUS=upgrade failed: "+res.err.Error())
				continue
			}
			leaving = true
			stopDog()
			keepUnixSocketFiles(lns)
			log.Info("draining", "reason", "upgrade", "successor", res.pid, "timeout", f.shutdownTimeout.String(), "active", srv.Stats().Active)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if upgrading != nil {
					log.Warn("SIGHUP ignored", "err", errUpgradeBusy)
					continue
				}
				log.Info("upgrading", "signal", sig.String())
				notify("RELOADING=1")
				uctx, cancel := context.WithCancelCause(context.Background())
				cancelUpgrade = func() { cancel(errStopDuringUpgrade) }
				upgrading = make(chan upgradeResult, 1)
				go func(done chan<- upgradeResult) {
					pid, err := startSuccessor(uctx, lns, metricsLn, f.upgradeTimeout)
					done <- upgradeResult{pid, err}
				}(upgrading)
				continue
			}
			if upgrading != nil {
				cancelUpgrade()
				res := <-upgrading
				upgrading = nil
				if res.err != nil {
					log.Warn("upgrade abandoned", "err", res.err)
				} else {
					// Raced to ready: the successor serves, so this
					// process leaves exactly as after an upgrade.
					leaving = true
					stopDog()
					keepUnixSocketFiles(lns)
					log.Info("draining", "signal", sig.String(), "successor", res.pid, "timeout", f.shutdownTimeout.String(), "active", srv.Stats().Active)
					continue
				}
			}
			stopDog()
			notify("STOPPING=1")
			log.Info("draining", "signal", sig.String(), "timeout", f.shutdownTimeout.String(), "active", srv.Stats().Active)
			leaving = true
		}
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
	log.Info("stopped", "accepted", st.Accepted, "rejected", st.Rejected, "bytes_in", st.BytesIn, "bytes_out", st.BytesOut,
		"messages_in", st.MessagesIn, "messages_out", st.MessagesOut)
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// awaitServing waits until the engine has taken the listeners (or Serve
// failed), so "serving" is never announced for a server that is about to
// fail. Connections arriving meanwhile wait in the accept queue.
func awaitServing(srv *switchboard.Server, served chan error) error {
	for range 5000 {
		select {
		case err := <-served:
			return err
		default:
		}
		if srv.Addr() != nil {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return errors.New("engine did not start within 5s")
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

// serveMetrics exposes the server's counters for Prometheus, on inherited
// (a listener handed over by an upgrade) or else a new listener on addr.
// It returns the listener, for the next upgrade to hand over.
func serveMetrics(addr string, inherited net.Listener, srv *switchboard.Server, withPprof bool, log *slog.Logger) (net.Listener, func(), error) {
	ln := inherited
	if ln == nil {
		var err error
		if ln, err = listenTCP(addr); err != nil {
			return nil, nil, err
		}
	}
	hs := &http.Server{Handler: metricsHandler(srv, withPprof), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics", "pprof", withPprof)
	return ln, func() { hs.Close() }, nil
}
