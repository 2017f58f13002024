package reactor

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/engine"
)

// TestIdleRSS measures what an idle connection costs the server process:
// 10,000 connections are opened by a child process (so the client's
// descriptors and memory are not ours), and the growth of VmRSS from
// /proc/self/status, after a GC that returns freed memory to the OS, is
// divided by their number. Kernel socket buffers are not in RSS, in either
// this model or Go's net one, so the figure compares user-space state.
//
//	SWITCHBOARD_IDLE_RSS=1 go test -run TestIdleRSS -v ./internal/reactor
//
// It measures epoll and, where the kernel allows it, uring.
func TestIdleRSS(t *testing.T) {
	if os.Getenv("SWITCHBOARD_IDLE_RSS") == "" {
		t.Skip("set SWITCHBOARD_IDLE_RSS=1 to measure idle connection memory")
	}
	for _, model := range backends(t, "epoll", "uring") {
		t.Run(model, func(t *testing.T) { testIdleRSS(t, model) })
	}
}

func testIdleRSS(t *testing.T, model string) {
	const conns = 10000
	ts := startServer(t, model, engine.Config{Loops: 2, NoDelay: true, KeepAlive: 15 * time.Second}, echoHandler{})
	// One round trip first, so pools, buffers and lazily built runtime
	// state are counted in "before", not charged to the connections.
	c := dial(t, ts.addr)
	c.Write([]byte("warm"))
	io.ReadFull(c, make([]byte, 4))
	c.Close()
	waitFor(t, 5*time.Second, "warm-up closed", func() bool { return ts.stats.Active.Load() == 0 })

	settle()
	rss0, heap0 := vmRSS(t), heapInUse()

	child := exec.Command(os.Args[0], "-test.run=^TestIdleRSSClient$")
	child.Env = append(os.Environ(), "SWITCHBOARD_RSS_CLIENT="+ts.addr, "SWITCHBOARD_RSS_CONNS="+strconv.Itoa(conns))
	child.Stderr = os.Stderr
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		child.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "connected") {
		t.Fatalf("client: %q %v", line, err)
	}
	waitFor(t, 30*time.Second, "every connection accepted", func() bool { return ts.stats.Active.Load() == conns })

	settle()
	rss1, heap1 := vmRSS(t), heapInUse()
	t.Logf("%d idle connections: VmRSS %+d KiB = %d bytes/conn; Go heap in use %+d KiB = %d bytes/conn",
		conns, (rss1-rss0)/1024, (rss1-rss0)/conns, (heap1-heap0)/1024, (heap1-heap0)/conns)
	// A figure to read, not a pass/fail: RSS moves with the collector and
	// the allocator's page reuse. The struct's size, which is
	// deterministic, is TestConnSize's (internal/loopconn).
	t.Logf("target 256 bytes of RSS per idle connection: %s", map[bool]string{true: "met", false: "not met"}[(rss1-rss0)/conns <= 256])
}

// TestIdleRSSClient is the child half of TestIdleRSS: it holds the
// connections open until its stdin closes.
func TestIdleRSSClient(t *testing.T) {
	addr := os.Getenv("SWITCHBOARD_RSS_CLIENT")
	if addr == "" {
		t.Skip("run by TestIdleRSS")
	}
	n, _ := strconv.Atoi(os.Getenv("SWITCHBOARD_RSS_CONNS"))
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	to := &unix.SockaddrInet4{Port: ta.Port}
	copy(to.Addr[:], ta.IP.To4())
	fds := make([]int, 0, n)
	for i := range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Spread over 127.0.0.x sources: the ephemeral port range is
		// shared with everything else on the machine.
		unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 2, byte(1 + i%250)}})
		if err := unix.Connect(fd, to); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		fds = append(fds, fd)
	}
	fmt.Println("connected")
	io.Copy(io.Discard, os.Stdin)
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func settle() {
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	debug.FreeOSMemory()
}

func heapInUse() int {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int(ms.HeapInuse)
}

func vmRSS(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(b) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb * 1024
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
