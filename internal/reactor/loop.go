//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/engine"
	"switchboard/internal/poller"
	"switchboard/internal/proxyproto"
)

// Task kinds: work other goroutines hand a loop through its queue.
const (
	taskKick  = iota // look at conn: queued output, Close, CloseWrite
	taskAdopt        // take over a connection another loop accepted
	taskDrain        // Shutdown began
	taskClose        // close everything now
)

type task struct {
	kind uint8
	c    *conn
}

const (
	// eventBatch is how many readiness events one Wait returns. It is
	// FD_SETSIZE so the select backend never has to hold one back.
	eventBatch = 1024
	// acceptBatch bounds accepts per readiness so a connection storm
	// cannot starve the loop's established connections.
	acceptBatch = 64
	// acceptPause is how long accepting stops after running out of
	// descriptors with no spare to shed the backlog with.
	acceptPause = 100 * time.Millisecond
	// minReadRoom is the least free space a partial frame's buffer offers
	// a read; smaller reads would cost more system calls than copies.
	minReadRoom = 16 << 10
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
	buf    []byte  // read buffer: frames are decoded in place from it
	conns  []*conn // indexed by descriptor
	n      int     // connections owned
	lns    []*listener
	timers timerHeap
	now    int64 // loop clock at the last wake-up
	vw     vecWriter
	bufs   [][]byte // scratch for writev
	spare  int      // reserved descriptor for shedding when out of fds, -1 if none

	bytesIn, bytesOut int64 // batched into Stats once per iteration
	rr                int   // rotates the least-loaded search

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

	// Free lists for partial-frame buffers: only this loop touches a
	// conn's input, so no pool synchronisation is needed.
	smallIn, largeIn [][]byte
}

func newLoop(s *server, id int) (*loop, error) {
	p, err := poller.New(s.backend)
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
		spare:  -1,
	}
	// select and poll scan every descriptor on each call, so an extra
	// non-blocking one would cost as much as the wait it tries to save.
	l.pollFirst = p.Name() == "epoll" || p.Name() == "kqueue"
	return l, nil
}

// openSpare reserves a descriptor to give back when accept fails with
// EMFILE: closing it lets one more accept succeed, so the pending
// connection can be taken and closed instead of staying in the backlog and
// keeping the listener readable forever.
func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// release frees what newLoop and setup took, for a Serve that failed
// before the loop ran.
func (l *loop) release() {
	for _, li := range l.lns {
		unix.Close(li.fd)
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
		for _, ev := range l.events[:n] {
			l.event(ev)
		}
		if l.notified.Load() {
			l.runQueue()
		}
		l.runTimers()
		if l.bytesIn != 0 {
			s.stats.BytesIn.Add(l.bytesIn)
			l.bytesIn = 0
		}
		if l.bytesOut != 0 {
			s.stats.BytesOut.Add(l.bytesOut)
			l.bytesOut = 0
		}
		if (l.draining || l.closing) && l.n == 0 && l.stop() {
			return
		}
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
	next := l.timers.next()
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
			if li.fd == fd {
				l.accept(li)
				return
			}
		}
		return
	}
	// Write first: draining the outbox may lift a read pause.
	if ev.Writable && c.st&stWrOn != 0 {
		l.writable(c)
	}
	if c.st&stClosed == 0 && (ev.HangUp || ev.Readable && c.st&stRdOn != 0) {
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
			if t.c.st&stClosed == 0 {
				l.afterDispatch(t.c)
			}
		case taskAdopt:
			l.adopt(t.c)
		case taskDrain:
			l.drain()
		case taskClose:
			l.closeAll()
		}
	}
	l.spareQ = q[:0]
}

// ---------------------------------------------------------------- accept

func (l *loop) accept(li *listener) {
	if li.paused || l.draining || l.closing {
		return
	}
	for range acceptBatch {
		fd, sa, err := accept(li.fd)
		if err != nil {
			switch err {
			case unix.EAGAIN:
				return
			case unix.EINTR, unix.ECONNABORTED, unix.EPROTO:
				continue // the connection died in the queue; take the next
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				l.s.stats.CountAcceptError(err)
				l.outOfDescriptors(li, err)
				return
			default:
				l.s.stats.CountAcceptError(err)
				l.warnf("accept failed", "listener", li.addr, "err", err)
				return
			}
		}
		l.newConn(fd, sa, li)
	}
}

// outOfDescriptors sheds one pending connection with the spare descriptor
// so the listener stops being readable, or, with no spare to use, stops
// accepting for a moment. Either way the loop never spins on EMFILE.
func (l *loop) outOfDescriptors(li *listener, err error) {
	l.warnf("accept failed: out of descriptors; shedding connections", "listener", li.addr, "err", err)
	if l.spare >= 0 {
		unix.Close(l.spare)
		fd, _, aerr := accept(li.fd)
		if aerr == nil {
			abort(fd)
			l.s.stats.Rejected.Add(1)
		}
		l.spare = openSpare()
		if aerr == nil || aerr == unix.EAGAIN {
			return
		}
	}
	li.paused = true
	li.resumeAfter = l.now + int64(acceptPause)
	l.p.Modify(li.fd, false, false)
}

// warnf logs at most one warning a second per loop: accept failures come
// in storms.
func (l *loop) warnf(msg string, args ...any) {
	if l.now-l.lastWarn < int64(time.Second) && l.lastWarn != 0 {
		return
	}
	l.lastWarn = l.now
	l.s.log.Warn(msg, args...)
}

// abort closes a connection we will not serve with a reset, so it does
// not sit in TIME_WAIT on our side.
func abort(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

func (l *loop) newConn(fd int, sa unix.Sockaddr, li *listener) {
	s := l.s
	if n := s.nconns.Add(1); s.cfg.MaxConns > 0 && n > int64(s.cfg.MaxConns) {
		s.nconns.Add(-1)
		abort(fd)
		s.stats.Rejected.Add(1)
		s.log.Debug("connection refused: limit reached", "remote", addrPort(sa), "max_conns", s.cfg.MaxConns)
		return
	}
	c := &conn{fd: int32(fd), ln: li}
	if !li.unix {
		c.raddr = addrPort(sa)
		c.laddr = li.laddr
		if li.any {
			if lsa, err := unix.Getsockname(fd); err == nil {
				c.laddr = addrPort(lsa)
			}
		}
		if s.cfg.NoDelay {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		if s.cfg.KeepAlive > 0 {
			setKeepAlive(fd, s.cfg.KeepAlive)
		}
	}
	t := l.place()
	c.l = t
	if t == l {
		l.adopt(c)
		return
	}
	if !t.post(task{kind: taskAdopt, c: c}) {
		l.refuse(c, "server closing")
	}
}

// place picks the loop for a new connection. With a listener per loop
// (SO_REUSEPORT) the kernel has already spread them, so the accepting loop
// keeps it. Otherwise it goes to the loop with the fewest connections,
// preferring this one on a tie, which saves a hand-over.
func (l *loop) place() *loop {
	s := l.s
	best := l
	if !s.local {
		bl := l.load.Load()
		l.rr++
		for i := range s.loops {
			o := s.loops[(l.rr+i)%len(s.loops)]
			if ld := o.load.Load(); ld < bl {
				best, bl = o, ld
			}
		}
	}
	best.load.Add(1)
	return best
}

// refuse closes a connection that was accepted but cannot be served.
func (l *loop) refuse(c *conn, reason any) {
	s := l.s
	abort(int(c.fd))
	c.l.load.Add(-1)
	s.nconns.Add(-1)
	s.stats.Rejected.Add(1)
	s.log.Warn("connection refused", "remote", c.RemoteAddr(), "reason", reason)
}

// adopt registers a connection with this loop and opens it.
func (l *loop) adopt(c *conn) {
	s := l.s
	if l.draining || l.closing {
		l.refuse(c, "server closing")
		return
	}
	fd := int(c.fd)
	if err := l.p.Add(fd, true, false); err != nil {
		l.refuse(c, err)
		return
	}
	if fd >= len(l.conns) {
		n := max(2*len(l.conns), fd+1, 64)
		conns := make([]*conn, n)
		copy(conns, l.conns)
		l.conns = conns
	}
	l.conns[fd] = c
	l.n++
	s.stats.Accepted.Add(1)
	s.stats.Active.Add(1)
	c.st = stRdOn
	c.lastRead = l.now
	if s.cfg.ProxyProtocol {
		c.st |= stProxy
		d := int64(proxyHeaderTimeout)
		if s.idle > 0 {
			d = min(d, s.idle)
		}
		l.timers.set(c, timerIdle, l.now+d)
		return
	}
	if s.idle > 0 {
		l.timers.set(c, timerIdle, l.now+s.idle)
	}
	c.mu.Lock()
	c.sched = true
	c.mu.Unlock()
	l.open(c)
	l.afterDispatch(c)
}

// open runs OnOpen. The caller has set c.sched and flushes afterwards.
func (l *loop) open(c *conn) {
	c.st |= stOpened
	l.s.h.OnOpen(c)
}

// ---------------------------------------------------------------- input

func (l *loop) readable(c *conn) {
	var buf []byte
	if len(c.in) > 0 && c.st&stDrain == 0 {
		// A partial frame is waiting: read straight behind it rather
		// than into the loop buffer and copy.
		if cap(c.in)-len(c.in) < minReadRoom {
			c.in = l.growIn(c.in, len(c.in)+minReadRoom)
		}
		buf = c.in[len(c.in):cap(c.in)]
	} else {
		buf = l.buf
	}
	n, err := sysRead(int(c.fd), buf)
	switch {
	case n > 0:
		l.bytesIn += int64(n)
		c.lastRead = l.now
		if c.st&stDrain != 0 {
			return
		}
		if len(c.in) > 0 {
			c.in = c.in[:len(c.in)+n]
			l.input(c, c.in, true, false)
		} else {
			l.input(c, l.buf[:n], false, false)
		}
	case n == 0 && err == nil:
		l.eof(c)
	case err == unix.EAGAIN || err == unix.EINTR:
	default:
		l.closeConn(c, os.NewSyscallError("read", err))
	}
}

// eof handles the peer's FIN: what is left is decoded with atEOF (the eof
// codec's whole message, or a truncated frame), replies are flushed, and
// the connection closes once they are out.
func (l *loop) eof(c *conn) {
	c.st |= stEOF
	if c.st&stDrain != 0 {
		l.closeConn(c, nil)
		return
	}
	c.st |= stLinger
	if c.st&stProxy != 0 {
		l.closeConn(c, fmt.Errorf("%w: connection closed before the header was complete", engine.ErrProxyHeader))
		return
	}
	l.input(c, c.in, true, true)
}

// input decodes and delivers every complete frame in data, keeps a partial
// frame's bytes in c.in, and flushes. data is c.in itself when inIn is set,
// the loop's read buffer otherwise.
func (l *loop) input(c *conn, data []byte, inIn, atEOF bool) {
	s := l.s
	c.mu.Lock()
	c.sched = true
	c.mu.Unlock()
	if c.st&stProxy != 0 {
		h, n, err := proxyproto.Parse(data)
		if err != nil {
			l.closeConn(c, err)
			return
		}
		if n == 0 {
			if len(data) >= proxyproto.MaxHeaderLen {
				l.closeConn(c, fmt.Errorf("%w: header longer than %d bytes", engine.ErrProxyHeader, proxyproto.MaxHeaderLen))
				return
			}
			l.keep(c, data, inIn)
			l.afterDispatch(c)
			return
		}
		c.st &^= stProxy
		if !h.Local && h.Src != nil {
			c.proxied = h.Src
		}
		if s.idle > 0 {
			l.timers.set(c, timerIdle, l.now+s.idle)
		} else {
			l.timers.stop(c, timerIdle)
		}
		data = data[n:]
		l.open(c)
	}
	codec := s.codec
	// A partial frame kept in c.in was searched for a boundary already; a
	// delimiter codec resumes there instead of rescanning it every read.
	scanned := 0
	if inIn {
		scanned = c.scanned
	}
	off := 0
	for off < len(data) && c.req.Load()&(reqClose|reqSlow) == 0 {
		var frame []byte
		var n int
		var err error
		if scanned > 0 && s.resumer != nil {
			frame, n, err = s.resumer.DecodeFrom(data[off:], atEOF, scanned)
			scanned = 0
		} else {
			frame, n, err = codec.Decode(data[off:], atEOF)
		}
		if err != nil {
			l.closeConn(c, err)
			return
		}
		if n == 0 {
			break
		}
		s.h.OnMessage(c, frame)
		s.stats.MessagesIn.Add(1)
		off += n
	}
	l.keep(c, data[off:], inIn)
	c.scanned = len(data) - off
	l.afterDispatch(c)
}

// keep stores rest, a partial frame, in c.in: moved to the front if it is
// already there, copied from the loop buffer otherwise. An empty c.in goes
// back to the free list.
func (l *loop) keep(c *conn, rest []byte, inIn bool) {
	switch {
	case len(rest) == 0:
		if c.in != nil {
			l.putIn(c.in)
			c.in = nil
		}
	case inIn:
		c.in = c.in[:copy(c.in, rest)]
	default:
		c.in = append(l.getIn(len(rest)), rest...)
	}
}

const (
	smallIn   = 4 << 10
	largeIn   = engine.ReadBufferSize + minReadRoom
	maxFreeIn = 64
)

func (l *loop) getIn(n int) []byte {
	switch {
	case n <= smallIn:
		if k := len(l.smallIn); k > 0 {
			b := l.smallIn[k-1]
			l.smallIn = l.smallIn[:k-1]
			return b
		}
		return make([]byte, 0, smallIn)
	case n <= largeIn:
		if k := len(l.largeIn); k > 0 {
			b := l.largeIn[k-1]
			l.largeIn = l.largeIn[:k-1]
			return b
		}
		return make([]byte, 0, largeIn)
	}
	return make([]byte, 0, n)
}

func (l *loop) putIn(b []byte) {
	switch cap(b) {
	case smallIn:
		if len(l.smallIn) < maxFreeIn {
			l.smallIn = append(l.smallIn, b[:0])
		}
	case largeIn:
		if len(l.largeIn) < maxFreeIn/8 {
			l.largeIn = append(l.largeIn, b[:0])
		}
	}
}

// growIn returns a buffer holding b's bytes with room for at least n.
func (l *loop) growIn(b []byte, n int) []byte {
	nb := l.getIn(max(n, 2*cap(b)))
	nb = append(nb, b...)
	l.putIn(b)
	return nb
}

// ---------------------------------------------------------------- output

// afterDispatch runs after a batch of callbacks on c, and for a kick from
// another goroutine: act on close requests, flush, then settle interest,
// backpressure and timers.
func (l *loop) afterDispatch(c *conn) {
	c.mu.Lock()
	c.sched = false
	if r := c.req.Load(); r&(reqClose|reqSlow) != 0 {
		c.mu.Unlock()
		var err error
		if r&reqSlow != 0 {
			err = engine.ErrSlowConsumer
		}
		l.closeConn(c, err)
		return
	} else if r&reqCloseWrite != 0 {
		c.st |= stShutWr
	}
	l.flushUnlock(c)
}

func (l *loop) writable(c *conn) {
	c.mu.Lock()
	l.flushUnlock(c)
}

// flushUnlock flushes c's outbox with c.mu held, releases the lock, then
// settles interest and timers, or closes c if the write failed.
func (l *loop) flushUnlock(c *conn) {
	err := l.flushLocked(c)
	pending := c.pending
	c.mu.Unlock()
	if err != nil {
		l.closeConn(c, err)
		return
	}
	l.settle(c, pending)
}

// flushLocked writes as much of the outbox as the socket takes: one write
// for one chunk, one writev for several. A short write means the socket
// buffer is full, so it stops there rather than spend a call on EAGAIN.
func (l *loop) flushLocked(c *conn) error {
	o := &c.out
	fd := int(c.fd)
	for c.pending > 0 {
		var n, want int
		var err error
		if o.head.next == nil {
			b := o.head.b[o.off:]
			want = len(b)
			n, err = sysWrite(fd, b)
		} else {
			bufs := l.bufs[:0]
			for k := o.head; k != nil && len(bufs) < maxFlushChunks; k = k.next {
				b := k.b
				if k == o.head {
					b = b[o.off:]
				}
				bufs = append(bufs, b)
				want += len(b)
			}
			n, err = l.vw.write(fd, bufs)
			clear(bufs)
		}
		if n > 0 {
			o.consume(n)
			c.pending -= n
			l.bytesOut += int64(n)
			c.lastProgress = l.now
		}
		switch {
		case err == unix.EAGAIN:
			return nil
		case err == unix.EINTR:
			continue
		case err != nil:
			return os.NewSyscallError("write", err)
		case n < want:
			return nil
		}
	}
	if o.head != nil {
		o.release() // empty chunks a failed Write left behind
	}
	return nil
}

// settle brings interest, backpressure, the write timer and any pending
// half-close or close in line with how much output is left.
func (l *loop) settle(c *conn, pending int) {
	s := l.s
	if pending == 0 {
		if c.timer[timerWrite] != 0 {
			l.timers.stop(c, timerWrite)
		}
		if c.st&stLinger != 0 {
			l.closeConn(c, nil)
			return
		}
		if c.st&(stShutWr|stWrShut) == stShutWr {
			unix.Shutdown(int(c.fd), unix.SHUT_WR)
			c.st |= stWrShut
			if c.st&stDrain != 0 {
				// Our FIN is out: wait a bounded time for the peer's.
				l.timers.set(c, timerIdle, l.lingerDeadline())
			}
		}
	} else if s.writeTO > 0 && c.timer[timerWrite] == 0 {
		// The loop clock dates from before this batch's callbacks, which
		// may have run a while; output getting stuck is rare enough to
		// afford a fresh reading, so the timeout never fires early.
		l.now = s.clock()
		c.lastProgress = l.now
		l.timers.set(c, timerWrite, l.now+s.writeTO)
	}
	if c.st&stPaused == 0 {
		if pending > s.maxPending {
			c.st |= stPaused
		}
	} else if pending <= s.lowWater {
		c.st &^= stPaused
	}
	// Draining connections keep reading, to drop input and see the FIN.
	read := c.st&stEOF == 0 && (c.st&stPaused == 0 || c.st&stDrain != 0)
	l.interest(c, read, pending > 0)
}

// interest registers what c waits for, calling the poller only on change.
func (l *loop) interest(c *conn, read, write bool) {
	var want uint16
	if read {
		want |= stRdOn
	}
	if write {
		want |= stWrOn
	}
	if c.st&(stRdOn|stWrOn) == want {
		return
	}
	c.st = c.st&^(stRdOn|stWrOn) | want
	if err := l.p.Modify(int(c.fd), read, write); err != nil {
		l.closeConn(c, err)
	}
}

// ---------------------------------------------------------------- closing

// closeConn closes c now, once, and reports err to OnClose.
func (l *loop) closeConn(c *conn, err error) {
	if c.st&stClosed != 0 {
		return
	}
	s := l.s
	c.st |= stClosed
	c.mu.Lock()
	c.closed, c.wclosed = true, true
	c.out.release()
	c.pending = 0
	c.mu.Unlock()
	for k := range uint8(numTimers) {
		l.timers.stop(c, k)
	}
	fd := int(c.fd)
	l.p.Delete(fd)
	unix.Close(fd)
	l.conns[fd] = nil
	if c.in != nil {
		l.putIn(c.in)
		c.in = nil
	}
	l.n--
	l.load.Add(-1)
	s.nconns.Add(-1)
	s.stats.Active.Add(-1)
	s.stats.CountClose(err)
	s.logClose(c, err)
	// A connection refused for its PROXY header never reached the
	// handler, so it gets no OnClose either.
	if c.st&stOpened != 0 {
		s.h.OnClose(c, err)
	}
}

// drain starts a graceful shutdown on this loop: no more accepts, input is
// read and dropped, output is flushed, then FIN, and each connection closes
// when the peer's FIN arrives or the linger ends.
func (l *loop) drain() {
	if l.draining || l.closing {
		return
	}
	l.draining = true
	l.closeListeners()
	for _, c := range l.conns {
		if c == nil || c.st&stClosed != 0 {
			continue
		}
		c.mu.Lock()
		c.wclosed = true
		c.mu.Unlock()
		c.st |= stDrain | stShutWr
		// The idle timer becomes the linger timer once our FIN is out;
		// until then the write timeout and Shutdown's deadline bound it.
		l.timers.stop(c, timerIdle)
		if c.in != nil {
			l.putIn(c.in)
			c.in = nil
		}
		if c.st&stEOF != 0 {
			c.st |= stLinger
		}
		l.afterDispatch(c)
	}
}

// closeAll closes every connection now (Close, or Shutdown's deadline).
func (l *loop) closeAll() {
	if l.closing {
		return
	}
	draining := l.draining
	l.closing = true
	l.closeListeners()
	var err error
	if draining {
		err = engine.ErrShutdown
	}
	for _, c := range l.conns {
		if c != nil {
			l.closeConn(c, err)
		}
	}
}

// lingerDeadline is when a draining connection that has sent its FIN gives
// up waiting for the peer's: lingerMax from now, or Shutdown's deadline if
// sooner.
func (l *loop) lingerDeadline() int64 {
	s := l.s
	s.mu.Lock()
	deadline := s.deadline
	s.mu.Unlock()
	d := l.now + int64(lingerMax)
	if deadline > 0 {
		d = min(d, deadline)
	}
	return d
}

func (l *loop) closeListeners() {
	for _, li := range l.lns {
		l.p.Delete(li.fd)
		unix.Close(li.fd)
	}
	l.lns = nil
}

// ---------------------------------------------------------------- timers

func (l *loop) runTimers() {
	s := l.s
	for _, li := range l.lns {
		if li.paused && l.now >= li.resumeAfter {
			li.paused = false
			l.p.Modify(li.fd, true, false)
		}
	}
	for len(l.timers) > 0 && l.timers[0].when <= l.now {
		t := l.timers[0]
		c := t.c
		switch t.kind {
		case timerIdle:
			if c.st&stDrain != 0 {
				l.closeConn(c, engine.ErrShutdown)
				continue
			}
			if c.st&stProxy != 0 {
				l.closeConn(c, fmt.Errorf("%w: no header within %v", engine.ErrProxyHeader, time.Duration(t.when-c.lastRead)))
				continue
			}
			due := c.lastRead + s.idle
			if c.st&(stPaused|stWrOn) != 0 {
				// Not reading because its own output is stuck: that is
				// the write timeout's business.
				due = l.now + s.idle
			}
			if due > l.now {
				l.timers.set(c, timerIdle, due)
				continue
			}
			l.closeConn(c, engine.ErrIdleTimeout)
		case timerWrite:
			if due := c.lastProgress + s.writeTO; due > l.now {
				l.timers.set(c, timerWrite, due)
				continue
			}
			l.closeConn(c, engine.ErrWriteTimeout)
		}
	}
}
