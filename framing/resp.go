package framing

import (
	"bytes"
	"fmt"
	"strconv"
)

// ---------------------------------------------------------------- resp

type respCodec struct{ max int }

// RESP returns the codec of Redis's protocol, RESP2 and the types RESP3
// adds: a frame is one complete value, returned whole as it is on the
// wire (type byte, lengths, CRLFs and all), so a reply of a nested array
// is one frame, and Append takes a message that is itself one well-formed
// value and copies it unchanged. RESPCommand builds the array of bulk
// strings that carries a command.
//
// The types: simple strings (+), errors (-), integers (:), bulk strings
// ($, $-1 is null), arrays (*, *-1 is null; nested to any depth); and from
// RESP3 null (_), booleans (#), doubles (,), big numbers ((), bulk errors
// (!), verbatim strings (=), maps (%), sets (~), pushes (>) and
// attributes (|, which precede the value they describe and are part of its
// frame). Inline commands (a bare line such as "PING") are not RESP
// values and are refused. A value of more than maxFrame bytes is
// ErrFrameTooLarge, found before it is buffered whole: from an announced
// length, or an element count that cannot fit. Nesting costs no stack, so
// a deep value is no risk. maxFrame <= 0 means DefaultMaxFrame.
func RESP(maxFrame int) Codec { return &respCodec{max: limit(maxFrame)} }

const respSpec = "resp"

func (c *respCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	n, err := c.scan(buf)
	if err != nil {
		return nil, 0, err
	}
	if n == 0 {
		if atEOF && len(buf) > 0 {
			return nil, 0, truncated(respSpec, len(buf))
		}
		return nil, 0, nil
	}
	return buf[:n:n], n, nil
}

// scan returns the length of the value at the start of buf, 0 when buf
// holds only part of one. It walks the value element by element, keeping
// only the count of elements still to come.
func (c *respCodec) scan(buf []byte) (int, error) {
	pos := 0
	for remaining := 1; remaining > 0; remaining-- {
		// Every element takes at least three bytes ("+\r\n"): a count
		// that cannot fit in the limit is refused now.
		if uint64(pos)+3*uint64(remaining) > uint64(c.max) {
			return 0, tooLarge(respSpec, uint64(pos)+3*uint64(remaining), c.max)
		}
		if pos >= len(buf) {
			return 0, nil
		}
		typ := buf[pos]
		line, next, err := c.line(buf, pos+1)
		if err != nil || next == 0 {
			return 0, err
		}
		switch typ {
		case '+', '-':
			// A simple string or error is one line of text.
		case '(':
			if _, ok := respBig(line); !ok {
				return 0, malformed("big number %q", line)
			}
		case '_':
			if len(line) != 0 {
				return 0, malformed("null with a value %q", line)
			}
		case '#':
			if len(line) != 1 || (line[0] != 't' && line[0] != 'f') {
				return 0, malformed("boolean %q, want t or f", line)
			}
		case ':':
			if _, ok := respInt(line); !ok {
				return 0, malformed("integer %q", line)
			}
		case ',':
			if _, err := strconv.ParseFloat(string(line), 64); err != nil {
				return 0, malformed("double %q", line)
			}
		case '$', '!', '=':
			size, ok := respInt(line)
			if !ok || size < -1 || (size == -1 && typ != '$') {
				return 0, malformed("length %q of a %q string", line, typ)
			}
			if size == -1 {
				break // the null bulk string
			}
			end := uint64(next) + uint64(size) + 2
			if end > uint64(c.max) {
				return 0, tooLarge(respSpec, end, c.max)
			}
			if uint64(len(buf)) < end {
				return 0, nil
			}
			if buf[end-2] != '\r' || buf[end-1] != '\n' {
				return 0, malformed("string of %d bytes not followed by CRLF", size)
			}
			next = int(end)
		case '*', '~', '>', '%', '|':
			count, ok := respInt(line)
			if !ok || count < -1 || (count == -1 && typ != '*') {
				return 0, malformed("count %q of a %q aggregate", line, typ)
			}
			if count > int64(c.max) {
				return 0, tooLarge(respSpec, uint64(count), c.max)
			}
			switch typ {
			case '%':
				count *= 2
			case '|':
				// The attribute's pairs, then the value it describes.
				count = count*2 + 1
			}
			if count > 0 {
				remaining += int(count)
			}
		default:
			return 0, malformed("type byte 0x%02x", typ)
		}
		pos = next
	}
	return pos, nil
}

// line finds the CRLF-terminated line starting at from and returns its
// text and the offset after the CRLF, or next == 0 when the line is not
// all there yet.
func (c *respCodec) line(buf []byte, from int) (line []byte, next int, err error) {
	rest := buf[from:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		if len(buf) > c.max {
			return nil, 0, undelimited(respSpec, len(buf), c.max)
		}
		if len(rest) > 0 && bytes.IndexByte(rest[:len(rest)-1], '\r') >= 0 {
			return nil, 0, malformed("CR inside a line")
		}
		return nil, 0, nil
	}
	if from+i+1 > c.max {
		return nil, 0, tooLarge(respSpec, uint64(from+i+1), c.max)
	}
	if i == 0 || rest[i-1] != '\r' {
		return nil, 0, malformed("line ended by LF without CR")
	}
	line = rest[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, 0, malformed("CR inside a line")
	}
	return line, from + i + 1, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, respSpec, fmt.Sprintf(format, args...))
}

// respInt parses a RESP integer: an optional sign and 1 to 18 digits.
func respInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	n, ok := parseNum(string(b))
	if !ok {
		return 0, false
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}

// respBig checks a RESP3 big number: an optional sign and digits.
func respBig(b []byte) ([]byte, bool) {
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		b = b[1:]
	}
	if len(b) == 0 {
		return nil, false
	}
	for _, d := range b {
		if d < '0' || d > '9' {
			return nil, false
		}
	}
	return b, true
}

func (c *respCodec) Append(dst, msg []byte) ([]byte, error) {
	if len(msg) > c.max {
		return dst, invalidMsg(respSpec, "message of %d bytes > max %d", len(msg), c.max)
	}
	n, err := c.scan(msg)
	switch {
	case err != nil:
		return dst, invalidMsg(respSpec, "not one RESP value: %v", err)
	case n == 0:
		return dst, invalidMsg(respSpec, "not one RESP value: it ends inside one (an inline command? use RESPCommand)")
	case n != len(msg):
		return dst, invalidMsg(respSpec, "%d bytes after the first value", len(msg)-n)
	}
	return append(dst, msg...), nil
}

func (c *respCodec) Overhead() int  { return 0 }
func (c *respCodec) MaxFrame() int  { return c.max }
func (c *respCodec) String() string { return respSpec }

// RESPCommand appends the RESP form of a command to dst: an array of bulk
// strings, one per argument, as redis-cli sends it.
func RESPCommand(dst []byte, args ...[]byte) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = append(dst, '$')
		dst = strconv.AppendInt(dst, int64(len(a)), 10)
		dst = append(dst, '\r', '\n')
		dst = append(dst, a...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}
