//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/framing"
	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/inbuf"
	"switchboard/internal/poller"
	"switchboard/internal/rawio"
	"switchboard/internal/timerheap"
)

// The loop and its task queue. The rest of a loop's work is by concern:
// accept.go, input.go, output.go, close.go, timer.go.

// taskKind says what a task asks of a loop.
type taskKind uint8

// Work other goroutines hand a loop through its queue.
const (
	taskKick      taskKind = iota // look at conn: queued output, Close, CloseWrite
	taskAdopt                     // take over a connection another loop accepted
	taskDrain                     // Shutdown began
	taskClose                     // close everything now
	taskAfter                     // arm a Conn.AfterFunc
	taskTLSOutput                 // conn's handshake has output to send
	taskTLSDone                   // conn's handshake ended
)

type task struct {
	kind taskKind
	c    *conn
	a    *afterFunc
}

const (
	// eventBatch is how many readiness events one Wait returns. It is
	// FD_SETSIZE so the select backend never has to hold one back.
	eventBatch = 1024
	// maxFlushChunks bounds the chunks one writev takes.
	maxFlushChunks = 64
)

// loop is one event loop. Everything in it belongs to its goroutine except
// the queue (under mu), notified, load and stopped.
type loop struct {
	s      *server
	id     int
	p      poller.Poller
	events []poller.Event
	buf    []byte            // read buffer: frames are decoded in place from it
	split  *framing.Splitter // the codec, with this loop's free lists for partial frames
	free   *inbuf.FreeLists  // those free lists, shared by a connection's SetCodec splitter
	conns  []*conn           // indexed by descriptor
	n      int               // connections owned
	lns    []*listener
	timers timerheap.Heap[*conn]
	afters timerheap.Heap[*afterFunc] // handler timers: AfterFunc, the tick
	tick   *afterFunc                 // the server's tick, on loop 0 only
	now    int64                      // loop clock at the last wake-up
	vw     rawio.VecWriter
	bufs   [][]byte // scratch for writev
	spare  int      // reserved descriptor for shedding when out of fds, -1 if none

	bytesIn, bytesOut int64 // batched into Stats once per iteration
	pending, paused   int64 // changes to Stats.PendingBytes and Paused, likewise
	// iter is this loop's histogram of iteration times (wake-up to the
	// next wait); only the loop writes it.
	iter engine.Histogram
	rr   int // rotates the least-loaded search

	busy      bool // the last Wait returned events
	pollFirst bool // non-blocking polls are O(ready): epoll, kqueue
	draining  bool
	closing   bool
	lastWarn  int64

	// Shared with other goroutines.
	load     atomic.Int64 // connections assigned here, for placement
	notified atomic.Bool  // a Wake is on its way; posters need not send one
	mu       sync.Mutex
	queue    []task
	spareQ   []task
	stopped  bool
}

func newLoop(s *server, id int) (*loop, error) {
	p, err := newPoller(s.backend)
	if err != nil {
		return nil, err
	}
	l := &loop{
		s:      s,
		id:     id,
		p:      p,
		events: make([]poller.Event, eventBatch),
		buf:    make([]byte, engine.ReadBufferSize),
		bufs:   make([][]byte, 0, maxFlushChunks),
		iter:   engine.Histogram{Bounds: engine.IterationBounds[:]},
		spare:  -1,
	}
	l.free = new(inbuf.FreeLists)
	l.split = framing.NewSplitter(s.codec, framing.SplitterOptions{Room: minReadRoom, Buffers: l.free})
	// select and poll scan every descriptor on each call, so an extra
	// non-blocking one would cost as much as the wait it tries to save.
	l.pollFirst = p.Name() == "epoll" || p.Name() == "kqueue"
	return l, nil
}

// release frees what newLoop and setup took, for a Serve that failed
// before the loop ran.
func (l *loop) release() {
	for _, li := range l.lns {
		unix.Close(li.Fd)
	}
	if l.spare >= 0 {
		unix.Close(l.spare)
	}
	l.p.Close()
}

// post queues t for the loop and wakes it. It returns false once the loop
// has stopped. The Wake happens under mu so the loop cannot close its
// poller in between: a wake-up written to a closed descriptor number could
// land in someone else's file.
func (l *loop) post(t task) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.queue = append(l.queue, t)
	if l.notified.CompareAndSwap(false, true) {
		l.p.Wake()
	}
	return true
}

func (l *loop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := l.s
	if l.id == 0 && s.cfg.OnTick != nil {
		l.now = s.clock()
		l.startTick()
	}
	for {
		// After a busy round, poll without blocking first: under load
		// something is usually ready, and a poll that cannot block costs
		// less than parking the thread and waking it again.
		n, err := 0, error(nil)
		if l.busy && l.pollFirst {
			n, err = l.p.Wait(l.events, 0)
		}
		// A poll may have consumed a wake-up without reporting an event:
		// the queue it announced must be run before sleeping.
		if n == 0 && err == nil && !l.notified.Load() {
			n, err = l.p.Wait(l.events, l.timeout())
		}
		l.busy = n > 0
		if err != nil {
			s.fail(err)
			l.closeAll()
		}
		l.now = s.clock()
		start := l.now
		for _, ev := range l.events[:n] {
			l.event(ev)
		}
		if l.notified.Load() {
			l.runQueue()
		}
		l.runTimers()
		l.addStats()
		if n > 0 {
			// Wake-ups with nothing to do (a timeout) are not iterations
			// worth a sample; the clock is read once more per busy one.
			l.iter.Observe(time.Duration(s.clock() - start))
		}
		if (l.draining || l.closing) && l.n == 0 && l.stop() {
			l.addStats()
			return
		}
	}
}

// addStats adds what the loop counted since the last call to the
// server's Stats: a few shared atomics per iteration, not per message.
func (l *loop) addStats() {
	st := l.s.stats
	if l.bytesIn != 0 {
		st.BytesIn.Add(l.bytesIn)
		l.bytesIn = 0
	}
	if l.bytesOut != 0 {
		st.BytesOut.Add(l.bytesOut)
		l.bytesOut = 0
	}
	if l.pending != 0 {
		st.PendingBytes.Add(l.pending)
		l.pending = 0
	}
	if l.paused != 0 {
		st.Paused.Add(l.paused)
		l.paused = 0
	}
}

// stop ends the loop if no task is waiting. After it, post refuses, so a
// connection handed over late is closed by its sender.
func (l *loop) stop() bool {
	l.mu.Lock()
	if len(l.queue) > 0 {
		l.mu.Unlock()
		return false
	}
	l.stopped = true
	l.mu.Unlock()
	l.closeListeners()
	if l.spare >= 0 {
		unix.Close(l.spare)
		l.spare = -1
	}
	l.p.Close()
	return true
}

// timeout is how long Wait may sleep: until the first timer or the end of
// an accept pause, whichever comes first.
func (l *loop) timeout() time.Duration {
	next := l.timers.Next()
	if a := l.afters.Next(); a >= 0 && (next < 0 || a < next) {
		next = a
	}
	for _, li := range l.lns {
		if li.paused && (next < 0 || li.resumeAfter < next) {
			next = li.resumeAfter
		}
	}
	if next < 0 {
		return -1
	}
	return time.Duration(max(next-l.s.clock(), 0))
}

func (l *loop) event(ev poller.Event) {
	fd := int(ev.Fd)
	var c *conn
	if fd < len(l.conns) {
		c = l.conns[fd]
	}
	if c == nil {
		for _, li := range l.lns {
			if li.Fd == fd {
				l.accept(li)
				return
			}
		}
		return
	}
	// Write first: draining the outbox may lift a read pause.
	if ev.Writable && c.flags&connWriteOn != 0 {
		l.writable(c)
	}
	if c.state != connstate.Closed && (ev.HangUp || ev.Readable && c.flags&connReadOn != 0) {
		l.readable(c)
	}
}

func (l *loop) runQueue() {
	l.notified.Store(false)
	l.mu.Lock()
	q := l.queue
	l.queue = l.spareQ[:0]
	l.mu.Unlock()
	for i := range q {
		t := q[i]
		q[i] = task{}
		switch t.kind {
		case taskKick:
			if t.c.state != connstate.Closed {
				l.afterDispatch(t.c, 0)
			}
		case taskAfter:
			l.armAfter(t.a)
		case taskAdopt:
			l.adopt(t.c)
		case taskDrain:
			l.drain()
		case taskClose:
			l.closeAll()
		case taskTLSOutput:
			l.handshakeOutput(t.c)
		case taskTLSDone:
			l.handshakeDone(t.c)
		}
	}
	l.spareQ = q[:0]
}
