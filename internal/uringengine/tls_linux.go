package uringengine

import (
	"crypto/tls"
	"io"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/rawio"
	"switchboard/internal/tlsloop"
)

// TLS on the ring, with the rules the reactor follows (tlsloop.Session):
// only the way bytes move differs. A TLS connection has a tlsConn
// (conn.tls; nil otherwise, one nil check where the paths part).
//
//   - Receive: each provided buffer's ciphertext is fed to the TLS state,
//     which copies it, and the buffer is recycled at once as for
//     plaintext. Once the handshake is done the plaintext is decrypted
//     into the loop's plaintext buffer and decoded in place by the
//     Accumulator (Session.Decrypt). While reading is paused the
//     ciphertext waits, fed and undecrypted, in the TLS state, which
//     plays the part c.held plays for plaintext.
//   - Send: Write frames plaintext into conn.out as ever; wherever the
//     loop weighs the output (after a batch, at a send's completion) it
//     seals what it may into the session's Out, and the one send in
//     flight goes from there. Conn.Stats counts plaintext.
//   - The handshake runs on tlsloop's goroutine, bounded by the
//     handshake timeout and the server's Limiter, and reports through the
//     loop's queue (taskTLSOutput, taskTLSDone), which wakes the ring.
//     Until it succeeds the connection is in connstate.Header, unknown to
//     the handler and without an idle timer; past
//     tlsloop.MaxHandshakeInput unread bytes, or after the peer's FIN,
//     its receive stays unarmed (connTLSHold).
//   - Half-close and drain: close_notify is sealed behind the last
//     plaintext, and the FIN follows once it is sent; a full close writes
//     close_notify directly, best effort, when nothing is half-sent.
type tlsConn struct {
	tlsloop.Session // Out is under c.mu like c.out
	c               *conn
	eof             bool // the peer's FIN has been fed: never receive again
}

// Output and HandshakeDone are tlsloop.Events, called on the handshake's
// goroutines; they post to the loop and return.
func (t *tlsConn) Output() { t.c.l.post(task{kind: taskTLSOutput, c: t.c}) }

func (t *tlsConn) HandshakeDone(err error) {
	t.Err = err
	t.c.l.post(task{kind: taskTLSDone, c: t.c})
}

// Held reports whether c has received input it has not decrypted: the
// ciphertext fed while reading was paused, or the FIN behind it.
func (t *tlsConn) Held() bool { return t.Ready && (t.Conn().Buffered() > 0 || t.eof) }

// startTLS begins c's handshake: at adoption, or once its PROXY header
// is parsed, when rest is what followed the header.
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

// bufferTLS takes one received buffer of ciphertext for c.
func (l *loop) bufferTLS(c *conn, data []byte) {
	t := c.tls
	c.lastRead = l.now
	tc := t.Conn()
	tc.Feed(data)
	switch {
	case !t.Ready:
		if tc.Buffered() > tlsloop.MaxHandshakeInput {
			l.holdTLS(c)
		}
	case c.flags&connPaused == 0:
		l.inputTLS(c)
	}
}

// eofTLS is the peer's FIN on a TLS connection. Before the handshake is
// done, the handshake fails on it with its own reason; after, Read
// reports it where the stream ends (io.EOF at a record boundary, an
// error inside one).
func (l *loop) eofTLS(c *conn) {
	t := c.tls
	t.Conn().FeedEOF()
	t.eof = true
	l.holdTLS(c)
	switch {
	case l.draining:
		l.closeConn(c, nil)
	case t.Ready && c.flags&connPaused == 0:
		l.inputTLS(c)
	}
}

// holdTLS stops receiving for c until releaseTLS.
func (l *loop) holdTLS(c *conn) {
	c.flags |= connTLSHold
	l.cancelRecv(c)
}

// releaseTLS lets c receive again unless its peer has shut down.
func (l *loop) releaseTLS(c *conn) {
	if c.flags&connTLSHold == 0 || c.tls.eof {
		return
	}
	c.flags &^= connTLSHold
	if c.flags&connRecv == 0 && l.wantRecv(c) {
		l.scheduleRearm(c)
	}
}

// inputTLS decrypts what is fed, decodes and delivers the frames, then
// settles c. It settles after each buffer's worth of plaintext and stops
// there once reading pauses (resume calls it again), as plaintext held
// in a pause is decoded a buffer at a time; the peer's close_notify (or
// its FIN at a record boundary) is the end of the stream, as a FIN is
// without TLS.
func (l *loop) inputTLS(c *conn) {
	if l.pbuf == nil {
		l.pbuf = make([]byte, engine.ReadBufferSize)
	}
	for {
		c.mu.Lock()
		c.sched = true
		c.mu.Unlock()
		if !l.decryptTLS(c) || c.flags&connPaused != 0 {
			return
		}
	}
}

// decryptTLS is one round of inputTLS: at most a buffer of plaintext,
// delivered and settled. It reports whether another round may find more.
func (l *loop) decryptTLS(c *conn) bool {
	k, err := c.tls.Decrypt(&c.in, l.splitOf(c), l.pbuf)
	if k > 0 {
		c.mu.Lock()
		c.st.BytesIn += int64(k)
		c.mu.Unlock()
	}
	delivered, ferr := l.dispatch(c, false)
	if ferr != nil {
		l.closeConn(c, ferr)
		return false
	}
	c.in.Done(l.splitOf(c))
	more := false
	switch {
	case c.state == connstate.Closed:
		return false
	case c.req.Load()&(reqClose|reqSlow) != 0, err == tlsloop.ErrWouldBlock:
	case err == io.EOF:
		l.eof(c)
		return false
	case err != nil:
		l.closeConn(c, err)
		return false
	default:
		more = true // the buffer is full: settle before the next round
	}
	if l.s.frameTO > 0 {
		l.frameCheck(c, delivered > 0)
	}
	l.afterDispatch(c, int64(delivered))
	return more && c.state != connstate.Closed
}

// handshakeDone is taskTLSDone: open c, or close it with the handshake's
// reason after writing what explains it (an alert), best effort.
func (l *loop) handshakeDone(c *conn) {
	if c.state == connstate.Closed {
		return
	}
	t := c.tls
	if t.Err != nil {
		c.mu.Lock()
		t.TakeOutput()
		if c.flags&connSending == 0 {
			for t.Out.Len() > 0 {
				b, _ := t.Out.Head()
				n, _ := rawio.Write(int(c.fd), b)
				if n <= 0 {
					break
				}
				t.Out.Consume(n)
			}
		}
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
	l.releaseTLS(c)
	c.mu.Lock()
	c.sched = true
	c.mu.Unlock()
	if !l.open(c) {
		return // OnOpen panicked; c is closed
	}
	// Records that came with the client's last flight are decrypted now;
	// inputTLS then settles what OnOpen and the messages wrote.
	l.inputTLS(c)
}

// handshakeOutput is taskTLSOutput: send the flight the handshake wrote;
// a connection held for its unread input reads again, since the client
// answers this flight.
func (l *loop) handshakeOutput(c *conn) {
	if c.state == connstate.Closed {
		return
	}
	l.releaseTLS(c)
	l.afterDispatch(c, 0)
}

// sealLocked seals what c's plaintext outbox may give the session and
// returns what counts as pending. c.mu is held.
func (l *loop) sealLocked(c *conn) (int, error) {
	t := c.tls
	n, err := t.Seal(&c.out, c.state == connstate.ShuttingWrite)
	c.st.BytesOut += int64(n)
	return t.Pending(c.out.Len()), err
}

// closeTLS ends c's TLS state as c closes: close_notify goes out now when
// nothing is half-sent, and the ciphertext is released unless a send of
// it is in flight (retire releases it then). c.mu is held.
func (l *loop) closeTLS(c *conn) {
	t := c.tls
	if b := t.Close(); len(b) > 0 && c.flags&connSending == 0 {
		rawio.Write(int(c.fd), b) // best effort: the descriptor closes next
	}
	if c.flags&connSending == 0 {
		t.Out.Release()
	}
}

// ConnectionState returns the negotiated TLS parameters; ok is false for
// a connection without TLS, or before its handshake.
func (c *conn) ConnectionState() (tls.ConnectionState, bool) {
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	return c.tls.ConnectionState()
}
