//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/loopconn"
	"switchboard/internal/outbox"
	"switchboard/internal/rawio"
)

// Output: after a batch of callbacks, or a kick from another goroutine,
// act on what the handler asked (loopconn.Loop.BeginFlush), flush the
// outbox, then bring interest, backpressure, timers and the write half in
// line with what is left.

// Flush runs after a batch of callbacks on c (msgs of them messages) and
// for a kick from another goroutine: act on close requests, flush, then
// settle.
func (l *loop) Flush(c *conn, msgs int64) {
	if l.BeginFlush(c, msgs) {
		l.flushUnlock(c)
	}
}

func (l *loop) writable(c *conn) {
	c.Mu.Lock()
	l.flushUnlock(c)
}

// flushUnlock flushes c's outbox with c.Mu held, releases the lock, then
// settles, or closes c if the write failed.
func (l *loop) flushUnlock(c *conn) {
	err := l.flushLocked(c)
	pending := c.Out.Len()
	if c.Flags&connTLS != 0 {
		pending = tlsOf(c).Pending(pending)
	}
	c.Mu.Unlock()
	if err != nil {
		l.Close(c, err)
		return
	}
	l.settle(c, pending)
}

// flushLocked writes as much of the outbox as the socket takes: one write
// for one chunk, one writev for several. A short write means the socket
// buffer is full, so it stops there rather than spend a call on EAGAIN.
func (l *loop) flushLocked(c *conn) error {
	if c.Flags&connTLS != 0 {
		return l.flushTLSLocked(c)
	}
	return l.writeLocked(c, &c.Out)
}

// writeLocked writes o, c's outbox or its TLS ciphertext.
func (l *loop) writeLocked(c *conn, o *outbox.Outbox) error {
	fd := int(c.Fd)
	plain := o == &c.Out // over TLS the session counts c.St, in plaintext
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
			l.BytesOut += int64(n)
			if plain {
				c.St.BytesOut += int64(n)
			}
			c.LastProgress = l.Now
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
	if pending == 0 {
		if c.Timer[loopconn.TimerWrite] != 0 {
			l.Disarm(c, loopconn.TimerWrite)
		}
		switch c.State.Flushed() {
		case connstate.CloseNow:
			l.Close(c, nil)
			return
		case connstate.SendFIN:
			unix.Shutdown(int(c.Fd), unix.SHUT_WR)
			l.FINSent(c)
		}
	} else {
		l.ArmWrite(c)
	}
	l.Backpressure(c, pending)
	l.interest(c, l.Reading(c), pending > 0)
}

// interest registers what c waits for, calling the poller only on change.
func (l *loop) interest(c *conn, read, write bool) {
	var want uint16
	if read {
		want |= connReadOn
	}
	if write {
		want |= connWriteOn
	}
	if c.Flags&(connReadOn|connWriteOn) == want {
		return
	}
	c.Flags = c.Flags&^(connReadOn|connWriteOn) | want
	if err := l.p.Modify(int(c.Fd), read, write); err != nil {
		l.Close(c, err)
	}
}
