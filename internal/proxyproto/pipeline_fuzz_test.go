package proxyproto

import (
	"errors"
	"fmt"
	"testing"

	"switchboard/framing"
)

// pipeline is what an engine does with a connection that must start with
// a PROXY header: bytes arrive in reads into a framing.Accumulator, the
// header is parsed from what is buffered and skipped, and the frames
// behind it are decoded by the same Accumulator. It returns the header,
// the frames and the first error (nil, with the header still incomplete,
// means more bytes were needed).
func pipeline(split *framing.Splitter, pieces [][]byte) (Header, bool, []string, error) {
	var acc framing.Accumulator
	var h Header
	var frames []string
	haveHeader := false
	for _, p := range pieces {
		acc.Feed(split, p)
		if !haveHeader {
			hh, n, err := Parse(acc.Bytes())
			if err != nil {
				return Header{}, false, nil, err
			}
			if n == 0 {
				if acc.Buffered() >= MaxHeaderLen {
					return Header{}, false, nil, ErrBadHeader
				}
				acc.Done(split)
				continue
			}
			h, haveHeader = hh, true
			acc.Skip(n)
		}
		for {
			frame, ok, err := acc.Next(split, false)
			if err != nil {
				return h, true, frames, err
			}
			if !ok {
				break
			}
			frames = append(frames, string(frame))
		}
		acc.Done(split)
	}
	return h, haveHeader, frames, nil
}

// FuzzHeaderThenFrames runs a PROXY header followed by frames through the
// engines' pipeline, whole and cut into reads where the fuzzer says, with
// a codec the fuzzer picks: however the bytes are cut, the header, the
// frames before any error, and the error's kind are the same, and the
// header is the one Parse finds in the whole input. Seed corpus:
// testdata/fuzz/FuzzHeaderThenFrames.
func FuzzHeaderThenFrames(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 192.0.2.1 4242 8888\r\nhello\nworld\n"), []byte{3, 50, 1}, uint8(0))
	f.Add([]byte("PROXY UNKNOWN\r\n\x00\x00\x00\x03abc\x00\x00\x00\x01z"), []byte{0, 0, 0, 0, 0, 0, 0}, uint8(1))
	f.Add(append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x02\x10\x92\x22\xb8"), "line one\nline two\n"...), []byte{15, 2}, uint8(0))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte{}, uint8(2))
	specs := []string{"line", "len:4", "fixed:3", "delim:0d0a"}
	f.Fuzz(func(t *testing.T, in, cuts []byte, which uint8) {
		codec, err := framing.Parse(specs[int(which)%len(specs)], 64)
		if err != nil {
			t.Fatal(err)
		}
		split := framing.NewSplitter(codec, framing.SplitterOptions{Room: 16})
		h1, ok1, frames1, err1 := pipeline(split, [][]byte{in})
		var pieces [][]byte
		rest := in
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, 1+int(cuts[i]))
			}
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		h2, ok2, frames2, err2 := pipeline(split, pieces)
		if ok1 != ok2 || !sameHeader(h1, h2) {
			t.Fatalf("header whole %v %+v, in pieces %v %+v", ok1, h1, ok2, h2)
		}
		if ok1 {
			want, n, perr := Parse(in)
			if perr != nil || n == 0 || !sameHeader(want, h1) {
				t.Fatalf("pipeline header %+v, Parse(in) = %+v, %d, %v", h1, want, n, perr)
			}
		}
		if kind(err1) != kind(err2) {
			t.Fatalf("error whole %v, in pieces %v", err1, err2)
		}
		// An error may come later in pieces (a frame too large is seen once
		// enough of it has arrived), but the frames before it agree.
		short, long := frames1, frames2
		if len(short) > len(long) {
			short, long = long, short
		}
		for i := range short {
			if short[i] != long[i] {
				t.Fatalf("frame %d: %q whole vs %q in pieces", i, frames1[i], frames2[i])
			}
		}
		if err1 == nil && err2 == nil && len(frames1) != len(frames2) {
			t.Fatalf("%d frames whole, %d in pieces", len(frames1), len(frames2))
		}
	})
}

func sameHeader(a, b Header) bool {
	return a.Version == b.Version && a.Local == b.Local && sameAddr(a.Src, b.Src) && sameAddr(a.Dst, b.Dst)
}

// kind names the sentinel an error wraps, so errors are compared by kind.
func kind(err error) string {
	for _, s := range []error{ErrBadHeader, framing.ErrFrameTooLarge, framing.ErrMalformed, framing.ErrUnknownType, framing.ErrTruncated, framing.ErrCodec} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	if err != nil {
		return fmt.Sprintf("other: %v", err)
	}
	return ""
}
