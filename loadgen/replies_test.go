package loadgen

import (
	"errors"
	"strings"
	"testing"

	"switchboard/framing"
)

// TestPartialBufs: buffers come back by size class, the list is bounded,
// and sizes it has no class for are made and dropped.
func TestPartialBufs(t *testing.T) {
	var p partialBufs
	b := p.Get(100)
	if cap(b) != 4<<10 || len(b) != 0 {
		t.Fatalf("Get(100): len %d cap %d, want 0, 4096", len(b), cap(b))
	}
	p.Put(b)
	if c := p.Get(4 << 10); &c[:1][0] != &b[:1][0] {
		t.Fatal("Get(4096) did not reuse the buffer Put took back")
	}
	if c := cap(p.Get(16<<10 + 1)); c != 32<<10 {
		t.Fatalf("Get(16K+1) has cap %d, want 32K", c)
	}
	p.Put(make([]byte, 0, 5000)) // no class's size
	p.Put(make([]byte, 0, 4<<20))
	for c := range p.free {
		if len(p.free[c]) != 0 {
			t.Fatalf("class %d kept a buffer of no class's size", c)
		}
	}
	for range 10 {
		p.Put(make([]byte, 0, 1<<20))
	}
	if n := len(p.free[partialClasses-1]); n != 2 {
		t.Fatalf("1 MiB class keeps %d buffers, want 2", n)
	}
}

// TestReplyErrors: a reply nobody asked for and a line longer than the
// reply framing allows end the connection with the same errors through
// either way of reading, after counting the good replies before them.
func TestReplyErrors(t *testing.T) {
	codec, err := framing.Parse("line", 16)
	if err != nil {
		t.Fatal(err)
	}
	c, err := validate(Config{Addr: "127.0.0.1:1", Conns: 1, Size: 8, Pipeline: 2, Duration: 1, Codec: codec})
	if err != nil {
		t.Fatal(err)
	}
	for _, lent := range []bool{true, false} {
		st := newStats()
		r := newReplyReader(c, st, lent)
		out := r.f.appendNext(nil, 10, true)
		extra := append(append([]byte(nil), out...), out...)
		if err := r.deliver(extra[:5], 20); err != nil {
			t.Fatal(err)
		}
		if err := r.deliver(extra[5:], 20); !errors.Is(err, errUnsolicited) {
			t.Fatalf("lent %v: second reply to one message: %v, want errUnsolicited", lent, err)
		}
		if st.replies != 1 || st.mismatches != 0 {
			t.Fatalf("lent %v: %d replies, %d mismatches before the error", lent, st.replies, st.mismatches)
		}

		st = newStats()
		r = newReplyReader(c, st, lent)
		r.f.appendNext(nil, 10, true)
		err := r.deliver([]byte(strings.Repeat("x", 10)), 20)
		if err == nil {
			err = r.deliver([]byte(strings.Repeat("x", 10)), 20)
		}
		if !errors.Is(err, framing.ErrFrameTooLarge) {
			t.Fatalf("lent %v: 20 bytes without a line end, max 16: %v, want ErrFrameTooLarge", lent, err)
		}
	}
}
