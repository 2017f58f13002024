package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket listens where a test's NOTIFY_SOCKET points, as systemd
// would.
type notifySocket struct {
	path string
	c    *net.UnixConn
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbnotify") // short: sun_path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{path: path, c: c}
}

// next returns the next datagram that is not a watchdog ping, and how many
// pings came before it.
func (n *notifySocket) next(t *testing.T) (string, int) {
	t.Helper()
	buf := make([]byte, 4096)
	pings := 0
	for range 1000 {
		n.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		m, err := n.c.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		if msg := string(buf[:m]); msg != "WATCHDOG=1\n" {
			return msg, pings
		}
		pings++
	}
	t.Fatal("only watchdog pings")
	return "", 0
}

// TestServeSystemdNotify: READY=1 with MAINPID once serving, RELOADING=1
// on SIGHUP, the successor's MAINPID and READY=1, and STOPPING=1 when the
// successor drains on SIGTERM, in that order; watchdog pings at half of
// WATCHDOG_USEC.
func TestServeSystemdNotify(t *testing.T) {
	ns := listenNotify(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	p := startLogged(t, os.Args[0], []string{"NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=200000"},
		"serve", "--listen", "127.0.0.1:0", "--pid-file", pidFile)
	first := strconv.Itoa(p.cmd.Process.Pid)
	expect := func(want string) int {
		t.Helper()
		got, pings := ns.next(t)
		if got != want {
			t.Fatalf("notification %q, want %q; log:\n%s", got, want, p.log())
		}
		return pings
	}
	expect("MAINPID=" + first + "\nREADY=1\n")
	time.Sleep(500 * time.Millisecond) // pings every 100ms meanwhile
	p.cmd.Process.Signal(syscall.SIGHUP)
	if pings := expect("RELOADING=1\n"); pings < 2 {
		t.Errorf("%d watchdog pings in 500ms with WATCHDOG_USEC=200000", pings)
	}
	if code := p.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("old process: exit %d; log:\n%s", code, p.log())
	}
	successor := readPidFile(t, pidFile)
	expect("MAINPID=" + strconv.Itoa(successor) + "\nREADY=1\n")
	time.Sleep(300 * time.Millisecond)
	syscall.Kill(successor, syscall.SIGTERM)
	if pings := expect("STOPPING=1\n"); pings < 1 {
		t.Errorf("the successor sent no watchdog pings (WATCHDOG_PID must not pass to it)")
	}
	waitGone(t, successor, 20*time.Second)
}

// TestServeWatchdogPid: WATCHDOG_PID naming another process means the
// watchdog is not ours to ping.
func TestServeWatchdogPid(t *testing.T) {
	ns := listenNotify(t)
	p := startLogged(t, os.Args[0], []string{"NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=100000", "WATCHDOG_PID=1"},
		"serve", "--listen", "127.0.0.1:0")
	if got, _ := ns.next(t); !strings.HasSuffix(got, "READY=1\n") {
		t.Fatalf("first notification %q", got)
	}
	time.Sleep(400 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGTERM)
	got, pings := ns.next(t)
	if got != "STOPPING=1\n" || pings != 0 {
		t.Fatalf("got %q after %d watchdog pings, want STOPPING=1 and none", got, pings)
	}
	if code := p.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		bad       bool
	}{
		{"", "", 0, false},
		{"2000000", "", time.Second, false},
		{"2000000", strconv.Itoa(os.Getpid()), time.Second, false},
		{"2000000", "1", 0, false},
		{"soon", "", 0, true},
		{"-5", "", 0, true},
		{"2000000", "me", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		got, err := watchdogInterval()
		if got != c.want || (err != nil) != c.bad {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v", c.usec, c.pid, got, err)
		}
	}
}
