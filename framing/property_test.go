package framing

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// genMsg returns a random message that c can frame (or nil, false when the
// random attempt does not fit, e.g. it holds the delimiter).
func genMsg(r *rand.Rand, c Codec) []byte {
	spec := c.String()
	// Small alphabet including the bytes framing cares about, so that
	// delimiters, '\r' and digits turn up often.
	const alphabet = "ab0\r\n\x00\xff"
	n := r.IntN(c.MaxFrame() + 1)
	if r.IntN(8) == 0 {
		n = c.MaxFrame() // the boundary
	}
	switch {
	case spec == "fixed:7":
		n = 7
	case spec[:min(len(spec), 6)] == "typed:":
		types := []byte{'a', 'b', 'q', 0}
		sizes := []int{4, 16, 0, 1}
		i := r.IntN(len(types))
		msg := make([]byte, 1+sizes[i])
		msg[0] = types[i]
		for j := 1; j < len(msg); j++ {
			msg[j] = alphabet[r.IntN(len(alphabet))]
		}
		return msg
	}
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = alphabet[r.IntN(len(alphabet))]
	}
	return msg
}

// TestStreamProperty frames random messages, concatenates them, splits the
// stream at random points and decodes it incrementally: the messages must
// come back unchanged.
func TestStreamProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, spec := range allSpecs {
		for _, maxFrame := range []int{1, 5, 64, 300} {
			if spec == "fixed:7" && maxFrame < 7 {
				continue
			}
			if spec[:min(len(spec), 6)] == "typed:" && maxFrame < 16 {
				continue
			}
			c := mustParse(t, spec, maxFrame)
			t.Run(fmt.Sprintf("%s/max%d", spec, maxFrame), func(t *testing.T) {
				for iter := range 60 {
					var msgs [][]byte
					var stream []byte
					count := 1 + r.IntN(20)
					if spec == "eof" {
						count = 1
					}
					for len(msgs) < count {
						msg := genMsg(r, c)
						out, err := c.Append(stream, msg)
						if err != nil {
							// e.g. a line holding '\n': replace the
							// delimiter bytes and try again.
							for i, b := range msg {
								if b == '\n' || b == '\r' || b == 0 {
									msg[i] = 'a'
								}
							}
							if out, err = c.Append(stream, msg); err != nil {
								t.Fatalf("Append(%q): %v", msg, err)
							}
						}
						stream = out
						msgs = append(msgs, msg)
					}
					// Random chunks; every few iterations one byte at a time.
					var chunks [][]byte
					for rest := stream; len(rest) > 0; {
						k := 1
						if iter%4 != 0 {
							k = 1 + r.IntN(len(rest))
						}
						chunks = append(chunks, rest[:k])
						rest = rest[k:]
					}
					got, err := decodeChunks(t, c, chunks)
					if err != nil {
						t.Fatalf("decode error %v", err)
					}
					if spec == "raw" {
						// Raw keeps the bytes, not the boundaries.
						if !bytes.Equal(bytes.Join(got, nil), bytes.Join(msgs, nil)) {
							t.Fatalf("raw stream differs")
						}
						continue
					}
					if spec == "eof" && len(msgs[0]) == 0 {
						msgs = nil // an empty eof stream is no message
					}
					if len(got) != len(msgs) {
						t.Fatalf("%d messages decoded, %d sent", len(got), len(msgs))
					}
					for i := range got {
						if !bytes.Equal(got[i], msgs[i]) {
							t.Fatalf("message %d: got %q, sent %q", i, got[i], msgs[i])
						}
					}
				}
			})
		}
	}
}

// TestDecodeFromMatchesDecode feeds streams in random pieces and resumes
// each search where the last one stopped: the frames must be the ones a
// from-scratch Decode finds.
func TestDecodeFromMatchesDecode(t *testing.T) {
	for _, spec := range []string{"line", "delim:00", "delim:0d0a0d0a", "delim:6161"} {
		c, err := Parse(spec, 512)
		if err != nil {
			t.Fatal(err)
		}
		r, ok := c.(Resumer)
		if !ok {
			t.Fatalf("%s does not implement Resumer", spec)
		}
		rng := rand.New(rand.NewPCG(11, uint64(len(spec))))
		for round := range 200 {
			// Bytes from a small alphabet so delimiters, partial
			// delimiters and '\r' turn up often.
			stream := make([]byte, 1+rng.IntN(2000))
			for i := range stream {
				stream[i] = "ab\r\n\x00x"[rng.IntN(6)]
			}
			var buf []byte
			scanned := 0
			for len(stream) > 0 {
				k := 1 + rng.IntN(min(len(stream), 40))
				buf = append(buf, stream[:k]...)
				stream = stream[k:]
				atEOF := len(stream) == 0
				for {
					want, wn, werr := c.Decode(buf, atEOF)
					got, gn, gerr := r.DecodeFrom(buf, atEOF, scanned)
					if !bytes.Equal(got, want) || gn != wn || (gerr == nil) != (werr == nil) {
						t.Fatalf("%s round %d: DecodeFrom(%q, from %d) = %q, %d, %v; Decode = %q, %d, %v",
							spec, round, buf, scanned, got, gn, gerr, want, wn, werr)
					}
					if werr != nil {
						buf, scanned, stream = nil, 0, nil
						break
					}
					if wn == 0 {
						scanned = len(buf)
						break
					}
					buf, scanned = buf[wn:], 0
				}
			}
		}
	}
}

// BenchmarkLineInPieces decodes one 256 KiB line that arrives 64 bytes at a
// time, the way an engine sees a slow sender: rescanning from the start
// each time is quadratic, resuming where the last search stopped is linear.
func BenchmarkLineInPieces(b *testing.B) {
	const size, piece = 256 << 10, 64
	line := append(bytes.Repeat([]byte("x"), size), '\n')
	c := Line(1 << 20)
	r := c.(Resumer)
	for _, resume := range []bool{false, true} {
		b.Run(fmt.Sprintf("resume=%v", resume), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				scanned := 0
				for end := piece; ; end = min(end+piece, len(line)) {
					var n int
					if resume {
						_, n, _ = r.DecodeFrom(line[:end], false, scanned)
					} else {
						_, n, _ = c.Decode(line[:end], false)
					}
					if n > 0 {
						break
					}
					scanned = end
				}
			}
		})
	}
}
