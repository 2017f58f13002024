package framing

import (
	"fmt"
	"math"
)

// The frame loop, written once. Every reader of a framed stream — both
// server engines, the client, the load generator — does the same four
// things between its reads and its handler: decode every complete frame,
// keep the partial one that follows, append the next read behind it, and
// give up when the peer ends the stream inside a frame or sends one larger
// than the limit. An Accumulator does them, for one stream; a Splitter
// holds what every stream cut with one codec shares.
//
// Bytes come in one of two ways, and an engine picks per read:
//
//   - Feed lends bytes the caller owns (a loop's shared read buffer, a
//     buffer the kernel picked from an io_uring ring, plaintext a TLS layer
//     just decrypted). When nothing is held they are decoded where they
//     lie, with no copy, and Done copies the partial frame left at their
//     end, if any, into a buffer of the Accumulator's own: after Done the
//     caller may reuse or return them.
//   - Room and Commit read straight into the Accumulator's buffer, behind
//     the partial frame it holds, which saves copying the next read. A
//     stream that always reads this way (a goroutine per connection, the
//     client) keeps its buffer between reads.
//
// The buffer grows only while a frame bigger than it is being assembled,
// never past what the largest frame needs, and is given back when the
// frame is done. A connection with nothing held owns no buffer at all
// unless its Splitter says to keep one (SplitterOptions.Keep).

// Buffers supplies the storage an Accumulator holds a partial frame in,
// for callers that pool it. A loop that owns its streams can use a plain
// free list; nothing in the Accumulator calls it concurrently.
type Buffers interface {
	// Get returns an empty slice with capacity for at least n bytes.
	Get(n int) []byte
	// Put takes back a slice Get returned (or any other; a pool may drop
	// what it does not recognise).
	Put(b []byte)
}

// SplitterOptions tune how an Accumulator buffers. The zero value reads
// into whatever room is left and holds no buffer while idle.
type SplitterOptions struct {
	// Room is the least free space Room offers a read. When less is free,
	// the held bytes first move to the front of the buffer; the buffer
	// grows only if that still leaves less than Room. Default 1.
	Room int
	// Initial is the size of the buffer Room takes when nothing is held.
	// Default Room.
	Initial int
	// Keep is the largest emptied buffer an Accumulator keeps for the
	// next read; larger ones, and every one when Keep is 0, go back to
	// Buffers (or to the garbage collector).
	Keep int
	// Buffers supplies and takes back storage; nil means make and the
	// garbage collector.
	Buffers Buffers
}

// Splitter is what every stream decoded with one codec shares: the codec,
// its Resumer if it has one, the bound on one frame's wire size, and the
// buffering policy. It is not changed after NewSplitter, so streams on
// different goroutines may share it if their Buffers allow that.
type Splitter struct {
	codec   Codec
	resumer Resumer
	wire    int // MaxFrame + Overhead: the most bytes one frame spans
	room    int
	initial int
	keep    int
	bufs    Buffers
}

// NewSplitter returns a Splitter for c.
func NewSplitter(c Codec, o SplitterOptions) *Splitter {
	s := &Splitter{codec: c, wire: c.MaxFrame() + c.Overhead(), room: max(o.Room, 1), keep: o.Keep, bufs: o.Buffers}
	s.resumer, _ = c.(Resumer)
	s.initial = max(o.Initial, s.room)
	return s
}

// Codec returns the codec frames are decoded with.
func (s *Splitter) Codec() Codec { return s.codec }

// MaxWire is the most bytes one frame can span on the wire: a held
// partial frame longer than this is ErrFrameTooLarge.
func (s *Splitter) MaxWire() int { return s.wire }

func (s *Splitter) get(n int) []byte {
	if s.bufs != nil {
		return s.bufs.Get(n)
	}
	return make([]byte, 0, n)
}

func (s *Splitter) put(b []byte) {
	if s.bufs != nil && b != nil {
		s.bufs.Put(b)
	}
}

// Accumulator is one stream's decoding state: the bytes received and not
// yet consumed, and how much of them a delimiter search has covered. The
// zero value holds nothing. It is not safe for concurrent use, and every
// call on one Accumulator must pass the same Splitter.
//
// A batch is Feed (or Room and Commit), then Next until it reports no
// frame, then Done. The frames Next returns alias the bytes they were
// decoded from: valid until the next Feed, Room, Done or Reset.
type Accumulator struct {
	buf []byte // buf[off:] is unconsumed; owned, unless borrowed
	off int
	// buf[off:off+scanned] is known to hold no frame boundary. It is a
	// hint, so an int32 will do (a smaller value only means searching
	// again), and it keeps the struct, which every connection of an event
	// loop carries, at 40 bytes.
	scanned  int32
	borrowed bool // buf is the caller's, lent by Feed until Done
}

// Buffered is the number of bytes received and not yet consumed: a partial
// frame between batches. Zero means a read may go anywhere (and be handed
// over with Feed).
func (a *Accumulator) Buffered() int { return len(a.buf) - a.off }

// Bytes returns the unconsumed bytes, for a caller that takes the stream
// over raw (a PROXY header before the frames, the rest of a stream read to
// its end). It aliases the buffer; Skip consumes them.
func (a *Accumulator) Bytes() []byte { return a.buf[a.off:] }

// Skip consumes n unconsumed bytes (n <= Buffered()) that the caller has
// dealt with itself. The delimiter search restarts after them.
func (a *Accumulator) Skip(n int) {
	a.off += n
	a.scanned = 0
}

// Feed adds data, which the caller owns, to the stream. With nothing held
// it is lent, not copied: Next decodes frames in place from it, and Done
// copies any partial frame at its end before the caller reuses data.
// Otherwise data is appended behind the held bytes. A Feed in the middle
// of a batch ends it first, as Done does.
func (a *Accumulator) Feed(s *Splitter, data []byte) {
	if a.borrowed {
		a.Done(s)
	}
	if a.Buffered() == 0 {
		s.put(a.buf)
		a.buf, a.off, a.scanned, a.borrowed = data, 0, 0, true
		return
	}
	a.reserve(s, len(data))
	a.buf = append(a.buf, data...)
}

// Room returns free space behind the held bytes to read into, at least the
// Splitter's Room: the held bytes move to the front, or the buffer grows,
// when less is free. Commit then says how much the read filled.
func (a *Accumulator) Room(s *Splitter) []byte {
	if a.borrowed {
		a.Done(s)
	}
	a.reserve(s, s.room)
	return a.buf[len(a.buf):cap(a.buf)]
}

// Commit adds the n bytes a read put into the slice Room returned.
func (a *Accumulator) Commit(n int) { a.buf = a.buf[:len(a.buf)+n] }

// reserve makes room for n more bytes in an owned buffer.
func (a *Accumulator) reserve(s *Splitter, n int) {
	if cap(a.buf)-len(a.buf) >= n {
		return
	}
	held := a.Buffered()
	if a.buf == nil {
		a.buf = s.get(max(n, s.initial))
		return
	}
	if a.off > 0 && cap(a.buf)-held >= n {
		a.buf = a.buf[:copy(a.buf[:cap(a.buf)], a.buf[a.off:])]
		a.off = 0
		return
	}
	// A frame bigger than the buffer is being assembled: double it, but
	// not beyond what the largest frame needs.
	nb := s.get(max(held+n, min(2*cap(a.buf), s.wire+s.room)))
	nb = append(nb, a.buf[a.off:]...)
	s.put(a.buf)
	a.buf, a.off = nb, 0
}

// Next decodes the next complete frame. ok is false when none is complete
// (more bytes are needed, or nothing is held); err is final for the
// stream. atEOF says the peer has ended the stream: the eof codec's
// message completes then, and a partial frame left over is ErrTruncated.
// A held partial frame longer than the largest frame can be is
// ErrFrameTooLarge, whatever the codec says, so no codec can make a stream
// buffer without bound; a codec that claims more bytes than it was given
// is ErrCodec.
func (a *Accumulator) Next(s *Splitter, atEOF bool) (frame []byte, ok bool, err error) {
	rest := a.buf[a.off:]
	if len(rest) == 0 || !atEOF && int(a.scanned) >= len(rest) {
		// Nothing new since the last search found no frame.
		return nil, false, nil
	}
	var n int
	if a.scanned > 0 && s.resumer != nil {
		frame, n, err = s.resumer.DecodeFrom(rest, atEOF, int(a.scanned))
	} else {
		frame, n, err = s.codec.Decode(rest, atEOF)
	}
	if err != nil {
		return nil, false, err
	}
	if n < 0 || n > len(rest) || len(frame) > n {
		return nil, false, fmt.Errorf("%w: %s decoded %d bytes (a %d-byte frame) from %d", ErrCodec, s.codec, n, len(frame), len(rest))
	}
	if n == 0 {
		a.scanned = int32(min(len(rest), math.MaxInt32))
		switch {
		case atEOF:
			return nil, false, fmt.Errorf("%w: %d bytes after the last message", ErrTruncated, len(rest))
		case len(rest) > s.wire:
			return nil, false, fmt.Errorf("%w: %d bytes without a complete frame, max frame %d", ErrFrameTooLarge, len(rest), s.codec.MaxFrame())
		}
		return nil, false, nil
	}
	a.off += n
	a.scanned = 0
	return frame, true, nil
}

// Done ends a batch: bytes lent by Feed that hold the start of a frame are
// copied into a buffer of the Accumulator's own, so the caller may reuse
// them; an owned buffer left empty goes back unless the Splitter keeps it.
func (a *Accumulator) Done(s *Splitter) {
	held := a.Buffered()
	if a.borrowed {
		a.borrowed = false
		if held == 0 {
			a.buf, a.off = nil, 0
			return
		}
		a.buf = append(s.get(held), a.buf[a.off:]...)
		a.off = 0
		return
	}
	if held > 0 || a.buf == nil {
		return
	}
	a.off, a.scanned = 0, 0
	if cap(a.buf) > s.keep {
		s.put(a.buf)
		a.buf = nil
	} else {
		a.buf = a.buf[:0]
	}
}

// Reset drops whatever is held and gives the buffer back: the stream has
// ended, or its input is being discarded.
func (a *Accumulator) Reset(s *Splitter) {
	if !a.borrowed {
		s.put(a.buf)
	}
	*a = Accumulator{}
}
