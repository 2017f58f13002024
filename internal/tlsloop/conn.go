// Package tlsloop runs TLS for an event loop with the standard library's
// crypto/tls, unforked.
//
// A Conn puts a tls.Conn over a small in-memory net.Conn that the loop
// feeds. The record layer runs on the loop and never blocks: Feed hands it
// the ciphertext read from the socket, Read returns what that decrypts to
// (ErrWouldBlock when a record is still incomplete), Seal appends the
// ciphertext of plaintext to the loop's outbox. This rests on a property
// of crypto/tls's record reader: an error from the underlying conn that is
// a temporary net.Error is returned to the caller but not kept as the
// connection's error, so a later Read resumes where the record left off.
// The in-memory conn hands crypto/tls one record at a time, so Read knows
// without asking it when no record can be complete, and crypto/tls never
// buffers more than the record in hand.
//
// The handshake's errors are sticky, so it cannot be resumed that way: it
// runs on a short-lived goroutine, bounded by a timeout and by a Limiter
// on concurrent handshakes. The loop keeps reading the socket and feeding
// bytes while it runs; the goroutine consumes them, and tells the loop
// through Events when it has output to send and when it is done.
//
// An engine drives a server connection like this:
//
//	accept:           c := tlsloop.Server(cfg, ev); c.Start()
//	readable:         n := read(fd, scratch); c.Feed(scratch[:n])   // c.FeedEOF() on EOF
//	                  then, once the handshake is done, Read until ErrWouldBlock;
//	                  then outbox = c.Output(outbox) and send it
//	ev.Output():      (posted to the loop) outbox = c.Output(outbox); send
//	ev.HandshakeDone: (posted to the loop) outbox = c.Output(outbox); send;
//	                  on error close the socket; else Read until ErrWouldBlock
//	write:            outbox, err = c.Seal(outbox, plaintext)
//	half-close:       c.CloseWrite(); outbox = c.Output(outbox); send; shutdown(SHUT_WR)
//	close:            c.Close(); outbox = c.Output(outbox); best-effort send; close(fd)
//
// Read returning io.EOF means the peer sent close_notify (or, as crypto/tls
// accepts, closed the socket at a record boundary).
package tlsloop

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// DefaultHandshakeTimeout bounds a handshake, including any wait for a
// Limiter slot, when Config.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// ErrHandshake is wrapped by every handshake failure: a timeout, a peer
// that is not speaking TLS, a refused certificate, a closed connection.
var ErrHandshake = errors.New("tls handshake")

// ErrWouldBlock is returned by Read when no whole record has arrived, and
// by Read and Seal while the handshake runs. It is not sticky: retry after
// Feed, or after Events.HandshakeDone.
var ErrWouldBlock = errors.New("tlsloop: would block")

// Config is shared by the connections of one listener (or dialer).
type Config struct {
	// TLS is the crypto/tls configuration: certificates, client
	// authentication (ClientAuth, ClientCAs), versions, ALPN.
	TLS *tls.Config
	// HandshakeTimeout bounds each handshake from Start, the wait for a
	// Limiter slot included. 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Limiter, when not nil, bounds how many handshakes run at once.
	Limiter *Limiter
}

func (cfg *Config) timeout() time.Duration {
	if cfg.HandshakeTimeout > 0 {
		return cfg.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// Events receives what a Conn has to tell its loop from other goroutines
// (the handshake's and its timer's). Neither method is called on the
// loop's goroutine, and neither may block: an engine posts a task to its
// loop and returns.
type Events interface {
	// Output says the handshake has ciphertext waiting: the loop should
	// call Output and send it. It is called when the pending output goes
	// from none to some, so one call may stand for several flights.
	Output()
	// HandshakeDone is called exactly once after Start. With a nil error
	// the connection is ready; otherwise the error wraps ErrHandshake and
	// the connection should be closed (after sending Output: an alert may
	// explain the failure to the peer).
	HandshakeDone(err error)
}

// Conn states.
const (
	stateNew int32 = iota
	stateQueued
	stateRunning
	stateReady
	stateFailed
)

// Conn is one TLS connection driven by an event loop. Its methods belong
// to the loop's goroutine (one goroutine at a time, in any case): once the
// handshake is over, the loop has the in-memory conn to itself and takes
// no lock.
type Conn struct {
	w   wire
	tc  *tls.Conn
	cfg *Config
	ev  Events

	// more is set while crypto/tls may hold plaintext or records that
	// Read has not asked for; until the first Read after the handshake,
	// say, which may find records the handshake read with its last.
	more bool

	state  atomic.Int32
	herr   error       // the handshake's error, set before state becomes stateFailed
	timer  *time.Timer // the handshake timeout, nil once it has ended
	closed atomic.Bool

	// Limiter queue links, guarded by the Limiter's mutex.
	qprev, qnext *Conn
	queued       bool
}

// Server returns the server side of a TLS connection. Nothing happens
// until Start.
func Server(cfg *Config, ev Events) *Conn {
	c := newConn(cfg, ev)
	c.tc = tls.Server(&c.w, cfg.TLS)
	return c
}

// Client returns the client side of a TLS connection; cfg.TLS needs
// ServerName or InsecureSkipVerify as for tls.Client. Nothing happens until
// Start.
func Client(cfg *Config, ev Events) *Conn {
	c := newConn(cfg, ev)
	c.tc = tls.Client(&c.w, cfg.TLS)
	return c
}

func newConn(cfg *Config, ev Events) *Conn {
	c := &Conn{cfg: cfg, ev: ev, more: true}
	c.w.cond.L = &c.w.mu
	c.w.onOutput = ev.Output
	return c
}

// Start begins the handshake: at once on its own goroutine, or when the
// Limiter has a slot. The timeout starts now. Call it once.
func (c *Conn) Start() {
	if !c.state.CompareAndSwap(stateNew, stateQueued) {
		panic("tlsloop: Start called twice")
	}
	c.w.setBlocking(true)
	c.timer = time.AfterFunc(c.cfg.timeout(), c.expire)
	run := true
	if lim := c.cfg.Limiter; lim != nil {
		var expired bool
		if run, expired = lim.acquire(c); expired {
			// The timer fired before the connection could even queue.
			c.w.endHandshake()
			go c.fail(c.slotTimeout())
			return
		}
	}
	if run {
		c.state.Store(stateRunning)
		go c.run()
	}
}

// run is the handshake goroutine.
func (c *Conn) run() {
	err := c.tc.Handshake()
	c.timer.Stop()
	c.w.endHandshake()
	if c.cfg.Limiter != nil {
		c.cfg.Limiter.release()
	}
	if err != nil {
		c.fail(c.handshakeError(err))
		return
	}
	c.timer = nil
	c.state.Store(stateReady)
	c.done(nil)
}

// done calls HandshakeDone and forgets the Events, which a Conn has no
// more use for: an idle connection keeps nothing of its handshake.
func (c *Conn) done(err error) {
	ev := c.ev
	c.ev = nil
	ev.HandshakeDone(err)
}

// granted is called by the Limiter, on a goroutine of its own, when a
// queued connection gets a slot.
func (c *Conn) granted() {
	c.state.Store(stateRunning)
	c.run()
}

func (c *Conn) fail(err error) {
	c.herr = err
	c.state.Store(stateFailed)
	c.done(err)
}

// expire is the handshake timer's function.
func (c *Conn) expire() {
	if lim := c.cfg.Limiter; lim != nil {
		if lim.expire(c) {
			c.w.endHandshake()
			c.fail(c.slotTimeout())
		}
		return
	}
	c.w.expire()
}

func (c *Conn) slotTimeout() error {
	return fmt.Errorf("%w: timed out after %v waiting for a handshake slot (%d running): %w",
		ErrHandshake, c.cfg.timeout(), c.cfg.Limiter.max, errExpired)
}

func (c *Conn) handshakeError(err error) error {
	switch {
	case c.closed.Load():
		return fmt.Errorf("%w: connection closed: %w", ErrHandshake, net.ErrClosed)
	case c.w.wasExpired():
		return fmt.Errorf("%w: timed out after %v: %w", ErrHandshake, c.cfg.timeout(), errExpired)
	}
	return HandshakeFailed(err)
}

// HandshakeFailed wraps crypto/tls's reason for a failed handshake in
// ErrHandshake, quoting a record header that is printable text: that is
// a peer speaking plaintext (an HTTP request, say) to a TLS port. The
// stream models, which run crypto/tls over a net.Conn, use it too.
func HandshakeFailed(err error) error {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && printable(rh.RecordHeader[:]) {
		return fmt.Errorf("%w: %w (plaintext %q)", ErrHandshake, err, rh.RecordHeader[:])
	}
	return fmt.Errorf("%w: %w", ErrHandshake, err)
}

func printable(b []byte) bool {
	for _, x := range b {
		if (x < ' ' || x > '~') && x != '\r' && x != '\n' && x != '\t' {
			return false
		}
	}
	return true
}

// Feed gives the connection ciphertext read from the socket. It copies p.
// During the handshake the handshake goroutine consumes it; afterwards,
// call Read.
func (c *Conn) Feed(p []byte) { c.w.feed(p) }

// FeedEOF says the peer has shut down its write half. Read returns io.EOF
// (io.ErrUnexpectedEOF inside a record) once the fed bytes are used up.
func (c *Conn) FeedEOF() { c.w.feedEOF() }

// Buffered returns how many fed bytes are not yet decrypted. An engine
// stops reading the socket while it is high, as it would for plaintext.
func (c *Conn) Buffered() int { return c.w.buffered() }

// Read decrypts fed ciphertext into p. It never blocks: with no whole
// record buffered, or while the handshake runs, it returns ErrWouldBlock.
// io.EOF means the peer's close_notify (or EOF at a record boundary);
// other errors, such as a record that fails authentication, are final.
// Read may queue output (a key update, an alert): call Output after it.
func (c *Conn) Read(p []byte) (int, error) {
	switch c.state.Load() {
	case stateReady:
	case stateFailed:
		return 0, c.herr
	default:
		return 0, ErrWouldBlock
	}
	if !c.more && !c.w.progress() {
		// Nothing crypto/tls could use: spare it the attempt.
		return 0, ErrWouldBlock
	}
	n, err := c.tc.Read(p)
	// A Read that filled p may have left plaintext of the same record;
	// one that did not has emptied it (crypto/tls returns one record's
	// data at most), and errors other than ErrWouldBlock are final, so
	// they are for crypto/tls to repeat.
	c.more = n == len(p) || (err != nil && err != errWouldBlock)
	if err == errWouldBlock {
		if n > 0 {
			// A partial alert after the data: crypto/tls looked ahead for
			// close_notify and found only part of a record.
			return n, nil
		}
		return 0, ErrWouldBlock
	}
	return n, err
}

// Seal encrypts p and appends the records, after any pending output, to
// dst. Before the handshake is done it returns dst and ErrWouldBlock (or
// the handshake's error); the engine holds writes until HandshakeDone.
func (c *Conn) Seal(dst, p []byte) ([]byte, error) {
	switch c.state.Load() {
	case stateReady:
	case stateFailed:
		return dst, c.herr
	default:
		return dst, ErrWouldBlock
	}
	c.w.sinkInto(dst)
	_, err := c.tc.Write(p)
	return c.w.takeSink(), err
}

// Output appends the ciphertext waiting to be sent (handshake flights,
// alerts, close_notify, key updates) to dst.
func (c *Conn) Output(dst []byte) []byte { return c.w.takeOutput(dst) }

// CloseWrite queues close_notify (send Output, then shut down the
// socket's write half); reading goes on. It fails before the handshake
// is done.
func (c *Conn) CloseWrite() error {
	if c.state.Load() != stateReady {
		return errors.New("tlsloop: CloseWrite before the handshake is done")
	}
	return c.tc.CloseWrite()
}

// Close queues close_notify if the handshake is done (send Output, best
// effort, before closing the socket) and releases the connection's
// buffers. A running handshake fails with an error wrapping net.ErrClosed;
// HandshakeDone is still called once.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.state.Load() == stateReady {
		err := c.tc.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		return err
	}
	c.w.Close()
	if lim := c.cfg.Limiter; lim != nil && lim.remove(c) {
		c.timer.Stop()
		go c.fail(fmt.Errorf("%w: connection closed: %w", ErrHandshake, net.ErrClosed))
	}
	return nil
}

// ConnectionState returns the negotiated parameters (version, cipher
// suite, ALPN protocol, SNI server name, peer certificates) once the
// handshake has succeeded; ok is false before.
func (c *Conn) ConnectionState() (cs tls.ConnectionState, ok bool) {
	if c.state.Load() != stateReady {
		return cs, false
	}
	return c.tc.ConnectionState(), true
}

// HandshakeDone reports whether the handshake has succeeded.
func (c *Conn) HandshakeDone() bool { return c.state.Load() == stateReady }
