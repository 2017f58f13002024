package uringengine

import (
	"cmp"
	"fmt"
	"os"
	"strconv"
	"strings"

	"switchboard/internal/uring"
)

// OptionsEnv names the environment variable that turns io_uring features
// off, for measuring what each is worth: a comma-separated list of the
// names ParseOptions takes. It is read by New, so it applies to `serve`
// and to `bench`/`compare` runs of the uring model alike.
const OptionsEnv = "SWITCHBOARD_URING_OPTS"

// Options are the engine's tunables beyond engine.Config: the ring's
// setup features (uring.Options) and the engine's own choices.
type Options struct {
	Ring uring.Options
	// NoBundle receives into one provided buffer per completion even
	// where the kernel can fill several (IORING_RECVSEND_BUNDLE).
	NoBundle bool
	// NoMsgRing wakes loops through an eventfd read armed in the ring
	// instead of MSG_RING (uring.WakeRing).
	NoMsgRing bool
	// NoBufInc gives every receive whole buffers of its own instead of
	// consuming them incrementally (IOU_PBUF_RING_INC, Linux 6.12, used
	// where the kernel has it): incrementally, receives on every
	// connection fill the head buffer one after another.
	NoBufInc bool
	// BufSize and BufCount size each loop's provided-buffer ring; 0
	// means the defaults, which depend on whether the ring is
	// incremental (see bufDims). They are here to measure the trade
	// between bytes per completion and memory.
	BufSize, BufCount int
}

// bufDims is the buffer ring's size and count after defaults: 256
// buffers of 64 KiB when consumed incrementally, so a 16 KiB read lands
// in one piece and small messages from many connections pack into one
// buffer; 4096 of 4 KiB otherwise, since each receive then takes a whole
// buffer and 1000 connections can each complete one in the same wait.
// Either way the ring is 16 MiB per loop.
func (o Options) bufDims(inc bool) (size, count int) {
	if inc {
		return cmp.Or(o.BufSize, incBufSize), cmp.Or(o.BufCount, incBufCount)
	}
	return cmp.Or(o.BufSize, defaultBufSize), cmp.Or(o.BufCount, defaultBufCount)
}

// sizeOptions are the options that take a number, as name=N.
var sizeOptions = []struct {
	name     string
	min, max int
	pow2     bool
	set      func(*Options, int)
}{
	{"buf-size", 64, 1 << 20, false, func(o *Options, n int) { o.BufSize = n }},
	{"buf-count", 1, 1 << 15, true, func(o *Options, n int) { o.BufCount = n }},
}

var optionNames = []struct {
	name string
	set  func(*Options)
}{
	{"no-single-issuer", func(o *Options) { o.Ring.NoSingleIssuer = true }},
	{"no-defer-taskrun", func(o *Options) { o.Ring.NoDeferTaskrun = true }},
	{"defer-taskrun", func(o *Options) { o.Ring.NoDeferTaskrun = false }},
	{"no-coop-taskrun", func(o *Options) { o.Ring.NoCoopTaskrun = true }},
	{"no-taskrun-flag", func(o *Options) { o.Ring.NoTaskrunFlag = true }},
	{"no-submit-all", func(o *Options) { o.Ring.NoSubmitAll = true }},
	{"no-sqarray", func(o *Options) { o.Ring.NoSQArray = true }},
	{"no-registered-ring", func(o *Options) { o.Ring.NoRegisteredRing = true }},
	{"no-bundle", func(o *Options) { o.NoBundle = true }},
	{"no-msg-ring", func(o *Options) { o.NoMsgRing = true }},
	{"no-buf-inc", func(o *Options) { o.NoBufInc = true }},
}

// ParseOptions reads a comma-separated list of features to turn off:
// no-single-issuer, no-defer-taskrun, no-coop-taskrun, no-taskrun-flag, no-submit-all,
// no-sqarray, no-registered-ring, no-bundle, no-msg-ring, no-buf-inc; and sizes the
// buffer ring with buf-size=BYTES and buf-count=N (a power of two). Every feature
// is on by default where the kernel has it; "defer-taskrun" is accepted
// (it names the default) so that scripts written while DEFER_TASKRUN was
// opt-in keep working. An unknown name is an error naming the valid ones.
func ParseOptions(s string) (Options, error) {
	var o Options
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if name, val, ok := strings.Cut(f, "="); ok {
			if err := setSize(&o, name, val); err != nil {
				return o, err
			}
			continue
		}
		found := false
		for _, n := range optionNames {
			if n.name == f {
				n.set(&o)
				found = true
			}
		}
		if !found {
			names := make([]string, len(optionNames))
			for i, n := range optionNames {
				names[i] = n.name
			}
			for _, n := range sizeOptions {
				names = append(names, n.name+"=N")
			}
			return o, fmt.Errorf("%s: unknown option %q (want a comma-separated list of %s)", OptionsEnv, f, strings.Join(names, ", "))
		}
	}
	return o, nil
}

// setSize applies one name=N option.
func setSize(o *Options, name, val string) error {
	for _, n := range sizeOptions {
		if n.name != name {
			continue
		}
		v, err := strconv.Atoi(val)
		if err != nil || v < n.min || v > n.max || (n.pow2 && v&(v-1) != 0) {
			kind := "a number"
			if n.pow2 {
				kind = "a power of two"
			}
			return fmt.Errorf("%s: %s=%q: want %s in [%d, %d]", OptionsEnv, name, val, kind, n.min, n.max)
		}
		n.set(o, v)
		return nil
	}
	return fmt.Errorf("%s: unknown option %q", OptionsEnv, name+"="+val)
}

func optionsFromEnv() (Options, error) { return ParseOptions(os.Getenv(OptionsEnv)) }
