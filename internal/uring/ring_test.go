//go:build linux

package uring

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestABISizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"io_uring_sqe", unsafe.Sizeof(SQE{}), 64},
		{"io_uring_cqe", unsafe.Sizeof(CQE{}), 16},
		{"io_uring_params", unsafe.Sizeof(params{}), 120},
		{"io_uring_getevents_arg", unsafe.Sizeof(getEventsArg{}), 24},
		{"io_uring_buf_reg", unsafe.Sizeof(bufReg{}), 40},
		{"io_uring_buf", unsafe.Sizeof(ringBuf{}), 16},
		{"io_uring_probe", unsafe.Sizeof(probeHeader{}), 16},
		{"io_uring_probe_op", unsafe.Sizeof(probeOp{}), 8},
		{"io_uring_rsrc_update", unsafe.Sizeof(rsrcUpdate{}), 16},
		{"__kernel_timespec", unsafe.Sizeof(kernelTimespec{}), kernelTimespecLen},
		{"msghdr", unsafe.Sizeof(msghdr{}), unsafe.Sizeof(unix.Msghdr{})},
		{"iovec", unsafe.Sizeof(iovec{}), unsafe.Sizeof(unix.Iovec{})},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
	if off := unsafe.Offsetof(SQE{}.userData); off != 32 {
		t.Errorf("sqe.user_data at %d, want 32", off)
	}
	if off := unsafe.Offsetof(SQE{}.bufIndex); off != 40 {
		t.Errorf("sqe.buf_group at %d, want 40", off)
	}
}

func TestProbe(t *testing.T) {
	needUring(t)
	p, err := ProbeKernel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe: %s", p)
	for _, q := range required {
		if !p.Supports(q.op) {
			t.Errorf("%s not supported, yet the probe passed", q.name)
		}
	}
	if p.Supports(255) {
		t.Error("opcode 255 reported as supported")
	}
}

// TestFeatureCombinations turns the optional features off in every
// combination: each ring must still do a round trip, and report off what
// was not asked for.
func TestFeatureCombinations(t *testing.T) {
	needUring(t)
	for mask := range 1 << 6 {
		opt := Options{
			Entries:          4,
			NoSingleIssuer:   mask&1 != 0,
			NoDeferTaskrun:   mask&2 != 0,
			NoCoopTaskrun:    mask&4 != 0,
			NoSubmitAll:      mask&8 != 0,
			NoSQArray:        mask&16 != 0,
			NoRegisteredRing: mask&32 != 0,
		}
		if mask&1 == 0 && mask&4 == 0 {
			opt.CQEntries = 64
		}
		t.Run(fmt.Sprintf("%06b", mask), func(t *testing.T) {
			r := newRing(t, opt)
			f := r.Features()
			for _, c := range []struct {
				name      string
				off, have bool
			}{
				{"single-issuer", opt.NoSingleIssuer, f.SingleIssuer},
				{"defer-taskrun", opt.NoDeferTaskrun || opt.NoSingleIssuer, f.DeferTaskrun},
				{"coop-taskrun", opt.NoCoopTaskrun, f.CoopTaskrun},
				{"submit-all", opt.NoSubmitAll, f.SubmitAll},
				{"no-sqarray", opt.NoSQArray, f.NoSQArray},
				{"registered-ring", opt.NoRegisteredRing, f.RegisteredRing},
			} {
				if c.off && c.have {
					t.Errorf("%s is on though turned off", c.name)
				}
			}
			if opt.CQEntries != 0 && f.CQEntries != opt.CQEntries {
				t.Errorf("cq entries %d, want %d", f.CQEntries, opt.CQEntries)
			}
			for i := range uint64(3) {
				s := sqe(t, r)
				s.PrepNop()
				s.SetUserData(0xfeed0000 + i)
				c := reap(t, r, 1, 5*time.Second)
				if c[0].UserData != 0xfeed0000+i || c[0].Res != 0 {
					t.Fatalf("nop completion %+v", c[0])
				}
			}
			if mask == 0 {
				t.Logf("all features asked for: %s", f)
			}
		})
	}
}

func TestQueueFull(t *testing.T) {
	r := newRing(t, Options{Entries: 4})
	n := 0
	for r.NextSQE() != nil {
		n++
		if n > 1024 {
			t.Fatal("NextSQE never reports full")
		}
	}
	if n != int(r.Features().SQEntries) || r.Pending() != n {
		t.Fatalf("took %d SQEs (pending %d), ring has %d", n, r.Pending(), r.Features().SQEntries)
	}
	// The stale entries become nops so the kernel can take them.
	for i := range r.sqes {
		r.sqes[i].PrepNop()
	}
	got := reap(t, r, n, 5*time.Second)
	if len(got) != n || r.Pending() != 0 || r.NextSQE() == nil {
		t.Fatalf("after submit: %d completions, %d pending", len(got), r.Pending())
	}
}

func TestWaitTimesOutWithoutError(t *testing.T) {
	r := newRing(t, Options{})
	if got := quiet(t, r, 10*time.Millisecond); len(got) != 0 {
		t.Fatalf("completions from an idle ring: %+v", got)
	}
	if n, err := r.SubmitAndWait(0, -1); n != 0 || err != nil {
		t.Fatalf("non-blocking reap: %d, %v", n, err)
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	r := newRing(t, Options{})
	ts := sqe(t, r)
	r.PrepTimeout(ts, time.Millisecond, 0)
	ts.SetUserData(1)
	c := reap(t, r, 1, 5*time.Second)
	if c[0].UserData != 1 || !errors.Is(c[0].Err(), unix.ETIME) {
		t.Fatalf("timeout completion %+v", c[0])
	}

	// A read nothing will satisfy, cancelled by its user data.
	e, err := NewEventfd()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := sqe(t, r)
	e.PrepRead(s)
	s.SetUserData(2)
	if got := quiet(t, r, 5*time.Millisecond); len(got) != 0 {
		t.Fatalf("unexpected %+v", got)
	}
	s = sqe(t, r)
	s.PrepCancel(2, false)
	s.SetUserData(3)
	byUD := map[uint64]CQE{}
	for _, c := range reap(t, r, 2, 5*time.Second) {
		byUD[c.UserData] = c
	}
	if !errors.Is(byUD[2].Err(), unix.ECANCELED) || byUD[3].Res != 0 {
		t.Fatalf("cancel: %+v", byUD)
	}
}

func TestLinkTimeout(t *testing.T) {
	r := newRing(t, Options{})
	e, err := NewEventfd()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := sqe(t, r)
	e.PrepRead(s)
	s.SetUserData(1)
	s.SetFlags(SQEIOLink)
	lt := sqe(t, r)
	r.PrepLinkTimeout(lt, 2*time.Millisecond)
	lt.SetUserData(2)
	byUD := map[uint64]CQE{}
	for _, c := range reap(t, r, 2, 5*time.Second) {
		byUD[c.UserData] = c
	}
	if !errors.Is(byUD[1].Err(), unix.ECANCELED) || !errors.Is(byUD[2].Err(), unix.ETIME) {
		t.Fatalf("link timeout: read %+v, timeout %+v", byUD[1], byUD[2])
	}
}

func TestForceUnavailable(t *testing.T) {
	restore := ForceUnavailable("testing the refusal path")
	_, err := New(Options{})
	_, aerr := Available()
	restore()
	for _, e := range []error{err, aerr} {
		if !errors.Is(e, ErrUnavailable) || !strings.Contains(fmt.Sprint(e), "testing the refusal path") {
			t.Fatalf("forced failure gave %v", e)
		}
	}
	t.Setenv(DisableEnv, "by environment")
	if _, err := ProbeKernel(); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "by environment") {
		t.Fatalf("environment hook gave %v", err)
	}
}

// TestPermissionReason checks that the errnos a refused setup gives
// (EPERM from seccomp or the sysctl, ENOSYS from an old kernel) read as
// ErrUnavailable with a reason, and other failures do not.
func TestPermissionReason(t *testing.T) {
	err := setupError(unix.EPERM)
	var ue *UnavailableError
	if !errors.As(err, &ue) || !errors.Is(err, unix.EPERM) || ue.Reason == "" {
		t.Fatalf("EPERM gave %v", err)
	}
	b, _ := os.ReadFile(disabledSysctl)
	t.Logf("kernel.io_uring_disabled=%q; EPERM reads as: %v", strings.TrimSpace(string(b)), err)
	if err := setupError(unix.ENOSYS); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ENOSYS gave %v", err)
	}
	if err := setupError(unix.ENOMEM); errors.Is(err, ErrUnavailable) || !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("ENOMEM gave %v", err)
	}
}

// TestDisabledInChild re-runs the probe in a child process with the
// environment hook, as an engine's refusal test will.
func TestDisabledInChild(t *testing.T) {
	if os.Getenv("URING_CHILD") == "1" {
		_, err := Available()
		fmt.Println(err)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestDisabledInChild$")
	cmd.Env = append(os.Environ(), "URING_CHILD=1", DisableEnv+"=child says no")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "io_uring unavailable: child says no") {
		t.Fatalf("child printed %q", out)
	}
}

func TestNopAllocations(t *testing.T) {
	r := newRing(t, Options{})
	buf := make([]CQE, 4)
	allocs := testing.AllocsPerRun(100, func() {
		r.NextSQE().PrepNop()
		r.SubmitAndWait(1, time.Second)
		if r.Completions(buf) != 1 {
			panic("no completion")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per nop round trip", allocs)
	}
}

func BenchmarkNop(b *testing.B) {
	for _, c := range []struct {
		name string
		opt  Options
	}{
		{"all", Options{}},
		{"no-registered-ring", Options{NoRegisteredRing: true}},
		{"no-defer-taskrun", Options{NoDeferTaskrun: true}},
		{"none", Options{NoSingleIssuer: true, NoCoopTaskrun: true, NoSubmitAll: true, NoSQArray: true, NoRegisteredRing: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			noThreadCheck(b)
			r := newRing(b, c.opt)
			buf := make([]CQE, 4)
			b.ReportAllocs()
			for b.Loop() {
				r.NextSQE().PrepNop()
				r.SubmitAndWait(1, -1)
				if r.Completions(buf) != 1 {
					b.Fatal("no completion")
				}
			}
		})
	}
}

// noThreadCheck turns the tests' thread assertion off for a benchmark,
// whose figure should not include its gettid.
func noThreadCheck(b *testing.B) {
	debugThreadCheck = false
	b.Cleanup(func() { debugThreadCheck = true })
}
