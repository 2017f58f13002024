package outbox

import (
	"bytes"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// queue appends msg as one message, the way an engine's Write does.
func queue(o *Outbox, msg []byte) {
	o.Commit(append(o.Reserve(len(msg)), msg...))
}

// drain takes everything queued through Head and Gather, k bytes at a time
// as short writes would, and returns it.
func drain(o *Outbox, k int) []byte {
	var out []byte
	for o.Len() > 0 {
		var bufs [][]byte
		if b, more := o.Head(); !more {
			bufs = [][]byte{b}
		} else {
			var total int
			bufs, total = o.Gather(nil, 3)
			sum := 0
			for _, b := range bufs {
				sum += len(b)
			}
			if sum != total {
				panic("Gather's total is not the sum of its buffers")
			}
		}
		// A write of at most k bytes takes a prefix of bufs.
		n := 0
		for _, b := range bufs {
			take := min(k-n, len(b))
			out = append(out, b[:take]...)
			n += take
		}
		o.Consume(n)
	}
	return out
}

// TestOrderAndShortWrites: messages of every size, including ones larger
// than a chunk, come out in order and whole, however short the writes.
func TestOrderAndShortWrites(t *testing.T) {
	for _, k := range []int{97, 4096, 1 << 20} {
		var o Outbox
		var want []byte
		for i, size := range []int{10, 0, SmallChunk, 3, LargeChunk + 1, 100, LargeChunk} {
			msg := bytes.Repeat([]byte{byte('a' + i)}, size)
			queue(&o, msg)
			want = append(want, msg...)
		}
		if o.Len() != len(want) {
			t.Fatalf("Len = %d, want %d", o.Len(), len(want))
		}
		if got := drain(&o, k); !bytes.Equal(got, want) {
			t.Fatalf("writes of %d: %d bytes out, want %d, or out of order", k, len(got), len(want))
		}
		if o.head != nil || o.tail != nil || o.Len() != 0 {
			t.Fatalf("writes of %d: chunks left after draining", k)
		}
	}
}

// TestChunkSizes: the first chunk is small, the next large, an oversized
// message gets its own, and a reservation nobody commits adds nothing.
func TestChunkSizes(t *testing.T) {
	var o Outbox
	queue(&o, []byte("hi"))
	if cap(o.head.b) != SmallChunk {
		t.Fatalf("first chunk %d bytes, want %d", cap(o.head.b), SmallChunk)
	}
	queue(&o, make([]byte, SmallChunk))
	if cap(o.tail.b) != LargeChunk {
		t.Fatalf("second chunk %d bytes, want %d", cap(o.tail.b), LargeChunk)
	}
	queue(&o, make([]byte, LargeChunk+5))
	if cap(o.tail.b) != LargeChunk+5 {
		t.Fatalf("oversized chunk %d bytes, want its own size", cap(o.tail.b))
	}
	before := o.Len()
	o.Reserve(LargeChunk) // a Write that failed after reserving
	if o.Len() != before {
		t.Fatalf("an uncommitted reservation changed Len from %d to %d", before, o.Len())
	}
	drain(&o, 1<<20)
	if o.head != nil {
		t.Fatal("the empty reserved chunk outlived the drain")
	}
	queue(&o, []byte("x"))
	o.Release()
	if o.head != nil || o.Len() != 0 {
		t.Fatal("Release left chunks or bytes")
	}
}
