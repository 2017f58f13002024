package tlsloop

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// wire is the net.Conn under the tls.Conn. Its input is what the loop
// fed; its output is appended to a buffer the loop drains. It blocks only
// while a handshake goroutine reads it: afterwards an empty input is
// reported as errWouldBlock, which crypto/tls's record reader returns to
// its caller without recording it as the connection's error (readRecordOrCCS
// keeps an error only when it is not a temporary net.Error).
type wire struct {
	mu   sync.Mutex
	cond sync.Cond // Read waits on it while blocking

	in     []byte // fed ciphertext; in[off:] is not yet read
	off    int
	pooled *[]byte // the pool's holder of in's storage, when it came from the pool
	out    []byte  // ciphertext for the loop to send

	// solo is set, under mu, when the handshake goroutine is done with
	// the wire: from then on only the loop uses it (the timer may still
	// set expired, which the loop never reads), and takes no lock.
	solo atomic.Bool

	rec recordCursor // where the bytes handed to the tls.Conn stand in the record stream

	blocking bool // a handshake goroutine reads: Read waits for input
	expired  bool // the handshake timeout fired: a blocked Read gives up
	eof      bool // the peer shut down its write half
	closed   bool

	// onOutput is called, without mu held, when a write made while
	// blocking turns out from empty to non-empty.
	onOutput func()
}

// errWouldBlock is what wire.Read returns when no input is buffered and no
// goroutine may wait for it. crypto/tls passes it up unchanged.
var errWouldBlock error = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "tlsloop: no input buffered" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

// errExpired is what a blocked handshake read returns once the handshake
// timeout has fired. Conn reports the timeout from its own state, so the
// wording here never reaches a user.
var errExpired = os.ErrDeadlineExceeded

// Feed buffers, copying. Pooled storage makes steady traffic allocation
// free, and is given back as soon as the tls.Conn has read it all.
func (w *wire) feed(p []byte) {
	if len(p) == 0 {
		return
	}
	defer w.unlock(w.lock())
	if w.closed || w.eof {
		return
	}
	if w.off == len(w.in) {
		w.in, w.off = w.in[:0], 0
	}
	if w.in == nil {
		w.getBuf(len(p))
	} else if cap(w.in)-len(w.in) < len(p) {
		w.regrow(len(p))
	}
	w.in = append(w.in, p...)
	if w.blocking {
		w.cond.Signal()
	}
}

func (w *wire) feedEOF() {
	locked := w.lock()
	w.eof = true
	if w.blocking {
		w.cond.Signal()
	}
	w.unlock(locked)
}

// progress reports whether the tls.Conn could do more with what is fed:
// the input ended, a record header it has not seen is all here (it
// validates headers before waiting for bodies), or the rest of the record
// it is reading is.
func (w *wire) progress() bool {
	defer w.unlock(w.lock())
	if w.closed || w.eof {
		return true
	}
	avail := len(w.in) - w.off
	if w.rec.have < recordHeaderLen {
		return avail >= recordHeaderLen-w.rec.have
	}
	return avail >= w.rec.body
}

// buffered returns how many fed bytes the tls.Conn has not read yet.
func (w *wire) buffered() int {
	defer w.unlock(w.lock())
	return len(w.in) - w.off
}

// Read hands the tls.Conn fed bytes, never past the end of the record it
// is reading. crypto/tls asks for bytes only to complete the record in
// hand, so it then holds nothing beyond that record, and the wire alone
// can tell whether another Read could make progress (progress).
func (w *wire) Read(p []byte) (int, error) {
	defer w.unlock(w.lock())
	for {
		if w.off < len(w.in) {
			avail := w.in[w.off:]
			n := copy(p, avail[:w.rec.limit(avail)])
			w.rec.advance(avail[:n])
			w.off += n
			if w.off == len(w.in) {
				w.putBuf()
			}
			return n, nil
		}
		switch {
		case w.closed:
			return 0, net.ErrClosed
		case w.eof:
			return 0, io.EOF
		case !w.blocking:
			return 0, errWouldBlock
		case w.expired:
			return 0, errExpired
		}
		w.cond.Wait()
	}
}

func (w *wire) Write(p []byte) (int, error) {
	locked := w.lock()
	if w.closed {
		w.unlock(locked)
		return 0, net.ErrClosed
	}
	var notify func()
	if w.blocking && len(w.out) == 0 && len(p) > 0 {
		notify = w.onOutput
	}
	w.out = append(w.out, p...)
	w.unlock(locked)
	if notify != nil {
		notify()
	}
	return len(p), nil
}

// takeOutput appends the pending output to dst and lets the wire forget
// its own buffer.
func (w *wire) takeOutput(dst []byte) []byte {
	defer w.unlock(w.lock())
	if len(w.out) > 0 {
		dst = append(dst, w.out...)
	}
	w.out = nil
	return dst
}

// sinkInto makes dst (after any pending output) the buffer writes append
// to, so the records of one Seal go straight into the loop's outbox; the
// caller takes it back with takeSink.
func (w *wire) sinkInto(dst []byte) {
	locked := w.lock()
	if len(w.out) > 0 {
		dst = append(dst, w.out...)
	}
	w.out = dst
	w.unlock(locked)
}

func (w *wire) takeSink() []byte {
	locked := w.lock()
	dst := w.out
	w.out = nil
	w.unlock(locked)
	return dst
}

func (w *wire) setBlocking(b bool) {
	w.mu.Lock()
	w.blocking = b
	w.mu.Unlock()
}

// endHandshake stops blocking reads and output notices for good.
func (w *wire) endHandshake() {
	w.mu.Lock()
	w.blocking = false
	w.onOutput = nil
	w.solo.Store(true)
	w.mu.Unlock()
}

// lock takes mu unless the loop has the wire to itself, and says whether
// it did, for unlock: solo may be set while lock waits for mu.
func (w *wire) lock() bool {
	if w.solo.Load() {
		return false
	}
	w.mu.Lock()
	return true
}

func (w *wire) unlock(locked bool) {
	if locked {
		w.mu.Unlock()
	}
}

func (w *wire) expire() {
	w.mu.Lock()
	w.expired = true
	w.cond.Broadcast()
	w.mu.Unlock()
}

func (w *wire) wasExpired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.expired
}

func (w *wire) Close() error {
	defer w.unlock(w.lock())
	if w.closed {
		return nil
	}
	w.closed = true
	w.putBuf()
	w.cond.Broadcast()
	return nil
}

// Deadlines are the Conn's business (the handshake timer): crypto/tls sets
// a write deadline before close_notify, and writes here never block.
func (w *wire) SetDeadline(time.Time) error      { return nil }
func (w *wire) SetReadDeadline(time.Time) error  { return nil }
func (w *wire) SetWriteDeadline(time.Time) error { return nil }

// The engine knows the addresses; crypto/tls never asks.
func (w *wire) LocalAddr() net.Addr  { return wireAddr{} }
func (w *wire) RemoteAddr() net.Addr { return wireAddr{} }

type wireAddr struct{}

func (wireAddr) Network() string { return "tlsloop" }
func (wireAddr) String() string  { return "tlsloop" }

// Feed storage: two size classes. Most feeds are small (a handshake
// flight, a record or two of small messages), and a handshake's feed
// buffer lives as long as the handshake, so a small class keeps a burst of
// handshakes from holding 64 KiB each; a socket read of a bulk transfer
// takes the large class, the most a loop reads at once. Larger feeds get
// a buffer of their own, not pooled.
const (
	smallBufSize = 4 << 10
	poolBufSize  = 64 << 10
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, 0, smallBufSize); return &b }}
	bufPool   = sync.Pool{New: func() any { b := make([]byte, 0, poolBufSize); return &b }}
)

func (w *wire) getBuf(n int) {
	switch {
	case n <= smallBufSize:
		w.pooled = smallPool.Get().(*[]byte)
	case n <= poolBufSize:
		w.pooled = bufPool.Get().(*[]byte)
	default:
		w.in = make([]byte, 0, n)
		return
	}
	w.in = (*w.pooled)[:0]
}

// regrow makes room for n more bytes behind the unread input: by moving
// it to the front when that is enough, else into a buffer of the next
// class (the old one goes back to its pool), else of its own.
func (w *wire) regrow(n int) {
	unread := len(w.in) - w.off
	if cap(w.in)-unread >= n {
		k := copy(w.in, w.in[w.off:])
		w.in, w.off = w.in[:k], 0
		return
	}
	full, old, oldPooled := w.in, w.in[w.off:], w.pooled
	w.pooled = nil
	// Past the large class storage grows by doubling, as append's would,
	// so feeding a backlog piece by piece stays linear.
	w.getBuf(max(unread+n, min(2*cap(full), unread+n+cap(full))))
	w.in = append(w.in, old...)
	w.off = 0
	if oldPooled != nil {
		release(oldPooled, full) // once its bytes are copied out
	}
}

// putBuf empties in, giving its storage back to its pool if it is still
// the pool's (a feed that outgrew it left it to the collector).
func (w *wire) putBuf() {
	if w.pooled != nil {
		release(w.pooled, w.in)
	}
	w.in, w.off, w.pooled = nil, 0, nil
}

// release puts b, pooled storage held through holder, back in its pool,
// if it still has the capacity it was handed out with.
func release(holder *[]byte, b []byte) {
	switch cap(b) {
	case smallBufSize:
		*holder = b[:0]
		smallPool.Put(holder)
	case poolBufSize:
		*holder = b[:0]
		bufPool.Put(holder)
	}
}

// recordCursor follows the TLS record framing (a 5-byte header whose last
// two bytes are the body's length) of the bytes handed to the tls.Conn.
// It only counts: crypto/tls validates records, and garbage merely gives
// odd boundaries.
type recordCursor struct {
	hdr  [recordHeaderLen]byte
	have int // header bytes handed so far; recordHeaderLen once the body is reached
	body int // body bytes still to hand, once the header is complete
}

const recordHeaderLen = 5

// left returns how many bytes complete the current record, as far as
// avail (the bytes after those handed) tells: the exact count once the
// header is known, else a lower bound beyond len(avail).
func (r *recordCursor) left(avail []byte) int {
	if r.have == recordHeaderLen {
		return r.body
	}
	need := recordHeaderLen - r.have
	if len(avail) < need {
		return len(avail) + 1
	}
	var hdr [recordHeaderLen]byte
	copy(hdr[:], r.hdr[:r.have])
	copy(hdr[r.have:], avail[:need])
	return need + (int(hdr[3])<<8 | int(hdr[4]))
}

// limit returns how many of avail may be handed without passing the end
// of the current record.
func (r *recordCursor) limit(avail []byte) int { return min(len(avail), r.left(avail)) }

// advance moves past b, handed to the tls.Conn (never past a record end).
func (r *recordCursor) advance(b []byte) {
	if r.have < recordHeaderLen {
		k := copy(r.hdr[r.have:], b)
		r.have += k
		b = b[k:]
		if r.have < recordHeaderLen {
			return
		}
		r.body = int(r.hdr[3])<<8 | int(r.hdr[4])
	}
	r.body -= len(b)
	if r.body == 0 {
		r.have = 0
	}
}
