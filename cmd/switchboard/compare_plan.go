package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"switchboard"
	"switchboard/framing"
	"switchboard/loadgen"
)

// cell is one load shape. Rate, when set, is the total messages per
// second offered on a fixed schedule (compare --rate); 0 is closed loop,
// which is also what reports written before --rate existed hold.
type cell struct {
	Conns    int     `json:"conns"`
	Size     int     `json:"size"`
	Pipeline int     `json:"pipeline"`
	HoldIdle int     `json:"hold_idle"`
	Rate     float64 `json:"rate,omitempty"`
}

func (c cell) String() string {
	s := fmt.Sprintf("%dx%dx%d", c.Conns, c.Size, c.Pipeline)
	if c.HoldIdle > 0 {
		s += fmt.Sprintf("+%didle", c.HoldIdle)
	}
	if c.Rate > 0 {
		s += "@" + strconv.FormatFloat(c.Rate, 'f', -1, 64)
	}
	return s
}

func (c cell) base() cell { c.HoldIdle = 0; return c }

// fdHeadroom is how many descriptors below a model's ceiling (select's
// FD_SETSIZE) the server process keeps for its own: stdio, the listener, the
// poller's wake-up pipe.
const fdHeadroom = 24

// capsOf returns what the model behind t can do; peers are not models and
// have no limits of that kind.
func capsOf(t target) switchboard.ModelInfo {
	if t.Peer {
		return switchboard.ModelInfo{Name: t.Name}
	}
	info, _ := switchboard.LookupModel(t.Name)
	return info
}

// maxConnsOf is how many connections t is given, 0 for no limit.
func maxConnsOf(t target) int {
	if m := capsOf(t).MaxFD; m > 0 {
		return m - fdHeadroom
	}
	return 0
}

// skipReason says why target cannot run c, or "".
func (cmp *comparer) skipReason(t target, c cell) string {
	caps := capsOf(t)
	switch max := maxConnsOf(t); {
	case t.Peer && cmp.codec.String() != "raw":
		return "the peers echo raw bytes only; skipped with --framing " + cmp.codec.String()
	case caps.Iterative && (c.Conns > 1 || c.HoldIdle > 0):
		return "serves one connection at a time (the seeds' first server); only cells of 1 connection and no idle ones"
	case max > 0 && c.Conns+c.HoldIdle > max:
		return fmt.Sprintf("%s cannot watch descriptors >= %d; skipped cells of more than %d connections", t.Name, caps.MaxFD, max)
	}
	return ""
}

// holdIdleFor lists the idle counts held for t.
func (cmp *comparer) holdIdleFor(t target) []int {
	if !cmp.f.idleScaling {
		return cmp.holdIdle
	}
	if capsOf(t).Iterative {
		return []int{0}
	}
	if max := maxConnsOf(t); max > 0 {
		// The seeds' claim within what select can watch: 0, 500, 900.
		return []int{0, max / 2, max * 9 / 10}
	}
	return []int{0, 1000, 5000, 10000}
}

// allHoldIdle is the union of every target's idle counts, in order.
func (cmp *comparer) allHoldIdle() []int {
	var ks []int
	for _, t := range cmp.targets {
		for _, k := range cmp.holdIdleFor(t) {
			if !slices.Contains(ks, k) {
				ks = append(ks, k)
			}
		}
	}
	slices.Sort(ks)
	return ks
}

func newComparer(cmd *cobra.Command, f *compareFlags) (*comparer, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	fl := cmd.Flags()
	if f.repeat < 1 {
		return nil, usagef("--repeat must be at least 1")
	}
	if f.idle < 0 {
		return nil, usagef("--idle cannot be negative")
	}
	if f.duration <= 0 {
		return nil, usagef("--duration must be positive")
	}
	if f.idleScaling && fl.Changed("hold-idle") {
		return nil, usagef("--idle-scaling sets the idle counts itself; drop --hold-idle")
	}
	if f.plot != "" && !strings.HasSuffix(strings.ToLower(f.plot), ".svg") {
		return nil, usagef("--plot writes SVG: give a FILE.svg")
	}
	cmp := &comparer{f: f, stderr: cmd.ErrOrStderr()}

	// Servers.
	names := switchboard.Models()
	if f.models != "all" {
		names = nil
		for m := range strings.SplitSeq(f.models, ",") {
			m = strings.TrimSpace(m)
			r, err := switchboard.ResolveModel(m)
			if err != nil {
				return nil, usagef("--models: %v", err)
			}
			if !slices.Contains(names, r) {
				names = append(names, r)
			}
		}
	}
	for _, m := range names {
		cmp.targets = append(cmp.targets, target{Name: m})
	}

	// Cells.
	var err error
	if f.peers != "" && f.peers != "all" {
		for p := range strings.SplitSeq(f.peers, ",") {
			if !slices.Contains(peerNames(), strings.TrimSpace(p)) {
				return nil, usagef("--peers: unknown peer %q (want all or some of %s)", p, strings.Join(peerNames(), ","))
			}
		}
	}
	if cmp.holdIdle, err = parseInts(f.holdIdle, "--hold-idle", 0); err != nil {
		return nil, err
	}
	var maxSize int64
	if f.cells == "none" {
		if f.idle == 0 {
			return nil, usagef("--cells none leaves nothing to run without --idle")
		}
	} else if f.cells != "" {
		if fl.Changed("conns") || fl.Changed("size") || fl.Changed("pipeline") {
			return nil, usagef("--cells replaces --conns, --size and --pipeline; give one or the other")
		}
		for spec := range strings.SplitSeq(f.cells, ",") {
			parts := strings.Split(strings.TrimSpace(spec), "x")
			if len(parts) != 3 {
				return nil, usagef("--cells: %q is not CONNSxSIZExPIPELINE, e.g. 100x64x1", spec)
			}
			c, err1 := strconv.Atoi(parts[0])
			s, err2 := parseSize(parts[1])
			p, err3 := strconv.Atoi(parts[2])
			if err1 != nil || err2 != nil || err3 != nil || c < 1 || s < 1 || p < 1 {
				return nil, usagef("--cells: %q is not CONNSxSIZExPIPELINE with positive numbers", spec)
			}
			cmp.cells = append(cmp.cells, cell{Conns: c, Size: int(s), Pipeline: p})
			maxSize = max(maxSize, s)
		}
	} else {
		if f.idleScaling && !fl.Changed("conns") && !fl.Changed("size") && !fl.Changed("pipeline") {
			f.conns, f.sizes, f.pipelines = "100", "64", "1"
		}
		conns, err := parseInts(f.conns, "--conns", 1)
		if err != nil {
			return nil, err
		}
		pipes, err := parseInts(f.pipelines, "--pipeline", 1)
		if err != nil {
			return nil, err
		}
		var sizes []int
		for s := range strings.SplitSeq(f.sizes, ",") {
			n, err := parseSize(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return nil, usagef("--size: bad size %q", s)
			}
			sizes = append(sizes, int(n))
			maxSize = max(maxSize, n)
		}
		for _, s := range sizes {
			for _, p := range pipes {
				for _, c := range conns {
					cmp.cells = append(cmp.cells, cell{Conns: c, Size: s, Pipeline: p})
				}
			}
		}
	}
	if fl.Changed("rate") && strings.TrimSpace(f.rate) == "" {
		return nil, usagef("--rate: give a rate, or leave --rate out for the closed loop")
	}
	if f.rate != "" {
		if f.cells == "none" {
			return nil, usagef("--rate needs cells to offer it to; --cells none runs only the idle-memory measurement")
		}
		if cmp.rates, err = parseCompareRates(f.rate); err != nil {
			return nil, err
		}
		cmp.cells = withRates(cmp.cells, cmp.rates)
		for _, c := range cmp.cells {
			// Fewer messages than connections in the window leaves some
			// connections silent: the cell is not the one asked for.
			if c.Rate*f.duration.Seconds() < float64(c.Conns) {
				return nil, usagef("--rate %s over %d connections sends less than one message per connection in --duration %v: raise --rate or --duration",
					strconv.FormatFloat(c.Rate, 'f', -1, 64), c.Conns, f.duration)
			}
		}
	}
	cmp.maxFrame = max(maxSize, framing.DefaultMaxFrame)
	if cmp.codec, err = framing.Parse(f.framing, int(cmp.maxFrame)); err != nil {
		return nil, usagef("--framing: %v", err)
	}
	for _, c := range cmp.cells {
		cfg := cmp.config(c)
		cfg.Addr = "127.0.0.1:1"
		if err := loadgen.Check(cfg); err != nil {
			return nil, usageError{fmt.Errorf("cell %s: %w", c, err)}
		}
	}
	plan, notes, err := planCPUs(f.cpuServer, f.cpuLoad, true)
	if err != nil {
		return nil, usageError{err}
	}
	cmp.plan = plan
	for _, n := range notes {
		fmt.Fprintln(cmp.stderr, "switchboard compare:", n)
	}
	return cmp, nil
}

// parseInts parses a comma-separated list of integers of at least lo.
func parseInts(s, flag string, lo int) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < lo {
			return nil, usagef("%s: %q is not a number of at least %d", flag, part, lo)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// config is the loadgen configuration of a cell, without the address.
func (cmp *comparer) config(c cell) loadgen.Config {
	var cfg loadgen.Config
	cmp.f.config(&cfg)
	cfg.Conns, cfg.Size, cfg.Pipeline, cfg.Idle, cfg.Rate = c.Conns, c.Size, c.Pipeline, c.HoldIdle, c.Rate
	cfg.Codec = cmp.codec
	cfg.Expect = loadgen.ExpectEcho
	return cfg
}

// job is one run of the schedule: target t on cell c, in repeat number
// repeat (from 0); idle jobs measure memory with c.HoldIdle connections.
type job struct {
	t      target
	c      cell
	repeat int
	idle   bool
}

// schedule lists every (repeat, cell, target) to run, alternating the
// targets, then each repeat's idle-memory cell. What a target cannot run
// is skipped here, with the reason.
func (cmp *comparer) schedule() []job {
	var jobs []job
	for r := 0; r < cmp.f.repeat; r++ {
		for _, base := range cmp.cells {
			for _, k := range cmp.allHoldIdle() {
				c := base
				c.HoldIdle = k
				// Each repeat starts with a different server, so none is
				// always first after a cell change.
				for i := range cmp.targets {
					t := cmp.targets[(i+r)%len(cmp.targets)]
					if !slices.Contains(cmp.holdIdleFor(t), k) {
						continue
					}
					if why := cmp.skipReason(t, c); why != "" {
						cmp.skip("%s %s: %s", t.Name, c, why)
						continue
					}
					jobs = append(jobs, job{t: t, c: c, repeat: r})
				}
			}
		}
		if cmp.f.idle > 0 {
			c := cell{HoldIdle: cmp.f.idle}
			for i := range cmp.targets {
				t := cmp.targets[(i+r)%len(cmp.targets)]
				switch max := maxConnsOf(t); {
				case capsOf(t).Iterative:
					cmp.skip("%s idle memory: accepts one connection at a time; the others wait in the kernel's backlog", t.Name)
					continue
				case max > 0 && cmp.f.idle > max:
					cmp.skip("%s idle memory: %d connections exceed what it can watch (descriptors below %d)", t.Name, cmp.f.idle, capsOf(t).MaxFD)
					continue
				}
				jobs = append(jobs, job{t: t, c: c, repeat: r, idle: true})
			}
		}
	}
	return jobs
}
