package timerheap

import (
	"math/rand/v2"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type item struct {
	id   int
	slot [2]int32
}

// check verifies the heap order and that every item's slot points at its
// own entry.
func check(t *testing.T, h Heap[*item]) {
	t.Helper()
	for i, e := range h {
		if int(*e.slot) != i+1 || e.slot != &e.Item.slot[e.Kind] {
			t.Fatalf("entry %d: slot says %d", i, *e.slot)
		}
		if p := (i - 1) / 2; i > 0 && h[p].When > e.When {
			t.Fatalf("entry %d (%d) before its parent (%d)", i, e.When, h[p].When)
		}
	}
}

// TestRandomOperations: arming, moving and stopping at random keeps the
// heap ordered, and popping it yields the deadlines in order.
func TestRandomOperations(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	items := make([]*item, 50)
	for i := range items {
		items[i] = &item{id: i}
	}
	var h Heap[*item]
	want := map[[2]int]int64{} // (item, kind) -> deadline
	for range 5000 {
		it, k := items[r.IntN(len(items))], r.IntN(2)
		if r.IntN(3) == 0 {
			h.Stop(&it.slot[k])
			delete(want, [2]int{it.id, k})
		} else {
			when := r.Int64N(1000)
			h.Set(it, uint8(k), &it.slot[k], when)
			want[[2]int{it.id, k}] = when
		}
		check(t, h)
	}
	if len(h) != len(want) {
		t.Fatalf("%d entries, want %d", len(h), len(want))
	}
	var got, wantSorted []int64
	for _, w := range want {
		wantSorted = append(wantSorted, w)
	}
	slices.Sort(wantSorted)
	for h.Next() >= 0 {
		e := h[0]
		if want[[2]int{e.Item.id, int(e.Kind)}] != e.When {
			t.Fatalf("item %d kind %d due %d, armed for %d", e.Item.id, e.Kind, e.When, want[[2]int{e.Item.id, int(e.Kind)}])
		}
		got = append(got, e.When)
		h.Stop(e.slot)
	}
	if !slices.Equal(got, wantSorted) {
		t.Fatal("deadlines did not come out in order")
	}
	for _, it := range items {
		if it.slot != [2]int32{} {
			t.Fatalf("item %d still thinks it is armed: %v", it.id, it.slot)
		}
	}
}
