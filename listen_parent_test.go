package switchboard_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"switchboard"
)

// TestListenersFromParent: a parent that cannot know its child's pid
// hands a socket over with LISTEN_PID set to its own pid and
// InheritFromParentEnv; the child takes it. Without the variable, the same
// LISTEN_PID is someone else's and the child must leave the descriptor
// alone.
func TestListenersFromParent(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no descriptor inheritance convention on windows")
	}
	for _, withFlag := range []bool{true, false} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestSocketActivation$")
		cmd.Env = append(os.Environ(), "SB_ACTIVATION_CHILD=1",
			"LISTEN_PID="+strconv.Itoa(os.Getpid()), "LISTEN_FDS=1")
		if withFlag {
			cmd.Env = append(cmd.Env, switchboard.InheritFromParentEnv+"=1")
		}
		cmd.ExtraFiles = []*os.File{f}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if withFlag {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write([]byte("from parent"))
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			c.Close()
			if err != nil || string(got) != "from parent" {
				t.Errorf("echo through the inherited socket: %q, %v\n%s", got, err, out.String())
			}
		}
		select {
		case err := <-exited:
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if want := map[bool]int{true: 0, false: 3}[withFlag]; code != want {
				t.Errorf("flag %v: child exit %d, want %d\n%s", withFlag, code, want, out.String())
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill() // the child we started, by its PID
			<-exited
			t.Fatalf("child did not exit\n%s", out.String())
		}
		ln.Close()
	}
}
