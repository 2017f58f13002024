package uringengine

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/loopconn"
	"switchboard/internal/uring"
)

// The loop and its ring. The engine-independent half (the connection
// table, timers, the task queue, the close path) is a loopconn.Loop; the
// rest of a loop's work is by concern: accept_linux.go, input_linux.go,
// output_linux.go, close_linux.go.

type task = loopconn.Task[connIO]

// Ring sizing. The completion queue is large because one armed multishot
// receive per connection can each post a completion in the same enter;
// the kernel keeps what overflows (IORING_FEAT_NODROP) but flushing it
// costs. The buffer ring's dimensions are Options.bufDims's.
const (
	sqEntries       = 1024
	cqEntries       = 16384
	cqeBatch        = 512
	defaultBufCount = 4096
	defaultBufSize  = 4096
	incBufCount     = 256
	incBufSize      = 64 << 10
	bufGroup        = 0
	msgHeaders      = 1024 // sendmsg headers: sends of a chain in flight at once
	maxSendIov      = 64   // chunks one sendmsg takes
	stopTimeout     = 2 * time.Second
)

// User data: the kind of request in the top byte, then the connection's
// generation and its slot (or the listener's index for an accept), so a
// completion finds its connection without a map and without a Go pointer
// in kernel memory.
const (
	udAccept uint64 = iota + 1
	udRecv
	udSend
	udWake
	udCancel   // cancellations and closes post only failures, which are ignored
	udShutdown // likewise
)

func userData(kind uint64, gen, slot uint32) uint64 {
	return kind<<56 | uint64(gen&0xffffff)<<32 | uint64(slot)
}

func splitUserData(u uint64) (kind uint64, gen, slot uint32) {
	return u >> 56, uint32(u>>32) & 0xffffff, uint32(u)
}

// loop is one event loop: the shared core and the ring that drives it.
// Everything in it belongs to its goroutine except what the core shares
// and ringFd.
type loop struct {
	loopconn.Loop[connIO]
	s     *server
	ring  *uring.Ring
	br    *uring.BufRing
	arena *uring.MsgArena
	wake  *uring.Eventfd // nil when MSG_RING wakes the ring
	cqes  []uring.CQE

	gens      []uint32             // by slot: the generation of its latest conn
	msgs      []int32              // by slot: the sendmsg header in flight, or -1 for a plain send
	held      map[*conn]*heldInput // input received while paused (connHeld)
	freeSlots []uint32             // slots whose conn has closed and has nothing in flight
	freeMsgs  []int32              // sendmsg headers not in flight
	lns       []*listener
	bufs      [][]byte
	bundle    bool
	broken    bool      // the ring failed: wind up without it
	scratch   uring.SQE // what sqe hands out once broken
	inflight  int       // receives, sends and accepts whose last completion is due

	// Promises for the next enter: connections to send on, receives to
	// arm, and connections waiting for a sendmsg header.
	dirty, rearm, sendWait []*conn

	pbuf  []byte // what TLS connections decrypt into, made on first use
	cur   *conn  // the connection a bundle's buffers belong to
	onBuf func(id uint16, data []byte)

	closingSince int64
	ringFd       int // for WakeRing; -1 with an eventfd. Set before the waker.
}

func newLoop(s *server, id int) *loop {
	l := &loop{
		s:      s,
		cqes:   make([]uring.CQE, cqeBatch),
		bufs:   make([][]byte, 0, maxSendIov),
		ringFd: -1,
	}
	l.Init(&s.Server, l, id, connOutstanding)
	if s.tls != nil {
		l.ServeTLS(l)
	}
	l.onBuf = l.buffer
	return l
}

// setupRing sets up the ring and everything the kernel shares with it, on the
// loop's locked thread.
func (l *loop) setupRing() error {
	s := l.s
	o := s.opt.Ring
	o.Entries, o.CQEntries = sqEntries, cqEntries
	r, err := uring.New(o)
	if err != nil {
		return err
	}
	l.ring = r
	inc := !s.opt.NoBufInc
	if inc {
		size, count := s.opt.bufDims(true)
		if l.br, err = r.NewIncBufRing(bufGroup, count, size); errors.Is(err, uring.ErrNoIncBuf) {
			inc = false
		}
	}
	if !inc {
		size, count := s.opt.bufDims(false)
		l.br, err = r.NewBufRing(bufGroup, count, size)
	}
	if err != nil {
		return err
	}
	if l.arena, err = uring.NewMsgArena(msgHeaders, maxSendIov); err != nil {
		return err
	}
	l.freeMsgs = make([]int32, msgHeaders)
	for i := range l.freeMsgs {
		l.freeMsgs[i] = int32(msgHeaders - 1 - i)
	}
	l.bundle = r.Features().RecvSendBundle && !s.opt.NoBundle
	if !s.probe.SendMsgRing || s.opt.NoMsgRing {
		if l.wake, err = uring.NewEventfd(); err != nil {
			return err
		}
		l.armWake()
	}
	if len(l.lns) > 0 {
		l.OpenSpare()
	}
	for _, li := range l.lns {
		l.armAccept(li)
	}
	if l.wake == nil {
		l.ringFd = r.Fd()
	}
	l.SetWaker(l)
	if l.ID == 0 {
		s.Log.Debug("io_uring loop", "features", r.Features().String(), "bundle", l.bundle, "msg_ring", l.wake == nil,
			"buf_inc", l.br.Incremental(), "buf_size", l.br.Size())
	}
	return nil
}

// release frees what setupRing and setup took. The ring goes first: closing
// it ends every request, so the kernel no longer touches the buffer ring,
// the sendmsg headers or the eventfd's target when they are unmapped.
func (l *loop) release() {
	if l.ring != nil {
		l.ring.Close()
	}
	if l.br != nil {
		l.br.Close()
	}
	if l.arena != nil {
		l.arena.Close()
	}
	if l.wake != nil {
		l.wake.Close()
	}
	l.releaseListeners()
	l.CloseSpare()
}

func (l *loop) releaseListeners() {
	for _, li := range l.lns {
		li.closed = true
		li.closeFd()
	}
}

// Wake is the loop's loopconn.Waker: a MSG_RING completion posted to
// its ring, or a write to its eventfd. The core calls it under the queue
// lock, so the loop cannot close the ring (or eventfd) in between.
func (l *loop) Wake() error {
	if l.wake != nil {
		return l.wake.Wake()
	}
	return uring.WakeRing(l.ringFd, userData(udWake, 0, 0), 0)
}

func (l *loop) armWake() {
	sqe := l.sqe()
	l.wake.PrepRead(sqe)
	sqe.SetUserData(userData(udWake, 0, 0))
}

// sqe returns a free submission entry, submitting what is prepared when
// the queue is full. If the ring has failed it returns a scratch entry the
// kernel never sees, so callers need no error path: the failure has
// already taken the server down (s.fail), and the loop only winds up.
func (l *loop) sqe() *uring.SQE {
	for !l.broken {
		if sqe := l.ring.NextSQE(); sqe != nil {
			return sqe
		}
		if _, err := l.ring.Poll(); err != nil && !retryable(err) {
			l.broken = true
			l.s.Fail(fmt.Errorf("io_uring submit: %w", err))
			l.CloseAll()
		}
	}
	return &l.scratch
}

func retryable(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EINTR)
}

// run is the loop: set up the ring, report to Serve, then iterate until
// drained or closed.
func (l *loop) run(ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := l.s
	if err := l.setupRing(); err != nil {
		l.Abandon()
		l.release()
		ready <- fmt.Errorf("switchboard: io_uring loop %d: %w", l.ID, err)
		return
	}
	ready <- nil
	l.StartTick()
	for {
		l.beforeEnter()
		if l.broken {
			l.inflight = 0 // the kernel's requests are lost with the ring
			time.Sleep(time.Millisecond)
		} else if err := l.enter(); err != nil && !retryable(err) {
			l.broken = true
			s.Fail(err)
			l.CloseAll()
		}
		l.Now = s.Clock()
		start, work := l.Now, 0
		for {
			n := l.ring.Completions(l.cqes)
			work += n
			for i := range l.cqes[:n] {
				l.complete(&l.cqes[i])
			}
			if n < len(l.cqes) {
				break
			}
		}
		if l.Notified() {
			l.RunQueue()
		}
		l.runTimers()
		l.AddStats()
		if work > 0 {
			// As on the reactor: a wake-up with no completion (a timeout)
			// is not an iteration worth a sample.
			l.Iterated(start)
		}
		if l.Done() && l.quiet() && l.stop() {
			return
		}
	}
}

// enter is the iteration's one io_uring_enter: it submits what the
// iteration prepared and reaps. When something is known to be there (a
// task queued, completions in the ring, or the kernel's IORING_SQ_TASKRUN
// saying completion work is pending) it polls, a call that cannot sleep
// and so skips the Go scheduler's bookkeeping; otherwise it waits for one
// completion or the first timer. Under load, work arrives while the loop
// runs its callbacks, and most iterations poll.
func (l *loop) enter() error {
	if l.Notified() || l.ring.Ready() > 0 || l.ring.TaskrunPending() {
		_, err := l.ring.Poll()
		return err
	}
	_, err := l.ring.SubmitAndWait(1, l.timeout())
	return err
}

// quiet reports whether the kernel holds no more of this loop's requests
// that touch its memory, or has held them too long after Close.
func (l *loop) quiet() bool {
	if l.inflight == 0 {
		return true
	}
	if l.closingSince == 0 {
		l.closingSince = l.Now
	}
	return l.Now-l.closingSince > int64(stopTimeout)
}

// beforeEnter keeps the promises of this iteration: buffers back to the
// kernel, sends started, receives armed. The enter that follows submits
// them all.
func (l *loop) beforeEnter() {
	l.br.Publish()
	for i, c := range l.dirty {
		l.dirty[i] = nil
		c.Flags &^= connDirty
		if c.State != connstate.Closed {
			l.flush(c)
		}
	}
	l.dirty = l.dirty[:0]
	for i, c := range l.rearm {
		l.rearm[i] = nil
		c.Flags &^= connRearm
		if c.State != connstate.Closed && c.Flags&connRecv == 0 && l.receiving(c) {
			l.armRecv(c)
		}
	}
	l.rearm = l.rearm[:0]
}

// complete dispatches one completion.
func (l *loop) complete(cqe *uring.CQE) {
	kind, gen, slot := splitUserData(cqe.UserData)
	switch kind {
	case udRecv:
		l.received(cqe, l.lookup(gen, slot))
	case udSend:
		l.sent(cqe, l.Conns[slot])
	case udAccept:
		l.accepted(cqe, l.lns[slot])
	case udWake:
		if l.wake != nil {
			l.armWake()
		}
	}
}

// lookup finds the open connection a completion is for, or nil if it has
// closed since.
func (l *loop) lookup(gen, slot uint32) *conn {
	if int(slot) < len(l.Conns) {
		if c := l.Conns[slot]; c != nil && l.gens[slot]&0xffffff == gen && c.State != connstate.Closed {
			return c
		}
	}
	return nil
}

// stop ends the loop if no task is waiting. After it, post refuses, so a
// connection handed over late is closed by its sender.
func (l *loop) stop() bool {
	if !l.Stop() {
		return false
	}
	l.release()
	return true
}

// timeout is how long the enter may wait: until the first timer or the
// end of an accept back-off, or a short while when waiting for the
// kernel to finish with a closing loop's requests.
func (l *loop) timeout() time.Duration {
	next := l.NextTimer()
	for _, li := range l.lns {
		if !li.armed && !li.closed && li.resumeAfter > 0 && (next < 0 || li.resumeAfter < next) {
			next = li.resumeAfter
		}
	}
	if l.Done() {
		next = l.s.Clock() + int64(10*time.Millisecond)
	}
	if next < 0 {
		return -1
	}
	return time.Duration(max(next-l.s.Clock(), 0))
}

// runTimers arms again the accepts whose back-off has ended, then fires
// the connections' and the handler's timers that are due.
func (l *loop) runTimers() {
	for _, li := range l.lns {
		if !li.armed && !li.closed && li.resumeAfter > 0 && l.Now >= li.resumeAfter && !l.Draining && !l.Closing {
			l.armAccept(li)
		}
	}
	l.RunTimers()
}

// Task has no kinds of this engine's own to run: a TLS handshake's
// reports are loopconn's (TLSEngine).
func (l *loop) Task(task) {}
