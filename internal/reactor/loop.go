//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/loopconn"
	"switchboard/internal/poller"
	"switchboard/internal/rawio"
)

// The loop. Its engine-independent half (the connection table, timers,
// the task queue, the close path) is a loopconn.Loop; the rest of a loop's
// work is by concern: accept.go, input.go, output.go, close.go.

type task = loopconn.Task[connIO]

const (
	// eventBatch is how many readiness events one Wait returns. It is
	// FD_SETSIZE so the select backend never has to hold one back.
	eventBatch = 1024
	// maxFlushChunks bounds the chunks one writev takes.
	maxFlushChunks = 64
)

// loop is one event loop: the shared core and the poller that drives it.
// Everything in it belongs to its goroutine except what the core shares.
type loop struct {
	loopconn.Loop[connIO]
	s      *server
	p      poller.Poller
	events []poller.Event
	buf    []byte // read buffer: frames are decoded in place from it
	lns    []*listener
	vw     rawio.VecWriter
	bufs   [][]byte // scratch for writev

	busy      bool // the last Wait returned events
	pollFirst bool // non-blocking polls are O(ready): epoll, kqueue
}

func newLoop(s *server, id int) (*loop, error) {
	p, err := newPoller(s.backend)
	if err != nil {
		return nil, err
	}
	l := &loop{
		s:      s,
		p:      p,
		events: make([]poller.Event, eventBatch),
		buf:    make([]byte, engine.ReadBufferSize),
		bufs:   make([][]byte, 0, maxFlushChunks),
	}
	l.Init(&s.Server, l, id, connWriteOn)
	l.SetWaker(p)
	if s.tls != nil {
		l.ServeTLS(l)
	}
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
	l.CloseSpare()
	l.p.Close()
}

func (l *loop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := l.s
	l.StartTick()
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
		if n == 0 && err == nil && !l.Notified() {
			n, err = l.p.Wait(l.events, l.timeout())
		}
		l.busy = n > 0
		if err != nil {
			s.Fail(err)
			l.CloseAll()
		}
		l.Now = s.Clock()
		start := l.Now
		for _, ev := range l.events[:n] {
			l.event(ev)
		}
		if l.Notified() {
			l.RunQueue()
		}
		l.runTimers()
		l.AddStats()
		if n > 0 {
			// Wake-ups with nothing to do (a timeout) are not iterations
			// worth a sample; the clock is read once more per busy one.
			l.Iterated(start)
		}
		if l.Done() && l.stop() {
			l.AddStats()
			return
		}
	}
}

// stop ends the loop if no task is waiting. After it, post refuses, so a
// connection handed over late is closed by its sender.
func (l *loop) stop() bool {
	if !l.Stop() {
		return false
	}
	l.CloseListeners()
	l.CloseSpare()
	l.p.Close()
	return true
}

// timeout is how long Wait may sleep: until the first timer or the end of
// an accept pause, whichever comes first.
func (l *loop) timeout() time.Duration {
	next := l.NextTimer()
	for _, li := range l.lns {
		if li.paused && (next < 0 || li.resumeAfter < next) {
			next = li.resumeAfter
		}
	}
	if next < 0 {
		return -1
	}
	return time.Duration(max(next-l.s.Clock(), 0))
}

// runTimers resumes accept pauses that have ended, then fires the
// connections' and the handler's timers that are due.
func (l *loop) runTimers() {
	for _, li := range l.lns {
		if li.paused && l.Now >= li.resumeAfter {
			li.paused = false
			l.p.Modify(li.Fd, true, false)
		}
	}
	l.RunTimers()
}

func (l *loop) event(ev poller.Event) {
	fd := int(ev.Fd)
	var c *conn
	if fd < len(l.Conns) {
		c = l.Conns[fd]
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
	if ev.Writable && c.Flags&connWriteOn != 0 {
		l.writable(c)
	}
	if c.State != connstate.Closed && (ev.HangUp || ev.Readable && c.Flags&connReadOn != 0) {
		l.readable(c)
	}
}

// Task has no kinds of the reactor's own to run: a TLS handshake's
// reports are loopconn's (TLSEngine).
func (l *loop) Task(task) {}
