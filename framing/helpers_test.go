package framing

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"
)

var sentinels = []error{ErrFrameTooLarge, ErrMalformed, ErrUnknownType, ErrTruncated}

// checkedDecode calls c.Decode and fails t unless the result keeps the
// Codec contract: n within buf, a frame only with n > 0, the frame inside
// buf[:n] (no copy) with its capacity capped, within MaxFrame, and errors
// wrapping a decoding sentinel. (No t.Helper: it runs thousands of times
// per fuzz input, and Helper is costly.)
func checkedDecode(t testing.TB, c Codec, buf []byte, atEOF bool) ([]byte, int, error) {
	frame, n, err := c.Decode(buf, atEOF)
	if n < 0 || n > len(buf) {
		t.Fatalf("%s: Decode(%d bytes) n = %d", c, len(buf), n)
	}
	if err != nil {
		if n != 0 || frame != nil {
			t.Fatalf("%s: Decode error %v with n = %d, frame %q", c, err, n, frame)
		}
		if !isSentinel(err) {
			t.Fatalf("%s: Decode error %v wraps no sentinel", c, err)
		}
		return frame, n, err
	}
	if n == 0 {
		if frame != nil {
			t.Fatalf("%s: Decode n = 0 with frame %q", c, frame)
		}
		return frame, n, err
	}
	if frame == nil {
		t.Fatalf("%s: Decode n = %d with a nil frame", c, n)
	}
	if len(frame) > c.MaxFrame() {
		t.Fatalf("%s: frame of %d bytes > MaxFrame %d", c, len(frame), c.MaxFrame())
	}
	if len(frame) > n {
		t.Fatalf("%s: frame of %d bytes > n = %d", c, len(frame), n)
	}
	if cap(frame) != len(frame) {
		t.Fatalf("%s: frame capacity %d != length %d", c, cap(frame), len(frame))
	}
	if !aliases(frame, buf[:n]) {
		t.Fatalf("%s: frame does not alias buf[:n]", c)
	}
	return frame, n, err
}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// aliases reports whether frame lies inside buf's memory.
func aliases(frame, buf []byte) bool {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(frame)))
	if len(frame) == 0 {
		// An empty sub-slice may keep any pointer into the array.
		return p >= base && p <= base+uintptr(cap(buf))
	}
	return p >= base && p+uintptr(len(frame)) <= base+uintptr(len(buf))
}

// decodeChunks feeds the chunks to c the way an engine does (append to a
// buffer, decode in a loop, drop what was consumed), then signals EOF. It
// returns copies of the frames and the first error.
func decodeChunks(t testing.TB, c Codec, chunks [][]byte) ([][]byte, error) {
	var buf []byte
	var out [][]byte
	drain := func(atEOF bool) error {
		for {
			frame, n, err := checkedDecode(t, c, buf, atEOF)
			if err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			out = append(out, bytes.Clone(frame))
			buf = buf[n:]
		}
	}
	for _, ch := range chunks {
		buf = append(buf, ch...)
		if err := drain(false); err != nil {
			return out, err
		}
	}
	if err := drain(true); err != nil {
		return out, err
	}
	if len(buf) > 0 {
		t.Fatalf("%s: %d bytes left after EOF without an error", c, len(buf))
	}
	return out, nil
}

// splitEvery cuts b into chunks of the given sizes, cycling through them.
func splitEvery(b []byte, sizes ...int) [][]byte {
	var out [][]byte
	for i := 0; len(b) > 0; i++ {
		k := min(max(sizes[i%len(sizes)], 1), len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

// roundTrip appends msg with c, and checks that decoding the result at
// EOF gives msg back, consuming all of it. An Append error is returned
// (after checking it leaves dst alone).
func roundTrip(t testing.TB, c Codec, msg []byte) error {
	dst := []byte("pre")
	out, err := c.Append(dst, msg)
	if err != nil {
		if !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("%s: Append error %v does not wrap ErrInvalidMessage", c, err)
		}
		if string(out) != "pre" {
			t.Fatalf("%s: failed Append changed dst to %q", c, out)
		}
		return err
	}
	if !bytes.HasPrefix(out, []byte("pre")) {
		t.Fatalf("%s: Append lost dst: %q", c, out)
	}
	if ov := len(out) - len(dst) - len(msg); ov < 0 || ov > c.Overhead() {
		t.Fatalf("%s: Append added %d bytes, Overhead %d", c, ov, c.Overhead())
	}
	wire := out[len(dst):]
	frame, n, err := checkedDecode(t, c, wire, true)
	if err != nil {
		t.Fatalf("%s: Decode(Append(%q)) = %v", c, msg, err)
	}
	if len(msg) == 0 && (c.String() == "raw" || c.String() == "eof") {
		if n != 0 {
			t.Fatalf("%s: empty message decoded as n = %d", c, n)
		}
		return nil
	}
	if c.String() == "raw" && len(msg) > c.MaxFrame() {
		// Raw splits a long message into MaxFrame pieces.
		msg = msg[:c.MaxFrame()]
		wire = wire[:len(msg)]
	}
	if n != len(wire) || !bytes.Equal(frame, msg) {
		t.Fatalf("%s: Decode(Append(%q)) = %q, n = %d of %d", c, msg, frame, n, len(wire))
	}
	return nil
}

// maxFuzzData bounds the input a fuzz target looks at. Longer inputs add
// little (maxFrame is at most 300 in the targets) and make the fuzzer's
// minimization of a new input, quadratic in its length, stall fuzzing for
// a minute.
const maxFuzzData = 640

// fuzzCodec checks the codec properties on arbitrary input data.
func fuzzCodec(t *testing.T, c Codec, data []byte) {
	data = data[:min(len(data), maxFuzzData)]
	// Direct decode, both ways.
	for _, atEOF := range []bool{false, true} {
		_, n, err := checkedDecode(t, c, data, atEOF)
		if n > 0 && !atEOF && c.String() != "raw" {
			// Every proper prefix of a frame asks for more bytes (raw
			// has no frames to speak of).
			step := max(1, n/64)
			for k := 0; k < n; k += step {
				if _, m, err := checkedDecode(t, c, data[:k], false); m != 0 || err != nil {
					t.Fatalf("%s: prefix %d of a %d-byte frame: n = %d, err = %v", c, k, n, m, err)
				}
			}
		}
		_ = err
	}

	// A resumed search finds what a fresh one finds, from any point the
	// contract allows: a prefix that held no frame.
	if r, ok := c.(Resumer); ok {
		step := max(1, len(data)/32)
		for k := 0; k <= len(data); k += step {
			if _, m, err := c.Decode(data[:k], false); m != 0 || err != nil {
				break
			}
			for _, atEOF := range []bool{false, true} {
				want, wn, werr := c.Decode(data, atEOF)
				got, gn, gerr := r.DecodeFrom(data, atEOF, k)
				if !bytes.Equal(got, want) || gn != wn || (gerr == nil) != (werr == nil) {
					t.Fatalf("%s: DecodeFrom(from %d) = %q, %d, %v; Decode = %q, %d, %v", c, k, got, gn, gerr, want, wn, werr)
				}
			}
		}
	}

	// Decoding is independent of how the stream is split.
	whole, errWhole := decodeChunks(t, c, [][]byte{data})
	size := 1
	if len(data) > 0 {
		size = int(data[0]%7) + 1
	}
	for _, chunks := range [][][]byte{splitEvery(data, 1), splitEvery(data, size, 1, 2*size)} {
		got, err := decodeChunks(t, c, chunks)
		if (err == nil) != (errWhole == nil) {
			t.Fatalf("%s: whole stream: %v; in chunks: %v", c, errWhole, err)
		}
		if c.String() == "raw" {
			if !bytes.Equal(bytes.Join(got, nil), bytes.Join(whole, nil)) {
				t.Fatalf("%s: chunked raw stream differs", c)
			}
			continue
		}
		if len(got) != len(whole) {
			t.Fatalf("%s: %d frames whole, %d in chunks", c, len(whole), len(got))
		}
		for i := range got {
			if !bytes.Equal(got[i], whole[i]) {
				t.Fatalf("%s: frame %d: %q whole, %q in chunks", c, i, whole[i], got[i])
			}
		}
	}

	// Every decoded frame encodes and decodes back to itself.
	for _, f := range whole {
		if err := roundTrip(t, c, f); err != nil {
			t.Fatalf("%s: Append of decoded frame %q: %v", c, f, err)
		}
	}
	// The data as a message either is refused or round-trips.
	_ = roundTrip(t, c, data)
}

func mustParse(t testing.TB, spec string, maxFrame int) Codec {
	t.Helper()
	c, err := Parse(spec, maxFrame)
	if err != nil {
		t.Fatalf("Parse(%q, %d): %v", spec, maxFrame, err)
	}
	return c
}

// fuzzMax maps a fuzzed value to a maximum frame size of 1 to 300: small,
// so that the limits are reached, and above 255, the limit of len:1.
func fuzzMax(m uint16) int { return int(m%300) + 1 }
