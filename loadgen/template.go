package loadgen

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Template is a payload with fields filled in afresh for every message,
// parsed by ParseTemplate. The fields:
//
//	{counter}    a counter shared by every connection of the run: 0, 1, 2...
//	{seq}        the message's number on its connection, from 0
//	{conn}       the connection's number, from 0
//	{rand:A-B}   a random integer from A to B inclusive, e.g. {rand:1-100000}
//	{bytes:N}    N random letters and digits (1 to 1 MiB)
//
// "{{" and "}}" stand for literal braces; any other brace is an error, so a
// typo never goes out as text. Random fields come from a generator seeded
// by the connection number: runs repeat.
//
// For framing resp the rendered text is a command: split at spaces into
// arguments and sent as an array of bulk strings, as redis-cli does
// (fields never render a space).
type Template struct {
	src   string
	parts []tpart
	fixed bool // no fields: every message is the same
}

type tkind uint8

const (
	tLiteral tkind = iota
	tCounter
	tSeq
	tConn
	tRand
	tBytes
)

type tpart struct {
	kind tkind
	lit  string
	a, b int64 // rand: the range; bytes: a is the count
}

// maxTemplateBytes bounds a {bytes:N} field.
const maxTemplateBytes = 1 << 20

// ParseTemplate parses a payload template. Its errors say which field is
// wrong and how to write a literal brace.
func ParseTemplate(s string) (*Template, error) {
	t := &Template{src: s, fixed: true}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, tpart{kind: tLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "{{"), strings.HasPrefix(s[i:], "}}"):
			lit.WriteByte(s[i])
			i++
		case s[i] == '}':
			return nil, fmt.Errorf("payload template: '}' at byte %d closes nothing (write }} for a literal brace)", i)
		case s[i] == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return nil, fmt.Errorf("payload template: '{' at byte %d is not closed (write {{ for a literal brace)", i)
			}
			p, err := parseField(s[i+1 : i+j])
			if err != nil {
				return nil, fmt.Errorf("payload template: field {%s}: %v", s[i+1:i+j], err)
			}
			flush()
			t.parts = append(t.parts, p)
			t.fixed = false
			i += j
		default:
			lit.WriteByte(s[i])
		}
	}
	flush()
	return t, nil
}

func parseField(f string) (tpart, error) {
	name, arg, hasArg := strings.Cut(f, ":")
	noArg := func(k tkind) (tpart, error) {
		if hasArg {
			return tpart{}, fmt.Errorf("%s takes no argument", name)
		}
		return tpart{kind: k}, nil
	}
	switch name {
	case "counter":
		return noArg(tCounter)
	case "seq":
		return noArg(tSeq)
	case "conn":
		return noArg(tConn)
	case "rand":
		lo, hi, ok := strings.Cut(arg, "-")
		a, errA := strconv.ParseInt(lo, 10, 64)
		b, errB := strconv.ParseInt(hi, 10, 64)
		if !ok || errA != nil || errB != nil || a < 0 || b < a {
			return tpart{}, fmt.Errorf("want rand:A-B with 0 <= A <= B, e.g. rand:1-100000")
		}
		return tpart{kind: tRand, a: a, b: b}, nil
	case "bytes":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 || n > maxTemplateBytes {
			return tpart{}, fmt.Errorf("want bytes:N with N from 1 to %d", maxTemplateBytes)
		}
		return tpart{kind: tBytes, a: int64(n)}, nil
	}
	return tpart{}, fmt.Errorf("unknown field %q: want counter, seq, conn, rand:A-B or bytes:N (write {{ for a literal brace)", name)
}

// String returns the template as it was given.
func (t *Template) String() string { return t.src }

// Fixed reports whether the template has no fields.
func (t *Template) Fixed() bool { return t.fixed }

// alnum is the alphabet of {bytes:N}: safe inside every framing that has
// delimiters, and never a space.
const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// render appends message seq of connection conn to dst. rng is the
// connection's generator state; counter is the run's.
func (t *Template) render(dst []byte, conn int, seq uint64, rng *uint64, counter *atomic.Uint64) []byte {
	for _, p := range t.parts {
		switch p.kind {
		case tLiteral:
			dst = append(dst, p.lit...)
		case tCounter:
			dst = strconv.AppendUint(dst, counter.Add(1)-1, 10)
		case tSeq:
			dst = strconv.AppendUint(dst, seq, 10)
		case tConn:
			dst = strconv.AppendInt(dst, int64(conn), 10)
		case tRand:
			span := uint64(p.b-p.a) + 1
			v := uint64(p.a)
			if span != 0 {
				v += next(rng) % span
			}
			dst = strconv.AppendUint(dst, v, 10)
		case tBytes:
			for i := int64(0); i < p.a; i++ {
				dst = append(dst, alnum[next(rng)%uint64(len(alnum))])
			}
		}
	}
	return dst
}

// next steps a xorshift64* generator.
func next(x *uint64) uint64 {
	*x ^= *x >> 12
	*x ^= *x << 25
	*x ^= *x >> 27
	return *x * 0x2545F4914F6CDD1D
}

// seedFor is the generator's seed for a connection: never zero.
func seedFor(conn int) uint64 { return uint64(conn)*0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D }
