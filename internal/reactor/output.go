//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/outbox"
	"switchboard/internal/rawio"
)

// Output: after a batch of callbacks, or a kick from another goroutine,
// act on what the handler asked, flush the outbox, then bring interest,
// backpressure, timers and the write half in line with what is left.

// afterDispatch runs after a batch of callbacks on c (msgs of them
// messages, counted here, where the lock is taken anyway), and for a kick
// from another goroutine: act on close requests, flush, then settle.
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
		// Nothing held to decode: the next read uses the new codec. (With
		// bytes held, input switches before decoding them.)
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
	l.flushUnlock(c)
}

func (l *loop) writable(c *conn) {
	c.mu.Lock()
	l.flushUnlock(c)
}

// flushUnlock flushes c's outbox with c.mu held, releases the lock, then
// settles, or closes c if the write failed.
func (l *loop) flushUnlock(c *conn) {
	err := l.flushLocked(c)
	pending := c.out.Len()
	if c.tls != nil {
		pending = c.tls.Pending(pending)
	}
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
	if c.tls != nil {
		return l.flushTLSLocked(c)
	}
	return l.writeLocked(c, &c.out)
}

// writeLocked writes o, c's outbox or its TLS ciphertext.
func (l *loop) writeLocked(c *conn, o *outbox.Outbox) error {
	fd := int(c.fd)
	plain := o == &c.out // over TLS the session counts c.st, in plaintext
	for o.Len() > 0 {
		var n, want int
		var err error
		if b, more := o.Head(); !more {
			want = len(b)
			n, err = rawio.Write(fd, b)
		} else {
			var bufs [][]byte
			bufs, want = o.Gather(l.bufs[:0], maxFlushChunks)
			n, err = l.vw.Write(fd, bufs)
			clear(bufs)
		}
		if n > 0 {
			o.Consume(n)
			l.bytesOut += int64(n)
			if plain {
				c.st.BytesOut += int64(n)
			}
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
	o.Release() // empty chunks a failed Write left behind
	return nil
}

// settle brings interest, backpressure, the write timer and the write half
// in line with how much output is left; with none left, a connection in
// connstate.Finishing closes and one in connstate.ShuttingWrite sends its FIN.
func (l *loop) settle(c *conn, pending int) {
	s := l.s
	if pending == 0 {
		if c.timer[timerWrite] != 0 {
			l.disarm(c, timerWrite)
		}
		switch c.state.Flushed() {
		case connstate.CloseNow:
			l.closeConn(c, nil)
			return
		case connstate.SendFIN:
			unix.Shutdown(int(c.fd), unix.SHUT_WR)
			if l.draining {
				// Our FIN is out: wait a bounded time for the peer's.
				l.arm(c, timerIdle, l.lingerDeadline())
			}
		}
	} else if s.writeTO > 0 && c.timer[timerWrite] == 0 {
		// The loop clock dates from before this batch's callbacks, which
		// may have run a while; output getting stuck is rare enough to
		// afford a fresh reading, so the timeout never fires early.
		l.now = s.clock()
		c.lastProgress = l.now
		l.arm(c, timerWrite, l.now+s.writeTO)
	}
	if d := int64(pending) - c.reported; d != 0 {
		l.pending += d
		c.reported = int64(pending)
	}
	if c.flags&connPaused == 0 {
		if pending > s.maxPending {
			c.flags |= connPaused
			l.paused++
		}
	} else if pending <= s.lowWater {
		c.flags &^= connPaused
		l.paused--
	}
	// Draining connections keep reading, to drop input and see the FIN.
	read := c.state.Reading() && (c.flags&connPaused == 0 || l.draining)
	l.interest(c, read, pending > 0)
}

// interest registers what c waits for, calling the poller only on change.
func (l *loop) interest(c *conn, read, write bool) {
	var want uint8
	if read {
		want |= connReadOn
	}
	if write {
		want |= connWriteOn
	}
	if c.flags&(connReadOn|connWriteOn) == want {
		return
	}
	c.flags = c.flags&^(connReadOn|connWriteOn) | want
	if err := l.p.Modify(int(c.fd), read, write); err != nil {
		l.closeConn(c, err)
	}
}
