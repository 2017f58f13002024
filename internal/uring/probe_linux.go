//go:build linux

package uring

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// ErrUnavailable is wrapped by every error that means this process cannot
// use io_uring at all, as opposed to a request failing.
var ErrUnavailable = errors.New("io_uring unavailable")

// UnavailableError says why io_uring cannot be used.
type UnavailableError struct {
	Reason string
	Err    error // the underlying errno, if any
}

func (e *UnavailableError) Error() string { return "io_uring unavailable: " + e.Reason }

// Is makes errors.Is(err, ErrUnavailable) hold.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Unwrap gives the errno.
func (e *UnavailableError) Unwrap() error { return e.Err }

// DisableEnv names an environment variable that, when set to a non-empty
// reason, makes New and Available fail with ErrUnavailable and that
// reason: the way to exercise an engine's refusal path, even in a child
// process.
const DisableEnv = "SWITCHBOARD_URING_DISABLE"

var forced atomic.Pointer[string]

// ForceUnavailable makes New and Available fail with ErrUnavailable and
// reason until the returned function is called; a test hook for callers'
// fallback paths.
func ForceUnavailable(reason string) (restore func()) {
	forced.Store(&reason)
	return func() { forced.Store(nil) }
}

func forcedUnavailable() error {
	if r := forced.Load(); r != nil {
		return &UnavailableError{Reason: *r}
	}
	if r := os.Getenv(DisableEnv); r != "" {
		return &UnavailableError{Reason: r + " (" + DisableEnv + ")"}
	}
	return nil
}

const disabledSysctl = "/proc/sys/kernel/io_uring_disabled"

// permReason explains an EPERM from io_uring_setup.
func permReason() string {
	b, err := os.ReadFile(disabledSysctl)
	switch v := strings.TrimSpace(string(b)); {
	case err == nil && v == "2":
		return "disabled by the administrator (kernel.io_uring_disabled=2)"
	case err == nil && v == "1":
		return "restricted to the io_uring group (kernel.io_uring_disabled=1), which this process is not in"
	}
	return "io_uring_setup is not permitted (a seccomp profile, such as Docker's default, forbids it)"
}

// Probe is what the kernel says it supports, beyond the ring itself.
type Probe struct {
	ops      [256]bool
	lastOp   uint8
	Features Features // of a ring created with the zero Options
	// BufRing: provided-buffer rings can be registered (Linux 5.19).
	BufRing bool
	// Multishot: multishot accept and receive (Linux 6.0, the release
	// that also added IORING_OP_SEND_ZC, which is how it is detected).
	Multishot bool
	// SendMsgRing: WakeRing works (IORING_REGISTER_SEND_MSG_RING, 6.13).
	SendMsgRing bool
}

// Supports reports whether the kernel knows opcode op.
func (p *Probe) Supports(op uint8) bool { return p.ops[op] }

// String summarises the probe for a log line.
func (p *Probe) String() string {
	return fmt.Sprintf("%s; last-op=%d bufring=%t multishot=%t send-msg-ring=%t", p.Features, p.lastOp, p.BufRing, p.Multishot, p.SendMsgRing)
}

// required are the opcodes an echo/TCP engine cannot do without.
var required = []struct {
	op   uint8
	name string
}{
	{OpNop, "NOP"}, {OpAccept, "ACCEPT"}, {OpRecv, "RECV"}, {OpSend, "SEND"},
	{OpSendmsg, "SENDMSG"}, {OpShutdown, "SHUTDOWN"}, {OpClose, "CLOSE"},
	{OpRead, "READ"}, {OpTimeout, "TIMEOUT"}, {OpLinkTimeout, "LINK_TIMEOUT"},
	{OpAsyncCancel, "ASYNC_CANCEL"},
}

// ProbeKernel creates a small ring and asks the kernel what it supports.
// It runs on a locked thread of its own, so it can be called from any
// goroutine.
func ProbeKernel() (*Probe, error) {
	if err := forcedUnavailable(); err != nil {
		return nil, err
	}
	return probeKernel()
}

// probeKernel is ProbeKernel without the test hooks, so that the result
// Available caches is always the kernel's.
func probeKernel() (*Probe, error) {
	type result struct {
		p   *Probe
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The ring is single-issuer; keep it on one thread, and let that
		// thread exit afterwards rather than reuse it with the ring's
		// per-thread state.
		runtime.LockOSThread()
		p, err := probe()
		done <- result{p, err}
	}()
	res := <-done
	return res.p, res.err
}

func probe() (*Probe, error) {
	r, err := setupRing(Options{Entries: 8})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	p := &Probe{Features: r.Features()}
	buf := make([]byte, int(unsafe.Sizeof(probeHeader{}))+256*int(unsafe.Sizeof(probeOp{})))
	if _, errno := register(r.fd, registerProbe, unsafe.Pointer(&buf[0]), 256); errno != 0 {
		return nil, &UnavailableError{Reason: "the kernel cannot list its opcodes (IORING_REGISTER_PROBE needs Linux 5.6)", Err: errno}
	}
	hdr := (*probeHeader)(unsafe.Pointer(&buf[0]))
	p.lastOp = hdr.lastOp
	ops := unsafe.Slice((*probeOp)(unsafe.Pointer(&buf[unsafe.Sizeof(probeHeader{})])), int(hdr.opsLen))
	for _, o := range ops {
		p.ops[o.op] = o.flags&probeOpSupported != 0
	}
	var missing []string
	for _, q := range required {
		if !p.ops[q.op] {
			missing = append(missing, q.name)
		}
	}
	if len(missing) > 0 {
		return p, &UnavailableError{Reason: "the kernel lacks opcodes " + strings.Join(missing, ", ")}
	}
	p.Multishot = p.ops[OpSendZC]
	if br, err := r.NewBufRing(0, 1, 64); err == nil {
		p.BufRing = true
		br.Close()
	}
	if WakeRing(r.fd, 1, 0) == nil {
		var c [1]CQE
		for range 3 { // bounded: the message is posted as task work on this thread
			r.SubmitAndWait(1, 10*time.Millisecond)
			if r.Completions(c[:]) == 1 {
				p.SendMsgRing = c[0].UserData == 1
				break
			}
		}
	}
	return p, nil
}

var availableOnce = sync.OnceValues(probeKernel)

// Available reports whether an engine can run here: nil, or an error
// wrapping ErrUnavailable that says why (disabled, forbidden, too old,
// or missing buffer rings or multishot). The kernel is asked once; the
// test hooks are consulted on every call.
func Available() (*Probe, error) {
	if err := forcedUnavailable(); err != nil {
		return nil, err
	}
	p, err := availableOnce()
	if err != nil {
		return p, err
	}
	switch {
	case !p.BufRing:
		return p, &UnavailableError{Reason: "the kernel has no provided-buffer rings (Linux 5.19 or later needed)"}
	case !p.Multishot:
		return p, &UnavailableError{Reason: "the kernel has no multishot receive (Linux 6.0 or later needed)"}
	}
	return p, nil
}
