// Package poller is the readiness-notification layer under the reactor: one
// small interface and one backend per system call, in the manner of Redis's
// ae library. Each backend file (select, poll, epoll, kqueue) reads on its
// own; the reactor above knows nothing of which one runs.
//
// Every backend is level-triggered: an event is reported on every Wait for
// as long as the condition holds. Events are hints, never commands: a
// descriptor may have been closed, or its number reused, between Wait and
// the moment its event is handled, so the owner acts only on what the next
// read or write system call tells it.
//
// A Poller is owned by one goroutine (its event loop), except Wake, which
// any goroutine may call.
package poller

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"time"
)

// Event is one ready descriptor. It is 8 bytes so a loop's event buffer of
// a thousand entries stays in a few cache lines per dozen events.
type Event struct {
	// Fd is the ready descriptor.
	Fd int32
	// Readable: a read will not block (it may return EOF or an error).
	Readable bool
	// Writable: a write will not block.
	Writable bool
	// HangUp reports a hang-up or a pending socket error. It is reported
	// whether or not read interest is registered, so the owner must act on
	// it (a read returns the EOF or the error) or it will be reported
	// again on every Wait.
	HangUp bool
}

// Poller watches descriptors for readiness.
type Poller interface {
	// Add registers fd with the given interest. It fails with an error
	// wrapping ErrFdTooLarge when the backend cannot represent fd.
	Add(fd int, read, write bool) error
	// Modify replaces fd's interest. Both false keeps fd registered, so
	// hang-ups are still reported where the backend can.
	Modify(fd int, read, write bool) error
	// Delete forgets fd. Call it before closing fd: select and poll
	// would otherwise report a descriptor number the kernel may already
	// have handed to someone else.
	Delete(fd int) error
	// Wait fills events with ready descriptors and returns how many. A
	// negative timeout waits until an event or a Wake; zero only polls.
	// An interrupted wait (EINTR) returns 0 and a nil error. A Wake ends
	// the wait but produces no event.
	Wait(events []Event, timeout time.Duration) (int, error)
	// Wake makes a concurrent or the next Wait return. It is the only
	// method safe to call from another goroutine.
	Wake() error
	// Close releases the poller's descriptors. Registered descriptors are
	// not closed: they belong to the caller.
	Close() error
	// Name is the backend's name: "select", "poll", "epoll" or "kqueue".
	Name() string
}

// ErrFdTooLarge is returned (wrapped) by Add when a descriptor number is
// beyond what the backend can watch: FD_SETSIZE for select.
var ErrFdTooLarge = errors.New("poller: descriptor number too large for backend")

// backends maps a name to a constructor. Backend files register from init,
// under build tags, so the map lists exactly what this platform can run.
var backends = map[string]func() (Poller, error){}

func register(name string, ctor func() (Poller, error)) { backends[name] = ctor }

// fdCeilings holds the backends that cannot watch every descriptor: a
// descriptor numbered at or above the ceiling is refused by Add.
var fdCeilings = map[string]int{}

// MaxFD returns the descriptor ceiling of backend name, or 0 when it has
// none of its own.
func MaxFD(name string) int { return fdCeilings[name] }

// ErrUnsupported is returned (wrapped) by New for a backend this platform
// lacks. The package stays a leaf, importing nothing of switchboard, so the
// engine above wraps it in its own sentinel.
var ErrUnsupported = errors.New("poller: backend not available")

// New returns a poller of the named backend, or an error wrapping
// ErrUnsupported when this platform lacks it.
func New(name string) (Poller, error) {
	ctor := backends[name]
	if ctor == nil {
		return nil, fmt.Errorf("%w: %q on %s (have %v)", ErrUnsupported, name, runtime.GOOS, Names())
	}
	return ctor()
}

// Names lists the backends this build supports, sorted.
func Names() []string {
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
