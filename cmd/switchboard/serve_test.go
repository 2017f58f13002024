package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchboard"
)

// cliChildEnv, when set, makes the test binary run the command line it
// holds (arguments separated by \x1f) instead of the tests.
const cliChildEnv = "SWITCHBOARD_TEST_CLI"

// cliProc is a switchboard process started by a test: this test binary, run
// as the command.
type cliProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	lines  chan string
	exited chan error
}

func startChild(t *testing.T, args ...string) *cliProc {
	t.Helper()
	c := &cliProc{lines: make(chan string, 64), exited: make(chan error, 1)}
	c.cmd = exec.Command(os.Args[0])
	c.cmd.Env = append(os.Environ(), cliChildEnv+"="+strings.Join(args, "\x1f"))
	pipe, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			c.mu.Lock()
			c.stderr.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			select {
			case c.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		<-scanned // Wait must not close the pipe under the reader
		c.exited <- c.cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			c.cmd.Process.Kill() // only the process this test started
			<-c.exited
		}
	})
	return c
}

func (c *cliProc) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// await returns the first submatch of re in the child's log lines.
func (c *cliProc) await(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line := <-c.lines:
			if m := re.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		case <-timeout:
			t.Fatalf("no line matching %v; log:\n%s", re, c.log())
		}
	}
}

func (c *cliProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-c.exited:
		c.exited <- err // for the cleanup
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("still running after %v; log:\n%s", within, c.log())
		return -1
	}
}

var servingRE = regexp.MustCompile(`msg="switchboard serving" addr=(\S+)`)

func TestServeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--framing", "len:3"},
		{"serve", "--max-frame", "1KB"},
		{"serve", "--max-pending", "lots"},
		{"serve", "--listen", "nohost"},
		{"serve", "--model", "nope"},
		{"serve", "--service", "nope"},
		{"serve", "--service", "chat", "--framing", "len:4"},
		{"serve", "--log-level", "loud"},
		{"serve", "--log-format", "xml"},
		{"serve", "--idle-timeout", "soon"},
		{"serve", "--max-conns", "-1"},
		{"serve", "--max-conns-per-ip", "-1"},
		{"serve", "--frame-timeout", "-1s"},
		{"serve", "extra-argument"},
		{"serve", "--no-such-flag"},
		{"serve", "--pprof"},
		{"serve", "--upgrade-timeout", "0s"},
	} {
		c := startChild(t, args...)
		if code := c.wait(t, 20*time.Second); code != 2 {
			t.Errorf("%v: exit %d, want 2; log:\n%s", args, code, c.log())
		}
		if log := c.log(); !strings.HasPrefix(log, "switchboard: ") || strings.Count(log, "\n") != 1 {
			t.Errorf("%v: want one line saying what is wrong, got:\n%s", args, log)
		}
	}
}

func TestServeRefusesBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := startChild(t, "serve", "--listen", ln.Addr().String())
	if code := c.wait(t, 20*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1; log:\n%s", code, c.log())
	}
	if !strings.Contains(c.log(), "address already in use") {
		t.Fatalf("log does not say why:\n%s", c.log())
	}
}

// TestServeDrainsOnSIGTERM: the signal stops accepting, the open
// connection gets its replies and then EOF, and the process exits 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	for _, model := range []string{switchboard.ModelGoroutine, mustResolve("auto")} {
		t.Run(model, func(t *testing.T) {
			c := startChild(t, "serve", "--listen", "127.0.0.1:0", "--model", model, "--framing", "line", "--shutdown-timeout", "5s")
			addr := c.await(t, servingRE)
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			conn.Write([]byte("before the signal\n"))
			r := bufio.NewReader(conn)
			if line, err := r.ReadString('\n'); err != nil || line != "before the signal\n" {
				t.Fatalf("echo: %q, %v", line, err)
			}
			began := time.Now()
			c.cmd.Process.Signal(syscall.SIGTERM)
			rest, err := io.ReadAll(r)
			if err != nil || len(rest) != 0 {
				t.Fatalf("after SIGTERM the client should read a clean EOF: %q, %v", rest, err)
			}
			t.Logf("EOF %v after SIGTERM", time.Since(began))
			conn.Close()
			if code := c.wait(t, 10*time.Second); code != 0 {
				t.Fatalf("exit %d after SIGTERM; log:\n%s", code, c.log())
			}
			t.Logf("exit %v after SIGTERM", time.Since(began))
			if took := time.Since(began); took > 6*time.Second {
				t.Fatalf("drain took %v with a 5s shutdown timeout", took)
			}
			for _, want := range []string{"msg=draining", "msg=stopped"} {
				if !strings.Contains(c.log(), want) {
					t.Errorf("log lacks %q:\n%s", want, c.log())
				}
			}
		})
	}
}

func TestServeMetrics(t *testing.T) {
	c := startChild(t, "serve", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--log-format", "json")
	url := c.await(t, regexp.MustCompile(`"url":"([^"]+)"`))
	addr := c.await(t, regexp.MustCompile(`"addr":"([^"]+)"`))
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("ping"))
	io.ReadFull(conn, make([]byte, 4))
	conn.Close()
	// The loops add their byte counts to the server's once per iteration,
	// after the reply is written, so the client can see the echo first.
	received := `switchboard_received_bytes_total{model="` + mustResolve("auto") + `"} 4`
	var body string
	for range 200 {
		if _, body = httpGet(t, url); strings.Contains(body, received) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{
		`switchboard_connections_accepted_total{model="` + mustResolve("auto") + `"} 1`,
		received,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%.2000s", want, body)
		}
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	if code := c.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGINT", code)
	}
}
