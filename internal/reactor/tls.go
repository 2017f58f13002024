//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"crypto/tls"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"switchboard/internal/connstate"
	"switchboard/internal/outbox"
	"switchboard/internal/rawio"
	"switchboard/internal/tlsloop"
)

// TLS on the loop, driven as internal/tlsloop documents; the rules shared
// with the io_uring engine (what is sealed when, what counts as pending,
// where plaintext lands) are tlsloop.Session's. A TLS connection has a
// tlsConn (conn.tls, nil for every other connection, so plaintext pays
// one nil check where the paths part):
//
//   - readable: ciphertext is read into the loop buffer and fed to the TLS
//     state, which copies it; the loop buffer then takes the plaintext
//     Read returns, which the Accumulator decodes in place as it would a
//     plaintext read (Session.Decrypt).
//   - Write is unchanged: it frames plaintext into conn.out from any
//     goroutine. The flush, on the loop, seals conn.out into the
//     session's Out (ciphertext) and writes that (Session.Seal). The
//     connection's Stats count the plaintext, as the handler sees it;
//     the server's byte counters count the socket's.
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
	tlsloop.Session // Out is under c.mu like c.out
	c               *conn
}

// Output and HandshakeDone are tlsloop.Events, called on the handshake's
// goroutines; they post to the loop and return.
func (t *tlsConn) Output() { t.c.l.post(task{kind: taskTLSOutput, c: t.c}) }

func (t *tlsConn) HandshakeDone(err error) {
	t.Err = err
	t.c.l.post(task{kind: taskTLSDone, c: t.c})
}

// startTLS begins c's handshake: at accept, or once its PROXY header is
// parsed, when rest is what followed the header.
func (l *loop) startTLS(c *conn, rest []byte) {
	t := &tlsConn{c: c}
	c.tls = t
	c.state = connstate.Header
	l.disarm(c, timerIdle) // the handshake timeout is tlsloop's
	if len(rest) > 0 {
		// Counted with the PROXY header as received; the session counts
		// it again as the plaintext it decrypts to.
		c.mu.Lock()
		c.st.BytesIn -= int64(len(rest))
		c.mu.Unlock()
	}
	t.Start(l.s.tls, t, rest)
}

// readableTLS is readable for a TLS connection.
func (l *loop) readableTLS(c *conn) {
	tc := c.tls.Conn()
	n, err := rawio.Read(int(c.fd), l.buf)
	switch {
	case n > 0:
		l.bytesIn += int64(n)
		c.lastRead = l.now
		if l.draining {
			return // input after Shutdown is read and dropped
		}
		tc.Feed(l.buf[:n])
		if c.tls.Ready {
			l.inputTLS(c)
		} else if tc.Buffered() > tlsloop.MaxHandshakeInput {
			l.interest(c, false, c.flags&connWriteOn != 0)
		}
	case n == 0 && err == nil:
		tc.FeedEOF()
		switch {
		case l.draining:
			l.closeConn(c, nil)
		case c.tls.Ready:
			l.inputTLS(c)
		default:
			// The handshake fails on the EOF with its own reason.
			l.interest(c, false, c.flags&connWriteOn != 0)
		}
	case err == unix.EAGAIN || err == unix.EINTR:
	default:
		l.closeConn(c, os.NewSyscallError("read", err))
	}
}

// inputTLS decrypts what is fed, decodes and delivers the frames, and
// flushes the replies. The peer's close_notify (or its FIN at a record
// boundary) is the end of the stream, as a FIN is without TLS. The bytes
// counted in are plaintext, as the handler sees them.
func (l *loop) inputTLS(c *conn) {
	c.mu.Lock()
	c.sched = true
	c.mu.Unlock()
	delivered := 0
	for {
		k, err := c.tls.Decrypt(&c.in, l.splitOf(c), l.buf)
		if k > 0 {
			c.mu.Lock()
			c.st.BytesIn += int64(k)
			c.mu.Unlock()
		}
		n, ferr := l.dispatch(c, false)
		delivered += n
		if ferr != nil {
			l.closeConn(c, ferr)
			return
		}
		c.in.Done(l.splitOf(c))
		if c.state == connstate.Closed {
			return
		}
		if c.req.Load()&(reqClose|reqSlow) != 0 || err == tlsloop.ErrWouldBlock {
			break
		}
		if err == io.EOF {
			l.eof(c)
			return
		}
		if err != nil {
			l.closeConn(c, err)
			return
		}
	}
	if l.s.frameTO > 0 {
		l.frameCheck(c, delivered > 0)
	}
	l.afterDispatch(c, int64(delivered))
}

// handshakeDone is taskTLSDone on the loop: open c, or close it with the
// handshake's reason after sending what explains it (an alert).
func (l *loop) handshakeDone(c *conn) {
	if c.state == connstate.Closed {
		return
	}
	t := c.tls
	if t.Err != nil {
		c.mu.Lock()
		l.flushLocked(c)
		c.mu.Unlock()
		l.closeConn(c, t.Err)
		return
	}
	s := l.s
	t.SetReady()
	s.stats.Handshakes.Add(1)
	c.lastRead = l.now
	if idle := c.idle.Load(); idle > 0 {
		l.arm(c, timerIdle, l.now+idle)
	}
	c.mu.Lock()
	c.sched = true
	c.mu.Unlock()
	if !l.open(c) {
		return // OnOpen panicked; c is closed
	}
	// Records that arrived with the client's last flight are decrypted
	// now; inputTLS then flushes what OnOpen and the messages wrote.
	l.inputTLS(c)
}

// handshakeOutput is taskTLSOutput: send the flight the handshake wrote.
func (l *loop) handshakeOutput(c *conn) {
	if c.state == connstate.Closed {
		return
	}
	c.mu.Lock()
	l.flushUnlock(c)
}

// sealLocked moves c's plaintext into ciphertext and returns the outbox
// to write from. The plaintext sealed is what counts as sent: the
// handler's bytes, not the records'. c.mu is held.
func (l *loop) sealLocked(c *conn) (*outbox.Outbox, error) {
	t := c.tls
	n, err := t.Seal(&c.out, c.state == connstate.ShuttingWrite)
	c.st.BytesOut += int64(n)
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
		if o.Len() > 0 || c.out.Len() == 0 || !c.tls.Ready {
			return nil
		}
	}
}

// closeTLS ends c's TLS state as c closes, sending close_notify when the
// stream is at a record boundary. c.mu is held.
func (l *loop) closeTLS(c *conn) {
	if b := c.tls.Close(); len(b) > 0 {
		rawio.Write(int(c.fd), b) // best effort: the socket closes next
	}
	c.tls.Out.Release()
}

// ConnectionState returns the negotiated TLS parameters; ok is false for
// a connection without TLS, or before its handshake.
func (c *conn) ConnectionState() (tls.ConnectionState, bool) {
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	return c.tls.ConnectionState()
}
