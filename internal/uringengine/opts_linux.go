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
	// BufInc consumes provided buffers incrementally (IOU_PBUF_RING_INC,
	// Linux 6.12; ignored where the kernel lacks it): receives on every
	// connection fill the head buffer one after another.
	BufInc bool
	// BufSize and BufCount size each loop's provided-buffer ring; 0
	// means the defaults (defaultBufSize, defaultBufCount). They are
	// here to measure the trade between bytes per completion and memory.
	BufSize, BufCount int
}

// bufSize and bufCount are the buffer ring's dimensions after defaults.
func (o Options) bufSize() int  { return cmp.Or(o.BufSize, defaultBufSize) }
func (o Options) bufCount() int { return cmp.Or(o.BufCount, defaultBufCount) }

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
	{"no-submit-all", func(o *Options) { o.Ring.NoSubmitAll = true }},
	{"no-sqarray", func(o *Options) { o.Ring.NoSQArray = true }},
	{"no-registered-ring", func(o *Options) { o.Ring.NoRegisteredRing = true }},
	{"no-bundle", func(o *Options) { o.NoBundle = true }},
	{"no-msg-ring", func(o *Options) { o.NoMsgRing = true }},
	{"buf-inc", func(o *Options) { o.BufInc = true }},
}

// ParseOptions reads a comma-separated list of features to turn off:
// no-single-issuer, no-defer-taskrun, no-coop-taskrun, no-submit-all,
// no-sqarray, no-registered-ring, no-bundle, no-msg-ring; turns
// incremental buffer consumption on with buf-inc; and sizes the
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
