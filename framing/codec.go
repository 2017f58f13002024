// Package framing splits a TCP byte stream into messages and frames messages
// for the wire. Codecs are pure byte-slice code: no I/O, no goroutines, and
// nothing of the rest of switchboard.
//
// A Codec is stateless and safe for concurrent use; the caller owns the
// buffer of received bytes and hands it to Decode as it grows. Every codec
// enforces a maximum frame size before it allocates or waits for anything
// bigger, so a hostile peer cannot make the caller buffer more than the
// limit plus one read.
//
// Codecs are built from a spec string with Parse ("line", "len:4",
// "typed:a=4,b=16", ...) or from code with Raw, Line, Delim, Fixed, Length,
// Digits, Typed and EOF. A caller decodes by appending what it reads to a
// buffer, calling Decode in a loop until it returns n == 0, and dropping
// the consumed bytes; see the package example.
package framing

import "errors"

// DefaultMaxFrame is the maximum payload size used when none is given.
const DefaultMaxFrame = 1 << 20

// Sentinel errors. Decode and Append wrap them with the detail of what was
// wrong, so callers test them with errors.Is.
var (
	// ErrFrameTooLarge: a frame announced or accumulated more payload bytes
	// than the codec's maximum.
	ErrFrameTooLarge = errors.New("framing: frame exceeds maximum size")
	// ErrMalformed: the bytes on the wire break the codec's rules (a
	// non-digit in a digits length, for example).
	ErrMalformed = errors.New("framing: malformed frame")
	// ErrUnknownType: a typed codec met a type byte it was not given.
	ErrUnknownType = errors.New("framing: unknown message type")
	// ErrTruncated: the stream ended in the middle of a frame.
	ErrTruncated = errors.New("framing: stream ended inside a frame")
	// ErrInvalidMessage: Append was asked to frame a message the codec
	// cannot represent (wrong fixed size, a delimiter inside the payload...).
	ErrInvalidMessage = errors.New("framing: message cannot be framed")
	// ErrSpec: a framing spec string could not be parsed, or a codec
	// constructor was given parameters it cannot work with.
	ErrSpec = errors.New("framing: bad spec")
	// ErrCodec: a codec broke the Decode contract (it claimed more bytes
	// than it was given, or a negative count). The Accumulator will not
	// guess what it meant; the stream ends.
	ErrCodec = errors.New("framing: codec broke its contract")
)

// Codec decodes frames from a byte stream and encodes messages into frames.
type Codec interface {
	// Decode inspects buf, the received bytes not yet consumed, and returns
	// the payload of the first complete frame and how many bytes of buf it
	// spans. frame aliases buf (no copy). When buf holds no complete frame
	// it returns n == 0 and a nil error: the caller reads more and calls
	// again with the longer buffer. atEOF reports that the peer has shut
	// down its write half, so no more bytes will come: the eof codec then
	// returns everything, and the others report ErrTruncated for a partial
	// frame. An error is final for the stream.
	//
	// n > 0 exactly when a frame is returned (a frame may be empty, as an
	// empty line is); Decode returns at most one frame per call, so the
	// caller loops. The frame's capacity ends with it, so appending to it
	// cannot overwrite the bytes that follow in buf. Decode does not
	// allocate except to build an error.
	Decode(buf []byte, atEOF bool) (frame []byte, n int, err error)
	// Append appends the framed form of msg to dst and returns the result.
	// It does not allocate when dst has room for it. On error it returns
	// dst with its original length and an error wrapping
	// ErrInvalidMessage.
	Append(dst, msg []byte) ([]byte, error)
	// Overhead is the most framing bytes Append adds to a message (0 for
	// the raw, fixed, typed and eof codecs), so MaxFrame() + Overhead()
	// bounds the wire size of one frame.
	Overhead() int
	// MaxFrame is the largest message the codec decodes or encodes: the
	// configured maximum, or less when the format cannot express it (255
	// for len:1, N for fixed:N, 1 + the largest size for typed, whose
	// messages include the type byte).
	MaxFrame() int
	// String returns the canonical spec that Parse, given MaxFrame(),
	// turns back into an equivalent codec.
	String() string
}

// Resumer is implemented by the codecs that search for a delimiter (line
// and delim). DecodeFrom is Decode told that an earlier call already saw
// buf[:from] and found no frame in it, so the search resumes near from
// rather than at the start. An engine that keeps a partial frame between
// reads passes how much of it was searched, and a frame that arrives in
// many small pieces then costs time linear in its length instead of
// quadratic. from <= 0 means no hint; from must not exceed len(buf).
type Resumer interface {
	DecodeFrom(buf []byte, atEOF bool, from int) (frame []byte, n int, err error)
}
