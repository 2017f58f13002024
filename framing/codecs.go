package framing

import (
	"fmt"
	"strconv"
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
