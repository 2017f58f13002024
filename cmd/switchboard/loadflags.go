package main

import (
	"crypto/tls"
	"time"

	"github.com/spf13/cobra"

	"switchboard/loadgen"
)

// loadFlags are the load-shaping flags bench and compare share.
type loadFlags struct {
	duration       time.Duration
	warmup         time.Duration
	framing        string
	expect         string
	sourceIPs      int
	connectRate    float64
	connectTimeout time.Duration
	drainTimeout   time.Duration
	workers        int
	driver         string
	cpuServer      string
	cpuLoad        string
	loops          int
	jsonPath       string
	tls            clientTLSFlags
	// Set by setupTLS (bench_tls.go).
	tlsClient *tls.Config
	tlsServer []string // serve's TLS flags for the servers the command starts
}

func (f *loadFlags) register(cmd *cobra.Command, duration, warmup time.Duration) {
	fl := cmd.Flags()
	fl.DurationVar(&f.duration, "duration", duration, "how long to measure, after the warm-up")
	fl.DurationVar(&f.warmup, "warmup", warmup, "load run before measuring, left out of every figure")
	fl.StringVar(&f.framing, "framing", "raw", "message framing: raw, line, delim:HEX, fixed:N, len:N[be|le], digits:N, typed:T=N,..., resp")
	fl.IntVar(&f.sourceIPs, "source-ips", 0, "spread connections over source addresses 127.0.0.1-N (loopback servers; passes one address's ~28k ports)")
	fl.Float64Var(&f.connectRate, "connect-rate", loadgen.DefaultConnectRate, "new connections per second at most")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", loadgen.DefaultConnectTimeout, "a connection not established within this fails")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", loadgen.DefaultDrainTimeout, "wait this long for replies in flight when sending stops; later ones are errors")
	fl.IntVar(&f.workers, "workers", 0, "load generator epoll threads (0: one per load CPU)")
	fl.StringVar(&f.driver, "driver", loadgen.DriverAuto, "load generator driver: auto, epoll (Linux) or goroutine")
	fl.StringVar(&f.cpuServer, "cpu-server", "auto", "CPUs for the server this command starts: auto (the first), none, or a list such as 0 or 0-1")
	fl.StringVar(&f.cpuLoad, "cpu-load", "auto", "CPUs for the load generator: auto (the others), none, or a list such as 1 or 2-3")
	fl.IntVar(&f.loops, "loops", 1, "event loops of the server this command starts (reactor models)")
	fl.StringVar(&f.jsonPath, "json", "", "write every figure to FILE as JSON")
	f.tls.register(fl)
}

// validate checks what the flags can be checked for alone.
func (f *loadFlags) validate() error {
	switch {
	case f.duration < 0 || f.warmup < 0:
		return usagef("--duration and --warmup cannot be negative")
	case f.sourceIPs < 0 || f.sourceIPs > loadgen.MaxSourceIPs:
		return usagef("--source-ips must be between 0 and %d", loadgen.MaxSourceIPs)
	case f.connectRate <= 0:
		return usagef("--connect-rate must be positive")
	case f.workers < 0:
		return usagef("--workers cannot be negative")
	case f.loops < 1:
		return usagef("--loops must be at least 1")
	case f.connectTimeout <= 0 || f.drainTimeout <= 0:
		return usagef("--connect-timeout and --drain-timeout must be positive")
	}
	switch f.driver {
	case loadgen.DriverAuto, loadgen.DriverEpoll, loadgen.DriverGoroutine:
	default:
		return usagef("--driver must be auto, epoll or goroutine, not %q", f.driver)
	}
	return nil
}

// config fills the loadgen fields the shared flags set.
func (f *loadFlags) config(cfg *loadgen.Config) {
	cfg.Duration = f.duration
	cfg.Warmup = f.warmup
	cfg.SourceIPs = f.sourceIPs
	cfg.ConnectRate = f.connectRate
	cfg.ConnectTimeout = f.connectTimeout
	cfg.DrainTimeout = f.drainTimeout
	cfg.Workers = f.workers
	cfg.Driver = f.driver
	cfg.TLS = f.tlsClient
}
