//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"io"
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/loopconn"
	"switchboard/internal/outbox"
	"switchboard/internal/rawio"
	"switchboard/internal/tlsloop"
)

// TLS on the loop, driven as internal/tlsloop documents; the rules shared
// with the io_uring engine (what is sealed when, what counts as pending,
// where plaintext lands) are tlsloop.Session's. A TLS connection has a
// tlsConn, kept by the core as the connection's engine state (tlsOf) and
// flagged connTLS, so plaintext pays one flag test where the paths part:
//
//   - readable: ciphertext is read into the loop buffer and fed to the TLS
//     state, which copies it; the loop buffer then takes the plaintext
//     Read returns, which the Accumulator decodes in place as it would a
//     plaintext read (Session.Decrypt).
//   - Write is unchanged: it frames plaintext into conn.Out from any
//     goroutine. The flush, on the loop, seals conn.Out into the
//     session's Out (ciphertext) and writes that (Session.Seal). The
//     connection's Stats count the plaintext, as the handler sees it;
//     the server's byte counters count the socket's.
//   - The handshake runs on tlsloop's goroutine, bounded by the handshake
//     timeout and the server's Limiter; it reports through the loop's
//     queue (loopconn.TLSEvents). OnOpen runs when it succeeds;
//     until then the connection is in connstate.Header, the state in
//     which the handler has not heard of it, with no idle timer.
//   - Half-close: once the plaintext is flushed in ShuttingWrite,
//     close_notify is queued; the FIN follows it when settle finds the
//     ciphertext flushed. A full close sends close_notify only when no
//     record is half-written.
type tlsConn struct {
	tlsloop.Session // Out is under c.Mu like c.Out
	ev              loopconn.TLSEvents[connIO]
}

// StartTLS begins c's handshake: at accept, or once its PROXY header is
// parsed, when rest is what followed the header.
func (l *loop) StartTLS(c *conn, rest []byte) {
	t := new(tlsConn)
	c.SetEngineState(t)
	c.Flags |= connTLS
	l.StartSession(c, &t.Session, &t.ev, l.s.tls, rest)
}

// readableTLS is readable for a TLS connection.
func (l *loop) readableTLS(c *conn) {
	t := tlsOf(c)
	tc := t.Conn()
	n, err := rawio.Read(int(c.Fd), l.buf)
	switch {
	case n > 0:
		l.BytesIn += int64(n)
		c.LastRead = l.Now
		if l.Draining {
			return // input after Shutdown is read and dropped
		}
		tc.Feed(l.buf[:n])
		if t.Ready {
			l.inputTLS(c)
		} else if tc.Buffered() > tlsloop.MaxHandshakeInput {
			l.interest(c, false, c.Flags&connWriteOn != 0)
		}
	case n == 0 && err == nil:
		tc.FeedEOF()
		switch {
		case l.Draining:
			l.Close(c, nil)
		case t.Ready:
			l.inputTLS(c)
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
// boundary) is the end of the stream, as a FIN is without TLS. The bytes
// counted in are the plaintext, as the handler sees them.
func (l *loop) inputTLS(c *conn) {
	c.BeginCallbacks()
	delivered := 0
	for {
		k, err := tlsOf(c).Decrypt(l.In(c), l.SplitOf(c), l.buf)
		c.CountIn(k)
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
		if err == io.EOF && c.State.Reading() {
			l.eof(c) // delivers the rest with atEOF, and flushes
			return
		}
		if err == io.EOF {
			break // the end seen again: nothing new, but flush the batch
		}
		if err != nil {
			l.Close(c, err)
			return
		}
	}
	l.FrameCheck(c, delivered > 0)
	l.Flush(c, int64(delivered))
}

// HandshakeDone is the loopconn.TLSEngine hook (TaskTLSDone): open c, or
// close it with the handshake's reason after sending what explains it
// (an alert).
func (l *loop) HandshakeDone(c *conn) {
	t := tlsOf(c)
	if t.Err != nil {
		c.Mu.Lock()
		l.flushLocked(c)
		c.Mu.Unlock()
		l.Close(c, t.Err)
		return
	}
	t.SetReady()
	if !l.OpenTLS(c) {
		return // OnOpen panicked; c is closed
	}
	// Records that arrived with the client's last flight are decrypted
	// now; inputTLS then flushes what OnOpen and the messages wrote.
	l.inputTLS(c)
}

// HandshakeOutput is the loopconn.TLSEngine hook (TaskTLSOutput): send
// the flight the handshake wrote.
func (l *loop) HandshakeOutput(c *conn) {
	c.Mu.Lock()
	l.flushUnlock(c)
}

// sealLocked moves c's plaintext into ciphertext and returns the outbox
// to write from. The plaintext sealed is what counts as sent. c.Mu is
// held.
func (l *loop) sealLocked(c *conn) (*outbox.Outbox, error) {
	t := tlsOf(c)
	n, err := t.Seal(&c.Out, c.State == connstate.ShuttingWrite)
	c.St.BytesOut += int64(n)
	return &t.Out, err
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
		if o.Len() > 0 || c.Out.Len() == 0 || !tlsOf(c).Ready {
			return nil
		}
	}
}

// closeTLS ends c's TLS state as c closes, sending close_notify when the
// stream is at a record boundary. c.Mu is held.
func (l *loop) closeTLS(c *conn) {
	if b := tlsOf(c).Close(); len(b) > 0 {
		rawio.Write(int(c.Fd), b) // best effort: the socket closes next
	}
	tlsOf(c).Out.Release()
}

// tlsOf is c's TLS layer; c has one (connTLS). On the loop.
func tlsOf(c *conn) *tlsConn { return c.EngineState().(*tlsConn) }
