package loadgen

import (
	"testing"

	"switchboard/framing"
)

// BenchmarkReplies measures the load generator's own cost of verifying
// echoed replies, the work it does for every message: the reads are
// simulated by copying each piece where the driver would read it, so no
// socket or server takes part. "-own" is the goroutine driver's way of
// reading (into the connection's accumulator), the rest the epoll
// worker's (a shared buffer lent to it).
func BenchmarkReplies(b *testing.B) {
	for _, bc := range []struct {
		name, spec string
		size, pipe int
		pieces     int // reads the batch of replies arrives in
	}{
		{"line-4096-in-16-pieces", "line", 4096, 1, 16},
		{"len4-64x16-one-read", "len:4", 64, 16, 1},
		{"len4-4096x4-in-3-pieces", "len:4", 4096, 4, 3},
		{"raw-64x16-one-read", "raw", 64, 16, 1},
	} {
		for _, lent := range []bool{true, false} {
			name := bc.name
			if !lent {
				name += "-own"
			}
			b.Run(name, func(b *testing.B) {
				codec, err := framing.Parse(bc.spec, 0)
				if err != nil {
					b.Fatal(err)
				}
				c, err := validate(Config{Addr: "127.0.0.1:1", Conns: 1, Size: bc.size, Pipeline: bc.pipe, Duration: 1, Codec: codec})
				if err != nil {
					b.Fatal(err)
				}
				st := newStats()
				r := newReplyReader(c, st, lent)
				out := make([]byte, 0, bc.pipe*(bc.size+8))
				b.SetBytes(int64(bc.pipe * bc.size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					out = out[:0]
					for range bc.pipe {
						out = r.f.appendNext(out, 10, true)
					}
					step := (len(out) + bc.pieces - 1) / bc.pieces
					for off := 0; off < len(out); off += step {
						if err := r.deliver(out[off:min(off+step, len(out))], 20); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				if st.mismatches != 0 || r.f.inflight() != 0 {
					b.Fatalf("%d mismatches, %d replies missing", st.mismatches, r.f.inflight())
				}
			})
		}
	}
}

// replyReader is one connection's receiving side as a driver runs it:
// lent, as an epoll worker reads into its shared buffer and lends each
// read to the connection's accumulator, or, as a goroutine per connection
// does, reading into the accumulator itself.
type replyReader struct {
	f    *flow
	st   *stats
	rbuf []byte // nil: read into the accumulator
}

func newReplyReader(c *config, st *stats, lent bool) *replyReader {
	r := &replyReader{st: st}
	split := ownSplitter(c.proto)
	if lent || !c.proto.framed {
		r.rbuf = make([]byte, readBufSize)
	}
	if lent {
		split = lentSplitter(c.proto, new(partialBufs))
	}
	r.f = newFlow(c.proto, 3, c.Pipeline, st.prog, split)
	return r
}

// deliver hands data to the flow as reads would, as many as the room
// they are offered takes.
func (r *replyReader) deliver(data []byte, t int64) error {
	for len(data) > 0 {
		buf := r.f.recvBuf(r.rbuf)
		n := copy(buf, data)
		data = data[n:]
		if err := r.f.consume(buf, n, r.st, t); err != nil {
			return err
		}
	}
	return nil
}
