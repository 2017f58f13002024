package stream

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"switchboard/internal/engine"
)

// TestAcceptSurvivesEMFILE runs the process out of descriptors while
// clients wait in the backlog: accept must back off and recover, not end.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	cfg := engine.Config{}
	cfg.Normalize()
	s, addr := startGoroutine(t, cfg)
	sa := tcpSockaddr(t, addr)

	// Create the client sockets first: connect needs no new descriptor.
	const clients = 4
	fds := make([]int, clients)
	for i := range fds {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				syscall.Close(fd)
			}
		}
	}()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	tight := old
	tight.Cur = uint64(len(open))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &tight); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	restored := false
	restore := func() {
		if !restored {
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
			restored = true
		}
	}
	defer restore()
	for _, fd := range fds {
		if err := syscall.Connect(fd, sa); err != nil {
			restore()
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.cfg.Stats.AcceptErrors.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	restore()
	if s.cfg.Stats.AcceptErrors.Load() == 0 {
		t.Fatal("accept never hit EMFILE")
	}
	// Every waiting client is served once descriptors are back.
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "client")
		fds[i] = -1
		f.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := f.Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		if _, err := io.ReadFull(f, buf); err != nil {
			t.Fatalf("client %d after EMFILE: %v", i, err)
		}
		f.Close()
	}
}

func tcpSockaddr(t *testing.T, addr string) *syscall.SockaddrInet4 {
	t.Helper()
	ta, err := netResolve(addr)
	if err != nil {
		t.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To4())
	return sa
}
