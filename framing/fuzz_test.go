package framing

import (
	"errors"
	"testing"
)

// The fuzz targets check, for arbitrary bytes: no panic; n <= len(buf); a
// frame only with n > 0, inside buf[:n] and within MaxFrame; every proper
// prefix of a frame asks for more; the frames do not depend on how the
// stream is split; every decoded frame, and the input taken as a message
// when Append accepts it, survives Append then Decode. maxFrame is fuzzed
// too (1 to 300) so that the limits are reached. Seed corpora live in
// testdata/fuzz.

func FuzzRaw(f *testing.F) {
	f.Add([]byte("hello"), uint16(3))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, maxFrame uint16) {
		fuzzCodec(t, Raw(fuzzMax(maxFrame)), data)
	})
}

func FuzzLine(f *testing.F) {
	f.Add([]byte("hello\r\nworld\n"), uint16(16))
	f.Add([]byte("abcd\r\n"), uint16(3))
	f.Add([]byte("a\r\r\n\n"), uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, maxFrame uint16) {
		fuzzCodec(t, Line(fuzzMax(maxFrame)), data)
	})
}

func FuzzDelim(f *testing.F) {
	f.Add([]byte("\r\n\r\n"), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint16(64))
	f.Add([]byte("aa"), []byte("xaaaaxa"), uint16(3))
	f.Add([]byte("abab"), []byte("ababab"), uint16(2))
	f.Add([]byte{0}, []byte("a\x00bb\x00"), uint16(1))
	f.Fuzz(func(t *testing.T, delim, data []byte, maxFrame uint16) {
		c, err := Delim(delim, fuzzMax(maxFrame))
		if err != nil {
			if !errors.Is(err, ErrSpec) || (len(delim) > 0 && len(delim) <= MaxDelimLen) {
				t.Fatalf("Delim(%q): %v", delim, err)
			}
			return
		}
		fuzzCodec(t, c, data)
	})
}

func FuzzFixed(f *testing.F) {
	f.Add(uint16(3), []byte("abcdefgh"), uint16(0))
	f.Add(uint16(1), []byte("x"), uint16(1))
	f.Fuzz(func(t *testing.T, n uint16, data []byte, maxFrame uint16) {
		c, err := Fixed(int(n), fuzzMax(maxFrame))
		if err != nil {
			if !errors.Is(err, ErrSpec) || (n >= 1 && int(n) <= fuzzMax(maxFrame)) {
				t.Fatalf("Fixed(%d): %v", n, err)
			}
			return
		}
		fuzzCodec(t, c, data)
		// A message of the right size, made from data.
		msg := make([]byte, c.MaxFrame())
		copy(msg, data)
		if err := roundTrip(t, c, msg); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzLen(f *testing.F) {
	f.Add(uint8(2), false, []byte("\x00\x03abc\x00\x00"), uint16(10))
	f.Add(uint8(4), true, []byte("\x02\x00\x00\x00hi"), uint16(10))
	f.Add(uint8(8), false, []byte("\xff\xff\xff\xff\xff\xff\xff\xff"), uint16(10))
	f.Add(uint8(1), false, []byte("\x05hello\x01"), uint16(300))
	f.Fuzz(func(t *testing.T, size uint8, le bool, data []byte, maxFrame uint16) {
		c, err := Length(int(size), le, fuzzMax(maxFrame))
		if err != nil {
			if !errors.Is(err, ErrSpec) || size == 1 || size == 2 || size == 4 || size == 8 {
				t.Fatalf("Length(%d): %v", size, err)
			}
			return
		}
		fuzzCodec(t, c, data)
	})
}

func FuzzDigits(f *testing.F) {
	f.Add(uint8(5), []byte("00005hello00000"), uint16(100))
	f.Add(uint8(3), []byte("0a1"), uint16(100))
	f.Add(uint8(2), []byte("99"), uint16(5))
	f.Add(uint8(18), []byte("000000000000000003abc"), uint16(5))
	f.Fuzz(func(t *testing.T, n uint8, data []byte, maxFrame uint16) {
		c, err := Digits(int(n), fuzzMax(maxFrame))
		if err != nil {
			if !errors.Is(err, ErrSpec) || (n >= 1 && n <= 18) {
				t.Fatalf("Digits(%d): %v", n, err)
			}
			return
		}
		fuzzCodec(t, c, data)
	})
}

func FuzzTyped(f *testing.F) {
	f.Add([]byte("a\x04b\x10q\x00"), []byte("a1234q b0123456789abcdef"), uint16(64))
	f.Add([]byte("\x00\x01"), []byte("\x00x\x00"), uint16(1))
	f.Add([]byte("a\x02"), []byte("zzz"), uint16(8))
	// types holds (type byte, size) pairs; 32 pairs are plenty, and a
	// long types input would only slow the fuzzer's minimization down.
	f.Fuzz(func(t *testing.T, types, data []byte, maxFrame uint16) {
		types = types[:min(len(types), 64)]
		sizes := make(map[byte]int)
		for i := 0; i+1 < len(types); i += 2 {
			sizes[types[i]] = int(types[i+1])
		}
		c, err := Typed(sizes, fuzzMax(maxFrame))
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("Typed(%v): %v", sizes, err)
			}
			return
		}
		if _, err := Parse(c.String(), c.MaxFrame()); err != nil {
			t.Fatalf("Parse(%q): %v", c.String(), err)
		}
		fuzzCodec(t, c, data)
		// A message of a known type, made from data.
		typ := types[0]
		msg := make([]byte, 1+sizes[typ])
		msg[0] = typ
		copy(msg[1:], data)
		if err := roundTrip(t, c, msg); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzEOF(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"), uint16(100))
	f.Add([]byte("abcde"), uint16(4))
	f.Fuzz(func(t *testing.T, data []byte, maxFrame uint16) {
		fuzzCodec(t, EOF(fuzzMax(maxFrame)), data)
	})
}

// FuzzParse checks the spec parser: no panic, errors wrap ErrSpec, the
// canonical String parses back to the same codec, and the codec keeps the
// decoding properties.
func FuzzParse(f *testing.F) {
	for _, s := range allSpecs {
		f.Add(s, []byte("abc\n\x00\x00\x00\x01x"), uint16(64))
	}
	f.Add("typed:==3,0x2c=1", []byte(",x=abc"), uint16(8))
	f.Add("len:3", []byte{}, uint16(0))
	f.Add("delim:zz", []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, spec string, data []byte, maxFrame uint16) {
		c, err := Parse(spec, fuzzMax(maxFrame))
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrSpec", spec, err)
			}
			return
		}
		c2, err := Parse(c.String(), c.MaxFrame())
		if err != nil {
			t.Fatalf("Parse(%q) -> %q does not parse back: %v", spec, c.String(), err)
		}
		if c2.String() != c.String() || c2.MaxFrame() != c.MaxFrame() || c2.Overhead() != c.Overhead() {
			t.Fatalf("Parse(%q): %q/%d/%d, round trip %q/%d/%d", spec, c, c.MaxFrame(), c.Overhead(),
				c2, c2.MaxFrame(), c2.Overhead())
		}
		fuzzCodec(t, c, data)
	})
}
