package uringengine

import (
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/loopconn"
	"switchboard/internal/uring"
)

// Input: one multishot receive per connection, armed with buffer select,
// so the kernel picks a buffer from the loop's ring only when bytes
// arrive. A completion hands the loop one buffer (or, with a bundle,
// several consecutive ones); each is fed to the connection's
// framing.Accumulator, which decodes every complete frame where it lies
// in the kernel's buffer and copies only a partial frame's bytes into a
// buffer of its own; then the buffer is recycled at once, and the next
// enter gives it back to the kernel. Backpressure cancels the receive;
// bytes already received meanwhile are kept, undecoded, until the output
// drains.

// receiving reports whether c should have a receive armed: it is reading
// (loopconn.Loop.Reading), and, over TLS, not held for its handshake.
func (l *loop) receiving(c *conn) bool {
	return l.Reading(c) && c.Flags&connTLSHold == 0
}

func (l *loop) armRecv(c *conn) {
	sqe := l.sqe()
	sqe.PrepRecv(int(c.Fd), bufGroup, true, l.bundle)
	sqe.SetUserData(userData(udRecv, l.gens[c.IO.slot], c.IO.slot))
	c.Flags |= connRecv
	c.Flags &^= connCancel
	l.inflight++
}

// scheduleRearm has the receive armed again before the next enter.
func (l *loop) scheduleRearm(c *conn) {
	if c.Flags&connRearm == 0 {
		c.Flags |= connRearm
		l.rearm = append(l.rearm, c)
	}
}

// cancelRecv asks the kernel to end c's receive (backpressure).
func (l *loop) cancelRecv(c *conn) {
	if c.Flags&(connRecv|connCancel) != connRecv {
		return
	}
	sqe := l.sqe()
	sqe.PrepCancel(userData(udRecv, l.gens[c.IO.slot], c.IO.slot), false)
	sqe.SetUserData(userData(udCancel, 0, 0))
	sqe.SetFlags(uring.SQECQESkipSuccess)
	c.Flags |= connCancel
}

// received handles a receive completion; c is nil when its connection has
// closed since. Every buffer a completion carries goes through the buffer
// ring's accounting and back to the kernel whatever became of c.
func (l *loop) received(cqe *uring.CQE, c *conn) {
	if !cqe.More() {
		l.inflight--
		if c != nil {
			c.Flags &^= connRecv | connCancel
		}
	}
	if _, ok := cqe.Buffer(); ok {
		l.cur = c
		if _, err := l.br.Bundle(cqe, l.onBuf); err != nil {
			// The ring's accounting is lost: nothing received from here
			// on could be trusted to be in order.
			l.s.Fail(err)
			l.CloseAll()
			return
		}
		l.cur = nil
	} else if c != nil {
		switch {
		case cqe.Res == 0 && c.Flags&connTLS != 0:
			l.eofTLS(c)
			return
		case cqe.Res == 0:
			l.eof(c)
			return
		case cqe.Res == -int32(unix.ENOBUFS), cqe.Res == -int32(unix.ECANCELED):
			// Every buffer was out (armed again once this iteration's
			// are recycled), or backpressure cancelled it.
		case cqe.Res < 0:
			l.Close(c, os.NewSyscallError("recv", unix.Errno(-cqe.Res)))
			return
		}
	}
	if c != nil && c.State != connstate.Closed && c.Flags&connRecv == 0 && l.receiving(c) {
		l.scheduleRearm(c)
	}
}

// buffer takes one received buffer for l.cur, then recycles it. Bytes
// that arrive for a connection already closed (the rest of a bundle after
// a framing error, completions still queued) go straight back and are
// not counted as taken in: no connection ever held them.
func (l *loop) buffer(id uint16, data []byte) {
	c := l.cur
	switch {
	case c == nil || c.State == connstate.Closed || len(data) == 0:
		l.br.Recycle(id)
		return
	}
	l.BytesIn += int64(len(data))
	switch {
	case l.Draining:
		c.LastRead = l.Now // input after Shutdown is received and dropped
	case c.Flags&connTLS != 0:
		l.bufferTLS(c, data)
	case c.Flags&(loopconn.FlagPaused|connHeld) != 0:
		// Received after the pause began, before the cancellation took
		// (the rest of a bundle, or more completions in the same batch):
		// kept undecoded until the output drains, then decoded a
		// buffer's worth at a time, as if it had just arrived.
		c.LastRead = l.Now
		l.hold(c, data)
	default:
		c.LastRead = l.Now
		l.In(c).Feed(l.SplitOf(c), data)
		l.input(c, len(data))
	}
	l.br.Recycle(id)
}

// eof handles the peer's FIN (loopconn.Loop.EOF and PeerEOF say what
// it means); input held back by a pause is decoded first, when the
// output drains.
func (l *loop) eof(c *conn) {
	if !l.EOF(c) {
		return
	}
	if c.Flags&(loopconn.FlagPaused|connHeld) != 0 {
		c.Flags |= connEOFHeld
		return
	}
	l.peerEOF(c)
}

// peerEOF moves c past the peer's FIN and decodes the rest with atEOF.
func (l *loop) peerEOF(c *conn) {
	l.PeerEOF(c)
	l.input(c, 0)
}

// input delivers what c.In holds (n bytes of it new) and has the replies
// sent.
func (l *loop) input(c *conn, n int) {
	if msgs, ok := l.Deliver(c, n); ok {
		l.Flush(c, msgs)
	}
}

// heldInput is what a connection received after its pause began and
// has not decoded yet (b[off:]).
type heldInput struct {
	b   []byte
	off int
}

// hold keeps data, received while c is paused, for resume.
func (l *loop) hold(c *conn, data []byte) {
	h := l.held[c]
	if h == nil {
		if l.held == nil {
			l.held = make(map[*conn]*heldInput)
		}
		h = new(heldInput)
		l.held[c] = h
		c.Flags |= connHeld
	}
	h.b = append(h.b, data...)
}

// dropHeld forgets what c holds: it is decoded, dropped (a drain), or c
// has closed.
func (l *loop) dropHeld(c *conn) {
	if c.Flags&connHeld != 0 {
		delete(l.held, c)
		c.Flags &^= connHeld
	}
}

// resume decodes what was held during a pause, a buffer's worth at a
// time, until it is all decoded or the output has paused reading again;
// then the peer's FIN, if it came behind it.
func (l *loop) resume(c *conn) {
	if c.Flags&connTLS != 0 {
		// The ciphertext waited in the TLS state; its FIN, if it came,
		// ends the stream where Read finds it.
		if t := tlsOf(c); !l.Draining && t.Held() {
			l.inputTLS(c)
		}
		return
	}
	if h := l.held[c]; c.Flags&connHeld != 0 {
		for c.State != connstate.Closed && c.Flags&loopconn.FlagPaused == 0 && h.off < len(h.b) {
			n := min(l.br.Size(), len(h.b)-h.off)
			chunk := h.b[h.off : h.off+n]
			h.off += n
			l.In(c).Feed(l.SplitOf(c), chunk)
			l.input(c, n)
		}
		if h.off == len(h.b) {
			l.dropHeld(c)
		}
	}
	if c.State != connstate.Closed && c.Flags&(loopconn.FlagPaused|connEOFHeld|connHeld) == connEOFHeld {
		c.Flags &^= connEOFHeld
		l.peerEOF(c)
	}
}
