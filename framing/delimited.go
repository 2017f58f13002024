package framing

import (
	"bytes"
	"encoding/hex"
)

// The delimiter codecs: line and delim. Both resume a search where the
// last one stopped (Resumer).

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
