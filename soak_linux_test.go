package switchboard_test

// A soak, as a command (not CI): many connections held for a long time at
// a low fixed rate, every echoed byte verified, the server's memory,
// descriptors and goroutines sampled so "flat" is a figure.
//
//	SWITCHBOARD_SOAK=10m SWITCHBOARD_SOAK_CONNS=15000 SWITCHBOARD_SOAK_MODEL=epoll \
//	  flock /tmp/switchboard-bench.lock go test -run TestSoak -v -timeout 0 .

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard"
)

func TestSoak(t *testing.T) {
	dur, err := time.ParseDuration(os.Getenv("SWITCHBOARD_SOAK"))
	if err != nil || dur <= 0 {
		t.Skip("set SWITCHBOARD_SOAK=10m (and SWITCHBOARD_SOAK_CONNS, _MODEL, _RATE) to soak")
	}
	conns := envInt("SWITCHBOARD_SOAK_CONNS", 15000)
	rate := envInt("SWITCHBOARD_SOAK_RATE", 5000) // messages per second, all connections together
	model := os.Getenv("SWITCHBOARD_SOAK_MODEL")
	if model == "" {
		model = switchboard.ModelEpoll
	}
	ch := startHostileChild(t, model)

	// Spread over 127.0.0.2.. so no source address needs more than 10,000
	// ephemeral ports.
	var open []net.Conn
	for i := range conns {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/10000))}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", ch.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
	}
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	ch.awaitStats(t, "every connection open", func(s childStats) bool { return s.active == conns })

	type sample struct{ rss, fds, goroutines int }
	var first, peak, last sample
	var samples int
	record := func() {
		s := ch.stats(t)
		cur := sample{s.rssKiB, s.fds, s.goroutines}
		if samples == 0 {
			first = cur
		}
		peak = sample{max(peak.rss, cur.rss), max(peak.fds, cur.fds), max(peak.goroutines, cur.goroutines)}
		last = cur
		samples++
	}
	record()

	// Each connection sends one 31-byte message every period and checks
	// its echo, byte for byte.
	period := time.Duration(float64(conns) / float64(rate) * float64(time.Second))
	var verified, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Start spread over one period, so the rate is even.
			time.Sleep(time.Duration(int64(period) * int64(i) / int64(conns)))
			tick := time.NewTicker(period)
			defer tick.Stop()
			got := make([]byte, 31)
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				msg := fmt.Appendf(nil, "%08d %08d %013d", i, seq, seq*7919) // 31 bytes
				c.SetDeadline(time.Now().Add(30 * time.Second))
				_, err := c.Write(msg)
				if err == nil {
					_, err = io.ReadFull(c, got[:len(msg)])
				}
				if err == nil && !bytes.Equal(got[:len(msg)], msg) {
					err = fmt.Errorf("echo %q, sent %q", got, msg)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("conn %d seq %d: %w", i, seq, err))
					return
				}
				verified.Add(1)
			}
		}()
	}
	began := time.Now()
	for time.Since(began) < dur {
		time.Sleep(min(10*time.Second, dur/10))
		record()
	}
	close(stop)
	wg.Wait()
	record()
	elapsed := time.Since(began)
	t.Logf("%s: %d connections for %v at %d msg/s offered: %d messages verified (%.0f/s), %d connections failed",
		model, conns, elapsed.Round(time.Second), rate, verified.Load(), float64(verified.Load())/elapsed.Seconds(), failed.Load())
	t.Logf("server VmRSS first/max/last %d/%d/%d KiB; descriptors %d/%d/%d; goroutines %d/%d/%d (%d samples)",
		first.rss, peak.rss, last.rss, first.fds, peak.fds, last.fds, first.goroutines, peak.goroutines, last.goroutines, samples)
	if err, _ := firstErr.Load().(error); err != nil {
		t.Fatal(err)
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
