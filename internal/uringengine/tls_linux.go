package uringengine

import (
	"io"

	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/loopconn"
	"switchboard/internal/rawio"
	"switchboard/internal/tlsloop"
)

// TLS on the ring, with the rules the reactor follows (tlsloop.Session):
// only the way bytes move differs. A TLS connection has a tlsConn
// (the core's engine state for it, tlsOf, flagged connTLS: one flag test where the paths part).
//
//   - Receive: each provided buffer's ciphertext is fed to the TLS state,
//     which copies it, and the buffer is recycled at once as for
//     plaintext. Once the handshake is done the plaintext is decrypted
//     into the loop's plaintext buffer and decoded in place by the
//     Accumulator (Session.Decrypt). While reading is paused the
//     ciphertext waits, fed and undecrypted, in the TLS state, which
//     plays the part c.IO.held plays for plaintext.
//   - Send: Write frames plaintext into conn.Out as ever; wherever the
//     loop weighs the output (after a batch, at a send's completion) it
//     seals what it may into the session's Out, and the one send in
//     flight goes from there. Conn.Stats counts plaintext.
//   - The handshake runs on tlsloop's goroutine, bounded by the
//     handshake timeout and the server's Limiter, and reports through the
//     loop's queue (loopconn.TLSEvents), which wakes the ring.
//     Until it succeeds the connection is in connstate.Header, unknown to
//     the handler and without an idle timer; past
//     tlsloop.MaxHandshakeInput unread bytes, or after the peer's FIN,
//     its receive stays unarmed (connTLSHold).
//   - Half-close and drain: close_notify is sealed behind the last
//     plaintext, and the FIN follows once it is sent; a full close writes
//     close_notify directly, best effort, when nothing is half-sent.
type tlsConn struct {
	tlsloop.Session // Out is under c.Mu like c.Out
	ev              loopconn.TLSEvents[connIO]
	eof             bool // the peer's FIN has been fed: never receive again
}

// Held reports whether c has received input it has not decrypted: the
// ciphertext fed while reading was paused, or the FIN behind it.
func (t *tlsConn) Held() bool { return t.Ready && (t.Conn().Buffered() > 0 || t.eof) }

// StartTLS is the loopconn.TLSEngine hook: c's handshake begins, at
// adoption or once its PROXY header is parsed, when rest is what followed
// the header.
func (l *loop) StartTLS(c *conn, rest []byte) {
	t := new(tlsConn)
	c.SetEngineState(t)
	c.Flags |= connTLS
	l.StartSession(c, &t.Session, &t.ev, l.s.tls, rest)
}

// bufferTLS takes one received buffer of ciphertext for c.
func (l *loop) bufferTLS(c *conn, data []byte) {
	t := tlsOf(c)
	c.LastRead = l.Now
	tc := t.Conn()
	tc.Feed(data)
	switch {
	case !t.Ready:
		if tc.Buffered() > tlsloop.MaxHandshakeInput {
			l.holdTLS(c)
		}
	case c.Flags&loopconn.FlagPaused == 0:
		l.inputTLS(c)
	}
}

// eofTLS is the peer's FIN on a TLS connection. Before the handshake is
// done, the handshake fails on it with its own reason; after, Read
// reports it where the stream ends (io.EOF at a record boundary, an
// error inside one).
func (l *loop) eofTLS(c *conn) {
	t := tlsOf(c)
	t.Conn().FeedEOF()
	t.eof = true
	l.holdTLS(c)
	switch {
	case l.Draining:
		l.Close(c, nil)
	case t.Ready && c.Flags&loopconn.FlagPaused == 0:
		l.inputTLS(c)
	}
}

// holdTLS stops receiving for c until releaseTLS.
func (l *loop) holdTLS(c *conn) {
	c.Flags |= connTLSHold
	l.cancelRecv(c)
}

// releaseTLS lets c receive again unless its peer has shut down.
func (l *loop) releaseTLS(c *conn) {
	if c.Flags&connTLSHold == 0 || tlsOf(c).eof {
		return
	}
	c.Flags &^= connTLSHold
	if c.Flags&connRecv == 0 && l.receiving(c) {
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
		c.BeginCallbacks()
		if !l.decryptTLS(c) || c.Flags&loopconn.FlagPaused != 0 {
			return
		}
	}
}

// decryptTLS is one round of inputTLS: at most a buffer of plaintext,
// delivered and settled. It reports whether another round may find more.
func (l *loop) decryptTLS(c *conn) bool {
	k, err := tlsOf(c).Decrypt(l.In(c), l.SplitOf(c), l.pbuf)
	c.CountIn(k)
	delivered, ferr := l.Dispatch(c, false)
	if ferr != nil {
		l.Close(c, ferr)
		return false
	}
	l.EndInput(c)
	more := false
	switch {
	case c.State == connstate.Closed:
		return false
	case c.Closing(), err == tlsloop.ErrWouldBlock:
	case err == io.EOF && c.State.Reading():
		l.eof(c) // delivers the rest with atEOF, and flushes
		return false
	case err == io.EOF:
		// The end seen again (the FIN behind a close_notify): nothing
		// new, but the batch begun must still end in a flush, or later
		// Writes would not wake the loop.
	case err != nil:
		l.Close(c, err)
		return false
	default:
		more = true // the buffer is full: settle before the next round
	}
	l.FrameCheck(c, delivered > 0)
	l.Flush(c, int64(delivered))
	return more && c.State != connstate.Closed
}

// HandshakeDone is the loopconn.TLSEngine hook (TaskTLSDone): open c, or
// close it with the handshake's reason after writing what explains it
// (an alert), best effort.
func (l *loop) HandshakeDone(c *conn) {
	t := tlsOf(c)
	if t.Err != nil {
		c.Mu.Lock()
		t.TakeOutput()
		if c.Flags&connSending == 0 {
			for t.Out.Len() > 0 {
				b, _ := t.Out.Head()
				n, _ := rawio.Write(int(c.Fd), b)
				if n <= 0 {
					break
				}
				t.Out.Consume(n)
			}
		}
		c.Mu.Unlock()
		l.Close(c, t.Err)
		return
	}
	t.SetReady()
	l.releaseTLS(c)
	if !l.OpenTLS(c) {
		return // OnOpen panicked; c is closed
	}
	// Records that came with the client's last flight are decrypted now;
	// inputTLS then settles what OnOpen and the messages wrote.
	l.inputTLS(c)
}

// HandshakeOutput is the loopconn.TLSEngine hook (TaskTLSOutput): send
// the flight the handshake wrote; a connection held for its unread input
// reads again, since the client answers this flight.
func (l *loop) HandshakeOutput(c *conn) {
	l.releaseTLS(c)
	l.Flush(c, 0)
}

// sealLocked seals what c's plaintext outbox may give the session and
// returns what counts as pending. c.Mu is held.
func (l *loop) sealLocked(c *conn) (int, error) {
	t := tlsOf(c)
	n, err := t.Seal(&c.Out, c.State == connstate.ShuttingWrite)
	c.St.BytesOut += int64(n)
	return t.Pending(c.Out.Len()), err
}

// closeTLS ends c's TLS state as c closes: close_notify goes out now when
// nothing is half-sent, and the ciphertext is released unless a send of
// it is in flight (retire releases it then). c.Mu is held.
func (l *loop) closeTLS(c *conn) {
	t := tlsOf(c)
	if b := t.Close(); len(b) > 0 && c.Flags&connSending == 0 {
		rawio.Write(int(c.Fd), b) // best effort: the descriptor closes next
	}
	if c.Flags&connSending == 0 {
		t.Out.Release()
	}
}

// tlsOf is c's TLS layer; c has one (connTLS). On the loop.
func tlsOf(c *conn) *tlsConn { return c.EngineState().(*tlsConn) }
