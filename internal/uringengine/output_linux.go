package uringengine

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/outbox"
	"switchboard/internal/uring"
)

// Output: replies queue in the connection's outbox during a batch of
// callbacks; before the next enter the loop starts one send per
// connection that has output and none in flight: a send of the first
// chunk, or a sendmsg over a chain of chunks through a header from the
// loop's arena. The outbox keeps the bytes until the completion says how
// many went, so writers on other goroutines append behind a send in
// flight without disturbing it. When it completes, what was sent is
// consumed, and anything queued meanwhile goes in the next send.
//
// Memory the kernel reads: outbox chunks are Go heap objects, which the
// collector does not move, kept reachable by the outbox until the
// completion; a sendmsg's header and iovecs live in an mmap'd arena and
// the chunks it points at are pinned by the uring.Msg until its Reset.

// afterDispatch runs after a batch of callbacks on c (msgs of them
// messages, counted here, where the lock is taken anyway), and for a kick
// from another goroutine: act on close requests, promise a send, then
// settle.
func (l *loop) afterDispatch(c *conn, msgs int64) {
	c.mu.Lock()
	c.sched = false
	c.st.MessagesIn += msgs
	r := c.req.Load()
	if r&reqIdle != 0 {
		c.req.And(^uint32(reqIdle))
		l.rearmIdle(c)
	}
	if r&reqCodec != 0 && c.state != connstate.Closed && c.in.Buffered() == 0 {
		// Nothing held to decode: the next receive uses the new codec.
		// (With bytes held, input switches before decoding them.)
		c.mu.Unlock()
		l.switchCodec(c)
		c.mu.Lock()
	}
	if r&(reqClose|reqSlow) != 0 {
		c.mu.Unlock()
		var err error
		if r&reqSlow != 0 {
			err = engine.ErrSlowConsumer
		}
		l.closeConn(c, err)
		return
	} else if r&reqCloseWrite != 0 {
		c.state.CloseWrite()
	}
	pending, err := l.pendingLocked(c)
	c.mu.Unlock()
	if err != nil {
		l.closeConn(c, err)
		return
	}
	if pending > 0 && c.flags&(connSending|connDirty|connSendWait) == 0 {
		c.flags |= connDirty
		l.dirty = append(l.dirty, c)
	}
	l.settle(c, pending)
}

// pendingLocked is the output c has to send: its outbox, or over TLS
// what it seals into ciphertext and what waits to be. c.mu is held.
func (l *loop) pendingLocked(c *conn) (int, error) {
	if c.tls != nil {
		return l.sealLocked(c)
	}
	return c.out.Len(), nil
}

// outOf is the outbox c sends from: its own, or over TLS the session's
// ciphertext.
func outOf(c *conn) *outbox.Outbox {
	if c.tls != nil {
		return &c.tls.Out
	}
	return &c.out
}

// flush starts c's send, if it has output and none in flight.
func (l *loop) flush(c *conn) {
	if c.flags&(connSending|connSendWait) != 0 {
		return
	}
	c.mu.Lock()
	o := outOf(c)
	if o.Len() == 0 {
		c.mu.Unlock()
		return
	}
	b, more := o.Head()
	sqe := (*uring.SQE)(nil)
	if !more {
		sqe = l.sqe()
		sqe.PrepSend(int(c.fd), b, unix.MSG_NOSIGNAL)
		c.msg = -1
	} else {
		k := len(l.freeMsgs)
		if k == 0 {
			// Every header is in flight: wait for one.
			c.mu.Unlock()
			c.flags |= connSendWait
			l.sendWait = append(l.sendWait, c)
			return
		}
		c.msg = l.freeMsgs[k-1]
		l.freeMsgs = l.freeMsgs[:k-1]
		m := l.arena.Msg(int(c.msg))
		bufs, _ := o.Gather(l.bufs[:0], maxSendIov)
		for _, b := range bufs {
			m.Append(b)
		}
		clear(bufs)
		sqe = l.sqe()
		sqe.PrepSendmsg(int(c.fd), m, unix.MSG_NOSIGNAL)
	}
	c.mu.Unlock()
	sqe.SetUserData(userData(udSend, c.gen, c.slot))
	// Output stuck from here on counts against the write timeout.
	c.lastProgress = l.now
	c.flags |= connSending
	l.inflight++
}

// sent handles a send completion. c's slot is kept while a send is in
// flight, so c is the connection it was for even if it has closed.
func (l *loop) sent(cqe *uring.CQE, c *conn) {
	l.inflight--
	c.flags &^= connSending
	if c.msg >= 0 {
		l.arena.Msg(int(c.msg)).Reset()
		l.freeMsgs = append(l.freeMsgs, c.msg)
		c.msg = -1
		l.serveSendWait()
	}
	if c.state == connstate.Closed {
		l.retire(c)
		return
	}
	if cqe.Res < 0 {
		if err := unix.Errno(-cqe.Res); err != unix.EINTR && err != unix.EAGAIN {
			l.closeConn(c, os.NewSyscallError("send", err))
			return
		}
	}
	c.mu.Lock()
	o := outOf(c)
	if n := int(cqe.Res); n > 0 {
		o.Consume(n)
		l.bytesOut += int64(n)
		if c.tls == nil {
			c.st.BytesOut += int64(n) // over TLS, sealLocked counts plaintext
		}
		c.lastProgress = l.now
	}
	pending, err := l.pendingLocked(c)
	if o.Len() == 0 {
		o.Release() // empty chunks a failed Write left behind
	}
	c.mu.Unlock()
	if err != nil {
		l.closeConn(c, err)
		return
	}
	if pending > 0 {
		l.flush(c)
	}
	l.settle(c, pending)
}

// serveSendWait gives freed sendmsg headers to connections waiting.
func (l *loop) serveSendWait() {
	for len(l.sendWait) > 0 && len(l.freeMsgs) > 0 {
		c := l.sendWait[0]
		copy(l.sendWait, l.sendWait[1:])
		l.sendWait[len(l.sendWait)-1] = nil
		l.sendWait = l.sendWait[:len(l.sendWait)-1]
		c.flags &^= connSendWait
		if c.state != connstate.Closed {
			l.flush(c)
		} else if c.flags&connSending == 0 {
			l.retire(c)
		}
	}
}

// settle brings the receive, backpressure, the write timer and the write
// half in line with how much output is left; with none left, a
// connection in connstate.Finishing closes and one in
// connstate.ShuttingWrite sends its FIN.
func (l *loop) settle(c *conn, pending int) {
	s := l.s
	if pending == 0 {
		// The write timer, if armed, is left to lapse (timer_linux.go):
		// a send completes for nearly every message, and arming and
		// disarming it each time would be two heap operations each.
		switch c.state.Flushed() {
		case connstate.CloseNow:
			l.closeConn(c, nil)
			return
		case connstate.SendFIN:
			sqe := l.sqe()
			sqe.PrepShutdown(int(c.fd), unix.SHUT_WR)
			sqe.SetUserData(userData(udShutdown, 0, 0))
			sqe.SetFlags(uring.SQECQESkipSuccess)
			if l.draining {
				l.arm(c, timerIdle, l.lingerDeadline())
			}
		}
	} else if s.writeTO > 0 && c.timer[timerWrite] == 0 {
		// The loop clock dates from before this batch's callbacks;
		// arming is rare enough (once per timeout period of output) to
		// afford a fresh reading, so the timeout never fires early.
		l.now = s.clock()
		c.lastProgress = l.now
		l.arm(c, timerWrite, l.now+s.writeTO)
	}
	if c.flags&connPaused == 0 {
		if pending > s.maxPending {
			c.flags |= connPaused
			if !l.draining {
				l.cancelRecv(c)
			}
		}
	} else if pending <= s.lowWater {
		c.flags &^= connPaused
		if c.held != nil || c.flags&connEOFHeld != 0 || c.tls != nil && c.tls.Held() {
			l.resume(c)
			return
		}
	}
	if c.flags&connRecv == 0 && c.state != connstate.Closed && l.wantRecv(c) {
		l.scheduleRearm(c)
	}
}
