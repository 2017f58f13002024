package switchboard_test

// The chat service's memory with a consumer that never reads: the server
// runs in a child process (TestHostileChild) so its RSS is its own, sampled
// from /proc every few milliseconds while 49 members talk and one listens
// to nothing.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard"
)

// rssSampler follows a process's VmRSS and remembers the peak.
type rssSampler struct {
	pid  int
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if kib := procRSSKiB(pid); int64(kib) > s.peak.Load() {
				s.peak.Store(int64(kib))
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) Stop() int {
	close(s.stop)
	<-s.done
	return int(s.peak.Load())
}

func procRSSKiB(pid int) int {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// chatRun is one room: members-1 talkers that read everything and one
// member that never reads.
type chatRun struct {
	members, lines, size int
}

type chatResult struct {
	baseKiB, peakKiB, afterKiB, afterHeapKiB int
	baseHeapKiB, peakHeapKiB                 int
	slowClosed                               bool
	took                                     time.Duration
}

func runChat(t *testing.T, model string, r chatRun) chatResult {
	t.Helper()
	ch := startHostileChild(t, model, childServiceEnv+"=chat")
	ch.do(t, "gc", "collected")
	base := ch.stats(t)
	sampler := sampleRSS(ch.cmd.Process.Pid)

	conns := make([]net.Conn, r.members)
	for i := range conns {
		conns[i] = dial(t, ch.addr)
		conns[i].SetDeadline(time.Now().Add(120 * time.Second))
	}
	ch.awaitStats(t, "every member open", func(s childStats) bool { return s.active == r.members })
	// Members join in OnOpen, which follows the count: give the last ones
	// a moment, so nobody misses a line and waits for it forever.
	time.Sleep(100 * time.Millisecond)

	// The child's heap, sampled through its stats command while the room
	// talks (nothing else talks to the child meanwhile).
	heapStop, heapDone := make(chan struct{}), make(chan int)
	go func() {
		peak := 0
		for {
			select {
			case <-heapStop:
				heapDone <- peak
				return
			case <-time.After(5 * time.Millisecond):
			}
			fmt.Fprintln(ch.stdin, "stats")
			line, ok := <-ch.lines
			var s childStats
			if ok && strings.HasPrefix(line, "stats ") {
				fmt.Sscanf(line, "stats active=%d accepted=%d rejected=%d accepterrors=%d fds=%d rss=%d heap=%d goroutines=%d",
					&s.active, &s.accepted, &s.rejected, &s.acceptErrors, &s.fds, &s.rssKiB, &s.heapKiB, &s.goroutines)
				peak = max(peak, s.heapKiB)
			}
		}
	}()

	began := time.Now()
	talkers := r.members - 1
	want := (talkers - 1) * r.lines * r.size // what each talker must receive
	var wg sync.WaitGroup
	errs := make(chan error, 2*talkers)
	for i := 1; i < r.members; i++ {
		c := conns[i]
		wg.Add(2)
		go func() {
			defer wg.Done()
			line := bytes.Repeat([]byte{'a' + byte(i%26)}, r.size)
			line[r.size-1] = '\n'
			var batch []byte
			for range 16 {
				batch = append(batch, line...)
			}
			for k := 0; k < r.lines; k += 16 {
				if _, err := c.Write(batch[:min(16, r.lines-k)*r.size]); err != nil {
					errs <- fmt.Errorf("member %d write: %w", i, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			n, err := io.CopyN(io.Discard, c, int64(want))
			if err != nil {
				errs <- fmt.Errorf("member %d read %d of %d bytes: %w", i, n, want, err)
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	peak := sampler.Stop()
	close(heapStop)
	peakHeap := <-heapDone
	st := ch.stats(t)
	slowClosed := st.active < r.members
	for _, c := range conns {
		c.Close()
	}
	ch.awaitStats(t, "every member gone", func(s childStats) bool { return s.active == 0 })
	ch.do(t, "gc", "collected")
	after := ch.stats(t)
	return chatResult{base.rssKiB, peak, after.rssKiB, after.heapKiB, base.heapKiB, peakHeap, slowClosed, took}
}

// TestChatSlowConsumerMemory: 50 members, one never reading, on the models
// with their own output queues (goroutine and epoll). Peak RSS growth is
// bounded by what the slow consumer may hold (WriteLimit, 8 MiB here) plus
// a working set that does not scale with what the talkers have sent, and
// memory goes back once everyone has left.
//
// With SWITCHBOARD_CHAT_MEM=N it repeats the run N times per model with
// more traffic and prints the peaks (a measurement, not a CI test).
func TestChatSlowConsumerMemory(t *testing.T) {
	runs, r := 1, chatRun{members: 50, lines: 1000, size: 100}
	if raceEnabled {
		r.lines = 500 // the same pattern, at a pace the race detector allows
	}
	if n, err := strconv.Atoi(os.Getenv("SWITCHBOARD_CHAT_MEM")); err == nil && n > 0 {
		runs, r = n, chatRun{members: 50, lines: 4000, size: 100}
	}
	for _, model := range []string{switchboard.ModelGoroutine, switchboard.ModelEpoll} {
		if _, err := switchboard.LookupModel(model); err != nil {
			continue
		}
		t.Run(model, func(t *testing.T) {
			for i := range runs {
				res := runChat(t, model, r)
				grew := res.peakKiB - res.baseKiB
				t.Logf("run %d: %d members x %d lines of %d B in %v: VmRSS %d KiB before, peak %+d KiB, %d KiB after everyone left; Go heap %d KiB before, peak %d KiB, live %d KiB after; slow consumer closed: %v",
					i, r.members, r.lines, r.size, res.took.Round(time.Millisecond), res.baseKiB, grew, res.afterKiB,
					res.baseHeapKiB, res.peakHeapKiB, res.afterHeapKiB, res.slowClosed)
				// Before output moved to pooled chunks, goroutine peaked at
				// +224..+246 MiB of RSS in this run (+430..+540 MiB with
				// 4,000 lines): each member's two output buffers kept the
				// largest backlog they had ever held, and regrowing them
				// left garbage for the GC to pace. Now +60..+83 MiB on
				// either model. Under the race detector RSS includes its
				// shadow memory, so the heap is bounded instead.
				const bound = 128 << 10 // KiB
				if !raceEnabled && grew > bound {
					t.Errorf("peak RSS grew %d KiB, bound %d KiB", grew, bound)
				}
				if res.peakHeapKiB-res.baseHeapKiB > bound {
					t.Errorf("peak heap grew %d KiB, bound %d KiB", res.peakHeapKiB-res.baseHeapKiB, bound)
				}
				if res.afterHeapKiB > res.baseHeapKiB+16<<10 {
					t.Errorf("live heap %d KiB after everyone left, %d KiB before", res.afterHeapKiB, res.baseHeapKiB)
				}
			}
		})
	}
}
