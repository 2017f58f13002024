package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"switchboard"
)

// loggedProc is a switchboard process whose log goes to a file rather than
// a pipe: after an upgrade the successor writes to the same log, and a pipe
// held open by it would keep the first process's Wait from returning.
type loggedProc struct {
	cmd      *exec.Cmd
	logPath  string
	exited   chan error
	finished bool
}

func startLogged(t *testing.T, exe string, env []string, args ...string) *loggedProc {
	t.Helper()
	p := &loggedProc{logPath: filepath.Join(t.TempDir(), "log"), exited: make(chan error, 1)}
	lf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	p.cmd = exec.Command(exe)
	p.cmd.Env = append(append(os.Environ(), env...), cliChildEnv+"="+strings.Join(args, "\x1f"))
	p.cmd.Stderr = lf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if !p.done(0) {
			p.cmd.Process.Kill() // the process this test started
			<-p.exited
		}
		// Successors are started by it, on our behalf: stop them too,
		// each by the pid it logged.
		for _, pid := range p.servingPids() {
			if pid != p.cmd.Process.Pid && alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				waitGone(t, pid, 10*time.Second)
			}
		}
	})
	return p
}

func (p *loggedProc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// await returns the first submatch of the nth (from 1) line matching re.
func (p *loggedProc) await(t *testing.T, re *regexp.Regexp, nth int) string {
	t.Helper()
	for range 2000 {
		if m := re.FindAllStringSubmatch(p.log(), -1); len(m) >= nth {
			return m[nth-1][1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %d lines matching %v; log:\n%s", nth, re, p.log())
	return ""
}

// done reports whether the process has exited, waiting up to within.
func (p *loggedProc) done(within time.Duration) bool {
	if p.finished {
		return true
	}
	select {
	case <-p.exited:
		p.finished = true
		return true
	case <-time.After(within):
		return false
	}
}

func (p *loggedProc) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	if !p.done(within) {
		t.Fatalf("still running after %v; log:\n%s", within, p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

var pidRE = regexp.MustCompile(`msg="switchboard serving" .* pid=(\d+)`)

func (p *loggedProc) servingPids() []int {
	var pids []int
	for _, m := range pidRE.FindAllStringSubmatch(p.log(), -1) {
		if pid, err := strconv.Atoi(m[1]); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid is a running process (not a zombie waiting for
// whoever inherited it to reap it).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return false
		}
	}
	return true
}

func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running after %v", pid, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPidFile(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file holds %q", b)
	}
	return pid
}

// stopSuccessor sends SIGTERM to the process now serving and waits until
// it has gone.
func stopSuccessor(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, 20*time.Second)
}

// loadStats are what the clients saw across an upgrade.
type loadStats struct {
	exchanges  atomic.Int64 // request answered correctly
	refused    atomic.Int64 // connect failed
	resets     atomic.Int64 // read or write failed other than with EOF
	corrupt    atomic.Int64 // a reply that is not the request
	unanswered atomic.Int64 // clean EOF before the reply: never read by the server
	errs       sync.Map
}

func (s *loadStats) fail(counter *atomic.Int64, err error) {
	counter.Add(1)
	s.errs.Store(err.Error(), true)
}

func (s *loadStats) String() string {
	var errs []string
	s.errs.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return len(errs) < 5 })
	return fmt.Sprintf("exchanges=%d refused=%d resets=%d corrupt=%d unanswered=%d errors=%q",
		s.exchanges.Load(), s.refused.Load(), s.resets.Load(), s.corrupt.Load(), s.unanswered.Load(), errs)
}

// connectLoop opens a connection, sends one line, reads its echo and
// closes, over and over until stop closes.
func connectLoop(network, addr, tag string, st *loadStats, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			st.fail(&st.refused, err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := fmt.Sprintf("%s-%d\n", tag, i)
		if _, err := c.Write([]byte(msg)); err != nil {
			st.fail(&st.resets, err)
			c.Close()
			continue
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case err == io.EOF && got == "":
			// Accepted just as the old process stopped reading: never
			// handled, so it is sent again, as a client would.
			st.unanswered.Add(1)
			i--
		case err != nil:
			st.fail(&st.resets, err)
		case got != msg:
			st.fail(&st.corrupt, fmt.Errorf("sent %q, got %q", msg, got))
		default:
			st.exchanges.Add(1)
		}
		c.Close()
	}
}

// heldConn talks in lockstep on one connection until the server ends it,
// and checks that what came back is exactly the replies to a prefix of
// what went out, followed by a clean EOF.
func heldConn(c net.Conn, tag string, started chan<- struct{}) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	for i := 0; ; i++ {
		msg := fmt.Sprintf("%s-%d\n", tag, i)
		if _, err := c.Write([]byte(msg)); err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
		got, err := r.ReadString('\n')
		if err == io.EOF && got == "" {
			if i == 0 {
				return errors.New("EOF before any reply")
			}
			return nil // the drain: a clean prefix, then EOF
		}
		if err != nil {
			return fmt.Errorf("after %d replies: %w", i, err)
		}
		if got != msg {
			return fmt.Errorf("reply %d: sent %q, got %q", i, msg, got)
		}
		if i == 0 {
			started <- struct{}{}
		}
		time.Sleep(time.Millisecond)
	}
}

// TestServeUpgradeUnderLoad: SIGHUP while connections are held open and
// new ones arrive all the time. No connection attempt is refused or reset,
// each held connection gets a clean prefix of its replies and then EOF, the
// old process exits 0 and the pid file names the new one. It runs on every
// event-loop model: with one listener and two loops, a loop that has
// drained and ended must not make the loop still accepting reset the
// connection it would have handed over (TestHandOverToStoppedLoop in
// internal/reactor pins that moment down).
func TestServeUpgradeUnderLoad(t *testing.T) {
	for _, model := range upgradeModels() {
		t.Run(model, func(t *testing.T) {
			if err := switchboard.CheckModel(model); err != nil {
				t.Skip(err)
			}
			pidFile := filepath.Join(t.TempDir(), "serve.pid")
			p := startLogged(t, os.Args[0], nil, "serve", "--listen", "127.0.0.1:0", "--model", model,
				"--framing", "line", "--pid-file", pidFile, "--shutdown-timeout", "5s")
			addr := p.await(t, servingRE, 1)
			if pid := readPidFile(t, pidFile); pid != p.cmd.Process.Pid {
				t.Fatalf("pid file names %d, want %d", pid, p.cmd.Process.Pid)
			}

			const held = 4
			started := make(chan struct{}, held)
			heldErr := make(chan error, held)
			for i := range held {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				go func() { heldErr <- heldConn(c, fmt.Sprintf("held%d", i), started) }()
			}
			for range held {
				<-started
			}
			var st loadStats
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Go(func() { connectLoop("tcp", addr, fmt.Sprintf("new%d", i), &st, stop) })
			}
			stopped := false
			defer func() {
				if !stopped {
					close(stop)
					wg.Wait()
				}
			}()
			time.Sleep(100 * time.Millisecond)
			before := st.exchanges.Load()

			p.cmd.Process.Signal(syscall.SIGHUP)
			if code := p.exitCode(t, 20*time.Second); code != 0 {
				t.Fatalf("old process: exit %d after the upgrade; log:\n%s", code, p.log())
			}
			for range held {
				if err := <-heldErr; err != nil {
					t.Errorf("held connection: %v", err)
				}
			}
			successor := readPidFile(t, pidFile)
			if successor == p.cmd.Process.Pid || !alive(successor) {
				t.Fatalf("pid file names %d after the upgrade (old process %d)", successor, p.cmd.Process.Pid)
			}
			atSwitch := st.exchanges.Load()
			time.Sleep(200 * time.Millisecond)
			close(stop)
			wg.Wait()
			stopped = true
			t.Logf("load: %v (before SIGHUP %d, by the old process's exit %d)", &st, before, atSwitch)
			if st.refused.Load()+st.resets.Load()+st.corrupt.Load() != 0 {
				t.Errorf("connections failed across the upgrade: %v; log:\n%s", &st, p.log())
			}
			if before == 0 || st.exchanges.Load() == atSwitch {
				t.Errorf("the load did not run on both sides of the switch: %v", &st)
			}
			for _, want := range []string{"msg=upgrading", "msg=draining reason=upgrade successor=" + strconv.Itoa(successor), "upgraded=true"} {
				if !strings.Contains(p.log(), want) {
					t.Errorf("log lacks %q:\n%s", want, p.log())
				}
			}
			stopSuccessor(t, successor)
			if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pid file left behind by the last process: %v", err)
			}
		})
	}
}

// copyExecutable copies the test binary to a directory of its own, so a
// test can replace it the way a package upgrade replaces a binary.
func copyExecutable(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "switchboard")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}

// replaceExecutable swaps exe for a shell script, by rename as package
// managers do (a running binary cannot be written in place).
func replaceExecutable(t *testing.T, exe, script string) {
	t.Helper()
	tmp := exe + ".new"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, exe); err != nil {
		t.Fatal(err)
	}
}

func echoOnce(t *testing.T, network, addr, msg string) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte(msg + "\n"))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != msg+"\n" {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

// TestServeUpgradeFailureKeepsServing: a new binary that exits at once,
// and one that never reports ready, each leave the old process serving,
// with the reason in its log and its pid still in the pid file.
func TestServeUpgradeFailureKeepsServing(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh for the broken replacement binaries")
	}
	exe := copyExecutable(t)
	pidFile := filepath.Join(t.TempDir(), "serve.pid")
	p := startLogged(t, exe, nil, "serve", "--listen", "127.0.0.1:0", "--framing", "line",
		"--pid-file", pidFile, "--upgrade-timeout", "700ms")
	addr := p.await(t, servingRE, 1)
	echoOnce(t, "tcp", addr, "before")

	failedRE := regexp.MustCompile(`msg="upgrade failed; still serving" err="([^"]+)"`)
	replaceExecutable(t, exe, "echo 'new binary: cannot start' >&2; exit 3")
	p.cmd.Process.Signal(syscall.SIGHUP)
	if why := p.await(t, failedRE, 1); !strings.Contains(why, "exited before serving") {
		t.Errorf("first failure logged as %q", why)
	}
	echoOnce(t, "tcp", addr, "after a binary that exits")

	replaceExecutable(t, exe, "exec sleep 30")
	p.cmd.Process.Signal(syscall.SIGHUP)
	if why := p.await(t, failedRE, 2); !strings.Contains(why, "did not report ready within 700ms") {
		t.Errorf("second failure logged as %q", why)
	}
	echoOnce(t, "tcp", addr, "after a binary that hangs")
	if pid := readPidFile(t, pidFile); pid != p.cmd.Process.Pid {
		t.Errorf("pid file names %d, want the old process %d", pid, p.cmd.Process.Pid)
	}
	if p.done(0) {
		t.Fatalf("old process exited; log:\n%s", p.log())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
	if !strings.Contains(p.log(), "new binary: cannot start") {
		t.Errorf("the new binary's own words are not in the log:\n%s", p.log())
	}
}

// TestServeUpgradeUnixSocket: the socket file survives the switch (the old
// process must not remove it), the successor answers on it, and the last
// process removes it when it stops.
func TestServeUpgradeUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "sbup") // short: sun_path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s.sock")
	pidFile := filepath.Join(dir, "pid")
	p := startLogged(t, os.Args[0], nil, "serve", "--listen", "unix:"+sock, "--framing", "line", "--pid-file", pidFile)
	p.await(t, servingRE, 1)
	echoOnce(t, "unix", sock, "old")
	var st loadStats
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { connectLoop("unix", sock, "u", &st, stop) })
	p.cmd.Process.Signal(syscall.SIGHUP)
	code := p.exitCode(t, 20*time.Second)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("old process: exit %d; log:\n%s", code, p.log())
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file after the upgrade: %v", err)
	}
	echoOnce(t, "unix", sock, "new")
	t.Logf("load: %v", &st)
	if st.refused.Load()+st.resets.Load()+st.corrupt.Load() != 0 {
		t.Errorf("connections failed across the upgrade: %v", &st)
	}
	stopSuccessor(t, readPidFile(t, pidFile))
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind by the last process: %v", err)
	}
}

// TestTakeSuccessorSideRejectsBadEnv: a mangled upgrade environment is an
// error that names the variable, not a guess at a descriptor.
func TestTakeSuccessorSideRejectsBadEnv(t *testing.T) {
	for _, kv := range [][2]string{{readyFdEnv, "x"}, {readyFdEnv, "1"}, {metricsFdEnv, "-4"}, {metricsFdEnv, "nine"}} {
		t.Setenv(kv[0], kv[1])
		_, err := takeSuccessorSide()
		if err == nil || !strings.Contains(err.Error(), kv[0]) {
			t.Errorf("%s=%s: %v", kv[0], kv[1], err)
		}
		os.Unsetenv(kv[0])
	}
}

func TestPidFileKeepsSuccessors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pid")
	if err := writePidFile(path, os.Getpid()+1); err != nil { // a successor's
		t.Fatal(err)
	}
	removePidFile(path)
	if got := readPidFile(t, path); got != os.Getpid()+1 {
		t.Fatalf("pid file holds %d", got)
	}
	if err := writePidFile(path, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	removePidFile(path)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("own pid file not removed: %v", err)
	}
	if err := writePidFile(filepath.Join(t.TempDir(), "no", "such", "dir"), 1); err == nil || !strings.Contains(err.Error(), "--pid-file") {
		t.Fatalf("unwritable pid file: %v", err)
	}
}

func TestServeUnwritablePidFile(t *testing.T) {
	c := startChild(t, "serve", "--listen", "127.0.0.1:0", "--pid-file", filepath.Join(t.TempDir(), "no", "pid"))
	if code := c.wait(t, 20*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1; log:\n%s", code, c.log())
	}
	if !strings.Contains(c.log(), "switchboard: --pid-file: ") {
		t.Fatalf("log does not say why:\n%s", c.log())
	}
}

// TestServeStopDuringUpgrade: SIGTERM while a successor is starting kills
// the successor and drains as usual.
func TestServeStopDuringUpgrade(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("needs /bin/sh for the hanging replacement binary")
	}
	exe := copyExecutable(t)
	p := startLogged(t, exe, nil, "serve", "--listen", "127.0.0.1:0", "--upgrade-timeout", "30s")
	p.await(t, servingRE, 1)
	replaceExecutable(t, exe, "exec sleep 30")
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.await(t, regexp.MustCompile(`msg=(upgrading)`), 1)
	time.Sleep(200 * time.Millisecond) // the successor is running by now
	began := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, p.log())
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("stopping took %v: it waited for the upgrade", took)
	}
	pid := p.await(t, regexp.MustCompile(`msg="upgrade abandoned" err="new process (\d+) killed: told to stop during the upgrade"`), 1)
	n, _ := strconv.Atoi(pid)
	waitGone(t, n, 10*time.Second)
}

// upgradeModels are the models the upgrade under load runs on: goroutine
// for the stream engine, and every event-loop model, whose drain is each
// engine's own code.
func upgradeModels() []string {
	out := []string{switchboard.ModelGoroutine}
	for _, m := range switchboard.Models() {
		if info, _ := switchboard.LookupModel(m); info.EventLoop {
			out = append(out, m)
		}
	}
	return out
}
