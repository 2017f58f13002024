package framing

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The codecs whose header says how long the message is: len, digits and
// typed.

// ---------------------------------------------------------------- len

type lenCodec struct {
	size int // 1, 2, 4 or 8
	le   bool
	max  int
	spec string
}

// Length returns a length-prefixed codec: an unsigned size-byte length
// (size is 1, 2, 4 or 8), big-endian (network order) unless littleEndian,
// then that many payload bytes. A length above the maximum fails as soon
// as the prefix is in, before any of the payload is waited for. The
// maximum is maxFrame, or the largest length size bytes can hold if that
// is smaller (255 for size 1). maxFrame <= 0 means DefaultMaxFrame.
func Length(size int, littleEndian bool, maxFrame int) (Codec, error) {
	spec := "len:" + strconv.Itoa(size)
	if littleEndian && size > 1 {
		spec += "le"
	}
	return newLength(size, littleEndian, maxFrame, spec)
}

func newLength(size int, le bool, maxFrame int, spec string) (Codec, error) {
	if size != 1 && size != 2 && size != 4 && size != 8 {
		return nil, specErr(spec, "length size must be 1, 2, 4 or 8")
	}
	maxFrame = limit(maxFrame)
	if size < 8 {
		if most := 1<<(8*size) - 1; most < maxFrame {
			maxFrame = most
		}
	}
	if size == 1 {
		le = false // one byte has no byte order
	}
	c := &lenCodec{size: size, le: le, max: maxFrame, spec: "len:" + strconv.Itoa(size)}
	if le {
		c.spec += "le"
	}
	return c, nil
}

func (c *lenCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	if len(buf) < c.size {
		if atEOF && len(buf) > 0 {
			return nil, 0, truncated(c.spec, len(buf))
		}
		return nil, 0, nil
	}
	var l uint64
	switch {
	case c.size == 1:
		l = uint64(buf[0])
	case c.le:
		switch c.size {
		case 2:
			l = uint64(binary.LittleEndian.Uint16(buf))
		case 4:
			l = uint64(binary.LittleEndian.Uint32(buf))
		default:
			l = binary.LittleEndian.Uint64(buf)
		}
	default:
		switch c.size {
		case 2:
			l = uint64(binary.BigEndian.Uint16(buf))
		case 4:
			l = uint64(binary.BigEndian.Uint32(buf))
		default:
			l = binary.BigEndian.Uint64(buf)
		}
	}
	if l > uint64(c.max) {
		return nil, 0, tooLarge(c.spec, l, c.max)
	}
	if len(buf)-c.size < int(l) {
		if atEOF {
			return nil, 0, truncated(c.spec, len(buf))
		}
		return nil, 0, nil
	}
	end := c.size + int(l)
	return buf[c.size:end:end], end, nil
}

func (c *lenCodec) Append(dst, msg []byte) ([]byte, error) {
	if len(msg) > c.max {
		return dst, invalidMsg(c.spec, "message of %d bytes > max %d", len(msg), c.max)
	}
	l := uint64(len(msg))
	switch {
	case c.size == 1:
		dst = append(dst, byte(l))
	case c.le:
		switch c.size {
		case 2:
			dst = binary.LittleEndian.AppendUint16(dst, uint16(l))
		case 4:
			dst = binary.LittleEndian.AppendUint32(dst, uint32(l))
		default:
			dst = binary.LittleEndian.AppendUint64(dst, l)
		}
	default:
		switch c.size {
		case 2:
			dst = binary.BigEndian.AppendUint16(dst, uint16(l))
		case 4:
			dst = binary.BigEndian.AppendUint32(dst, uint32(l))
		default:
			dst = binary.BigEndian.AppendUint64(dst, l)
		}
	}
	return append(dst, msg...), nil
}

func (c *lenCodec) Overhead() int  { return c.size }
func (c *lenCodec) MaxFrame() int  { return c.max }
func (c *lenCodec) String() string { return c.spec }

// ---------------------------------------------------------------- digits

// pow10[i] is 10 to the i.
var pow10 = func() (p [19]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

type digitsCodec struct {
	n    int
	max  int
	spec string
}

// Digits returns a codec whose frames start with n ASCII decimal digits
// (1 <= n <= 18), zero-padded, giving the payload length, as in "00005hello"
// for n = 5. A non-digit is ErrMalformed and a length above the maximum is
// ErrFrameTooLarge, both reported as soon as the offending digit arrives.
// The maximum is maxFrame, or 10^n-1 if that is smaller. maxFrame <= 0
// means DefaultMaxFrame.
func Digits(n, maxFrame int) (Codec, error) {
	return newDigits(n, maxFrame, "digits:"+strconv.Itoa(n))
}

func newDigits(n, maxFrame int, spec string) (Codec, error) {
	if n < 1 || n > 18 {
		return nil, specErr(spec, "number of digits must be between 1 and 18")
	}
	maxFrame = limit(maxFrame)
	if most := pow10[n] - 1; most < uint64(maxFrame) {
		maxFrame = int(most)
	}
	return &digitsCodec{n: n, max: maxFrame, spec: "digits:" + strconv.Itoa(n)}, nil
}

func (c *digitsCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	k := min(len(buf), c.n)
	var l uint64
	for i := range k {
		d := buf[i] - '0'
		if d > 9 {
			return nil, 0, c.malformed(buf[i], i)
		}
		l = l*10 + uint64(d)
	}
	if k < c.n {
		// The digits still to come can only make the length larger.
		if l*pow10[c.n-k] > uint64(c.max) {
			return nil, 0, tooLarge(c.spec, l*pow10[c.n-k], c.max)
		}
		if atEOF && len(buf) > 0 {
			return nil, 0, truncated(c.spec, len(buf))
		}
		return nil, 0, nil
	}
	if l > uint64(c.max) {
		return nil, 0, tooLarge(c.spec, l, c.max)
	}
	if len(buf)-c.n < int(l) {
		if atEOF {
			return nil, 0, truncated(c.spec, len(buf))
		}
		return nil, 0, nil
	}
	end := c.n + int(l)
	return buf[c.n:end:end], end, nil
}

func (c *digitsCodec) malformed(b byte, at int) error {
	return fmt.Errorf("%w: %s: byte %q at offset %d of the length is not a decimal digit", ErrMalformed, c.spec, b, at)
}

func (c *digitsCodec) Append(dst, msg []byte) ([]byte, error) {
	if len(msg) > c.max {
		return dst, invalidMsg(c.spec, "message of %d bytes > max %d", len(msg), c.max)
	}
	start := len(dst)
	dst = append(dst, make([]byte, c.n)...) // does not allocate when dst has room
	l := len(msg)
	for i := len(dst) - 1; i >= start; i-- {
		dst[i] = byte('0' + l%10)
		l /= 10
	}
	return append(dst, msg...), nil
}

func (c *digitsCodec) Overhead() int  { return c.n }
func (c *digitsCodec) MaxFrame() int  { return c.max }
func (c *digitsCodec) String() string { return c.spec }

// ---------------------------------------------------------------- typed

type typedCodec struct {
	size    [256]int // payload size by type byte; -1: unknown type
	largest int
	spec    string
}

// Typed returns a codec whose frames are one type byte followed by exactly
// sizes[type] bytes. The frame Decode returns, and the message Append
// takes, include the type byte, so a handler can tell the types apart; the
// largest message is thus 1 + the largest size, which MaxFrame reports.
// A type byte missing from sizes is ErrUnknownType. sizes must be
// non-empty, with every size between 0 and maxFrame. maxFrame <= 0 means
// DefaultMaxFrame.
func Typed(sizes map[byte]int, maxFrame int) (Codec, error) {
	ts := make([]byte, 0, len(sizes))
	for t := range sizes {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	var sb strings.Builder
	sb.WriteString("typed:")
	for i, t := range ts {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(typeToken(t))
		sb.WriteByte('=')
		sb.WriteString(strconv.Itoa(sizes[t]))
	}
	return newTyped(ts, sizes, maxFrame, sb.String())
}

// newTyped builds a typed codec for the types ts (in spec order) and their
// sizes.
func newTyped(ts []byte, sizes map[byte]int, maxFrame int, spec string) (Codec, error) {
	if len(ts) == 0 {
		return nil, specErr(spec, "want at least one TYPE=SIZE, e.g. typed:a=4,b=16")
	}
	maxFrame = limit(maxFrame)
	c := &typedCodec{}
	for i := range c.size {
		c.size[i] = -1
	}
	for _, t := range ts {
		n := sizes[t]
		if n < 0 || n > maxFrame {
			return nil, specErr(spec, "size %d of type %s must be between 0 and the max frame size %d", n, typeToken(t), maxFrame)
		}
		c.size[t] = n
		c.largest = max(c.largest, n)
	}
	// Canonical spec: types in byte order.
	var sb strings.Builder
	sb.WriteString("typed:")
	first := true
	for t, n := range c.size {
		if n < 0 {
			continue
		}
		if !first {
			sb.WriteByte(',')
		}
		first = false
		sb.WriteString(typeToken(byte(t)))
		sb.WriteByte('=')
		sb.WriteString(strconv.Itoa(n))
	}
	c.spec = sb.String()
	return c, nil
}

// typeToken spells a type byte in a spec: the character itself when it is
// printable and cannot be confused with the syntax, else 0xNN.
func typeToken(t byte) string {
	if t > ' ' && t < 0x7f && t != ',' && t != '=' {
		return string(rune(t))
	}
	return fmt.Sprintf("0x%02x", t)
}

func (c *typedCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	if len(buf) == 0 {
		return nil, 0, nil
	}
	n := c.size[buf[0]]
	if n < 0 {
		return nil, 0, c.unknown(buf[0])
	}
	if len(buf)-1 < n {
		if atEOF {
			return nil, 0, truncated(c.spec, len(buf))
		}
		return nil, 0, nil
	}
	return buf[: n+1 : n+1], n + 1, nil
}

func (c *typedCodec) unknown(t byte) error {
	return fmt.Errorf("%w: %s: type byte 0x%02x", ErrUnknownType, c.spec, t)
}

func (c *typedCodec) Append(dst, msg []byte) ([]byte, error) {
	if len(msg) == 0 {
		return dst, invalidMsg(c.spec, "empty message has no type byte")
	}
	n := c.size[msg[0]]
	if n < 0 {
		return dst, invalidMsg(c.spec, "unknown type byte 0x%02x", msg[0])
	}
	if len(msg)-1 != n {
		return dst, invalidMsg(c.spec, "message of type %s has %d bytes after the type, want %d", typeToken(msg[0]), len(msg)-1, n)
	}
	return append(dst, msg...), nil
}

// Overhead is 0: the type byte belongs to the message.
func (c *typedCodec) Overhead() int { return 0 }

// MaxFrame is 1 + the largest size: the type byte is part of the frame.
func (c *typedCodec) MaxFrame() int  { return c.largest + 1 }
func (c *typedCodec) String() string { return c.spec }
