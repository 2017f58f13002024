//go:build linux

package uring

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// denyURingSetup installs, on every thread of this process, a seccomp
// filter that fails io_uring_setup with EPERM: what Docker's default
// profile does.
func denyURingSetup() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_IO_URING_SETUP},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}

// TestRefusedBySeccomp runs the probe in a child process whose
// io_uring_setup a seccomp filter refuses, and expects ErrUnavailable
// naming seccomp.
func TestRefusedBySeccomp(t *testing.T) {
	if os.Getenv("URING_SECCOMP_CHILD") == "1" {
		if err := denyURingSetup(); err != nil {
			fmt.Println("SKIP:", err)
			return
		}
		_, err := Available()
		_, nerr := New(Options{})
		fmt.Printf("available: %v\nnew: %v\nunavailable: %v\n", err, nerr, errors.Is(err, ErrUnavailable) && errors.Is(nerr, ErrUnavailable))
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestRefusedBySeccomp$")
	cmd.Env = append(os.Environ(), "URING_SECCOMP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if skip, ok := strings.CutPrefix(string(out), "SKIP: "); ok {
		t.Skipf("cannot install a seccomp filter here: %s", skip)
	}
	t.Logf("child:\n%s", out)
	if !strings.Contains(string(out), "unavailable: true") || !strings.Contains(string(out), "seccomp") {
		t.Fatalf("refusal not reported as ErrUnavailable naming seccomp:\n%s", out)
	}
}
