package framing

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// oneShot decodes the whole stream at once, straight from the codec, with
// the Accumulator's two rules added (a partial frame left at EOF is
// truncated; one longer than MaxFrame+Overhead is too large): the
// reference every way of feeding an Accumulator must agree with.
func oneShot(c Codec, stream []byte) ([][]byte, error) {
	var out [][]byte
	off := 0
	for _, atEOF := range []bool{false, true} {
		for off < len(stream) {
			frame, n, err := c.Decode(stream[off:], atEOF)
			if err != nil {
				return out, err
			}
			if n == 0 {
				break
			}
			out = append(out, bytes.Clone(frame))
			off += n
		}
	}
	if rest := len(stream) - off; rest > c.MaxFrame()+c.Overhead() {
		return out, ErrFrameTooLarge
	} else if rest > 0 {
		return out, ErrTruncated
	}
	return out, nil
}

// feedMode is how a test hands bytes to an Accumulator.
type feedMode int

const (
	byFeed feedMode = iota // Feed from a scratch buffer reused for every read
	byRoom                 // Room and Commit: read into the Accumulator
	byMix                  // either, at random, as the reactor does
)

// countingBuffers is a Buffers that checks every buffer it lent comes back
// at most once, and counts what is out.
type countingBuffers struct {
	out  map[*byte]bool
	gets int
}

func (b *countingBuffers) Get(n int) []byte {
	s := make([]byte, 0, n)
	if b.out == nil {
		b.out = map[*byte]bool{}
	}
	b.out[&s[:1][0]] = true
	b.gets++
	return s
}

func (b *countingBuffers) Put(s []byte) {
	p := &s[:1][0]
	if !b.out[p] {
		panic("Put of a buffer not lent, or put twice")
	}
	delete(b.out, p)
}

// accumulate feeds the chunks to an Accumulator in the given mode and
// returns copies of the frames and the first error. Frames are checked to
// still be intact at the end of their batch, and the scratch buffer Feed
// lends is scribbled over after Done, so a frame or partial frame that
// still pointed into it would show.
func accumulate(t testing.TB, c Codec, chunks [][]byte, mode feedMode, o SplitterOptions, r *rand.Rand) ([][]byte, error) {
	bufs := &countingBuffers{}
	o.Buffers = bufs
	s := NewSplitter(c, o)
	var a Accumulator
	var out [][]byte
	scratch := make([]byte, 0, 64)
	fail := func(err error) ([][]byte, error) {
		a.Reset(s)
		if len(bufs.out) != 0 {
			t.Fatalf("%s: %d buffers not given back after Reset", c, len(bufs.out))
		}
		return out, err
	}
	batch := func(atEOF bool) error {
		var frames, copies [][]byte
		var err error
		for {
			var frame []byte
			var ok bool
			frame, ok, err = a.Next(s, atEOF)
			if err != nil || !ok {
				break
			}
			frames = append(frames, frame)
			copies = append(copies, bytes.Clone(frame))
		}
		for i := range frames {
			if !bytes.Equal(frames[i], copies[i]) {
				t.Fatalf("%s: frame %d changed within its batch", c, i)
			}
		}
		out = append(out, copies...)
		return err
	}
	biggest := 0 // the largest read so far
	for _, chunk := range chunks {
		biggest = max(biggest, len(chunk))
		m := mode
		if m == byMix {
			m = feedMode(r.IntN(2))
		}
		if m == byFeed {
			scratch = append(scratch[:0], chunk...)
			a.Feed(s, scratch)
		} else {
			for len(chunk) > 0 {
				room := a.Room(s)
				if len(room) < min(s.room, 1) {
					t.Fatalf("%s: Room offered %d bytes", c, len(room))
				}
				n := copy(room, chunk)
				a.Commit(n)
				chunk = chunk[n:]
			}
		}
		if err := batch(false); err != nil {
			return fail(err)
		}
		a.Done(s)
		for i := range scratch {
			scratch[i] = 0xA5
		}
		if a.Buffered() == 0 && o.Keep == 0 && a.buf != nil {
			t.Fatalf("%s: an Accumulator with nothing held kept a buffer", c)
		}
		if a.Buffered() > s.wire {
			t.Fatalf("%s: %d bytes held, more than one frame can span (%d)", c, a.Buffered(), s.wire)
		}
		// Room doubles up to what one frame and one read need; Feed
		// appends a whole read behind a partial frame.
		if most := max(2*(s.wire+s.room), s.initial) + biggest; cap(a.buf) > most {
			t.Fatalf("%s: buffer grew to %d for frames of at most %d bytes and reads of %d", c, cap(a.buf), s.wire, biggest)
		}
	}
	if err := batch(true); err != nil {
		return fail(err)
	}
	return fail(nil)
}

// splitRandom cuts stream into pieces of 0 to 2*maxPiece bytes.
func splitRandom(r *rand.Rand, stream []byte, maxPiece int) [][]byte {
	var chunks [][]byte
	for len(stream) > 0 {
		k := min(r.IntN(2*maxPiece+1), len(stream))
		chunks = append(chunks, stream[:k])
		stream = stream[k:]
	}
	return chunks
}

// sameOutcome compares an Accumulator's frames and error with the
// one-shot reference. Raw framing keeps no boundaries, so there only the
// concatenation counts.
func sameOutcome(t *testing.T, c Codec, what string, got [][]byte, gotErr error, want [][]byte, wantErr error) {
	t.Helper()
	if c.String() == "raw" {
		got, want = [][]byte{bytes.Join(got, nil)}, [][]byte{bytes.Join(want, nil)}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d (err %v, want %v)", what, len(got), len(want), gotErr, wantErr)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: frame %d = %q, want %q", what, i, got[i], want[i])
		}
	}
	// Which error a codec reports first may depend on the split (digits
	// knows "1" of three digits is too large before it sees the 'A' that
	// follows); that there is one may not, and it must be a sentinel.
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && !isSentinel(gotErr) {
		t.Fatalf("%s: error %v, want %v", what, gotErr, wantErr)
	}
}

// TestAccumulatorSplits: random streams of valid messages, with random
// garbage appended half the time, split at random points and fed every
// way, decode exactly as the whole stream does in one go.
func TestAccumulatorSplits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, spec := range allSpecs {
		for _, maxFrame := range []int{1, 5, 64, 300} {
			if spec == "fixed:7" && maxFrame < 7 || spec[:min(len(spec), 6)] == "typed:" && maxFrame < 16 {
				continue
			}
			c := mustParse(t, spec, maxFrame)
			t.Run(fmt.Sprintf("%s/max%d", spec, maxFrame), func(t *testing.T) {
				for iter := range 40 {
					var stream []byte
					for range 1 + r.IntN(12) {
						if msg := genMsg(r, c); msg != nil {
							stream, _ = c.Append(stream, msg)
						}
					}
					if iter%2 == 1 {
						for range r.IntN(40) {
							stream = append(stream, "ab0\r\n\x00\xff"[r.IntN(7)])
						}
					}
					want, wantErr := oneShot(c, stream)
					for _, mode := range []feedMode{byFeed, byRoom, byMix} {
						for _, o := range []SplitterOptions{{}, {Room: 8, Keep: 32}, {Room: 3, Initial: 2}} {
							chunks := splitRandom(r, stream, 1+r.IntN(2*maxFrame))
							got, err := accumulate(t, c, chunks, mode, o, r)
							sameOutcome(t, c, fmt.Sprintf("iter %d mode %d %+v", iter, mode, o), got, err, want, wantErr)
						}
					}
				}
			})
		}
	}
}

// TestAccumulatorZeroCopy: with nothing held, frames alias the bytes Feed
// lent, and nothing is allocated or kept; a partial frame is copied out by
// Done, and its buffer given back once it completes.
func TestAccumulatorZeroCopy(t *testing.T) {
	c := mustParse(t, "len:2", 0)
	bufs := &countingBuffers{}
	s := NewSplitter(c, SplitterOptions{Room: 16, Buffers: bufs})
	var a Accumulator
	data := []byte("\x00\x02hi\x00\x03abc\x00\x05wo")
	a.Feed(s, data)
	for _, want := range []string{"hi", "abc"} {
		frame, ok, err := a.Next(s, false)
		if !ok || err != nil || string(frame) != want {
			t.Fatalf("Next = %q, %v, %v; want %q", frame, ok, err, want)
		}
		if !aliases(frame, data) {
			t.Fatalf("frame %q was copied", frame)
		}
	}
	if _, ok, err := a.Next(s, false); ok || err != nil {
		t.Fatalf("Next on a partial frame = %v, %v", ok, err)
	}
	if bufs.gets != 0 {
		t.Fatal("a buffer was taken before Done")
	}
	a.Done(s)
	copy(data, "XXXXXXXXXXXXXXXX")
	if a.Buffered() != 4 || string(a.Bytes()) != "\x00\x05wo" || bufs.gets != 1 {
		t.Fatalf("after Done: %q held, %d buffers taken", a.Bytes(), bufs.gets)
	}
	room := a.Room(s)
	if len(room) < 16 {
		t.Fatalf("Room = %d bytes, want at least 16", len(room))
	}
	a.Commit(copy(room, "rld"))
	if frame, ok, err := a.Next(s, false); !ok || err != nil || string(frame) != "world" {
		t.Fatalf("Next = %q, %v, %v", frame, ok, err)
	}
	a.Done(s)
	if a.buf != nil || len(bufs.out) != 0 {
		t.Fatalf("an emptied Accumulator keeps %d bytes, %d buffers out", cap(a.buf), len(bufs.out))
	}
	// Lent again, and again not copied.
	data = []byte("\x00\x01z")
	a.Feed(s, data)
	if frame, ok, _ := a.Next(s, false); !ok || !aliases(frame, data) {
		t.Fatalf("second Feed: %q, %v", frame, ok)
	}
	a.Done(s)
	if bufs.gets != 2 || len(bufs.out) != 0 {
		t.Fatalf("%d buffers taken, %d out; want 2, 0", bufs.gets, len(bufs.out))
	}
}

// TestAccumulatorGrowth: a frame bigger than the buffer grows it by
// doubling, no further than the frame needs, and a buffer above Keep is
// given back once the frame is done, while one within Keep stays.
func TestAccumulatorGrowth(t *testing.T) {
	const max = 100 << 10
	c := mustParse(t, "len:4", max)
	s := NewSplitter(c, SplitterOptions{Initial: 4 << 10, Keep: 4 << 10})
	var a Accumulator
	msg := bytes.Repeat([]byte("x"), max)
	wire, _ := c.Append(nil, msg)
	var caps []int
	for off := 0; off < len(wire); {
		room := a.Room(s)
		n := copy(room, wire[off:min(off+1000, len(wire))])
		a.Commit(n)
		off += n
		if k := cap(a.buf); len(caps) == 0 || caps[len(caps)-1] != k {
			caps = append(caps, k)
		}
		frame, ok, err := a.Next(s, false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if !bytes.Equal(frame, msg) {
				t.Fatal("frame corrupted")
			}
			break
		}
	}
	if caps[0] != 4<<10 || caps[len(caps)-1] > max+4+1 || caps[len(caps)-1] < max+4 {
		t.Fatalf("buffer sizes %v: want 4 KiB first, doubling, ending within the frame's %d bytes", caps, max+4)
	}
	for i := 1; i < len(caps)-1; i++ {
		if caps[i] != 2*caps[i-1] {
			t.Fatalf("buffer sizes %v do not double", caps)
		}
	}
	a.Done(s)
	if a.buf != nil {
		t.Fatalf("a %d-byte buffer kept after the frame, above Keep", cap(a.buf))
	}
	a.Room(s)
	a.Commit(copy(a.Room(s), "\x00\x00"))
	a.Next(s, false)
	if cap(a.buf) != 4<<10 {
		t.Fatalf("fresh buffer of %d bytes, want 4 KiB", cap(a.buf))
	}
}

// stallCodec never completes a frame and never complains: the kind of
// codec the Accumulator's own rules protect against.
type stallCodec struct{ max int }

func (c stallCodec) Decode(buf []byte, atEOF bool) ([]byte, int, error) { return nil, 0, nil }
func (c stallCodec) Append(dst, msg []byte) ([]byte, error)             { return append(dst, msg...), nil }
func (c stallCodec) Overhead() int                                      { return 2 }
func (c stallCodec) MaxFrame() int                                      { return c.max }
func (c stallCodec) String() string                                     { return "stall" }

// TestAccumulatorRules: whatever the codec, more than MaxFrame+Overhead
// bytes without a frame is ErrFrameTooLarge, and bytes left at EOF are
// ErrTruncated.
func TestAccumulatorRules(t *testing.T) {
	s := NewSplitter(stallCodec{max: 10}, SplitterOptions{})
	var a Accumulator
	a.Feed(s, bytes.Repeat([]byte("a"), 12))
	if _, ok, err := a.Next(s, false); ok || err != nil {
		t.Fatalf("12 bytes, limit 12: %v, %v; want more", ok, err)
	}
	a.Done(s)
	a.Feed(s, []byte("a"))
	if _, _, err := a.Next(s, false); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("13 bytes, limit 12: %v, want ErrFrameTooLarge", err)
	}
	a.Reset(s)
	a.Feed(s, []byte("abc"))
	if _, _, err := a.Next(s, true); !errors.Is(err, ErrTruncated) {
		t.Fatalf("3 bytes at EOF: %v, want ErrTruncated", err)
	}
	a.Reset(s)
	if _, ok, err := a.Next(s, true); ok || err != nil {
		t.Fatalf("nothing at EOF: %v, %v; want the end, no error", ok, err)
	}
}

// fromCodec records the resume hints DecodeFrom is given.
type fromCodec struct {
	Codec
	froms []int
}

func (c *fromCodec) DecodeFrom(buf []byte, atEOF bool, from int) ([]byte, int, error) {
	c.froms = append(c.froms, from)
	return c.Codec.(Resumer).DecodeFrom(buf, atEOF, from)
}

// TestAccumulatorResumes: a line arriving in pieces is searched from
// where the last search stopped, never from its start again, and a search
// that found nothing is not repeated before more bytes arrive.
func TestAccumulatorResumes(t *testing.T) {
	c := &fromCodec{Codec: Line(0)}
	s := NewSplitter(c, SplitterOptions{Room: 4})
	var a Accumulator
	for _, piece := range []string{"abcd", "efgh", "ij\nk"} {
		a.Commit(copy(a.Room(s), piece))
		for {
			frame, ok, err := a.Next(s, false)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if string(frame) != "abcdefghij" {
				t.Fatalf("frame %q", frame)
			}
		}
		a.Next(s, false) // nothing new: no search
		a.Done(s)
	}
	if fmt.Sprint(c.froms) != "[4 8]" {
		t.Fatalf("DecodeFrom hints %v, want [4 8]: resume after 4 bytes, then after 8", c.froms)
	}
}

// FuzzAccumulator: arbitrary bytes, cut where the fuzzer says and fed in
// the way it says, decode as the whole stream does in one go, never hold
// more than one frame can span, and give back every buffer they take.
// Each byte of cuts is one read's length (0 to 63). The codec is one of allSpecs; maxFrame is 1 to
// 300. Seed corpus in testdata/fuzz/FuzzAccumulator.
func FuzzAccumulator(f *testing.F) {
	f.Add(uint8(1), uint16(16), []byte("hello\r\nworld\nand a partial"), []byte{3, 0x47, 0x85, 1, 60})
	f.Add(uint8(6), uint16(300), []byte("\x00\x05hello\x00\x00\x01\x00big"), []byte{1, 1, 1, 0xc2, 0x7f})
	f.Add(uint8(12), uint16(5), []byte("00003abc9"), []byte{2, 2, 0x42})
	f.Add(uint8(15), uint16(8), []byte("everything until EOF"), []byte{4, 0x44})
	f.Fuzz(func(t *testing.T, which uint8, maxFrame uint16, data, cuts []byte) {
		spec := allSpecs[int(which)%len(allSpecs)]
		c, err := Parse(spec, fuzzMax(maxFrame))
		if err != nil {
			return // fixed:7 and typed above a small maximum
		}
		var chunks [][]byte
		rest := data
		for _, b := range cuts {
			if len(rest) == 0 {
				break
			}
			k := min(int(b&63), len(rest))
			chunks = append(chunks, rest[:k])
			rest = rest[k:]
		}
		if len(rest) > 0 {
			chunks = append(chunks, rest)
		}
		want, wantErr := oneShot(c, data)
		r := rand.New(rand.NewPCG(uint64(len(data)), uint64(len(cuts))))
		for _, mode := range []feedMode{byFeed, byRoom, byMix} {
			got, err := accumulate(t, c, chunks, mode, SplitterOptions{Room: 4, Keep: 16}, r)
			sameOutcome(t, c, fmt.Sprintf("mode %d", mode), got, err, want, wantErr)
		}
	})
}
