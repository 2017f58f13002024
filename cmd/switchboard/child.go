package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"switchboard/loadgen"
)

// child is a server process that bench or compare started, and only ever
// ends by its own PID.
type child struct {
	name string
	cmd  *exec.Cmd
	addr string
	// metrics is the URL of a switchboard serve child's Prometheus
	// endpoint, when it was started with one.
	metrics string
	out     *tailBuffer
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, once done
}

// childStartTimeout bounds how long a server may take to start listening.
const childStartTimeout = 15 * time.Second

// addrRE finds the address in serve's start-up line, in slog's text
// format: addr=127.0.0.1:40123 (or quoted).
var addrRE = regexp.MustCompile(`\baddr="?([^\s"]+)"?`)

// metricsRE finds the metrics endpoint serve logs before its start-up line.
var metricsRE = regexp.MustCompile(`\burl="?(http://[^\s"]+/metrics)"?`)

// startServe starts "switchboard serve" with args from this same binary,
// on cpus, and returns once it has logged the address it listens on.
func startServe(name string, args []string, cpus []int) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to start its server: %w", err)
	}
	cmd := exec.Command(exe, append([]string{"serve"}, args...)...)
	c := &child{name: name, cmd: cmd, out: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout = c.out
	cmd.Stderr = pw
	if err := startPinned(cmd, cpus); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go c.wait(pw)
	type addrs struct{ addr, metrics string }
	addrc := make(chan addrs, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		found := false
		var metrics string
		for sc.Scan() {
			line := sc.Text()
			c.out.Write([]byte(line + "\n"))
			if found {
				continue
			}
			if m := metricsRE.FindStringSubmatch(line); m != nil {
				metrics = m[1]
			} else if m := addrRE.FindStringSubmatch(line); m != nil {
				found = true
				addrc <- addrs{m[1], metrics}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case a := <-addrc:
		c.addr, c.metrics = a.addr, a.metrics
		return c, nil
	case <-c.done:
		return nil, fmt.Errorf("%s exited before listening (%v): %s", name, c.err, c.out.last())
	case <-time.After(childStartTimeout):
		c.stop()
		return nil, fmt.Errorf("%s did not log its address within %v: %s", name, childStartTimeout, c.out.last())
	}
}

// startPeer starts a peer server, which listens on addr, on cpus, and
// returns once a connection to addr succeeds.
func startPeer(name, addr string, argv []string, dir string, cpus []int) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	c := &child{name: name, cmd: cmd, addr: addr, out: &tailBuffer{max: 8 << 10}, done: make(chan struct{})}
	cmd.Stdout = c.out
	cmd.Stderr = c.out
	if err := startPinned(cmd, cpus); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go c.wait(nil)
	deadline := time.Now().Add(childStartTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("%s exited before listening (%v): %s", name, c.err, c.out.last())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("%s did not listen on %s within %v: %s", name, addr, childStartTimeout, c.out.last())
		}
	}
}

func (c *child) wait(pw *io.PipeWriter) {
	c.err = c.cmd.Wait()
	if pw != nil {
		pw.Close()
	}
	close(c.done)
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop asks the server to drain and exit (SIGTERM) and kills it if it has
// not within a few seconds. It signals only this child's PID.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// exited reports whether the child has ended, and how.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// last returns the last few lines written, on one line.
func (t *tailBuffer) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	s := strings.Join(lines, " | ")
	if s == "" {
		return "no output"
	}
	return s
}

// freePort returns a TCP port on host that was free a moment ago, for a
// peer server that has to be told its port.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// cpuPlan is where the server and the load run.
type cpuPlan struct {
	server, load []int
}

// parseCPUs parses a CPU list: "none" (nil), or numbers and ranges
// separated by commas ("0", "1-3", "0,2").
func parseCPUs(s string) ([]int, error) {
	if s == "none" || s == "" {
		return nil, nil
	}
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a || b >= 1024 {
			return nil, fmt.Errorf("bad CPU list %q: want none, auto, or numbers and ranges such as 0 or 1-3,5", s)
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// planCPUs decides the pinning from --cpu-server and --cpu-load. With a
// server of its own and at least two CPUs, "auto" puts the server on the
// first CPU this process may use and the load on the others; against
// someone else's server (withServer false) "auto" pins nothing, as it does
// on a single CPU.
func planCPUs(serverSpec, loadSpec string, withServer bool) (cpuPlan, []string, error) {
	var p cpuPlan
	avail := allowedCPUs()
	if !pinSupported {
		if (serverSpec != "auto" && serverSpec != "none") || (loadSpec != "auto" && loadSpec != "none") {
			return p, nil, errors.New("CPU pinning needs Linux (sched_setaffinity); use --cpu-server none --cpu-load none")
		}
		return p, []string{"not pinned: CPU pinning needs Linux"}, nil
	}
	var notes []string
	var err error
	if serverSpec == "auto" {
		if withServer && len(avail) >= 2 {
			p.server = avail[:1]
		}
	} else if p.server, err = parseCPUs(serverSpec); err != nil {
		return p, nil, fmt.Errorf("--cpu-server: %w", err)
	}
	if loadSpec == "auto" {
		if len(p.server) > 0 {
			for _, c := range avail {
				if !containsInt(p.server, c) {
					p.load = append(p.load, c)
				}
			}
		}
	} else if p.load, err = parseCPUs(loadSpec); err != nil {
		return p, nil, fmt.Errorf("--cpu-load: %w", err)
	}
	for _, c := range append(append([]int(nil), p.server...), p.load...) {
		if !containsInt(avail, c) {
			return p, nil, fmt.Errorf("CPU %d is not available to this process (available: %s)", c, fmtCPUs(avail))
		}
	}
	if withServer && len(avail) < 2 && serverSpec == "auto" {
		notes = append(notes, "not pinned: one CPU only, server and load share it")
	}
	return p, notes, nil
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// signalContext is cancelled by SIGINT or SIGTERM, so a long bench or
// compare stops cleanly, reports what it has and ends its children.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// mallocsMetric is the Go runtime's count of heap allocations, as the
// Prometheus Go collector exports it.
const mallocsMetric = "go_memstats_mallocs_total"

// allocCounter reads the allocation count of a switchboard serve child
// from its metrics endpoint, for loadgen's Config.Counters. Each reading
// is an HTTP scrape that itself allocates in the server; scrapeCost is
// what one costs, measured by two in a row before the load starts, so
// that it can be deducted from the allocations seen over the window
// (which spans one scrape's worth).
func allocCounter(url string) (read func() (map[string]float64, error), scrapeCost float64, err error) {
	client := &http.Client{Timeout: 5 * time.Second}
	one := func() (float64, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), mallocsMetric+" "); ok {
				return strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
		return 0, fmt.Errorf("%s has no %s", url, mallocsMetric)
	}
	a, err := one()
	if err != nil {
		return nil, 0, err
	}
	b, err := one()
	if err != nil {
		return nil, 0, err
	}
	read = func() (map[string]float64, error) {
		v, err := one()
		return map[string]float64{mallocsMetric: v}, err
	}
	return read, b - a, nil
}

// allocsPerMsg is the server's heap allocations per measured message, one
// scrape's allocations deducted, or -1 when they were not counted.
func allocsPerMsg(res *loadgen.Result, scrapeCost float64) float64 {
	v, ok := res.Counters[mallocsMetric]
	if !ok || res.Messages == 0 {
		return -1
	}
	return max(v-scrapeCost, 0) / float64(res.Messages)
}
