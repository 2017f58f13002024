//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"crypto/tls"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/framing"
	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/inbuf"
	"switchboard/internal/sockfd"
	"switchboard/internal/timerheap"
	"switchboard/internal/tlsloop"
)

// TaskKind says what a task asks of a loop.
type TaskKind uint8

// Work other goroutines hand a loop through its queue. Kinds from
// TaskEngine up are the engine's own and go to Engine.Task.
const (
	TaskKick      TaskKind = iota // look at C: queued output, Close, CloseWrite
	TaskAdopt                     // take over a connection another loop accepted
	TaskDrain                     // Shutdown began
	TaskClose                     // close everything now
	TaskAfter                     // arm a Conn.AfterFunc
	TaskTLSOutput                 // C's handshake has output to send (TLSEngine.HandshakeOutput)
	TaskTLSDone                   // C's handshake ended (TLSEngine.HandshakeDone)
	TaskEngine                    // the first of the engine's own kinds
)

// Task is one piece of work posted to a loop.
type Task[IO any] struct {
	Kind TaskKind
	C    *Conn[IO]
	a    *after[IO]
}

// Engine is what the core asks of the engine that instantiates it: the
// places where a readiness loop and a completion loop differ. None is on
// the per-message path.
type Engine[IO any] interface {
	// Flush runs after a batch of callbacks on c (msgs of them messages)
	// and for a kick from another goroutine: BeginFlush, then the
	// engine's flush of the outbox and whatever follows from what is
	// left.
	Flush(c *Conn[IO], msgs int64)
	// Adopt takes over c, accepted by another loop, on this one.
	Adopt(c *Conn[IO])
	// Task runs a task of the engine's own kind (TaskEngine and up).
	Task(t Task[IO])
	// CloseListeners stops accepting on the loop's listeners (a drain, or
	// closing everything).
	CloseListeners()
	// DrainConn readies c for the drain: drops what the engine holds of
	// its input. It returns false if c is not to drain (it closed it).
	DrainConn(c *Conn[IO]) bool
	// ReleaseLocked drops the output the engine holds for c as c closes,
	// under c.Mu, unless the kernel still reads it.
	ReleaseLocked(c *Conn[IO])
	// CloseIO ends c's descriptor and its requests, and takes it out of
	// the loop's table (or leaves that to the completion of what is
	// still in flight).
	CloseIO(c *Conn[IO])
}

// TLSEngine is an Engine that serves TLS: the core starts the handshake
// where a plaintext connection would open, and reports its progress. The
// engine keeps each TLS connection's state with SetEngineState, a value
// embedding its tlsloop.Session, which the core asks for the negotiated
// state and whether the handshake is still on.
type TLSEngine[IO any] interface {
	// StartTLS begins c's handshake; rest is what followed its PROXY
	// header, if it had one.
	StartTLS(c *Conn[IO], rest []byte)
	// HandshakeOutput sends the flight c's handshake has written
	// (TaskTLSOutput, posted by TLSEvents); c is not closed.
	HandshakeOutput(c *Conn[IO])
	// HandshakeDone opens c, or closes it with the reason in its
	// session's Err (TaskTLSDone); c is not closed.
	HandshakeDone(c *Conn[IO])
}

// TLSEvents are the tlsloop.Events of a connection's TLS session, the
// same for every engine: called on the handshake's goroutines, they post
// to the connection's loop, which runs the TLSEngine's hooks.
type TLSEvents[IO any] struct {
	C       *Conn[IO]
	Session *tlsloop.Session
}

// Output posts TaskTLSOutput.
func (e *TLSEvents[IO]) Output() { e.C.L.Post(Task[IO]{Kind: TaskTLSOutput, C: e.C}) }

// HandshakeDone stores the result in the session, then posts TaskTLSDone
// (the queue's lock orders the two for the loop).
func (e *TLSEvents[IO]) HandshakeDone(err error) {
	e.Session.Err = err
	e.C.L.Post(Task[IO]{Kind: TaskTLSDone, C: e.C})
}

// tlsSession is what a TLSEngine keeps as a TLS connection's engine
// state (SetEngineState): its tlsloop.Session, embedded, answers for it.
type tlsSession interface {
	ConnectionState() (tls.ConnectionState, bool)
	Handshaking() bool
}

// ConnectionState returns the negotiated TLS parameters; ok is false for
// a connection without TLS, or before its handshake. From any goroutine.
func (c *Conn[IO]) ConnectionState() (tls.ConnectionState, bool) {
	c.Mu.Lock()
	s, _ := c.EngineState().(tlsSession)
	c.Mu.Unlock()
	if s == nil {
		return tls.ConnectionState{}, false
	}
	return s.ConnectionState()
}

// handshakePending reports whether c is a TLS connection still in its
// handshake: the handler never heard of it, so a drain closes it at once.
func (c *Conn[IO]) handshakePending() bool {
	s, ok := c.EngineState().(tlsSession)
	return ok && s.Handshaking()
}

// Waker makes a loop's wait return; the only part of the engine other
// goroutines call, under the loop's queue lock.
type Waker interface {
	Wake() error
}

// Loop is one event loop's engine-independent state. Everything in it
// belongs to the loop's goroutine except the queue (under mu), notified
// and Load.
type Loop[IO any] struct {
	// S is the server the loop serves.
	S *Server[IO]
	// Eng is the engine's side of the loop.
	Eng Engine[IO]
	tls TLSEngine[IO] // Eng, if it serves TLS (ServeTLS)
	// ID is the loop's index in the server's.
	ID int
	// Split is the server's codec with this loop's free lists for
	// partial frames.
	Split *framing.Splitter
	// Free are those free lists, shared by a connection's SetCodec
	// splitter.
	Free *inbuf.FreeLists
	// Conns is the loop's table of connections, indexed as the engine
	// likes (by descriptor, by slot); the core walks it to drain or close
	// everything.
	Conns []*Conn[IO]
	// N counts the connections open on this loop.
	N int
	// Timers are the connections' idle, write and frame timers.
	Timers timerheap.Heap[*Conn[IO]]
	afters timerheap.Heap[*after[IO]] // handler timers: AfterFunc, the tick
	tick   *after[IO]                 // the server's tick, on loop 0 only
	// Now is the loop clock at the last wake-up.
	Now int64
	// Draining: Shutdown began. Closing: everything closes now.
	Draining, Closing bool
	// BytesIn and BytesOut are added to the server's Stats once per
	// iteration (AddStats).
	BytesIn, BytesOut int64
	messagesOut       int64 // Writes folded in from the connections, likewise
	pending, paused   int64 // changes to Stats.PendingBytes and Paused, likewise
	// iter is the histogram of this loop's iterations (a wake-up with
	// work to the next wait); only the loop writes it.
	iter engine.Histogram
	accs []*framing.Accumulator // free list of frame-loop states (In)
	// Spare is a descriptor held in reserve for shedding connections when
	// the process runs out (Shed), -1 if none.
	Spare int
	// outstanding are the engine's flags that mean c's output is on its
	// way out: the idle timer waits for them, and the write timer lapses
	// without them.
	outstanding uint16
	lastWarn    int64
	rr          int // rotates the least-loaded search

	// Shared with other goroutines.

	// Load counts the connections assigned here, for placement.
	Load     atomic.Int64
	notified atomic.Bool // a wake-up is on its way; posters need not send one
	mu       sync.Mutex
	queue    []Task[IO]
	spareQ   []Task[IO]
	stopped  bool
	waker    Waker // nil until the engine can be woken
}

// Init sets up l as loop id of s, run by eng. outstanding are the
// engine's Conn.Flags that mean output is on its way out.
func (l *Loop[IO]) Init(s *Server[IO], eng Engine[IO], id int, outstanding uint16) {
	l.S, l.Eng, l.ID, l.outstanding = s, eng, id, outstanding
	l.Spare = -1
	l.iter.Bounds = engine.IterationBounds[:]
	l.Free = new(inbuf.FreeLists)
	l.Split = framing.NewSplitter(s.Codec, framing.SplitterOptions{Room: inbuf.ReadRoom, Buffers: l.Free})
}

// ServeTLS has the core start each connection's TLS handshake through t
// (the engine) where a plaintext connection would open.
func (l *Loop[IO]) ServeTLS(t TLSEngine[IO]) { l.tls = t }

// SetWaker gives the loop its wake-up, once the engine has one, and
// reports whether tasks were posted before it: the caller must run the
// queue before it waits.
func (l *Loop[IO]) SetWaker(w Waker) (pending bool) {
	l.mu.Lock()
	l.waker = w
	pending = len(l.queue) > 0
	l.mu.Unlock()
	if pending {
		l.notified.Store(true)
	}
	return pending
}

// Started reports whether the loop can be woken, or has stopped: the
// engine has finished setting it up.
func (l *Loop[IO]) Started() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waker != nil || l.stopped
}

// Stopped reports whether the loop has ended (Stop, Abandon).
func (l *Loop[IO]) Stopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// Post queues t for the loop and wakes it. It returns false once the loop
// has stopped. The wake-up happens under mu so that the loop cannot close
// what wakes it in between: a wake-up written to a closed descriptor
// number could land in someone else's file.
func (l *Loop[IO]) Post(t Task[IO]) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.queue = append(l.queue, t)
	if l.waker != nil && l.notified.CompareAndSwap(false, true) {
		if err := l.waker.Wake(); err != nil {
			l.S.Log.Error("waking an event loop failed", "err", err)
		}
	}
	return true
}

// Notified reports whether tasks are waiting: the loop must run them
// before it sleeps.
func (l *Loop[IO]) Notified() bool { return l.notified.Load() }

// RunQueue runs the tasks other goroutines posted.
func (l *Loop[IO]) RunQueue() {
	l.notified.Store(false)
	l.mu.Lock()
	q := l.queue
	l.queue = l.spareQ[:0]
	l.mu.Unlock()
	for i := range q {
		t := q[i]
		q[i] = Task[IO]{}
		switch t.Kind {
		case TaskKick:
			if t.C.State != connstate.Closed {
				l.Eng.Flush(t.C, 0)
			}
		case TaskAfter:
			l.armAfter(t.a)
		case TaskAdopt:
			l.Eng.Adopt(t.C)
		case TaskDrain:
			l.Drain()
		case TaskClose:
			l.CloseAll()
		case TaskTLSOutput:
			if t.C.State != connstate.Closed {
				l.tls.HandshakeOutput(t.C)
			}
		case TaskTLSDone:
			if t.C.State != connstate.Closed {
				l.tls.HandshakeDone(t.C)
			}
		default:
			l.Eng.Task(t)
		}
	}
	l.spareQ = q[:0]
}

// Stop ends the loop if no task is waiting, and reports whether it did.
// After it, Post refuses, so a connection handed over late stays with its
// sender (Place).
func (l *Loop[IO]) Stop() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) > 0 {
		return false
	}
	l.stopped = true
	return true
}

// Abandon stops the loop whatever is queued: it never ran.
func (l *Loop[IO]) Abandon() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// Done reports whether the loop has nothing left to serve after a drain
// or Close.
func (l *Loop[IO]) Done() bool { return (l.Draining || l.Closing) && l.N == 0 }

// AddStats adds what the loop counted since the last call to the
// server's Stats: a few shared atomics per iteration, not per message.
func (l *Loop[IO]) AddStats() {
	st := l.S.Stats
	addTo(&st.BytesIn, &l.BytesIn)
	addTo(&st.BytesOut, &l.BytesOut)
	addTo(&st.MessagesOut, &l.messagesOut)
	addTo(&st.PendingBytes, &l.pending)
	addTo(&st.Paused, &l.paused)
}

// addTo adds *n to a and zeroes it, skipping the atomic when there is
// nothing to add (most iterations change few of the counters).
func addTo(a *atomic.Int64, n *int64) {
	if *n != 0 {
		a.Add(*n)
		*n = 0
	}
}

// foldMessages counts the frames c's Writes queued since the loop last
// looked; the caller holds c.Mu. Every Write is followed by a flush on
// the loop (the callback batch's, or the kick's), and by a close at the
// latest, so each is counted once, by the iteration that writes it out.
func (l *Loop[IO]) foldMessages(c *Conn[IO]) {
	if d := uint32(c.St.MessagesOut) - c.msgsFolded; d != 0 {
		l.messagesOut += int64(d)
		c.msgsFolded = uint32(c.St.MessagesOut)
	}
}

// Iterated counts a loop iteration that began at start (loop clock) and
// ends now in the loop's histogram; engines call it for iterations that
// had work, not for a wake-up on a timeout with nothing due.
func (l *Loop[IO]) Iterated(start int64) {
	l.iter.Observe(time.Duration(l.S.Clock() - start))
}

// Backpressure weighs c's pending output after a flush: it updates the
// Stats.PendingBytes the loop reports, and pauses reading above the
// high-water mark or resumes it at the low. It returns +1 when reading
// has just paused, -1 when it has just resumed, else 0.
func (l *Loop[IO]) Backpressure(c *Conn[IO], pending int) int {
	if r := int32(min(pending, math.MaxInt32)); r != c.reported {
		l.pending += int64(r) - int64(c.reported)
		c.reported = r
	}
	if c.Flags&FlagPaused == 0 {
		if pending > l.S.MaxPending {
			c.Flags |= FlagPaused
			l.paused++
			return +1
		}
	} else if pending <= l.S.LowWater {
		c.Flags &^= FlagPaused
		l.paused--
		return -1
	}
	return 0
}

// Reading reports whether c should be reading: more input can come, and
// reading is not paused (draining connections read on, to drop input and
// see the peer's FIN).
func (l *Loop[IO]) Reading(c *Conn[IO]) bool {
	return c.State.Reading() && (c.Flags&FlagPaused == 0 || l.Draining)
}

// OpenSpare reserves the spare descriptor, if the loop has none.
func (l *Loop[IO]) OpenSpare() {
	if l.Spare < 0 {
		l.Spare = sockfd.OpenSpare()
	}
}

// CloseSpare gives the spare descriptor back: the loop has stopped.
func (l *Loop[IO]) CloseSpare() {
	if l.Spare >= 0 {
		unix.Close(l.Spare)
		l.Spare = -1
	}
}

// Shed handles running out of descriptors on the listening socket lfd
// (err says how): it frees the spare descriptor, accepts one pending
// connection with it and resets it, so the backlog moves, and reserves
// the spare again. It returns that accept's error: nil when one was shed,
// EAGAIN when none was pending, or EMFILE with no spare to use; the
// engine decides whether to pause accepting.
func (l *Loop[IO]) Shed(lfd int, addr any, err error) error {
	l.Warnf("accept failed: out of descriptors; shedding connections", "listener", addr, "err", err)
	if l.Spare < 0 {
		return unix.EMFILE
	}
	unix.Close(l.Spare)
	fd, _, aerr := sockfd.Accept(lfd)
	if aerr == nil {
		sockfd.Reset(fd)
		l.S.Stats.Rejected.Add(1)
	}
	l.Spare = sockfd.OpenSpare()
	return aerr
}

// Warnf logs at most one warning a second per loop: accept failures come
// in storms.
func (l *Loop[IO]) Warnf(msg string, args ...any) {
	if l.Now-l.lastWarn < int64(time.Second) && l.lastWarn != 0 {
		return
	}
	l.lastWarn = l.Now
	l.S.Log.Warn(msg, args...)
}

// In is c's frame-loop state for a batch of input: its own while it
// holds a partial frame, else one from the loop's free list, which EndInput
// takes back when the batch leaves nothing held. Feed it, then Deliver.
func (l *Loop[IO]) In(c *Conn[IO]) *framing.Accumulator {
	if c.In == nil {
		if k := len(l.accs); k > 0 {
			c.In = l.accs[k-1]
			l.accs[k-1] = nil
			l.accs = l.accs[:k-1]
		} else {
			c.In = new(framing.Accumulator)
		}
	}
	return c.In
}

// EndInput ends a batch of input on c (framing.Accumulator.Done): a partial
// frame's bytes are kept in a buffer of c's own; with none left, the
// frame-loop state goes back to the loop.
func (l *Loop[IO]) EndInput(c *Conn[IO]) {
	if c.In == nil {
		return
	}
	c.In.Done(l.SplitOf(c))
	if c.In.Buffered() == 0 {
		l.accs = append(l.accs, c.In)
		c.In = nil
	}
}

// resetIn drops whatever c holds of its input (it is closing, or
// draining) and gives the frame-loop state back.
func (l *Loop[IO]) resetIn(c *Conn[IO]) {
	if c.In == nil {
		return
	}
	c.In.Reset(l.SplitOf(c))
	l.accs = append(l.accs, c.In)
	c.In = nil
}

// SplitOf is the frame loop c decodes with: the loop's, unless the
// handler switched codecs.
func (l *Loop[IO]) SplitOf(c *Conn[IO]) *framing.Splitter {
	if c.Flags&flagSplit != 0 {
		return c.rare.split
	}
	return l.Split
}
