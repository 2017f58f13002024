package poller

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func eachBackend(t *testing.T, f func(t *testing.T, p Poller)) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			p, err := New(name)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			if p.Name() != name {
				t.Fatalf("Name() = %q", p.Name())
			}
			f(t, p)
		})
	}
}

// pair returns a connected, non-blocking stream socket pair.
func pair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		unix.SetNonblock(fd, true)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func wait(t *testing.T, p Poller, d time.Duration) []Event {
	t.Helper()
	evs := make([]Event, 64)
	n, err := p.Wait(evs, d)
	if err != nil {
		t.Fatal(err)
	}
	return evs[:n]
}

// merged folds a backend's events for fd into one (kqueue reports read
// and write readiness as separate events).
func merged(evs []Event, fd int) (e Event, found bool) {
	for _, ev := range evs {
		if int(ev.Fd) == fd {
			found = true
			e.Fd = ev.Fd
			e.Readable = e.Readable || ev.Readable
			e.Writable = e.Writable || ev.Writable
			e.HangUp = e.HangUp || ev.HangUp
		}
	}
	return e, found
}

func TestInterest(t *testing.T) {
	eachBackend(t, func(t *testing.T, p Poller) {
		a, b := pair(t)
		if err := p.Add(a, true, false); err != nil {
			t.Fatal(err)
		}
		if evs := wait(t, p, 0); len(evs) != 0 {
			t.Fatalf("events with nothing to read: %+v", evs)
		}
		unix.Write(b, []byte("ping"))
		e, ok := merged(wait(t, p, time.Second), a)
		if !ok || !e.Readable || e.Writable {
			t.Fatalf("after a write from the peer: %+v %v", e, ok)
		}
		// Level-triggered: still readable while unread.
		if e, ok := merged(wait(t, p, time.Second), a); !ok || !e.Readable {
			t.Fatalf("not reported again while unread: %+v", e)
		}
		if err := p.Modify(a, false, true); err != nil {
			t.Fatal(err)
		}
		if e, ok := merged(wait(t, p, time.Second), a); !ok || !e.Writable || e.Readable {
			t.Fatalf("write interest only: %+v %v", e, ok)
		}
		if err := p.Modify(a, false, false); err != nil {
			t.Fatal(err)
		}
		if evs := wait(t, p, 20*time.Millisecond); len(evs) != 0 {
			t.Fatalf("events with no interest: %+v", evs)
		}
		if err := p.Modify(a, true, false); err != nil {
			t.Fatal(err)
		}
		if err := p.Delete(a); err != nil {
			t.Fatal(err)
		}
		if evs := wait(t, p, 20*time.Millisecond); len(evs) != 0 {
			t.Fatalf("events after Delete: %+v", evs)
		}
		if err := p.Modify(a, true, false); err == nil {
			t.Fatal("Modify of a deleted descriptor succeeded")
		}
		if err := p.Add(a, true, false); err != nil {
			t.Fatalf("Add after Delete: %v", err)
		}
		if err := p.Add(a, true, false); err == nil {
			t.Fatal("second Add of one descriptor succeeded")
		}
	})
}

func TestHangUp(t *testing.T) {
	eachBackend(t, func(t *testing.T, p Poller) {
		a, b := pair(t)
		p.Add(a, true, false)
		unix.Shutdown(b, unix.SHUT_RDWR)
		e, ok := merged(wait(t, p, time.Second), a)
		if !ok || !(e.Readable || e.HangUp) {
			t.Fatalf("peer shutdown not reported: %+v %v", e, ok)
		}
		if n, err := unix.Read(a, make([]byte, 8)); n != 0 || err != nil {
			t.Fatalf("read after hang-up: %d %v", n, err)
		}
	})
}

func TestWake(t *testing.T) {
	eachBackend(t, func(t *testing.T, p Poller) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(30 * time.Millisecond)
			p.Wake()
		}()
		began := time.Now()
		if evs := wait(t, p, 10*time.Second); len(evs) != 0 {
			t.Fatalf("a wake produced events: %+v", evs)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("Wake did not end the wait (%v)", d)
		}
		<-done
		// Many wakes before a Wait cost one wake-up, then Wait blocks
		// again.
		for range 100 {
			p.Wake()
		}
		wait(t, p, time.Second)
		if d := longestWait(t, p, 30*time.Millisecond); d < 25*time.Millisecond {
			t.Fatalf("wake-ups were not drained: later Waits returned after %v at most", d)
		}
	})
}

// longestWait runs a few empty Waits of d and returns the longest: a
// signal (the Go runtime preempts with SIGURG) can end any one of them
// early with EINTR, which Wait reports as zero events, by design.
func longestWait(t *testing.T, p Poller, d time.Duration) time.Duration {
	t.Helper()
	var longest time.Duration
	for range 5 {
		began := time.Now()
		if evs := wait(t, p, d); len(evs) != 0 {
			t.Fatalf("events from nothing: %+v", evs)
		}
		longest = max(longest, time.Since(began))
		if longest >= d {
			break
		}
	}
	return longest
}

func TestTimeout(t *testing.T) {
	eachBackend(t, func(t *testing.T, p Poller) {
		for _, d := range []time.Duration{300 * time.Microsecond, 20 * time.Millisecond} {
			if got := longestWait(t, p, d); got < d {
				t.Fatalf("Wait(%v) returned after %v at most", d, got)
			}
		}
	})
}

// TestManyAndSwapRemove registers many descriptors, deletes some while the
// caller walks the fired list, and reads with a short event buffer: every
// ready descriptor is reported, exactly the registered ones, and none is
// starved.
func TestManyAndSwapRemove(t *testing.T) {
	eachBackend(t, func(t *testing.T, p Poller) {
		const n = 200
		ends := map[int]int{} // watched fd -> peer
		for range n {
			a, b := pair(t)
			if err := p.Add(a, true, false); err != nil {
				t.Fatal(err)
			}
			ends[a] = b
			unix.Write(b, []byte("x"))
		}
		seen := map[int]bool{}
		deleted := map[int]bool{}
		evs := make([]Event, 16)
		for round := 0; len(seen)+len(deleted) < n && round < 1000; round++ {
			k, err := p.Wait(evs, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			thisRound := map[int]bool{}
			for _, ev := range evs[:k] {
				fd := int(ev.Fd)
				if thisRound[fd] {
					// Deleted earlier in this walk: the fired list was
					// filled before, and the owner skips it.
					continue
				}
				if _, ok := ends[fd]; !ok || deleted[fd] {
					t.Fatalf("event for fd %d, not registered", fd)
				}
				if seen[fd] {
					continue
				}
				seen[fd] = true
				// Drain it so it stops being ready, and delete another
				// descriptor in the middle of the walk, as a reactor
				// closing a connection would.
				unix.Read(fd, make([]byte, 8))
				for other := range ends {
					if !seen[other] && !deleted[other] && other%3 == 0 {
						if err := p.Delete(other); err != nil {
							t.Fatal(err)
						}
						deleted[other] = true
						thisRound[other] = true
						break
					}
				}
			}
		}
		if len(seen)+len(deleted) != n {
			t.Fatalf("reported %d + deleted %d of %d ready descriptors", len(seen), len(deleted), n)
		}
		if evs := wait(t, p, 10*time.Millisecond); len(evs) != 0 {
			t.Fatalf("events after everything was drained: %+v", evs)
		}
	})
}

func TestSelectFdTooLarge(t *testing.T) {
	p, err := New("select")
	if err != nil {
		t.Skip(err)
	}
	defer p.Close()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || uint64(lim.Cur) <= uint64(FdSetSize)+10 {
		t.Skipf("descriptor limit %d too low", lim.Cur)
	}
	a, _ := pair(t)
	big := FdSetSize + 5
	if err := unix.Dup2(a, big); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(big)
	if err := p.Add(big, true, false); !errors.Is(err, ErrFdTooLarge) {
		t.Fatalf("Add(%d) = %v, want ErrFdTooLarge", big, err)
	}
	if err := p.Add(a, true, false); err != nil {
		t.Fatalf("a small descriptor after the refusal: %v", err)
	}
}

func TestUnsupported(t *testing.T) {
	if _, err := New("iocp"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("New(iocp) = %v, want ErrUnsupported", err)
	}
	if len(Names()) < 3 {
		t.Fatalf("Names() = %v", Names())
	}
}
