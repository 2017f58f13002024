package framing

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxDelimLen is the longest delimiter a delim codec accepts.
const MaxDelimLen = 64

// limit returns the effective maximum frame size for a requested one.
func limit(maxFrame int) int {
	if maxFrame <= 0 {
		return DefaultMaxFrame
	}
	return maxFrame
}

// Error constructors. They are kept out of line so that the success paths
// of Decode and Append stay small and never build an error value.

func specErr(spec, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrSpec, spec, fmt.Sprintf(format, args...))
}

func truncated(spec string, have int) error {
	return fmt.Errorf("%w: %s: stream ended after %d bytes of a frame", ErrTruncated, spec, have)
}

func tooLarge(spec string, size uint64, max int) error {
	return fmt.Errorf("%w: %s: frame of %d bytes > max %d", ErrFrameTooLarge, spec, size, max)
}

func undelimited(spec string, scanned, max int) error {
	return fmt.Errorf("%w: %s: no delimiter in the first %d bytes (max frame %d)", ErrFrameTooLarge, spec, scanned, max)
}

func invalidMsg(spec, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidMessage, spec, fmt.Sprintf(format, args...))
}

// ---------------------------------------------------------------- raw

type rawCodec struct{ max int }

// Raw returns the raw codec: a message is whatever bytes are buffered,
// which for an engine means what one read returned. Decode hands out at most
// maxFrame bytes per message (a larger buffer is split, not refused) and
// Append copies the message unchanged, whatever its size. Message
// boundaries are not preserved across the wire. maxFrame <= 0 means
// DefaultMaxFrame.
func Raw(maxFrame int) Codec { return &rawCodec{max: limit(maxFrame)} }

func (c *rawCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	n := len(buf)
	if n > c.max {
		n = c.max
	}
	if n == 0 {
		return nil, 0, nil
	}
	return buf[:n:n], n, nil
}

func (c *rawCodec) Append(dst, msg []byte) ([]byte, error) { return append(dst, msg...), nil }
func (c *rawCodec) Overhead() int                          { return 0 }
func (c *rawCodec) MaxFrame() int                          { return c.max }
func (c *rawCodec) String() string                         { return "raw" }

// ---------------------------------------------------------------- line

type lineCodec struct{ max int }

// Line returns the line codec: a message is the bytes up to a '\n', minus
// one '\r' right before it, so both "\n" and "\r\n" line ends are accepted.
// Append adds "\n" (or "\r\n" to a message that itself ends in '\r', so that
// the message survives the stripping intact) and refuses a message holding
// a '\n'.
//
// Decode searches the buffer from its start on every call, so a line that
// arrives in k pieces costs O(k * length) to find; the codec implements
// Resumer so that a caller keeping the partial line can resume the search
// instead (the switchboard engines do). maxFrame <= 0 means
// DefaultMaxFrame.
func Line(maxFrame int) Codec { return &lineCodec{max: limit(maxFrame)} }

func (c *lineCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	return c.DecodeFrom(buf, atEOF, 0)
}

// DecodeFrom implements Resumer.
func (c *lineCodec) DecodeFrom(buf []byte, atEOF bool, from int) ([]byte, int, error) {
	// A frame takes at most max+2 bytes on the wire: payload, '\r', '\n'.
	scan := buf
	if len(scan)-c.max > 2 {
		scan = scan[:c.max+2]
	}
	from = min(max(from, 0), len(scan))
	if i := bytes.IndexByte(scan[from:], '\n'); i >= 0 {
		i += from
		end := i
		if end > 0 && buf[end-1] == '\r' {
			end--
		}
		if end > c.max {
			return nil, 0, tooLarge("line", uint64(end), c.max)
		}
		return buf[:end:end], i + 1, nil
	}
	// No newline yet. max+1 bytes can still be a full payload waiting for
	// its "\n" only if the last of them is the '\r'.
	if len(buf) > c.max && (len(buf)-c.max > 1 || buf[c.max] != '\r') {
		return nil, 0, undelimited("line", len(scan), c.max)
	}
	if atEOF && len(buf) > 0 {
		return nil, 0, truncated("line", len(buf))
	}
	return nil, 0, nil
}

func (c *lineCodec) Append(dst, msg []byte) ([]byte, error) {
	if len(msg) > c.max {
		return dst, invalidMsg("line", "message of %d bytes > max %d", len(msg), c.max)
	}
	if bytes.IndexByte(msg, '\n') >= 0 {
		return dst, invalidMsg("line", "message contains a newline")
	}
	dst = append(dst, msg...)
	if len(msg) > 0 && msg[len(msg)-1] == '\r' {
		dst = append(dst, '\r')
	}
	return append(dst, '\n'), nil
}

// Overhead is 2: usually Append adds only "\n", but a message ending in
// '\r' gets "\r\n".
func (c *lineCodec) Overhead() int  { return 2 }
func (c *lineCodec) MaxFrame() int  { return c.max }
func (c *lineCodec) String() string { return "line" }

// ---------------------------------------------------------------- delim

type delimCodec struct {
	d    []byte
	max  int
	spec string
}

// Delim returns a codec whose messages end with the delimiter d (1 to
// MaxDelimLen bytes), which Decode consumes and leaves out of the frame.
// Append adds d, and refuses a message that contains d or that, followed
// by d, would show d earlier than where it was appended (for d = "aa", the
// message "xa"). The codec keeps its own copy of d.
//
// Like Line, Decode searches from the start of the buffer and DecodeFrom
// (Resumer) from where an earlier search stopped, less the delimiter's
// length, since a delimiter may straddle the two. maxFrame <= 0 means
// DefaultMaxFrame.
func Delim(d []byte, maxFrame int) (Codec, error) {
	return newDelim(d, maxFrame, "delim:"+hex.EncodeToString(d))
}

func newDelim(d []byte, maxFrame int, spec string) (Codec, error) {
	switch {
	case len(d) == 0:
		return nil, specErr(spec, "delimiter must be 1 to %d bytes in hex, e.g. delim:0d0a", MaxDelimLen)
	case len(d) > MaxDelimLen:
		return nil, specErr(spec, "delimiter of %d bytes is longer than %d", len(d), MaxDelimLen)
	}
	d = bytes.Clone(d)
	return &delimCodec{d: d, max: limit(maxFrame), spec: "delim:" + hex.EncodeToString(d)}, nil
}

func (c *delimCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	return c.DecodeFrom(buf, atEOF, 0)
}

// DecodeFrom implements Resumer.
func (c *delimCodec) DecodeFrom(buf []byte, atEOF bool, from int) ([]byte, int, error) {
	dl := len(c.d)
	// A frame takes at most max+len(d) bytes on the wire.
	scan := buf
	if len(scan)-c.max > dl {
		scan = scan[:c.max+dl]
	}
	// A delimiter may straddle the end of what was searched before.
	from = min(max(from-dl+1, 0), len(scan))
	var i int
	if dl == 1 {
		i = bytes.IndexByte(scan[from:], c.d[0])
	} else {
		i = bytes.Index(scan[from:], c.d)
	}
	if i >= 0 {
		i += from
		return buf[:i:i], i + dl, nil
	}
	if len(buf) > c.max && !c.partialDelimFrom(buf) {
		return nil, 0, undelimited(c.spec, len(scan), c.max)
	}
	if atEOF && len(buf) > 0 {
		return nil, 0, truncated(c.spec, len(buf))
	}
	return nil, 0, nil
}

// partialDelimFrom reports whether buf, which holds no complete delimiter
// starting at or before max, ends with the beginning of a delimiter that
// starts at or before max: only then can a frame within the limit still
// complete.
func (c *delimCodec) partialDelimFrom(buf []byte) bool {
	p := len(buf) - len(c.d) + 1
	if p < 0 {
		p = 0
	}
	for ; p <= c.max && p < len(buf); p++ {
		if bytes.HasPrefix(c.d, buf[p:]) {
			return true
		}
	}
	return false
}

func (c *delimCodec) Append(dst, msg []byte) ([]byte, error) {
	if len(msg) > c.max {
		return dst, invalidMsg(c.spec, "message of %d bytes > max %d", len(msg), c.max)
	}
	if len(c.d) == 1 {
		if bytes.IndexByte(msg, c.d[0]) >= 0 {
			return dst, invalidMsg(c.spec, "message contains the delimiter")
		}
		return append(append(dst, msg...), c.d[0]), nil
	}
	start := len(dst)
	dst = append(append(dst, msg...), c.d...)
	// The first delimiter in the framed bytes must be the one appended.
	if bytes.Index(dst[start:], c.d) != len(msg) {
		return dst[:start], invalidMsg(c.spec, "message contains the delimiter, or a part of it at its end")
	}
	return dst, nil
}

func (c *delimCodec) Overhead() int  { return len(c.d) }
func (c *delimCodec) MaxFrame() int  { return c.max }
func (c *delimCodec) String() string { return c.spec }

// ---------------------------------------------------------------- fixed

type fixedCodec struct {
	n    int
	spec string
}

// Fixed returns a codec whose messages are exactly n bytes, with no framing
// bytes on the wire; 1 <= n <= maxFrame. Append refuses a message of
// another size. maxFrame <= 0 means DefaultMaxFrame.
func Fixed(n, maxFrame int) (Codec, error) {
	return newFixed(n, maxFrame, "fixed:"+strconv.Itoa(n))
}

func newFixed(n, maxFrame int, spec string) (Codec, error) {
	maxFrame = limit(maxFrame)
	if n < 1 || n > maxFrame {
		return nil, specErr(spec, "size must be between 1 and the max frame size %d", maxFrame)
	}
	return &fixedCodec{n: n, spec: "fixed:" + strconv.Itoa(n)}, nil
}

func (c *fixedCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	if len(buf) >= c.n {
		return buf[:c.n:c.n], c.n, nil
	}
	if atEOF && len(buf) > 0 {
		return nil, 0, truncated(c.spec, len(buf))
	}
	return nil, 0, nil
}

func (c *fixedCodec) Append(dst, msg []byte) ([]byte, error) {
	if len(msg) != c.n {
		return dst, invalidMsg(c.spec, "message of %d bytes, want exactly %d", len(msg), c.n)
	}
	return append(dst, msg...), nil
}

func (c *fixedCodec) Overhead() int { return 0 }

// MaxFrame is n: the only size there is.
func (c *fixedCodec) MaxFrame() int  { return c.n }
func (c *fixedCodec) String() string { return c.spec }

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

// ---------------------------------------------------------------- eof

type eofCodec struct{ max int }

// EOF returns the eof codec: a message is everything the peer sends until
// it shuts down its write half. Decode returns nothing until atEOF, then
// the whole buffer as one frame; at EOF with an empty buffer there is no
// message at all (nil, 0, nil), not an empty one. More than maxFrame
// buffered bytes fail at once with ErrFrameTooLarge, without waiting for
// EOF. Append copies the message; the sender then shuts down its write
// half to end it. maxFrame <= 0 means DefaultMaxFrame.
func EOF(maxFrame int) Codec { return &eofCodec{max: limit(maxFrame)} }

func (c *eofCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	if len(buf) > c.max {
		return nil, 0, tooLarge("eof", uint64(len(buf)), c.max)
	}
	if !atEOF || len(buf) == 0 {
		return nil, 0, nil
	}
	return buf[:len(buf):len(buf)], len(buf), nil
}

func (c *eofCodec) Append(dst, msg []byte) ([]byte, error) {
	if len(msg) > c.max {
		return dst, invalidMsg("eof", "message of %d bytes > max %d", len(msg), c.max)
	}
	return append(dst, msg...), nil
}

func (c *eofCodec) Overhead() int  { return 0 }
func (c *eofCodec) MaxFrame() int  { return c.max }
func (c *eofCodec) String() string { return "eof" }
