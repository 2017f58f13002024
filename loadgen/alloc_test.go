package loadgen

import (
	"testing"

	"switchboard/framing"
)

// TestNoAllocsPerMessage: framing a message and verifying its echo, the
// work done for every message, allocate nothing, so a long run puts no
// load on the garbage collector of the load generator.
func TestNoAllocsPerMessage(t *testing.T) {
	for _, tc := range []struct{ spec, tmpl string }{
		{"raw", ""}, {"line", ""}, {"len:4", ""}, {"typed:a=63", ""},
		{"raw", "k{rand:1-100}:{bytes:8}"}, {"line", "GET key:{rand:1-100000} {counter}"},
		{"resp", "SET key:{rand:1-100000} {bytes:16}"},
	} {
		spec := tc.spec + " " + tc.tmpl
		codec, err := framing.Parse(tc.spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Addr: "127.0.0.1:1", Conns: 1, Size: 64, Pipeline: 4, Duration: 1, Codec: codec}
		if tc.tmpl != "" {
			if cfg.Template, err = ParseTemplate(tc.tmpl); err != nil {
				t.Fatal(err)
			}
		}
		c, err := validate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Both ways of reading: an epoll worker's, lent, and a goroutine's.
		for _, lent := range []bool{true, false} {
			st := newStats()
			r := newReplyReader(c, st, lent)
			f := r.f
			out := make([]byte, 0, 4096)
			// Warm up the buffers that grow once.
			for i := 0; i < 8; i++ {
				out = f.appendNext(out[:0], 10, true)
				if err := r.deliver(out, 20); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(1000, func() {
				out = f.appendNext(out[:0], 10, true)
				// Deliver the echo in two pieces, as TCP may.
				if err := r.deliver(out[:10], 20); err != nil {
					t.Fatal(err)
				}
				if err := r.deliver(out[10:], 30); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s (lent %v): %v allocations per message", spec, lent, allocs)
			}
			if st.mismatches != 0 || st.replies != 8+1+1000 {
				t.Errorf("%s (lent %v): %d mismatches, %d replies", spec, lent, st.mismatches, st.replies)
			}
		}
	}
}
