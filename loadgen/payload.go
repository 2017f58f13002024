package loadgen

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"switchboard/framing"
)

// ---------------------------------------------------------------- payloads

// patternPeriod is the number of distinct window offsets into the payload
// pattern: a prime, so that offsets built from connection and sequence
// numbers spread over all of it.
const patternPeriod = 65521

// proto is the immutable message protocol of a run, shared by all workers:
// how to build message k of connection c and how to check its reply.
type proto struct {
	codec   framing.Codec
	reply   framing.Codec
	tmpl    *Template      // per-message fields; nil for fixed and generated payloads
	resp    bool           // a template renders a RESP command
	counter *atomic.Uint64 // the template's {counter}
	framed  bool           // replies: false for a raw byte stream, recognised by length
	echo    bool           // replies are compared
	msgLen  int            // payload bytes of one message, type byte included
	fixed   []byte
	prefix  []byte // typed framing: the type byte, before the pattern window
	pattern []byte // patternPeriod + msgLen bytes
}

func newProto(c *config) (*proto, error) {
	codec := c.Codec
	spec := codec.String()
	name, arg, _ := strings.Cut(spec, ":")
	p := &proto{codec: codec, reply: c.ReplyCodec, framed: c.ReplyCodec.String() != "raw", echo: c.Expect == ExpectEcho}
	if name == "eof" || c.ReplyCodec.String() == "eof" {
		return nil, configErr("framing eof carries one message per connection; bench needs a framing that carries many")
	}
	if !p.framed && !p.echo {
		return nil, configErr("expect any needs a reply framing that delimits replies (line, len:4, resp...), not raw")
	}
	p.resp = name == "resp"
	if p.resp && c.Payload == nil && c.Template == nil {
		return nil, configErr("framing resp needs a payload: a command such as PING or GET key:{rand:1-1000}")
	}
	if t := c.Template; t != nil && !t.Fixed() {
		p.tmpl, p.counter = t, new(atomic.Uint64)
		var rng uint64 = 1
		var text []byte
		sample := p.render(nil, &text, 0, 0, &rng)
		p.counter.Store(0)
		if len(sample) == 0 {
			return nil, configErr("the payload template renders an empty message")
		}
		// A counter grows to 20 digits: leave it room.
		probe := append(sample, make([]byte, 20*strings.Count(t.String(), "{counter}"))...)
		for i := len(sample); i < len(probe); i++ {
			probe[i] = '0'
		}
		if p.resp {
			probe = sample
		}
		if _, err := codec.Append(nil, probe); err != nil {
			return nil, configErr("the payload template's messages cannot be framed as %s: %v", spec, err)
		}
		p.msgLen = len(sample)
		return p, nil
	}
	if t := c.Template; t != nil {
		// A template without fields is a fixed payload ("{{" undone).
		var rng uint64 = 1
		c.Payload = t.render(nil, 0, 0, &rng, new(atomic.Uint64))
	}
	if c.Payload != nil {
		if len(c.Payload) == 0 {
			return nil, configErr("empty payload")
		}
		if p.resp {
			if _, err := codec.Append(nil, c.Payload); err != nil {
				// Not a RESP value already: a command line.
				c.Payload = appendRESPWords(nil, c.Payload)
			}
		}
		if _, err := codec.Append(nil, c.Payload); err != nil {
			return nil, configErr("payload cannot be framed as %s: %v", spec, err)
		}
		p.fixed = c.Payload
		p.msgLen = len(c.Payload)
		return p, nil
	}
	size := c.Size
	if size == 0 {
		size = DefaultSize
		if name == "fixed" {
			size = codec.MaxFrame()
		}
	}
	if size < 0 {
		return nil, configErr("negative size %d", size)
	}
	if size == 0 && !p.framed {
		return nil, configErr("raw framing cannot carry empty messages")
	}
	if size > codec.MaxFrame() {
		return nil, configErr("size %d exceeds the framing's maximum frame %d", size, codec.MaxFrame())
	}
	// Bytes that would end a frame early must not appear in a payload.
	var exclude []byte
	switch name {
	case "line":
		exclude = []byte("\r\n")
	case "delim":
		d, err := hex.DecodeString(arg)
		if err != nil {
			return nil, configErr("cannot read the delimiter of %s: %v", spec, err)
		}
		exclude = d
	case "typed":
		t, err := typedPrefix(arg, size)
		if err != nil {
			return nil, configErr("%s: %v", spec, err)
		}
		p.prefix = []byte{t}
	}
	p.msgLen = size
	p.pattern = makePattern(patternPeriod+size, exclude)
	msg := p.message(nil, 0, 0)
	if _, err := codec.Append(nil, msg); err != nil {
		return nil, configErr("%d-byte messages cannot be framed as %s: %v", size, spec, err)
	}
	return p, nil
}

// typedPrefix finds the type byte of a typed spec ("a=4,0x07=16") whose
// messages, type byte included, are size bytes long.
func typedPrefix(arg string, size int) (byte, error) {
	var sizes []string
	for entry := range strings.SplitSeq(arg, ",") {
		i := strings.LastIndexByte(entry, '=')
		if i < 0 {
			continue
		}
		tok, num := entry[:i], entry[i+1:]
		n, err := strconv.Atoi(num)
		if err != nil {
			continue
		}
		sizes = append(sizes, strconv.Itoa(n+1))
		if n+1 != size {
			continue
		}
		if len(tok) == 1 {
			return tok[0], nil
		}
		if b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimPrefix(tok, "0x"), "0X")); err == nil && len(b) == 1 {
			return b[0], nil
		}
	}
	return 0, fmt.Errorf("no type has %d-byte messages (type byte included); sizes: %s", size, strings.Join(sizes, ", "))
}

// makePattern returns n pseudo-random bytes (a fixed seed, so runs repeat)
// drawn from the byte values not in exclude.
func makePattern(n int, exclude []byte) []byte {
	var alphabet []byte
	for b := 0; b < 256; b++ {
		if indexByte(exclude, byte(b)) < 0 {
			alphabet = append(alphabet, byte(b))
		}
	}
	out := make([]byte, n)
	x := uint64(0x9E3779B97F4A7C15)
	for i := range out {
		// xorshift64*: cheap, good enough to make windows distinct.
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		out[i] = alphabet[(x*0x2545F4914F6CDD1D>>32)%uint64(len(alphabet))]
	}
	return out
}

func indexByte(s []byte, b byte) int {
	for i, c := range s {
		if c == b {
			return i
		}
	}
	return -1
}

// render builds message seq of connection conn from the template into
// dst: for framing resp, the command it spells as an array of bulk
// strings, with text as scratch space.
func (p *proto) render(dst []byte, text *[]byte, conn int, seq uint64, rng *uint64) []byte {
	if !p.resp {
		return p.tmpl.render(dst[:0], conn, seq, rng, p.counter)
	}
	*text = p.tmpl.render((*text)[:0], conn, seq, rng, p.counter)
	return appendRESPWords(dst[:0], *text)
}

// appendRESPWords appends a command line, split at spaces and tabs, as a
// RESP array of bulk strings (framing.RESPCommand without building the
// argument slices).
func appendRESPWords(dst, text []byte) []byte {
	isSpace := func(b byte) bool { return b == ' ' || b == '\t' }
	n := 0
	for i := range text {
		if !isSpace(text[i]) && (i == 0 || isSpace(text[i-1])) {
			n++
		}
	}
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, '\r', '\n')
	for i := 0; i < len(text); {
		if isSpace(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && !isSpace(text[j]) {
			j++
		}
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(j-i), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, text[i:j]...)
		dst = append(dst, '\r', '\n')
		i = j
	}
	return dst
}

// body returns the pattern window of message seq of connection conn: the
// payload after any type byte. It aliases the shared pattern.
func (p *proto) body(conn int, seq uint64) []byte {
	if p.fixed != nil {
		return p.fixed
	}
	n := p.msgLen - len(p.prefix)
	off := (uint64(conn)*40503 + seq*131) % patternPeriod
	return p.pattern[off : off+uint64(n) : off+uint64(n)]
}

// message returns message seq of connection conn as one slice: the shared
// pattern window itself, or, with a type byte, built in scratch.
func (p *proto) message(scratch []byte, conn int, seq uint64) []byte {
	b := p.body(conn, seq)
	if len(p.prefix) == 0 {
		return b
	}
	return append(append(scratch[:0], p.prefix...), b...)
}

// equal reports whether frame is message seq of connection conn, and where
// it first differs when not.
func (p *proto) equal(frame []byte, conn int, seq uint64) (bool, int) {
	if len(p.prefix) > 0 {
		if len(frame) == 0 || frame[0] != p.prefix[0] {
			return false, 0
		}
		ok, at := equalAt(frame[1:], p.body(conn, seq))
		return ok, at + 1
	}
	return equalAt(frame, p.body(conn, seq))
}

// equalAt compares got with want: equal, or the first differing offset.
func equalAt(got, want []byte) (bool, int) {
	if string(got) == string(want) {
		return true, 0
	}
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			return false, i
		}
	}
	return false, n
}

// describeMismatch says how frame differs from what was expected.
func describeMismatch(conn int, seq uint64, got, want []byte, at int) string {
	if len(got) != len(want) && at >= min(len(got), len(want)) {
		return fmt.Sprintf("connection %d, message %d: reply of %d bytes, sent %d", conn, seq, len(got), len(want))
	}
	return fmt.Sprintf("connection %d, message %d: byte %d is 0x%02x, sent 0x%02x", conn, seq, at, got[at], want[at])
}
