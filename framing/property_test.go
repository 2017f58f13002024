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
