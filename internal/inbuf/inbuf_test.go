package inbuf

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestReuse: a buffer put back is the one the next Get of its size class
// returns, emptied; odd sizes are not kept, and the lists are bounded.
func TestReuse(t *testing.T) {
	var f FreeLists
	b := f.Get(100)
	if cap(b) != Small || len(b) != 0 {
		t.Fatalf("Get(100): len %d cap %d", len(b), cap(b))
	}
	b = append(b, "partial"...)
	f.Put(b)
	if c := f.Get(Small); &c[:1][0] != &b[0] || len(c) != 0 {
		t.Fatal("the small buffer put back was not reused, empty")
	}
	if c := f.Get(Small + 1); cap(c) != Large {
		t.Fatalf("Get(Small+1): cap %d, want %d", cap(c), Large)
	}
	f.Put(make([]byte, 0, 12345))
	if len(f.small)+len(f.large) != 0 {
		t.Fatal("an odd-sized buffer was kept")
	}
	for range 2 * maxFree {
		f.Put(make([]byte, 0, Small))
	}
	if len(f.small) != maxFree {
		t.Fatalf("%d small buffers kept, want the bound %d", len(f.small), maxFree)
	}
}
