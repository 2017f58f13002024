package main

import (
	"strings"

	"github.com/spf13/cobra"

	"switchboard"
	"switchboard/framing"
	"switchboard/internal/netaddr"
	"switchboard/loadgen"
)

// benchSetup is a bench's validated configuration.
type benchSetup struct {
	cfg      loadgen.Config
	maxFrame int64
	rates    []float64 // one, or the steps of an SLO search
	slo      *objective
}

func (f *benchFlags) setup(cmd *cobra.Command) (*benchSetup, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	cleanup, err := f.setupTLS(f.connect == "")
	if err != nil {
		return nil, err
	}
	f.cleanup = cleanup
	fl := cmd.Flags()
	if f.connect != "" && fl.Changed("model") {
		return nil, usagef("--connect and --model exclude each other: bench either loads a server or starts one")
	}
	if f.connect == "" && fl.Changed("server-pid") {
		return nil, usagef("--server-pid is for a server given with --connect; bench knows its own server")
	}
	if f.connect != "" && (fl.Changed("loops") || fl.Changed("cpu-server")) {
		return nil, usagef("--loops and --cpu-server are for the server bench starts, not one given with --connect")
	}
	if f.connect != "" {
		if _, _, err := netaddr.Split(f.connect); err != nil {
			return nil, usagef("--connect: %v", err)
		}
	} else if _, err := switchboard.ResolveModel(f.model); err != nil {
		return nil, usagef("--model: %v", err)
	}
	if f.conns < 0 || f.idle < 0 || f.conns+f.idle == 0 {
		return nil, usagef("--conns and --idle cannot be negative, nor both 0")
	}
	if f.pipeline < 1 {
		return nil, usagef("--pipeline must be at least 1")
	}
	if f.requests < 0 || f.serverPID < 0 {
		return nil, usagef("--requests and --server-pid cannot be negative")
	}
	rates, err := parseRates(f.rate)
	if err != nil {
		return nil, usageError{err}
	}
	size := int64(f.size)
	if size < 1 || size > 1<<30 {
		return nil, usagef("--size must be between 1 B and 1 GiB")
	}
	s := &benchSetup{maxFrame: max(size, framing.DefaultMaxFrame), rates: rates}
	if s.slo, err = f.opFlags.objective(len(rates)); err != nil {
		return nil, err
	}
	codec, err := framing.Parse(f.framing, int(s.maxFrame))
	if err != nil {
		return nil, usagef("--framing: %v", err)
	}
	if f.payload != "" {
		s.maxFrame = max(int64(len(f.payload)), framing.DefaultMaxFrame)
	}
	cfg := &s.cfg
	f.config(cfg)
	if fl.Changed("requests") && !fl.Changed("duration") {
		cfg.Duration = 0 // the request count alone ends the run
	}
	if cfg.Duration == 0 && f.requests == 0 {
		return nil, usagef("--duration 0 needs --requests")
	}
	cfg.Conns, cfg.Idle, cfg.Size, cfg.Pipeline = f.conns, f.idle, int(size), f.pipeline
	if !fl.Changed("size") && strings.HasPrefix(f.framing, "fixed:") {
		cfg.Size = 0 // the fixed size, whatever --size's default
	}
	if f.payload != "" {
		if cfg.Template, err = loadgen.ParseTemplate(f.payload); err != nil {
			return nil, usagef("--payload: %v", err)
		}
	}
	if err := f.opFlags.configOp(cfg, int(s.maxFrame)); err != nil {
		return nil, err
	}
	cfg.Rate, cfg.Requests = rates[0], f.requests
	cfg.Codec = codec
	cfg.Expect = loadgen.Expect(f.expect)
	cfg.ServerPID = f.serverPID
	if f.expect != "echo" && f.expect != "any" {
		return nil, usagef("--expect must be echo or any, not %q", f.expect)
	}
	// Let loadgen judge the rest of the combination (framing and size,
	// expect and framing...) before anything is started.
	probe := *cfg
	probe.Addr = "127.0.0.1:1"
	if f.connect != "" {
		probe.Addr = f.connect
	}
	if err := loadgen.Check(probe); err != nil {
		return nil, usageError{err}
	}
	return s, nil
}
