package reactor

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/engine"
)

// TestOutOfDescriptors runs the server out of descriptors: each pending
// connection is shed with the reserved spare descriptor (counted as an
// accept error and a rejection), the loop does not spin on EMFILE, and
// service resumes once descriptors are available again.
func TestOutOfDescriptors(t *testing.T) {
	for _, model := range backends(t, "epoll", "uring") {
		t.Run(model, func(t *testing.T) { testOutOfDescriptors(t, model) })
	}
}

func testOutOfDescriptors(t *testing.T, model string) {
	const clients = 5
	var socks []int
	for range clients {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, fd)
	}
	defer func() {
		for _, fd := range socks {
			unix.Close(fd)
		}
	}()

	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	probe, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(probe)
	// The limit is lowered before the server starts, leaving it room to
	// set up, and the rest of the table is then filled: io_uring takes
	// an accept's descriptor limit when the accept is prepared, so a
	// limit lowered under an armed multishot accept would not bind it.
	low := saved
	low.Cur = uint64(probe + 64)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var fillers []int
	restored := false
	restore := func() {
		if !restored {
			for _, fd := range fillers {
				unix.Close(fd)
			}
			unix.Setrlimit(unix.RLIMIT_NOFILE, &saved)
			restored = true
		}
	}
	defer restore()
	ts := startServer(t, model, engine.Config{}, echoHandler{})
	ta, _ := net.ResolveTCPAddr("tcp", ts.addr)
	to := &unix.SockaddrInet4{Port: ta.Port, Addr: [4]byte{127, 0, 0, 1}}
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fillers = append(fillers, fd)
	}

	for _, fd := range socks {
		if err := unix.Connect(fd, to); err != nil {
			restore()
			t.Fatalf("connect: %v", err)
		}
	}
	waitFor(t, 5*time.Second, "every pending connection shed", func() bool {
		return ts.stats.Rejected.Load() == clients
	})
	if n := ts.stats.AcceptErrors.Load(); n < clients {
		t.Fatalf("AcceptErrors = %d, want >= %d", n, clients)
	}
	for _, fd := range socks {
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
		if n, err := unix.Read(fd, make([]byte, 1)); n > 0 || (err != nil && err != unix.ECONNRESET) {
			t.Fatalf("a shed connection read %d, %v", n, err)
		}
	}
	// Still out of descriptors, nothing pending: the loop must sleep.
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	time.Sleep(300 * time.Millisecond)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if used := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()); used > 100*time.Millisecond {
		t.Fatalf("%v of CPU in 300ms while out of descriptors: the loop spins", used)
	}

	restore()
	c := dial(t, ts.addr)
	c.Write([]byte("back"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "back" {
		t.Fatalf("after descriptors came back: %q %v", got, err)
	}
}
