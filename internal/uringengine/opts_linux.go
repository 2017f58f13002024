package uringengine

import (
	"fmt"
	"os"
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
}

// ParseOptions reads a comma-separated list of features to turn off:
// no-single-issuer, no-defer-taskrun, no-coop-taskrun, no-submit-all,
// no-sqarray, no-registered-ring, no-bundle, no-msg-ring; or on:
// defer-taskrun. An unknown name is an error naming the valid ones.
//
// DEFER_TASKRUN is off unless "defer-taskrun" is given: with it on, a
// connection trickling bytes was seen to stop being served until a timer
// woke the loop (the conformance suite's frame-timeout case failed about
// one run in three), a missed wake-up not yet explained. It halves the
// system calls per message, so it stays measurable.
func ParseOptions(s string) (Options, error) {
	o := Options{Ring: uring.Options{NoDeferTaskrun: true}}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
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
			return o, fmt.Errorf("%s: unknown option %q (want a comma-separated list of %s)", OptionsEnv, f, strings.Join(names, ", "))
		}
	}
	return o, nil
}

func optionsFromEnv() (Options, error) { return ParseOptions(os.Getenv(OptionsEnv)) }
