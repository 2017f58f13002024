package engine

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// TestAddrLimiter: at most max per address, addresses independent,
// IPv4-mapped IPv6 counted as IPv4, invalid addresses always admitted,
// nothing left in the map once everything is released.
func TestAddrLimiter(t *testing.T) {
	l := NewAddrLimiter(2)
	a := netip.MustParseAddr("192.0.2.1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	b := netip.MustParseAddr("2001:db8::1")
	if !l.Acquire(a) || !l.Acquire(mapped) {
		t.Fatal("refused under the limit")
	}
	if l.Acquire(a) {
		t.Fatal("a third connection from one address admitted (mapped form counted apart?)")
	}
	if !l.Acquire(b) {
		t.Fatal("another address refused")
	}
	for range 5 {
		if !l.Acquire(netip.Addr{}) {
			t.Fatal("an address-less (Unix) connection refused")
		}
	}
	l.Release(a)
	if !l.Acquire(a) {
		t.Fatal("a freed slot not reused")
	}
	l.Release(a)
	l.Release(mapped)
	l.Release(b)
	l.Release(netip.Addr{})
	if n := l.Open(); n != 0 {
		t.Fatalf("%d addresses still held after every release", n)
	}
	if NewAddrLimiter(0) != nil {
		t.Fatal("no limit should be a nil limiter")
	}
	var none *AddrLimiter
	if !none.Acquire(a) || none.Open() != 0 {
		t.Fatal("a nil limiter must admit everything")
	}
	none.Release(a)
}

// TestAddrLimiterConcurrent: loops acquire and release at once (race
// detector), and the count never passes the limit.
func TestAddrLimiterConcurrent(t *testing.T) {
	l := NewAddrLimiter(3)
	a := netip.MustParseAddr("198.51.100.7")
	var wg sync.WaitGroup
	var mu sync.Mutex
	held, peak := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if l.Acquire(a) {
					mu.Lock()
					held++
					peak = max(peak, held)
					held--
					mu.Unlock()
					l.Release(a)
				}
			}
		}()
	}
	wg.Wait()
	if peak > 3 || l.Open() != 0 {
		t.Fatalf("peak %d over a limit of 3, %d addresses left", peak, l.Open())
	}
}

// TestRecovered: the reason wraps ErrPanic and names the callback; the
// panic is counted and logged with its stack.
func TestRecovered(t *testing.T) {
	var buf bytes.Buffer
	var st Stats
	err := Recovered(slog.New(slog.NewTextHandler(&buf, nil)), &st, nil, "OnMessage", "kaboom")
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "OnMessage") || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("reason %q", err)
	}
	if st.Panics.Load() != 1 {
		t.Fatalf("Panics = %d", st.Panics.Load())
	}
	if log := buf.String(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "TestRecovered") {
		t.Fatalf("log line lacks the level or the stack:\n%s", log)
	}
	if err := FrameTimedOut(0); !errors.Is(err, ErrFrameTimeout) {
		t.Fatalf("FrameTimedOut: %v", err)
	}
}
