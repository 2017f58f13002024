package switchboard

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"switchboard/internal/engine"
	"switchboard/internal/stream"
)

// Model names.
const (
	ModelAuto      = "auto"
	ModelBlocking  = "blocking"
	ModelGoroutine = "goroutine"
	ModelSelect    = "select"
	ModelPoll      = "poll"
	ModelEpoll     = "epoll"
	ModelKqueue    = "kqueue"
	ModelUring     = "uring"
)

var errUnknownModel = errors.New("switchboard: unknown model")

// modelOrder is the canonical listing order, simplest design first.
var modelOrder = []string{ModelBlocking, ModelGoroutine, ModelSelect, ModelPoll, ModelEpoll, ModelKqueue, ModelUring}

// ModelInfo says what an I/O model is, for code that must treat models
// differently (a CLI checking flags, a benchmark planning which cells a
// model can run) without a switch on model names.
type ModelInfo struct {
	Name string
	// EventLoop: the model runs its own event loops, so Loops applies and
	// ReusePort opens one listening socket per loop. The other models
	// multiplex on Go's runtime.
	EventLoop bool
	// Iterative: one connection at a time per listener; the others wait in
	// the kernel's backlog (the tutorials' first server).
	Iterative bool
	// MaxFD: descriptors numbered at or above it cannot be served (select's
	// FD_SETSIZE); 0 means the model adds no ceiling of its own.
	MaxFD int
	// TLS: the model runs the TLS record layer (WithTLS). A model without
	// it refuses a TLS configuration at NewServer with ErrUnsupported.
	TLS bool
}

type registered struct {
	info ModelInfo
	ctor engine.Constructor
	// check, if set, says whether this process can run the model at all
	// (io_uring may be compiled in and yet forbidden); NewServer asks it,
	// so a model that cannot run fails before anything listens.
	check func() error
}

var (
	modelsMu sync.RWMutex
	models   = map[string]registered{}
)

// registerModel makes an engine available under info.Name. Engines register
// from init functions in build-tagged files, so a build only lists the
// models its platform can run.
func registerModel(info ModelInfo, ctor engine.Constructor) {
	registerChecked(info, ctor, nil)
}

// registerChecked is registerModel for a model whose availability is
// only known at run time; check returns an error wrapping ErrUnsupported
// that says why it cannot run.
func registerChecked(info ModelInfo, ctor engine.Constructor, check func() error) {
	modelsMu.Lock()
	defer modelsMu.Unlock()
	models[info.Name] = registered{info, ctor, check}
}

// CheckModel reports whether this process can run the model now: nil, or
// an error wrapping ErrUnsupported that says why not in one line (for
// "uring": io_uring disabled by sysctl, forbidden by seccomp, or a kernel
// too old). A name LookupModel rejects is rejected the same way.
func CheckModel(name string) error {
	info, err := LookupModel(name)
	if err != nil {
		return err
	}
	modelsMu.RLock()
	check := models[info.Name].check
	modelsMu.RUnlock()
	if check == nil {
		return nil
	}
	return check()
}

func init() {
	registerModel(ModelInfo{Name: ModelBlocking, Iterative: true, TLS: true}, stream.NewBlocking)
	registerModel(ModelInfo{Name: ModelGoroutine, TLS: true}, stream.NewGoroutine)
}

// Models lists the models this build can run, simplest first. "auto" is not
// listed: it names one of these.
func Models() []string {
	modelsMu.RLock()
	defer modelsMu.RUnlock()
	var out []string
	for _, m := range modelOrder {
		if _, ok := models[m]; ok {
			out = append(out, m)
		}
	}
	return out
}

// ResolveModel maps "auto" (or "") to the platform's best model: epoll on
// Linux, kqueue on BSD and macOS, goroutine elsewhere. Other names are
// checked against Models.
func ResolveModel(name string) (string, error) {
	info, err := LookupModel(name)
	return info.Name, err
}

// LookupModel returns what model name is, resolving "auto" as ResolveModel
// does. A model this build cannot run is an error wrapping ErrUnsupported.
func LookupModel(name string) (ModelInfo, error) {
	modelsMu.RLock()
	defer modelsMu.RUnlock()
	if name == "" || name == ModelAuto {
		for _, m := range []string{ModelEpoll, ModelKqueue, ModelGoroutine} {
			if r, ok := models[m]; ok {
				return r.info, nil
			}
		}
	}
	r, ok := models[name]
	if !ok {
		if slices.Contains(modelOrder, name) {
			return ModelInfo{}, fmt.Errorf("%w: model %q on %s", ErrUnsupported, name, runtime.GOOS)
		}
		return ModelInfo{}, fmt.Errorf("%w %q (want auto or one of %v)", errUnknownModel, name, modelOrder)
	}
	return r.info, nil
}

// lookupCtor returns the constructor of a model already resolved.
func lookupCtor(name string) engine.Constructor {
	modelsMu.RLock()
	defer modelsMu.RUnlock()
	return models[name].ctor
}

// tlsModels lists the models that run WithTLS.
func tlsModels() []string {
	var out []string
	for _, m := range Models() {
		if info, _ := LookupModel(m); info.TLS {
			out = append(out, m)
		}
	}
	return out
}
