package switchboard_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"switchboard"
)

// TestSocketActivation hands a listening socket to a child process the way
// systemd does (descriptor 3, LISTEN_PID and LISTEN_FDS) and checks that
// the child serves on it. The child is this test binary, re-run.
func TestSocketActivation(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no socket activation on windows")
	}
	if os.Getenv("SB_ACTIVATION_CHILD") == "1" {
		activatedChild()
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// sh sets LISTEN_PID to its own PID, which exec hands on to the child.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -test.run='^TestSocketActivation$'`, os.Args[0])
	cmd.Env = append(os.Environ(), "SB_ACTIVATION_CHILD=1")
	cmd.ExtraFiles = []*os.File{f}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	reaped := false
	defer func() {
		if !reaped {
			cmd.Process.Kill() // the child we started, by its PID
			<-exited
		}
	}()

	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("activated"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "activated" {
		t.Fatalf("echo through the handed-over socket: %q, %v\nchild output:\n%s", got, err, out.String())
	}
	select {
	case err := <-exited:
		reaped = true
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("child did not exit\n%s", out.String())
	}
}

// activatedChild serves one connection on the inherited socket, then exits.
func activatedChild() {
	lns, err := switchboard.ListenersFromEnv()
	if err != nil || len(lns) != 1 {
		println("ListenersFromEnv:", len(lns), err)
		os.Exit(3)
	}
	if os.Getenv("LISTEN_FDS") != "" {
		println("LISTEN_FDS not cleared")
		os.Exit(3)
	}
	done := make(chan struct{})
	h := &closeOnce{done: done}
	srv, _ := switchboard.NewServer(h, switchboard.WithModel("goroutine"))
	go srv.Serve(lns...)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		os.Exit(4)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	os.Exit(0)
}

type closeOnce struct {
	switchboard.BaseHandler
	done chan struct{}
}

func (h *closeOnce) OnMessage(c switchboard.Conn, msg []byte) { c.Write(msg) }
func (h *closeOnce) OnClose(switchboard.Conn, error)          { close(h.done) }

func TestListenRefusesLiveAndNonSocketPaths(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o600)
	if _, err := switchboard.Listen("unix:"+plain, false); err == nil {
		t.Fatal("listening over a regular file should fail")
	}
	live := filepath.Join(dir, "live.sock")
	ln, err := switchboard.Listen("unix:"+live, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := switchboard.Listen("unix:"+live, false); err == nil {
		t.Fatal("a socket a server is listening on must not be taken over")
	}
	for _, bad := range []string{"nohost", "unix:", "1.2.3.4"} {
		if _, err := switchboard.Listen(bad, false); err == nil {
			t.Errorf("Listen(%q) should fail", bad)
		}
	}
}
