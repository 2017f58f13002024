package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"switchboard"
)

// A zero-downtime upgrade: on SIGHUP the serving process starts a new copy
// of its executable with the same arguments and hands it every listening
// socket as an inherited descriptor, numbered from 3 as systemd socket
// activation does (LISTEN_FDS), so the successor takes them the way it
// takes activated sockets. The kernel's accept queue belongs to the socket,
// not the process: while both processes hold it no connection attempt is
// refused, and whatever the old process has not accepted the new one
// will. Two more descriptors follow the listeners: the write end of a
// readiness pipe, and the metrics listener when there is one.

// Environment of a successor process.
const (
	readyFdEnv   = "SWITCHBOARD_READY_FD"   // write "<pid>\n" here once serving
	metricsFdEnv = "SWITCHBOARD_METRICS_FD" // the --metrics listening socket
)

// successorSide is what a process started by an upgrade got from its
// parent; the zero value means it was not started that way.
type successorSide struct {
	ready     *os.File
	metricsLn net.Listener
}

// takeSuccessorSide reads and clears the upgrade's environment, so a
// later upgrade from this process starts clean.
func takeSuccessorSide() (successorSide, error) {
	var s successorSide
	if v, ok := os.LookupEnv(readyFdEnv); ok {
		os.Unsetenv(readyFdEnv)
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return s, fmt.Errorf("bad %s %q", readyFdEnv, v)
		}
		s.ready = os.NewFile(uintptr(fd), "ready-pipe")
	}
	if v, ok := os.LookupEnv(metricsFdEnv); ok {
		os.Unsetenv(metricsFdEnv)
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 3 {
			return s, fmt.Errorf("bad %s %q", metricsFdEnv, v)
		}
		f := os.NewFile(uintptr(fd), "metrics-listener")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return s, fmt.Errorf("inherited metrics listener: %w", err)
		}
		s.metricsLn = ln
	}
	return s, nil
}

// reportReady tells the parent this process is serving; the parent then
// drains and exits.
func (s successorSide) reportReady() error {
	if s.ready == nil {
		return nil
	}
	defer s.ready.Close()
	_, err := fmt.Fprintf(s.ready, "%d\n", os.Getpid())
	return err
}

// dupListener duplicates ln's descriptor (close-on-exec, so only the
// successor gets it, at the number we choose). It works on the raw
// descriptor on purpose: an *os.File handed to os/exec is switched to
// blocking mode by its Fd method, and the listening socket's flags are
// shared with the copy this process is still accepting on, so a reactor
// loop would then block in accept.
func dupListener(ln net.Listener) (int, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("listener %T has no descriptor to hand over", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("duplicating listener %s: %w", ln.Addr(), derr)
	}
	return fd, nil
}

// startSuccessor starts the new process and waits until it reports that
// it serves, it exits, timeout passes or ctx ends. On success it returns
// the successor's pid; otherwise the successor, if still running, has been
// killed, and the caller goes on serving.
func startSuccessor(ctx context.Context, lns []net.Listener, metricsLn net.Listener, timeout time.Duration) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding our executable: %w", err)
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, ln := range append(append([]net.Listener(nil), lns...), metricsLn) {
		if ln == nil {
			continue
		}
		fd, err := dupListener(ln)
		if err != nil {
			return 0, err
		}
		fds = append(fds, fd)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		wr.Close()
		return 0, err
	}
	defer devNull.Close()
	// Listeners first (fd 3...), then the pipe, then the metrics socket.
	files := []uintptr{devNull.Fd(), 1, 2} // one log, both processes
	for _, fd := range fds[:len(lns)] {
		files = append(files, uintptr(fd))
	}
	files = append(files, wr.Fd())
	if metricsLn != nil {
		files = append(files, uintptr(fds[len(lns)]))
	}
	names := make([]string, len(lns))
	for i := range names {
		names[i] = "switchboard"
	}
	env := append(cleanEnv(os.Environ()),
		"LISTEN_FDS="+strconv.Itoa(len(lns)),
		"LISTEN_PID="+strconv.Itoa(os.Getpid()),
		"LISTEN_FDNAMES="+strings.Join(names, ":"),
		switchboard.InheritFromParentEnv+"=1",
		readyFdEnv+"="+strconv.Itoa(3+len(lns)),
	)
	if metricsLn != nil {
		env = append(env, metricsFdEnv+"="+strconv.Itoa(3+len(lns)+1))
	}
	pid, err := syscall.ForkExec(exe, os.Args, &syscall.ProcAttr{Env: env, Files: files})
	wr.Close() // the child's copy is the only writer now: EOF if it dies
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", exe, err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return 0, err
	}
	exited := make(chan error, 1)
	go func() {
		st, err := proc.Wait()
		if err == nil && !st.Success() {
			err = errors.New(st.String())
		}
		exited <- err
	}()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(rd).ReadString('\n')
		line <- s
	}()
	fail := func(why error) (int, error) {
		proc.Kill() // the process we started, by its pid
		<-exited
		return 0, why
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case s := <-line:
		if got, err := strconv.Atoi(strings.TrimSpace(s)); err != nil || got != pid {
			// EOF without a word: the child exited or closed the pipe.
			select {
			case err := <-exited:
				return 0, fmt.Errorf("new process %d exited before serving: %v", pid, err)
			case <-time.After(time.Second):
				return fail(fmt.Errorf("new process %d closed its readiness pipe without reporting ready", pid))
			}
		}
		return pid, nil
	case <-timer.C:
		return fail(fmt.Errorf("new process %d did not report ready within %v; killed it", pid, timeout))
	case <-ctx.Done():
		return fail(fmt.Errorf("new process %d killed: %w", pid, context.Cause(ctx)))
	}
}

// cleanEnv drops what must not reach the successor as it is: the socket
// activation variables (replaced by ours), and WATCHDOG_PID, which names
// this process while the successor is the one that will ping.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_PID",
			switchboard.InheritFromParentEnv, readyFdEnv, metricsFdEnv:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// keepUnixSocketFiles stops a Unix listener from removing its socket file
// when it closes: after a handover the file is the successor's.
func keepUnixSocketFiles(lns []net.Listener) {
	for _, ln := range lns {
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
	}
}

// ownUnixSocketFiles makes Unix listeners inherited from a parent remove
// their file on close, as the listener the parent opened would have: this
// process is now the one whose exit ends the service. Sockets from systemd
// are left alone: their files belong to the socket unit.
func ownUnixSocketFiles(lns []net.Listener) {
	for _, ln := range lns {
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(true)
		}
	}
}

// writePidFile writes pid to path atomically: a reader sees the old pid or
// the new one, never an empty or half-written file.
func writePidFile(path string, pid int) error {
	if path == "" {
		return nil
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, pid)
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("--pid-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--pid-file: %w", err)
	}
	return nil
}

// removePidFile removes path if it still names this process: after an
// upgrade it names the successor and stays.
func removePidFile(path string) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

var (
	errUpgradeBusy       = errors.New("an upgrade is already under way")
	errStopDuringUpgrade = errors.New("told to stop during the upgrade")
)
