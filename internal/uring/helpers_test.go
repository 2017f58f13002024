//go:build linux

package uring

import (
	"errors"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// needUring skips the test where this process cannot use io_uring (a
// seccomp profile, the sysctl, an old kernel): that is the refusal path,
// tested separately, not a failure of the package.
func needUring(t testing.TB) {
	t.Helper()
	if _, err := Available(); errors.Is(err, ErrUnavailable) {
		t.Skipf("io_uring is not usable here: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// newRing locks the test's goroutine to its thread (the ring is single
// issuer) and creates a ring closed at cleanup on that same thread.
func newRing(t testing.TB, opt Options) *Ring {
	t.Helper()
	needUring(t)
	runtime.LockOSThread()
	r, err := New(opt)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		runtime.UnlockOSThread()
	})
	return r
}

// reap submits and collects completions until it has n or the deadline
// passes; the loop is bounded by both.
func reap(t testing.TB, r *Ring, n int, within time.Duration) []CQE {
	t.Helper()
	var got []CQE
	buf := make([]CQE, 16)
	deadline := time.Now().Add(within)
	for len(got) < n && time.Now().Before(deadline) {
		if _, err := r.SubmitAndWait(1, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		k := r.Completions(buf)
		got = append(got, buf[:k]...)
	}
	if len(got) < n {
		t.Fatalf("got %d completions within %v, want %d: %+v", len(got), within, n, got)
	}
	return got
}

// quiet submits and reports completions that arrive within d, expecting
// none in the usual caller.
func quiet(t testing.TB, r *Ring, d time.Duration) []CQE {
	t.Helper()
	if _, err := r.SubmitAndWait(1, d); err != nil {
		t.Fatal(err)
	}
	buf := make([]CQE, 16)
	return buf[:r.Completions(buf)]
}

func sqe(t testing.TB, r *Ring) *SQE {
	t.Helper()
	s := r.NextSQE()
	if s == nil {
		t.Fatal("submission queue full")
	}
	return s
}

// listener returns a raw blocking TCP listener on loopback and its
// address.
func listener(t testing.TB) (int, string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 64); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// tcpPair is a server-side raw descriptor connected to a client net.Conn.
func tcpPair(t testing.TB) (int, net.Conn) {
	t.Helper()
	ln, addr := listener(t)
	c := dial(t, addr)
	fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, c
}
