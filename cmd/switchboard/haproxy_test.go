package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchboard/internal/testserver"
)

// haproxyPath finds Debian's haproxy (in /usr/sbin, which is not on every
// user's PATH).
func haproxyPath() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	return ""
}

// startHAProxy runs deploy/haproxy.cfg with its frontend on front and its
// two servers at backends, in the foreground, until the test ends.
func startHAProxy(t *testing.T, front string, backends [2]string) {
	t.Helper()
	bin := haproxyPath()
	if bin == "" {
		t.Skip("haproxy is not installed (.ci/run installs it with apt-get)")
	}
	tmpl, err := os.ReadFile("../../deploy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(tmpl)
	for old, new := range map[string]string{
		"bind 127.0.0.1:8888":     "bind " + front,
		"server a 127.0.0.1:8901": "server a " + backends[0],
		"server b 127.0.0.1:8902": "server b " + backends[1],
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("deploy/haproxy.cfg no longer has %q", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // the haproxy this test started, by its pid
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("haproxy log:\n%s", b)
		}
	})
	for range 500 {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("haproxy exited: %v\n%s", err, b)
		default:
		}
		if c, err := net.DialTimeout("tcp", front, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("haproxy never listened")
}

// TestHAProxy: two `serve --proxy-protocol` instances behind HAProxy as
// deploy/haproxy.cfg configures it. Echo traffic passes and is verified;
// the backends see the client's own address; and a rolling SIGHUP upgrade
// of both instances under load fails and corrupts no message.
func TestHAProxy(t *testing.T) {
	if haproxyPath() == "" {
		t.Skip("haproxy is not installed (.ci/run installs it with apt-get)")
	}
	var insts [2]*loggedProc
	var addrs [2]string
	pidFiles := [2]string{filepath.Join(t.TempDir(), "a.pid"), filepath.Join(t.TempDir(), "b.pid")}
	for i := range insts {
		insts[i] = startLogged(t, os.Args[0], nil, "serve", "--proxy-protocol", "--listen", "127.0.0.1:0",
			"--framing", "line", "--max-frame", "64", "--pid-file", pidFiles[i], "--shutdown-timeout", "5s")
		addrs[i] = insts[i].await(t, servingRE, 1)
	}
	front := testserver.FreeAddr(t)
	startHAProxy(t, front, addrs)

	for i := range 10 {
		echoOnce(t, "tcp", front, fmt.Sprintf("through haproxy %d", i))
	}

	// The client address: a frame over --max-frame makes the backend log
	// the connection's close with its remote address, which must be ours
	// (from the PROXY header), not HAProxy's side of the backend hop.
	c, err := net.DialTimeout("tcp", front, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte(strings.Repeat("x", 100)))
	io.Copy(io.Discard, c)
	c.Close()
	client := regexp.QuoteMeta(c.LocalAddr().String())
	closedRE := regexp.MustCompile(`msg="connection closed" remote=(` + client + `) reason=`)
	found := false
	for range 500 {
		if closedRE.MatchString(insts[0].log()) || closedRE.MatchString(insts[1].log()) {
			found = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !found {
		t.Errorf("no backend logged the client's address %s:\n%s\n%s", c.LocalAddr(), insts[0].log(), insts[1].log())
	}

	// The rolling upgrade, under load from connect-send-receive loops and
	// from connections held open across both switches.
	var st loadStats
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() { connectLoop("tcp", front, fmt.Sprintf("roll%d", i), &st, stop) })
	}
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			wg.Wait()
		}
	}()
	const held = 4
	started := make(chan struct{}, held)
	heldErr := make(chan error, held)
	for i := range held {
		c, err := net.DialTimeout("tcp", front, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		go func() { heldErr <- heldConn(c, fmt.Sprintf("held%d", i), started) }()
	}
	for range held {
		<-started
	}
	time.Sleep(100 * time.Millisecond)
	var successors [2]int
	for i, p := range insts {
		before := st.exchanges.Load()
		p.cmd.Process.Signal(syscall.SIGHUP)
		if code := p.exitCode(t, 20*time.Second); code != 0 {
			t.Fatalf("instance %d: exit %d after SIGHUP; log:\n%s", i, code, p.log())
		}
		successors[i] = readPidFile(t, pidFiles[i])
		if successors[i] == p.cmd.Process.Pid || !alive(successors[i]) {
			t.Fatalf("instance %d: pid file names %d", i, successors[i])
		}
		time.Sleep(200 * time.Millisecond)
		t.Logf("instance %d upgraded to pid %d; %d exchanges meanwhile", i, successors[i], st.exchanges.Load()-before)
	}
	close(stop)
	wg.Wait()
	stopped = true
	for range held {
		// Each held connection went to one instance, and ended with a
		// clean EOF when that instance drained.
		if err := <-heldErr; err != nil {
			t.Errorf("held connection: %v", err)
		}
	}
	t.Logf("load through haproxy: %v", &st)
	if st.refused.Load()+st.resets.Load()+st.corrupt.Load() != 0 || st.exchanges.Load() == 0 {
		t.Errorf("messages failed across the rolling upgrade: %v", &st)
	}
	for i := range 4 {
		echoOnce(t, "tcp", front, fmt.Sprintf("after the upgrades %d", i))
	}
	for _, pid := range successors {
		stopSuccessor(t, pid)
	}
}
