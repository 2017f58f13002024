//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"crypto/tls"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/loopconn"
	"switchboard/internal/outbox"
	"switchboard/internal/rawio"
	"switchboard/internal/tlsloop"
)

// TLS on the loop, driven as internal/tlsloop documents. A TLS connection
// has a tlsConn, kept by the core as the connection's engine state
// (tlsOf) and flagged connTLS, so plaintext pays one flag test where the
// paths part:
//
//   - readable: ciphertext is read into the loop buffer and fed to the TLS
//     state, which copies it; the loop buffer then takes the plaintext
//     Read returns, which the Accumulator decodes in place as it would a
//     plaintext read (behind a partial frame, via Room/Commit, when one is
//     held).
//   - Write is unchanged: it frames plaintext into conn.out from any
//     goroutine. The flush, on the loop, seals conn.out into tlsConn.out
//     (ciphertext) and writes that. Until the handshake is done nothing is
//     sealed, so writes wait; at most sealAhead bytes of ciphertext are
//     sealed ahead of the socket, so a stuck peer leaves its backlog as
//     plaintext, under Write's limit.
//   - The handshake runs on tlsloop's goroutine, bounded by the handshake
//     timeout and the server's Limiter; it reports through the loop's
//     queue (taskTLSOutput, taskTLSDone). OnOpen runs when it succeeds;
//     until then the connection is in connstate.Header, the state in
//     which the handler has not heard of it, with no idle timer.
//   - Half-close: once the plaintext is flushed in ShuttingWrite,
//     close_notify is queued; the FIN follows it when settle finds the
//     ciphertext flushed. A full close sends close_notify only when no
//     record is half-written.
type tlsConn struct {
	c   *conn
	tc  *tlsloop.Conn
	out outbox.Outbox // ciphertext, under c.mu like c.Out
	// herr is the handshake's result, written by the handshake goroutine
	// before it posts taskTLSDone (the queue's lock orders the two).
	herr  error
	ready bool // the loop has seen the handshake succeed and opened c
	// notify: close_notify is queued (CloseWrite or a drain).
	notify bool
}

const (
	// sealAhead bounds the ciphertext sealed and not yet written, which
	// Write's limit on pending output does not see: two full records.
	sealAhead = 32 << 10
	// sealPiece is the most plaintext sealed at once: one full record,
	// so a pooled chunk holds its ciphertext.
	sealPiece = 16 << 10
	// sealSlack covers record overhead on sealPiece bytes: headers, tags,
	// and the small records crypto/tls starts a connection with.
	sealSlack = 1 << 10
	// maxHandshakeInput is how much unread ciphertext a connection may
	// buffer during its handshake before the loop stops reading it: a
	// client's records sent right behind its Finished, or a flood. The
	// handshake goroutine reads what arrives as it arrives, and reading
	// resumes with the next flight the server sends or the handshake's
	// end, so only a client whose last flight alone passed this (a
	// certificate chain over 64 KiB) would wait for its timeout.
	maxHandshakeInput = 64 << 10
)

// Output and HandshakeDone are tlsloop.Events, called on the handshake's
// goroutines; they post to the loop and return.
func (t *tlsConn) Output() { t.c.L.Post(task{Kind: taskTLSOutput, C: t.c}) }

func (t *tlsConn) HandshakeDone(err error) {
	t.herr = err
	t.c.L.Post(task{Kind: taskTLSDone, C: t.c})
}

// StartTLS begins c's handshake: at accept, or once its PROXY header is
// parsed, when rest is what followed the header.
func (l *loop) StartTLS(c *conn, rest []byte) {
	t := &tlsConn{c: c}
	t.tc = tlsloop.Server(l.s.tls, t)
	c.SetEngineState(t)
	c.Flags |= connTLS
	c.State = connstate.Header
	l.Disarm(c, loopconn.TimerIdle) // the handshake timeout is tlsloop's
	t.tc.Start()
	if len(rest) > 0 {
		t.tc.Feed(rest)
	}
}

// readableTLS is readable for a TLS connection.
func (l *loop) readableTLS(c *conn) {
	t := tlsOf(c)
	n, err := rawio.Read(int(c.Fd), l.buf)
	switch {
	case n > 0:
		l.BytesIn += int64(n)
		c.LastRead = l.Now
		if l.Draining {
			return // input after Shutdown is read and dropped
		}
		t.tc.Feed(l.buf[:n])
		if t.ready {
			l.inputTLS(c, n)
		} else if t.tc.Buffered() > maxHandshakeInput {
			l.interest(c, false, c.Flags&connWriteOn != 0)
		}
	case n == 0 && err == nil:
		t.tc.FeedEOF()
		switch {
		case l.Draining:
			l.Close(c, nil)
		case t.ready:
			l.inputTLS(c, 0)
		default:
			// The handshake fails on the EOF with its own reason.
			l.interest(c, false, c.Flags&connWriteOn != 0)
		}
	case err == unix.EAGAIN || err == unix.EINTR:
	default:
		l.Close(c, os.NewSyscallError("read", err))
	}
}

// inputTLS decrypts what is fed, decodes and delivers the frames, and
// flushes the replies. The peer's close_notify (or its FIN at a record
// boundary) is the end of the stream, as a FIN is without TLS.
func (l *loop) inputTLS(c *conn, n int) {
	t := tlsOf(c)
	c.BeginCallbacks()
	c.Mu.Lock()
	c.St.BytesIn += int64(n)
	c.Mu.Unlock()
	delivered := 0
	for {
		held := c.Held() > 0
		dst := l.buf
		if held {
			dst = c.In.Room(l.SplitOf(c))
		}
		k, err := 0, error(nil)
		for k < len(dst) && err == nil {
			var m int
			m, err = t.tc.Read(dst[k:])
			k += m
		}
		if held {
			c.In.Commit(k)
		} else {
			l.In(c).Feed(l.SplitOf(c), dst[:k])
		}
		n, ferr := l.Dispatch(c, false)
		delivered += n
		if ferr != nil {
			l.Close(c, ferr)
			return
		}
		l.EndInput(c)
		if c.State == connstate.Closed {
			return
		}
		if c.Closing() || err == tlsloop.ErrWouldBlock {
			break
		}
		if err == io.EOF {
			l.eof(c)
			return
		}
		if err != nil {
			l.Close(c, err)
			return
		}
	}
	l.FrameCheck(c, delivered > 0)
	l.Flush(c, int64(delivered))
}

// handshakeDone is taskTLSDone on the loop: open c, or close it with the
// handshake's reason after sending what explains it (an alert).
func (l *loop) handshakeDone(c *conn) {
	if c.State == connstate.Closed {
		return
	}
	t := tlsOf(c)
	if t.herr != nil {
		c.Mu.Lock()
		l.flushLocked(c)
		c.Mu.Unlock()
		l.Close(c, t.herr)
		return
	}
	s := l.s
	t.ready = true
	s.Stats.Handshakes.Add(1)
	c.LastRead = l.Now
	l.ArmIdle(c)
	c.BeginCallbacks()
	if !l.Open(c) {
		return // OnOpen panicked; c is closed
	}
	// Records that arrived with the client's last flight are decrypted
	// now; inputTLS then flushes what OnOpen and the messages wrote.
	l.inputTLS(c, 0)
}

// handshakeOutput is taskTLSOutput: send the flight the handshake wrote.
func (l *loop) handshakeOutput(c *conn) {
	if c.State == connstate.Closed {
		return
	}
	c.Mu.Lock()
	l.flushUnlock(c)
}

// sealLocked moves c's plaintext into ciphertext and returns the outbox
// to write from. c.mu is held.
func (l *loop) sealLocked(c *conn) (*outbox.Outbox, error) {
	t := tlsOf(c)
	t.takeOutput()
	if !t.ready {
		return &t.out, nil
	}
	for c.Out.Len() > 0 && t.out.Len() < sealAhead {
		b, _ := c.Out.Head()
		b = b[:min(len(b), sealPiece)]
		dst, err := t.tc.Seal(t.out.Reserve(len(b)+sealSlack), b)
		t.out.Commit(dst)
		if err != nil {
			return &t.out, err
		}
		c.Out.Consume(len(b))
	}
	if c.Out.Len() == 0 && c.State == connstate.ShuttingWrite && !t.notify {
		t.notify = true
		t.tc.CloseWrite()
		t.takeOutput()
	}
	return &t.out, nil
}

// flushTLSLocked seals and writes until the plaintext is gone or the
// socket is full. c.mu is held.
func (l *loop) flushTLSLocked(c *conn) error {
	for {
		o, err := l.sealLocked(c)
		if err != nil {
			return err
		}
		if err := l.writeLocked(c, o); err != nil {
			return err
		}
		if o.Len() > 0 || c.Out.Len() == 0 || !tlsOf(c).ready {
			return nil
		}
	}
}

// takeOutput queues what the TLS state has to send: handshake flights,
// alerts, key updates, close_notify.
func (t *tlsConn) takeOutput() {
	if b := t.tc.Output(nil); len(b) > 0 {
		t.out.Commit(append(t.out.Reserve(len(b)), b...))
	}
}

// pending is what settle weighs: the ciphertext, and the plaintext once
// it can be sealed (before that it is held, and neither wants the socket
// nor pauses reading).
func (t *tlsConn) pending(plain int) int {
	if !t.ready {
		return t.out.Len()
	}
	return plain + t.out.Len()
}

// closeTLS ends c's TLS state as c closes, sending close_notify when the
// stream is at a record boundary. c.mu is held.
func (l *loop) closeTLS(c *conn) {
	t := tlsOf(c)
	clean := t.ready && t.out.Len() == 0
	t.tc.Close()
	if b := t.tc.Output(nil); clean && len(b) > 0 {
		rawio.Write(int(c.Fd), b) // best effort: the socket closes next
	}
	t.out.Release()
}

// ConnectionState is the TLSEngine hook behind conn.ConnectionState.
func (l *loop) ConnectionState(c *conn) (tls.ConnectionState, bool) {
	c.Mu.Lock()
	t, _ := c.EngineState().(*tlsConn)
	c.Mu.Unlock()
	if t == nil {
		return tls.ConnectionState{}, false
	}
	return t.tc.ConnectionState()
}

// HandshakePending reports whether c is a TLS connection still in its
// handshake, which a drain closes at once.
func (l *loop) HandshakePending(c *conn) bool { return c.Flags&connTLS != 0 && !tlsOf(c).ready }

// tlsOf is c's TLS layer; c has one (connTLS). On the loop.
func tlsOf(c *conn) *tlsConn { return c.EngineState().(*tlsConn) }
