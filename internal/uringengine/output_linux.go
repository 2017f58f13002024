package uringengine

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
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

// Flush runs after a batch of callbacks on c (msgs of them messages),
// and for a kick from another goroutine: act on close requests
// (loopconn.Loop.BeginFlush), promise a send, then settle.
func (l *loop) Flush(c *conn, msgs int64) {
	if !l.BeginFlush(c, msgs) {
		return
	}
	pending, err := l.pendingLocked(c)
	c.Mu.Unlock()
	if err != nil {
		l.Close(c, err)
		return
	}
	if pending > 0 && c.Flags&(connSending|connDirty|connSendWait) == 0 {
		c.Flags |= connDirty
		l.dirty = append(l.dirty, c)
	}
	l.settle(c, pending)
}

// pendingLocked is the output c has to send: its outbox, or over TLS
// what it seals into ciphertext and what waits to be. c.Mu is held.
func (l *loop) pendingLocked(c *conn) (int, error) {
	if c.Flags&connTLS != 0 {
		return l.sealLocked(c)
	}
	return c.Out.Len(), nil
}

// outOf is the outbox c sends from: its own, or over TLS the session's
// ciphertext.
func outOf(c *conn) *outbox.Outbox {
	if c.Flags&connTLS != 0 {
		return &tlsOf(c).Out
	}
	return &c.Out
}

// flush starts c's send, if it has output and none in flight.
func (l *loop) flush(c *conn) {
	if c.Flags&(connSending|connSendWait) != 0 {
		return
	}
	c.Mu.Lock()
	o := outOf(c)
	if o.Len() == 0 {
		c.Mu.Unlock()
		return
	}
	b, more := o.Head()
	sqe := (*uring.SQE)(nil)
	if !more {
		sqe = l.sqe()
		sqe.PrepSend(int(c.Fd), b, unix.MSG_NOSIGNAL)
		l.msgs[c.IO.slot] = -1
	} else {
		k := len(l.freeMsgs)
		if k == 0 {
			// Every header is in flight: wait for one.
			c.Mu.Unlock()
			c.Flags |= connSendWait
			l.sendWait = append(l.sendWait, c)
			return
		}
		msg := l.freeMsgs[k-1]
		l.freeMsgs = l.freeMsgs[:k-1]
		l.msgs[c.IO.slot] = msg
		m := l.arena.Msg(int(msg))
		bufs, _ := o.Gather(l.bufs[:0], maxSendIov)
		for _, b := range bufs {
			m.Append(b)
		}
		clear(bufs)
		sqe = l.sqe()
		sqe.PrepSendmsg(int(c.Fd), m, unix.MSG_NOSIGNAL)
	}
	c.Mu.Unlock()
	sqe.SetUserData(userData(udSend, l.gens[c.IO.slot], c.IO.slot))
	// Output stuck from here on counts against the write timeout.
	c.LastProgress = l.Now
	c.Flags |= connSending
	l.inflight++
}

// sent handles a send completion. c's slot is kept while a send is in
// flight, so c is the connection it was for even if it has closed.
func (l *loop) sent(cqe *uring.CQE, c *conn) {
	l.inflight--
	c.Flags &^= connSending
	if msg := l.msgs[c.IO.slot]; msg >= 0 {
		l.arena.Msg(int(msg)).Reset()
		l.freeMsgs = append(l.freeMsgs, msg)
		l.msgs[c.IO.slot] = -1
		l.serveSendWait()
	}
	if c.State == connstate.Closed {
		l.retire(c)
		return
	}
	if cqe.Res < 0 {
		if err := unix.Errno(-cqe.Res); err != unix.EINTR && err != unix.EAGAIN {
			l.Close(c, os.NewSyscallError("send", err))
			return
		}
	}
	c.Mu.Lock()
	o := outOf(c)
	if n := int(cqe.Res); n > 0 {
		o.Consume(n)
		l.BytesOut += int64(n)
		if c.Flags&connTLS == 0 {
			c.St.BytesOut += int64(n) // over TLS, sealLocked counts plaintext
		}
		c.LastProgress = l.Now
	}
	pending, err := l.pendingLocked(c)
	if o.Len() == 0 {
		o.Release() // empty chunks a failed Write left behind
	}
	c.Mu.Unlock()
	if err != nil {
		l.Close(c, err)
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
		c.Flags &^= connSendWait
		if c.State != connstate.Closed {
			l.flush(c)
		} else if c.Flags&connSending == 0 {
			l.retire(c)
		}
	}
}

// settle brings the receive, backpressure, the write timer and the write
// half in line with how much output is left; with none left, a
// connection in connstate.Finishing closes and one in
// connstate.ShuttingWrite sends its FIN.
func (l *loop) settle(c *conn, pending int) {
	if pending == 0 {
		// The write timer, if armed, is left to lapse (loopconn's timers):
		// a send completes for nearly every message, and arming and
		// disarming it each time would be two heap operations each.
		switch c.State.Flushed() {
		case connstate.CloseNow:
			l.Close(c, nil)
			return
		case connstate.SendFIN:
			sqe := l.sqe()
			sqe.PrepShutdown(int(c.Fd), unix.SHUT_WR)
			sqe.SetUserData(userData(udShutdown, 0, 0))
			sqe.SetFlags(uring.SQECQESkipSuccess)
			l.FINSent(c)
		}
	} else {
		l.ArmWrite(c)
	}
	switch l.Backpressure(c, pending) {
	case +1:
		if !l.Draining {
			l.cancelRecv(c)
		}
	case -1:
		if c.Flags&(connHeld|connEOFHeld) != 0 || c.Flags&connTLS != 0 && tlsOf(c).Held() {
			l.resume(c)
			return
		}
	}
	if c.Flags&connRecv == 0 && c.State != connstate.Closed && l.receiving(c) {
		l.scheduleRearm(c)
	}
}
