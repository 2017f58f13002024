package framing

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

type decodeCase struct {
	in    string
	eof   bool
	frame string // expected frame when n > 0
	n     int
	err   error // expected sentinel, nil for none
}

// need is a need-more-bytes result, ok a frame, bad an error.
func need(in string) decodeCase             { return decodeCase{in: in} }
func needEOF(in string) decodeCase          { return decodeCase{in: in, eof: true} }
func ok(in, frame string, n int) decodeCase { return decodeCase{in: in, frame: frame, n: n} }
func okEOF(in, frame string, n int) decodeCase {
	return decodeCase{in: in, eof: true, frame: frame, n: n}
}
func bad(in string, err error) decodeCase    { return decodeCase{in: in, err: err} }
func badEOF(in string, err error) decodeCase { return decodeCase{in: in, eof: true, err: err} }

func TestDecode(t *testing.T) {
	tests := []struct {
		spec  string
		max   int
		cases []decodeCase
	}{
		{"raw", 4, []decodeCase{
			need(""), needEOF(""),
			ok("ab", "ab", 2), okEOF("ab", "ab", 2),
			ok("abcdef", "abcd", 4), okEOF("abcdef", "abcd", 4),
		}},
		{"line", 4, []decodeCase{
			need(""), needEOF(""),
			need("abc"), badEOF("abc", ErrTruncated),
			ok("abc\n", "abc", 4), ok("abc\r\n", "abc", 5),
			ok("\n", "", 1), ok("\r\n", "", 2), ok("\n\n", "", 1),
			ok("a\r\r\n", "a\r", 4), ok("a\rb\n", "a\rb", 4),
			ok("ab\nrest", "ab", 3), okEOF("ab\nrest", "ab", 3),
			ok("abcd\n", "abcd", 5), ok("abcd\r\n", "abcd", 6),
			need("abcd"), need("abcd\r"), badEOF("abcd\r", ErrTruncated),
			bad("abcde", ErrFrameTooLarge), bad("abcde\n", ErrFrameTooLarge),
			bad("abcd\rx", ErrFrameTooLarge), bad("abcde\r\n", ErrFrameTooLarge),
			badEOF("abcde", ErrFrameTooLarge),
		}},
		{"delim:0d0a0d0a", 4, []decodeCase{
			need(""), needEOF(""),
			ok("ab\r\n\r\n", "ab", 6), ok("\r\n\r\n", "", 4),
			ok("ab\r\n\r\nxy", "ab", 6), ok("\r\n\r\r\n\r\n", "\r\n\r", 7),
			ok("abcd\r\n\r\n", "abcd", 8),
			need("ab\r\n"), badEOF("ab\r\n", ErrTruncated),
			need("abcd"), need("abcd\r"), need("abcd\r\n"), need("abcd\r\n\r"),
			bad("abcde", ErrFrameTooLarge), bad("abcd\r\n\rx", ErrFrameTooLarge),
			bad("abcd\rx", ErrFrameTooLarge), bad("abcde\r\n\r\n", ErrFrameTooLarge),
		}},
		{"delim:00", 4, []decodeCase{
			ok("ab\x00", "ab", 3), ok("\x00", "", 1), ok("abcd\x00", "abcd", 5),
			need("abcd"), bad("abcde", ErrFrameTooLarge), badEOF("ab", ErrTruncated),
		}},
		{"delim:6161", 4, []decodeCase{ // "aa"
			ok("xaaa", "x", 3), ok("aaa", "", 2), need("abca"), need("bcda"),
			bad("bcdab", ErrFrameTooLarge),
		}},
		{"fixed:3", 0, []decodeCase{
			need(""), needEOF(""), need("ab"), badEOF("ab", ErrTruncated),
			ok("abc", "abc", 3), ok("abcd", "abc", 3), okEOF("abcd", "abc", 3),
		}},
		{"len:2", 10, []decodeCase{
			need(""), needEOF(""), need("\x00"), badEOF("\x00", ErrTruncated),
			ok("\x00\x03abc", "abc", 5), ok("\x00\x03abcd", "abc", 5), ok("\x00\x00", "", 2),
			ok("\x00\x0a0123456789", "0123456789", 12),
			need("\x00\x03ab"), badEOF("\x00\x03ab", ErrTruncated),
			bad("\x00\x0b", ErrFrameTooLarge), bad("\x01\x00", ErrFrameTooLarge),
		}},
		{"len:2le", 10, []decodeCase{
			ok("\x03\x00abc", "abc", 5), bad("\x00\x01", ErrFrameTooLarge),
		}},
		{"len:1", 0, []decodeCase{
			ok("\x02hi", "hi", 3), ok("\xff"+strings.Repeat("x", 255), strings.Repeat("x", 255), 256),
		}},
		{"len:4", 10, []decodeCase{
			ok("\x00\x00\x00\x02hi", "hi", 6), need("\x00\x00\x00"),
			bad("\x80\x00\x00\x00", ErrFrameTooLarge),
		}},
		{"len:4le", 10, []decodeCase{ok("\x02\x00\x00\x00hi", "hi", 6)}},
		{"len:8", 10, []decodeCase{
			ok("\x00\x00\x00\x00\x00\x00\x00\x02hi", "hi", 10),
			bad("\xff\xff\xff\xff\xff\xff\xff\xff", ErrFrameTooLarge),
			bad("\x00\x00\x00\x01\x00\x00\x00\x00", ErrFrameTooLarge),
		}},
		{"len:8le", 10, []decodeCase{ok("\x02\x00\x00\x00\x00\x00\x00\x00hi", "hi", 10)}},
		{"digits:3", 10, []decodeCase{
			need(""), needEOF(""),
			ok("005hello", "hello", 8), ok("005hellox", "hello", 8), ok("000", "", 3),
			ok("010abcdefghij", "abcdefghij", 13),
			need("0"), need("01"), need("005he"), badEOF("00", ErrTruncated), badEOF("005he", ErrTruncated),
			bad("1", ErrFrameTooLarge), bad("02", ErrFrameTooLarge), bad("011", ErrFrameTooLarge),
			bad("a", ErrMalformed), bad("0a", ErrMalformed), bad("00 ", ErrMalformed), bad("-01", ErrMalformed),
		}},
		{"typed:a=2,b=0", 10, []decodeCase{
			need(""), needEOF(""),
			ok("axy", "axy", 3), ok("axyz", "axy", 3), ok("b", "b", 1), ok("bb", "b", 1),
			need("a"), need("ax"), badEOF("ax", ErrTruncated),
			bad("z", ErrUnknownType), bad("\x00", ErrUnknownType), bad("zaxy", ErrUnknownType),
		}},
		{"typed:0x00=1", 10, []decodeCase{ok("\x00\x07", "\x00\x07", 2), bad("0", ErrUnknownType)}},
		{"eof", 4, []decodeCase{
			need(""), needEOF(""), need("ab"), okEOF("ab", "ab", 2), okEOF("abcd", "abcd", 4),
			bad("abcde", ErrFrameTooLarge), badEOF("abcde", ErrFrameTooLarge),
		}},
	}
	for _, tt := range tests {
		c := mustParse(t, tt.spec, tt.max)
		for _, tc := range tt.cases {
			buf := []byte(tc.in)
			frame, n, err := checkedDecode(t, c, buf, tc.eof)
			switch {
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Errorf("%s Decode(%q, %v): err = %v, want %v", tt.spec, tc.in, tc.eof, err, tc.err)
				}
			case err != nil:
				t.Errorf("%s Decode(%q, %v): unexpected error %v", tt.spec, tc.in, tc.eof, err)
			case n != tc.n || string(frame) != tc.frame:
				t.Errorf("%s Decode(%q, %v) = %q, %d; want %q, %d", tt.spec, tc.in, tc.eof, frame, n, tc.frame, tc.n)
			}
		}
	}
}

func TestDecodeErrorDetail(t *testing.T) {
	c := mustParse(t, "len:4", 100)
	_, _, err := c.Decode([]byte{0, 0, 1, 0}, false)
	if !errors.Is(err, ErrFrameTooLarge) || !strings.Contains(err.Error(), "256") || !strings.Contains(err.Error(), "100") {
		t.Errorf("error %q lacks the detail", err)
	}
	c = mustParse(t, "typed:a=1", 0)
	if _, _, err = c.Decode([]byte{0x7f}, false); !strings.Contains(err.Error(), "0x7f") {
		t.Errorf("error %q lacks the type byte", err)
	}
}

func TestAppend(t *testing.T) {
	tests := []struct {
		spec string
		max  int
		msg  string
		want string // "" with err set
		err  bool
	}{
		{"raw", 4, "hello world", "hello world", false},
		{"raw", 0, "", "", false},
		{"line", 0, "hi", "hi\n", false},
		{"line", 0, "", "\n", false},
		{"line", 0, "hi\r", "hi\r\r\n", false},
		{"line", 0, "a\nb", "", true},
		{"line", 4, "abcde", "", true},
		{"line", 4, "abc\r", "abc\r\r\n", false},
		{"delim:0d0a", 0, "hi", "hi\r\n", false},
		{"delim:0d0a", 0, "", "\r\n", false},
		{"delim:0d0a", 0, "h\ri", "h\ri\r\n", false},
		{"delim:0d0a", 0, "h\r\ni", "", true},
		{"delim:0d0a", 0, "hi\r", "hi\r\r\n", false},
		{"delim:61626162", 0, "xab", "", true},
		{"delim:61626162", 0, "xaba", "xabaabab", false},
		{"delim:61626162", 0, "xabx", "xabxabab", false},
		{"delim:6161", 0, "xa", "", true},
		{"delim:6161", 0, "ax", "axaa", false},
		{"delim:00", 0, "a\x00", "", true},
		{"delim:00", 2, "abc", "", true},
		{"fixed:3", 0, "abc", "abc", false},
		{"fixed:3", 0, "ab", "", true},
		{"fixed:3", 0, "abcd", "", true},
		{"len:2", 0, "hi", "\x00\x02hi", false},
		{"len:2le", 0, "hi", "\x02\x00hi", false},
		{"len:1", 0, "", "\x00", false},
		{"len:1", 0, strings.Repeat("x", 256), "", true},
		{"len:4", 0, "hi", "\x00\x00\x00\x02hi", false},
		{"len:4le", 0, "hi", "\x02\x00\x00\x00hi", false},
		{"len:8", 0, "hi", "\x00\x00\x00\x00\x00\x00\x00\x02hi", false},
		{"len:8le", 0, "hi", "\x02\x00\x00\x00\x00\x00\x00\x00hi", false},
		{"len:4", 3, "four", "", true},
		{"digits:5", 0, "hello", "00005hello", false},
		{"digits:1", 0, "", "0", false},
		{"digits:1", 0, "0123456789", "", true},
		{"digits:3", 5, "abcdef", "", true},
		{"typed:a=2,b=0", 0, "axy", "axy", false},
		{"typed:a=2,b=0", 0, "b", "b", false},
		{"typed:a=2,b=0", 0, "ax", "", true},
		{"typed:a=2,b=0", 0, "bx", "", true},
		{"typed:a=2,b=0", 0, "zxy", "", true},
		{"typed:a=2,b=0", 0, "", "", true},
		{"eof", 0, "hello", "hello", false},
		{"eof", 4, "hello", "", true},
	}
	for _, tt := range tests {
		c := mustParse(t, tt.spec, tt.max)
		out, err := c.Append([]byte("pre"), []byte(tt.msg))
		if tt.err {
			if !errors.Is(err, ErrInvalidMessage) || string(out) != "pre" {
				t.Errorf("%s Append(%q) = %q, %v; want ErrInvalidMessage", tt.spec, tt.msg, out, err)
			}
			continue
		}
		if err != nil || string(out) != "pre"+tt.want {
			t.Errorf("%s Append(%q) = %q, %v; want %q", tt.spec, tt.msg, out, err, "pre"+tt.want)
		}
		if err == nil {
			roundTrip(t, c, []byte(tt.msg))
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		spec, canon string
		max         int
		maxFrame    int
		overhead    int
	}{
		{"", "raw", 0, DefaultMaxFrame, 0},
		{"raw", "raw", 10, 10, 0},
		{"line", "line", -1, DefaultMaxFrame, 2},
		{"eof", "eof", 7, 7, 0},
		{"delim:0D0A", "delim:0d0a", 0, DefaultMaxFrame, 2},
		{"delim:00", "delim:00", 0, DefaultMaxFrame, 1},
		{"fixed:016", "fixed:16", 0, 16, 0},
		{"fixed:16", "fixed:16", 16, 16, 0},
		{"len:4", "len:4", 0, DefaultMaxFrame, 4},
		{"len:4be", "len:4", 0, DefaultMaxFrame, 4},
		{"len:2le", "len:2le", 0, 65535, 2},
		{"len:2", "len:2", 100, 100, 2},
		{"len:1le", "len:1", 0, 255, 1},
		{"len:8le", "len:8le", 0, DefaultMaxFrame, 8},
		{"digits:5", "digits:5", 0, 99999, 5},
		{"digits:18", "digits:18", 0, DefaultMaxFrame, 18},
		{"typed:b=16,a=4", "typed:a=4,b=16", 0, 17, 0},
		{"typed:q=0", "typed:q=0", 0, 1, 0},
		{"typed:0x00=1,0X41=2", "typed:0x00=1,A=2", 0, 3, 0},
		{"typed:==3,0x2c=1", "typed:0x2c=1,0x3d=3", 0, 4, 0},
		{"typed: =1", "typed:0x20=1", 0, 2, 0},
		{"typed:0=1", "typed:0=1", 0, 2, 0},
	}
	for _, tt := range tests {
		c, err := Parse(tt.spec, tt.max)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.spec, err)
			continue
		}
		if c.String() != tt.canon || c.MaxFrame() != tt.maxFrame || c.Overhead() != tt.overhead {
			t.Errorf("Parse(%q, %d): String %q MaxFrame %d Overhead %d; want %q %d %d", tt.spec, tt.max,
				c.String(), c.MaxFrame(), c.Overhead(), tt.canon, tt.maxFrame, tt.overhead)
		}
		c2, err := Parse(c.String(), c.MaxFrame())
		if err != nil || c2.String() != c.String() || c2.MaxFrame() != c.MaxFrame() || c2.Overhead() != c.Overhead() {
			t.Errorf("Parse(%q) does not round-trip: %v %v", c.String(), c2, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec string
		max  int
		want string // substring of the message
	}{
		{"len:3", 0, `framing: bad spec "len:3": length size must be 1, 2, 4 or 8`},
		{"len:", 0, "length size"},
		{"len:16", 0, "length size must be 1, 2, 4 or 8"},
		{"len:4xe", 0, "byte order"},
		{"len:x", 0, "length size"},
		{"bogus", 0, "unknown framing"},
		{"LINE", 0, "unknown framing"},
		{":x", 0, "NAME"},
		{"raw:1", 0, "raw takes no argument"},
		{"line:", 0, "line takes no argument"},
		{"eof:x", 0, "eof takes no argument"},
		{"delim", 0, "hex digits"},
		{"delim:", 0, "hex digits"},
		{"delim:0", 0, "hex digits"},
		{"delim:zz", 0, "not valid hex"},
		{"delim:" + strings.Repeat("00", MaxDelimLen+1), 0, "longer than"},
		{"fixed:", 0, "decimal size"},
		{"fixed:0", 0, "between 1 and"},
		{"fixed:-1", 0, "decimal size"},
		{"fixed:+1", 0, "decimal size"},
		{"fixed:11", 10, "between 1 and the max frame size 10"},
		{"fixed:99999999999999999999", 0, "decimal size"},
		{"digits:0", 0, "between 1 and 18"},
		{"digits:19", 0, "between 1 and 18"},
		{"digits:", 0, "number of digits"},
		{"typed", 0, "TYPE=SIZE"},
		{"typed:", 0, "TYPE=SIZE"},
		{"typed:a", 0, "TYPE=SIZE"},
		{"typed:a=1,", 0, "TYPE=SIZE"},
		{"typed:ab=1", 0, "one character or 0xNN"},
		{"typed:=1", 0, "one character or 0xNN"},
		{"typed:0xzz=1", 0, "not a byte in hex"},
		{"typed:a=x", 0, "decimal"},
		{"typed:a=1,a=2", 0, "given twice"},
		{"typed:a=1,0x61=2", 0, "given twice"},
		{"typed:a=11", 10, "between 0 and the max frame size 10"},
	}
	for _, tt := range tests {
		c, err := Parse(tt.spec, tt.max)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", tt.spec, c)
			continue
		}
		if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error %q: want ErrSpec containing %q", tt.spec, err, tt.want)
		}
		if !strings.HasPrefix(err.Error(), `framing: bad spec "`+tt.spec+`": `) {
			t.Errorf("Parse(%q) error %q does not name the spec", tt.spec, err)
		}
	}
}

func TestConstructors(t *testing.T) {
	must := func(c Codec, err error) Codec {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		c    Codec
		spec string
	}{
		{Raw(0), "raw"},
		{Line(0), "line"},
		{EOF(0), "eof"},
		{must(Delim([]byte("\r\n"), 0)), "delim:0d0a"},
		{must(Fixed(8, 0)), "fixed:8"},
		{must(Length(4, false, 0)), "len:4"},
		{must(Length(2, true, 0)), "len:2le"},
		{must(Length(1, true, 0)), "len:1"},
		{must(Digits(5, 0)), "digits:5"},
		{must(Typed(map[byte]int{'b': 16, 'a': 4, 0: 1, ',': 2}, 0)), "typed:0x00=1,0x2c=2,a=4,b=16"},
	}
	for _, tt := range tests {
		if tt.c.String() != tt.spec {
			t.Errorf("String() = %q, want %q", tt.c.String(), tt.spec)
		}
		if _, err := Parse(tt.c.String(), tt.c.MaxFrame()); err != nil {
			t.Errorf("Parse(%q): %v", tt.c.String(), err)
		}
	}

	// The delim codec keeps its own copy of the delimiter.
	d := []byte{'x'}
	c := must(Delim(d, 0))
	d[0] = 'y'
	if _, n, _ := c.Decode([]byte("ax"), false); n != 2 {
		t.Errorf("Delim shares the caller's slice")
	}

	for _, err := range []error{
		func() error { _, err := Delim(nil, 0); return err }(),
		func() error { _, err := Fixed(0, 0); return err }(),
		func() error { _, err := Fixed(5, 4); return err }(),
		func() error { _, err := Length(3, false, 0); return err }(),
		func() error { _, err := Digits(0, 0); return err }(),
		func() error { _, err := Typed(nil, 0); return err }(),
		func() error { _, err := Typed(map[byte]int{'a': -1}, 0); return err }(),
		func() error { _, err := Typed(map[byte]int{'a': 5}, 4); return err }(),
	} {
		if !errors.Is(err, ErrSpec) {
			t.Errorf("constructor error %v, want ErrSpec", err)
		}
	}
}

// allSpecs is one codec of each kind, with a small maximum so that
// boundaries are reached.
var allSpecs = []string{
	"raw", "line", "delim:00", "delim:0d0a0d0a", "fixed:7", "len:1", "len:2", "len:2le",
	"len:4", "len:4le", "len:8", "len:8le", "digits:1", "digits:3", "typed:a=4,b=16,q=0,0x00=1", "eof",
}

func TestNoAllocs(t *testing.T) {
	msgs := map[string][]byte{
		"fixed:7":                   []byte("1234567"),
		"typed:a=4,b=16,q=0,0x00=1": []byte("a1234"),
		"digits:1":                  []byte("123456789"),
	}
	for _, spec := range allSpecs {
		c := mustParse(t, spec, 64)
		msg, okMsg := msgs[spec]
		if !okMsg {
			msg = []byte("hello, world")
		}
		wire, err := c.Append(nil, msg)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		stream := append(bytes.Clone(wire), wire...)
		partial := wire[:len(wire)-1]
		dst := make([]byte, 0, 256)
		atEOF := spec == "eof"
		allocs := testing.AllocsPerRun(100, func() {
			if _, n, err := c.Decode(stream[:len(wire)], atEOF); n == 0 || err != nil {
				panic(spec + ": no frame")
			}
			if _, _, err := c.Decode(partial, false); err != nil {
				panic(err)
			}
			if _, _, err := c.Decode(nil, true); err != nil {
				panic(err)
			}
			if _, err := c.Append(dst[:0], msg); err != nil {
				panic(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Decode/Append", spec, allocs)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, spec := range allSpecs {
		b.Run(spec, func(b *testing.B) {
			c := mustParse(b, spec, 0)
			msg := bytes.Repeat([]byte("x"), 64)
			switch spec {
			case "fixed:7":
				msg = msg[:7]
			case "typed:a=4,b=16,q=0,0x00=1":
				msg = []byte("b0123456789abcdef")
			case "digits:1":
				msg = msg[:9]
			}
			wire, _ := c.Append(nil, msg)
			b.SetBytes(int64(len(wire)))
			atEOF := spec == "eof"
			for b.Loop() {
				if _, n, err := c.Decode(wire, atEOF); n == 0 || err != nil {
					b.Fatal(n, err)
				}
			}
		})
	}
}
