package main

import (
	"bytes"
	"fmt"

	"switchboard/framing"
)

// maxInline bounds an inline command, as Redis does (64 KiB).
const maxInline = 64 << 10

// commandCodec frames what Redis clients send: a RESP array (framing.RESP
// decodes it) or, when the first byte is not '*', an inline command, a
// line ended by "\n" or "\r\n", as typed into telnet or piped into nc
// (redis-benchmark's PING_INLINE sends those too). An inline frame is the
// line without its end; it never starts with '*', so the handler tells
// the two apart by the first byte. Replies are written as built, so
// Append copies.
type commandCodec struct{ resp framing.Codec }

func newCommandCodec(maxFrame int) framing.Codec {
	return commandCodec{resp: framing.RESP(maxFrame)}
}

func (c commandCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) {
	if len(buf) == 0 {
		return nil, 0, nil
	}
	if buf[0] == '*' {
		return c.resp.Decode(buf, atEOF)
	}
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		switch {
		case len(buf) > maxInline:
			return nil, 0, fmt.Errorf("%w: inline command over %d bytes", framing.ErrFrameTooLarge, maxInline)
		case atEOF:
			return nil, 0, fmt.Errorf("%w: %d bytes of an inline command", framing.ErrTruncated, len(buf))
		}
		return nil, 0, nil
	}
	if i > maxInline {
		return nil, 0, fmt.Errorf("%w: inline command over %d bytes", framing.ErrFrameTooLarge, maxInline)
	}
	line := buf[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line[:len(line):len(line)], i + 1, nil
}

func (c commandCodec) Append(dst, msg []byte) ([]byte, error) { return append(dst, msg...), nil }
func (c commandCodec) Overhead() int                          { return 0 }
func (c commandCodec) MaxFrame() int                          { return c.resp.MaxFrame() }
func (c commandCodec) String() string                         { return "resp+inline" }
