package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair with nothing but x/sys/unix.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skip("no pseudo-terminals here: ", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		t.Skip("unlockpt: ", err)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(mfd)
		t.Skip("ptsname: ", err)
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Skip("opening the terminal: ", err)
	}
	return master, slave
}

// On a terminal send streams without being asked: a line typed reaches
// the server and its echo is printed while the session is still open;
// Ctrl-D ends it.
func TestSendTerminalStreams(t *testing.T) {
	addr, _ := serveService(t, "echo", "line")
	master, slave := openPTY(t)
	defer master.Close()
	var out, errOut syncBuffer
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), cliChildEnv+"="+strings.Join([]string{"send", "--connect", addr, "--framing", "line", "--timeout", "2s"}, "\x1f"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The terminal echoes what is typed to the master: drain it.
	go func() {
		var b [256]byte
		for {
			if _, err := master.Read(b[:]); err != nil {
				return
			}
		}
	}()
	master.Write([]byte("first line\n"))
	waitFor(t, "send's output", &out, "first line\n")
	master.Write([]byte("second\n"))
	waitFor(t, "send's output", &out, "second\n")
	master.Write([]byte{4}) // Ctrl-D: end of input
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("send: %v, stderr %q", err, errOut.String())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatal("send did not end after Ctrl-D")
	}
	if got := out.String(); got != "first line\nsecond\n" {
		t.Fatalf("stdout %q", got)
	}
}
