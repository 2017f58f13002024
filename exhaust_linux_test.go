package switchboard_test

// Exhaustion and floods, with the server in a child process (this test
// binary re-run as TestHostileChild), so its descriptor limit can be
// lowered, its descriptors and memory read from the outside, and SIGTERM
// sent to it, without touching the test process.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard"
	"switchboard/service"
)

// childModelEnv names the model TestHostileChild serves; unset, that test
// skips. childServiceEnv names the service (default echo, raw framing).
const (
	childModelEnv   = "SWITCHBOARD_HOSTILE_CHILD"
	childServiceEnv = "SWITCHBOARD_HOSTILE_SERVICE"
)

// TestHostileChild is the server half of the tests below, run in a child
// process. It serves echo on 127.0.0.1, prints "addr ADDR", and obeys one
// command per stdin line:
//
//	stats      print "stats k=v ..." (server counters, fds, VmRSS, live heap, goroutines)
//	gc         collect garbage and return free memory to the OS
//	limit N    set RLIMIT_NOFILE's soft limit to the open descriptors + N
//	unlimit    restore the soft limit the process started with
//
// SIGTERM or the end of stdin drains it with Shutdown (10 s) and it prints
// "drained ERR".
func TestHostileChild(t *testing.T) {
	model := os.Getenv(childModelEnv)
	if model == "" {
		t.Skip("the child half of the exhaustion tests")
	}
	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	var h switchboard.Handler = echo
	opts := []switchboard.Option{switchboard.WithModel(model), switchboard.WithLoops(2)}
	if name := os.Getenv(childServiceEnv); name != "" {
		svc, err := service.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		spec, _ := svc.ResolveFraming("")
		h = svc.New()
		opts = append(opts, switchboard.WithFraming(spec, 0))
	}
	srv, err := switchboard.NewServer(h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	lns, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lns...) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)
	fmt.Printf("addr %s\n", lns[0].Addr())

	// The parent closes our stdin when it is done with us, which ends
	// this reader; the child waits for that so goleak finds nothing.
	cmds := make(chan string)
	quit := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(cmds)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			select {
			case cmds <- sc.Text():
			case <-quit:
			}
		}
	}()
	defer func() {
		close(quit)
		select {
		case <-readerDone:
		case <-time.After(30 * time.Second):
		}
	}()
	for stop := false; !stop; {
		select {
		case <-sigs:
			stop = true
		case cmd, ok := <-cmds:
			if !ok {
				stop = true
				break
			}
			f := strings.Fields(cmd)
			switch {
			case len(f) == 1 && f[0] == "stats":
				st := srv.Stats()
				heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
				metrics.Read(heap)
				fmt.Printf("stats active=%d accepted=%d rejected=%d accepterrors=%d fds=%d rss=%d heap=%d goroutines=%d\n",
					st.Active, st.Accepted, st.Rejected, st.AcceptErrors, openFDs(), vmRSSKiB(), heap[0].Value.Uint64()>>10, runtime.NumGoroutine())
			case len(f) == 2 && f[0] == "limit":
				n, _ := strconv.Atoi(f[1])
				low := saved
				low.Cur = uint64(openFDs() + n)
				fmt.Printf("limited %v\n", unix.Setrlimit(unix.RLIMIT_NOFILE, &low))
			case len(f) == 1 && f[0] == "gc":
				// Live memory only: collect, and return what is free to
				// the OS, so RSS compares what the server holds.
				runtime.GC() // sync.Pool keeps what one collection frees
				debug.FreeOSMemory()
				fmt.Println("collected")
			case len(f) == 1 && f[0] == "unlimit":
				fmt.Printf("unlimited %v\n", unix.Setrlimit(unix.RLIMIT_NOFILE, &saved))
			default:
				fmt.Printf("unknown command %q\n", cmd)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Printf("drained %v\n", srv.Shutdown(ctx))
	if err := <-served; !errors.Is(err, switchboard.ErrServerClosed) {
		t.Fatal(err)
	}
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // the directory being read
}

func vmRSSKiB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// hostileChild is a running TestHostileChild.
type hostileChild struct {
	cmd   *exec.Cmd
	addr  string
	stdin io.WriteCloser
	lines chan string
	done  chan error
}

func startHostileChild(t *testing.T, model string, env ...string) *hostileChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), childModelEnv+"="+model), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &hostileChild{cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill() // the process this test started, by PID
			<-c.done
		}
	})
	c.addr = strings.TrimPrefix(c.expect(t, "addr "), "addr ")
	return c
}

// expect returns the child's next output line starting with prefix,
// skipping others.
func (c *hostileChild) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before printing %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("child printed no %q line within 20s", prefix)
		}
	}
}

func (c *hostileChild) do(t *testing.T, cmd, reply string) string {
	t.Helper()
	if _, err := fmt.Fprintln(c.stdin, cmd); err != nil {
		t.Fatal(err)
	}
	return c.expect(t, reply)
}

// childStats is one "stats" line.
type childStats struct {
	active, accepted, rejected, acceptErrors, fds, rssKiB, heapKiB, goroutines int
}

func (c *hostileChild) stats(t *testing.T) childStats {
	t.Helper()
	var s childStats
	line := c.do(t, "stats", "stats ")
	if _, err := fmt.Sscanf(line, "stats active=%d accepted=%d rejected=%d accepterrors=%d fds=%d rss=%d heap=%d goroutines=%d",
		&s.active, &s.accepted, &s.rejected, &s.acceptErrors, &s.fds, &s.rssKiB, &s.heapKiB, &s.goroutines); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return s
}

// awaitStats polls the child's stats until cond holds.
func (c *hostileChild) awaitStats(t *testing.T, what string, cond func(childStats) bool) childStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.stats(t)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// traffic keeps n connections busy with verified echo round trips until
// stop is called, which returns the first error any of them met and how
// many round trips they made.
func traffic(t *testing.T, addr string, n int) (stop func() (int64, error)) {
	t.Helper()
	var (
		wg     sync.WaitGroup
		quit   = make(chan struct{})
		rounds atomic.Int64
		mu     sync.Mutex
		first  error
	)
	var conns []net.Conn
	for i := range n {
		c := dial(t, addr)
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte('a' + i)}, 1000)
			got := make([]byte, len(msg))
			for {
				select {
				case <-quit:
					return
				default:
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err := c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, got)
				}
				if err == nil && !bytes.Equal(got, msg) {
					err = errors.New("echo differs")
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("traffic conn %d after %d rounds: %w", i, rounds.Load(), err)
					}
					mu.Unlock()
					return
				}
				rounds.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return func() (int64, error) {
		close(quit)
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
		return rounds.Load(), first
	}
}

// TestDescriptorExhaustion lowers the server's descriptor limit to a few
// above what it holds, opens far more connections than that while other
// connections carry traffic, then restores the limit: established
// connections never notice, the server does not spin or die, and once
// descriptors are back it serves new connections and holds nothing more
// than before. Blocking is left out: it serves one connection per listener
// and so holds at most one descriptor for clients, which cannot run out.
func TestDescriptorExhaustion(t *testing.T) {
	for _, model := range switchboard.Models() {
		t.Run(model, func(t *testing.T) {
			if info, _ := switchboard.LookupModel(model); info.Iterative {
				t.Skip("one connection at a time: it never holds more than one client descriptor")
			}
			ch := startHostileChild(t, model)
			// One exchange first, so what is created lazily (the
			// runtime poller's descriptors) is in the baseline.
			if err := streamOnce(ch.addr, 76); err != nil {
				t.Fatal(err)
			}
			base := ch.awaitStats(t, "the first exchange to close", func(s childStats) bool { return s.active == 0 })
			stop := traffic(t, ch.addr, 4)
			ch.awaitStats(t, "the traffic connections", func(s childStats) bool { return s.active == 4 })
			ch.do(t, "limit 4", "limited <nil>")

			const extra = 100
			var floods []net.Conn
			for range extra {
				c, err := net.DialTimeout("tcp", ch.addr, 5*time.Second)
				if err != nil {
					continue // a reset may beat the connect call
				}
				floods = append(floods, c)
			}
			time.Sleep(200 * time.Millisecond) // traffic goes on meanwhile
			st := ch.awaitStats(t, "accept errors", func(s childStats) bool { return s.acceptErrors > base.acceptErrors })
			for _, c := range floods {
				c.Close()
			}
			ch.do(t, "unlimit", "unlimited <nil>")
			rounds, err := stop()
			if err != nil {
				t.Fatalf("traffic during the exhaustion: %v", err)
			}
			if rounds == 0 {
				t.Fatal("no traffic flowed")
			}
			// Served again.
			if err := streamOnce(ch.addr, 77); err != nil {
				t.Fatalf("after the limit was lifted: %v", err)
			}
			end := ch.awaitStats(t, "the baseline", func(s childStats) bool { return s.active == 0 && s.fds <= base.fds })
			t.Logf("%d connections past a limit of 4 spare descriptors: %d accept errors, %d shed; %d round trips meanwhile; fds %d -> %d",
				extra, st.acceptErrors-base.acceptErrors, end.rejected-base.rejected, rounds, base.fds, end.fds)
		})
	}
}

// cycleDialer makes raw connect/send/close cycles from 127.0.0.x source
// addresses, so TIME_WAIT entries spread over many 4-tuples.
type cycleDialer struct {
	to *unix.SockaddrInet4
}

func newCycleDialer(t *testing.T, addr string) cycleDialer {
	t.Helper()
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return cycleDialer{&unix.SockaddrInet4{Port: ta.Port, Addr: [4]byte(ta.IP.To4())}}
}

// cycle connects from 127.0.0.src, sends a message, reads its echo and
// closes; with reset it closes with SO_LINGER 0 right after sending.
func (d cycleDialer) cycle(src byte, reset bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, src}}); err != nil {
		return err
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10})
	to := *d.to // Connect writes into it
	if err := connectRetry(fd, &to); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	msg := []byte("cycle")
	if _, err := retryEINTR(func() (int, error) { return unix.Write(fd, msg) }); err != nil {
		return err
	}
	if reset {
		return unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	buf := make([]byte, len(msg))
	for got := 0; got < len(msg); {
		n, err := retryEINTR(func() (int, error) { return unix.Read(fd, buf[got:]) })
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		got += n
	}
	if !bytes.Equal(buf, msg) {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

// retryEINTR repeats a system call that a signal (the Go runtime's
// preemption) interrupted.
func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// connectRetry is a blocking connect that survives EINTR: an interrupted
// connect goes on in the background, so wait for the socket to be
// writable and read its outcome.
func connectRetry(fd int, to unix.Sockaddr) error {
	err := unix.Connect(fd, to)
	if err != unix.EINTR {
		return err
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := retryEINTR(func() (int, error) { return unix.Poll(pfd, 10000) }); err != nil {
		return err
	} else if n == 0 {
		return unix.ETIMEDOUT
	}
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
		return err
	} else if e != 0 {
		return unix.Errno(e)
	}
	return nil
}

// TestConnectFlood runs 20,000 connect/send/close cycles (one in four
// closed with a reset before its reply) from 16 source addresses: the
// server ends with no open connections, the descriptors it started with,
// and its RSS where it stood after the first 2,000.
func TestConnectFlood(t *testing.T) {
	for _, model := range switchboard.Models() {
		t.Run(model, func(t *testing.T) {
			ch := startHostileChild(t, model)
			d := newCycleDialer(t, ch.addr)
			// One cycle first, so what the runtime creates lazily (its
			// poller's descriptors) is in the baseline.
			if err := d.cycle(2, false); err != nil {
				t.Fatal(err)
			}
			ch.awaitStats(t, "the first cycle to close", func(s childStats) bool { return s.active == 0 })
			base := ch.stats(t)
			workers := 8
			if info, _ := switchboard.LookupModel(model); info.Iterative {
				workers = 1 // the others would only wait in the backlog
			}
			run := func(from, to int) {
				t.Helper()
				var wg sync.WaitGroup
				errs := make(chan error, workers)
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := from + w; i < to; i += workers {
							if err := d.cycle(byte(2+i%16), i%4 == 3); err != nil {
								errs <- fmt.Errorf("cycle %d: %w", i, err)
								return
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
			}
			const warm, total = 2000, 20000
			began := time.Now()
			settled := func(upTo int) childStats {
				ch.awaitStats(t, "the cycles to close", func(s childStats) bool {
					return s.active == 0 && s.accepted-base.accepted == upTo
				})
				ch.do(t, "gc", "collected")
				return ch.stats(t)
			}
			run(0, warm)
			warmed := settled(warm)
			run(warm, total/2)
			mid := settled(total / 2)
			run(total/2, total)
			took := time.Since(began)
			end := settled(total)
			end = ch.awaitStats(t, "descriptors and goroutines back to the baseline", func(s childStats) bool {
				return s.fds <= base.fds && s.goroutines <= warmed.goroutines
			})
			t.Logf("%d cycles in %v: accepted %d, fds %d -> %d, goroutines %d -> %d; after a GC, VmRSS %d / %d / %d KiB and live heap %d / %d / %d KiB after %d / %d / %d cycles",
				total, took.Round(time.Millisecond), end.accepted-base.accepted, base.fds, end.fds,
				warmed.goroutines, end.goroutines, warmed.rssKiB, mid.rssKiB, end.rssKiB,
				warmed.heapKiB, mid.heapKiB, end.heapKiB, warm, total/2, total)
			// Flat: the second half of the flood adds nothing that the
			// first half had not (a leak grows with every cycle).
			if growth := end.heapKiB - mid.heapKiB; growth > 1<<10 {
				t.Errorf("live heap grew %d KiB over the last %d cycles: not flat", growth, total-total/2)
			}
			if growth := end.rssKiB - mid.rssKiB; growth > 4<<10 && !raceEnabled {
				t.Errorf("RSS grew %d KiB over the last %d cycles: not flat", growth, total-total/2)
			}
		})
	}
}

// TestSIGTERMDrainsStreams sends SIGTERM to a server carrying 1,000
// streaming connections: each must read back a prefix of what it sent and
// then a clean EOF, no reset. Blocking is left out: it would serve one of
// the thousand and leave the rest in the backlog (its drain is in the
// conformance suite's GracefulShutdown).
func TestSIGTERMDrainsStreams(t *testing.T) {
	for _, model := range switchboard.Models() {
		t.Run(model, func(t *testing.T) {
			if info, _ := switchboard.LookupModel(model); info.Iterative {
				t.Skip("one connection at a time by design")
			}
			const conns = 1000
			ch := startHostileChild(t, model)
			type result struct {
				sent, got int
				prefix    bool
				err       error
			}
			results := make(chan result, conns)
			var streaming sync.WaitGroup
			streaming.Add(conns)
			for i := range conns {
				c := dial(t, ch.addr)
				go func() {
					var sent []byte
					var got []byte
					buf := make([]byte, 4096)
					ready := false
					var err error
					for k := 0; ; k++ {
						msg := fmt.Appendf(nil, "conn %d message %d\n", i, k)
						if _, err = c.Write(msg); err != nil {
							break
						}
						sent = append(sent, msg...)
						// Read this message's echo, or the end.
						want := len(sent)
						for len(got) < want && err == nil {
							var n int
							n, err = c.Read(buf)
							got = append(got, buf[:n]...)
						}
						if err != nil {
							break
						}
						if !ready {
							ready = true
							streaming.Done()
						}
						time.Sleep(5 * time.Millisecond)
					}
					if !ready {
						streaming.Done()
					}
					if errors.Is(err, io.EOF) {
						err = nil
					}
					c.Close()
					results <- result{len(sent), len(got), bytes.HasPrefix(sent, got), err}
				}()
			}
			streaming.Wait()
			ch.awaitStats(t, "every connection open", func(s childStats) bool { return s.active == conns })
			if err := ch.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if line := ch.expect(t, "drained "); line != "drained <nil>" {
				t.Errorf("child: %s", line)
			}
			var bytesGot int
			for range conns {
				r := <-results
				if r.err != nil {
					t.Errorf("a streaming connection ended with %v, want a clean EOF", r.err)
				} else if !r.prefix {
					t.Errorf("a connection read %d bytes that are not a prefix of the %d it sent", r.got, r.sent)
				}
				bytesGot += r.got
			}
			t.Logf("%d connections drained on SIGTERM with a clean EOF; %d bytes echoed", conns, bytesGot)
		})
	}
}
