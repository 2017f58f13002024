package proxyproto

import (
	"errors"
	"testing"
)

// FuzzParse checks, for arbitrary bytes: no panic; n <= len(buf); an
// error only with n == 0, wrapping ErrBadHeader; need-more only while the
// buffer is shorter than MaxHeaderLen; a header of at most MaxHeaderLen
// (MaxV1Len for version 1) with addresses unless Local; Parse(buf[:n])
// gives the same header; every proper prefix of a header asks for more.
// It also compares the address parsers with net/netip on the input. Seed
// corpus: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, tt := range valid {
		f.Add([]byte(tt.hdr))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		h, n, err := Parse(buf)
		if n < 0 || n > len(buf) {
			t.Fatalf("n = %d of %d", n, len(buf))
		}
		if err != nil {
			if n != 0 || h != (Header{}) || !errors.Is(err, ErrBadHeader) {
				t.Fatalf("error %v with n = %d, %+v", err, n, h)
			}
		} else if n == 0 {
			if h != (Header{}) || len(buf) >= MaxHeaderLen {
				t.Fatalf("need more after %d bytes, header %+v", len(buf), h)
			}
		} else {
			checkParsed(t, buf, h, n)
		}
		if len(buf) <= 64 {
			checkIP(t, string(buf))
		}
	})
}

func checkParsed(t *testing.T, buf []byte, h Header, n int) {
	switch {
	case n > MaxHeaderLen, h.Version == 1 && n > MaxV1Len:
		t.Fatalf("header of %d bytes", n)
	case h.Version != 1 && h.Version != 2:
		t.Fatalf("version %d", h.Version)
	case h.Local != (h.Src == nil) || h.Local != (h.Dst == nil):
		t.Fatalf("local %v with src %v dst %v", h.Local, h.Src, h.Dst)
	}
	h2, n2, err := Parse(buf[:n])
	if err != nil || n2 != n || h2.Version != h.Version || h2.Local != h.Local ||
		!sameAddr(h2.Src, h.Src) || !sameAddr(h2.Dst, h.Dst) {
		t.Fatalf("Parse(buf[:%d]) = %+v, %d, %v; Parse(buf) = %+v", n, h2, n2, err, h)
	}
	step := max(1, n/64)
	for k := 0; k < n; k += step {
		if h3, n3, err := Parse(buf[:k]); n3 != 0 || err != nil || h3 != (Header{}) {
			t.Fatalf("prefix %d of a %d-byte header: %+v, %d, %v", k, n, h3, n3, err)
		}
	}
}
