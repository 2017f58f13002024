package tlsloop

import (
	"crypto/tls"
	"time"

	"switchboard/framing"
	"switchboard/internal/outbox"
)

// Session is what an event-loop engine keeps for one server connection
// that speaks TLS, whatever the engine's I/O: the Conn, the ciphertext
// waiting for the socket, and the rules that join them to the engine's
// plaintext outbox and frame loop. The engines (the readiness reactor
// and io_uring) differ only in how ciphertext reaches Feed and how Out
// reaches the socket; what is sealed when, what counts as pending, and
// where decrypted bytes land is decided here, once.
//
// Like Conn, a Session belongs to its loop, with one exception: Out is
// guarded by the lock the engine holds around its plaintext outbox, since
// both are touched where that lock is held.
type Session struct {
	tc *Conn
	// Out is the ciphertext sealed or written by the handshake and not
	// yet on the socket. An engine sends from it instead of its
	// plaintext outbox.
	Out outbox.Outbox
	// Err is the handshake's result. The engine's Events.HandshakeDone
	// stores it before posting to the loop (the post orders the two),
	// and the loop reads it there.
	Err error
	// Ready is set by the loop (SetReady) once it has seen the
	// handshake succeed: plaintext may be sealed and decrypted.
	Ready bool
	// notify: close_notify is queued (a half-close or a drain).
	notify bool
}

// Sealing and buffering bounds shared by the engines.
const (
	// SealAhead bounds the ciphertext sealed and not yet sent, which an
	// engine's limit on pending plaintext does not see: two full
	// records. A stuck peer's backlog stays plaintext, under that limit.
	SealAhead = 32 << 10
	// sealPiece is the most plaintext sealed at once: one full record,
	// so a pooled chunk holds its ciphertext.
	sealPiece = 16 << 10
	// sealSlack covers record overhead on sealPiece bytes: headers,
	// tags, and the small records crypto/tls starts a connection with.
	sealSlack = 1 << 10
	// MaxHandshakeInput is how much unread ciphertext a connection may
	// buffer during its handshake before its engine stops reading it: a
	// client's records sent right behind its Finished, or a flood. The
	// handshake goroutine reads what arrives as it arrives, and reading
	// resumes with the next flight the server sends or the handshake's
	// end, so only a client whose last flight alone passed this (a
	// certificate chain over 64 KiB) would wait for its timeout.
	MaxHandshakeInput = 64 << 10
)

// NewServerConfig is the Config an engine's listeners share: tc with the
// handshake timeout and a Limiter of maxHandshakes slots.
func NewServerConfig(tc *tls.Config, timeout time.Duration, maxHandshakes int) (*Config, error) {
	lim, err := NewLimiter(maxHandshakes)
	if err != nil {
		return nil, err
	}
	return &Config{TLS: tc, HandshakeTimeout: timeout, Limiter: lim}, nil
}

// Start begins the server handshake, feeding rest first: what followed a
// PROXY header in the same read, say.
func (s *Session) Start(cfg *Config, ev Events, rest []byte) {
	s.tc = Server(cfg, ev)
	s.tc.Start()
	if len(rest) > 0 {
		s.tc.Feed(rest)
	}
}

// Conn is the connection's TLS state, for Feed and FeedEOF.
func (s *Session) Conn() *Conn { return s.tc }

// SetReady records, on the loop, that the handshake has succeeded.
func (s *Session) SetReady() { s.Ready = true }

// TakeOutput queues what the TLS state has to send (handshake flights,
// alerts, key updates, close_notify) on Out. Under the outbox lock.
func (s *Session) TakeOutput() {
	if b := s.tc.Output(nil); len(b) > 0 {
		s.Out.Commit(append(s.Out.Reserve(len(b)), b...))
	}
}

// Seal moves plaintext from plain into Out, at most SealAhead ahead of
// the socket, and returns how many plaintext bytes it took. Before the
// handshake is done it only takes the TLS state's own output: writes
// wait as plaintext. Once plain is empty and shutWrite is set (the
// engine is half-closing, or draining), close_notify is queued after it,
// once. Under the outbox lock.
func (s *Session) Seal(plain *outbox.Outbox, shutWrite bool) (int, error) {
	s.TakeOutput()
	if !s.Ready {
		return 0, nil
	}
	sealed := 0
	for plain.Len() > 0 && s.Out.Len() < SealAhead {
		b, _ := plain.Head()
		b = b[:min(len(b), sealPiece)]
		dst, err := s.tc.Seal(s.Out.Reserve(len(b)+sealSlack), b)
		s.Out.Commit(dst)
		if err != nil {
			return sealed, err
		}
		plain.Consume(len(b))
		sealed += len(b)
	}
	if plain.Len() == 0 && shutWrite && !s.notify {
		s.notify = true
		s.tc.CloseWrite()
		s.TakeOutput()
	}
	return sealed, nil
}

// Pending is the output an engine weighs for backpressure, the write
// timer and the write half, given plain bytes of plaintext queued: the
// ciphertext, and the plaintext once it can be sealed (before that it is
// held, and neither wants the socket nor pauses reading).
func (s *Session) Pending(plain int) int {
	if !s.Ready {
		return s.Out.Len()
	}
	return plain + s.Out.Len()
}

// Decrypt fills in with plaintext: behind the partial frame in holds, in
// the room its splitter gives, or else into scratch (the loop's buffer),
// which it decodes in place from as it would a plaintext read. It returns
// how many plaintext bytes it added and Conn.Read's error: ErrWouldBlock
// once every whole record fed is decrypted, io.EOF at the peer's
// close_notify, or a final error.
func (s *Session) Decrypt(in *framing.Accumulator, split *framing.Splitter, scratch []byte) (int, error) {
	held := in.Buffered() > 0
	dst := scratch
	if held {
		dst = in.Room(split)
	}
	k, err := 0, error(nil)
	for k < len(dst) && err == nil {
		var m int
		m, err = s.tc.Read(dst[k:])
		k += m
	}
	if held {
		in.Commit(k)
	} else {
		in.Feed(split, dst[:k])
	}
	return k, err
}

// Close ends the TLS state as the connection closes. It returns the
// close_notify to send, best effort, when the stream is at a record
// boundary (nothing half-sent), and nil otherwise. A handshake still
// running fails. Out is left to the engine, to release with its
// plaintext outbox once no send of it is in flight. Under the outbox
// lock.
func (s *Session) Close() []byte {
	clean := s.Ready && s.Out.Len() == 0
	s.tc.Close()
	b := s.tc.Output(nil)
	if !clean {
		return nil
	}
	return b
}

// Handshaking reports whether the loop has not yet seen the handshake
// succeed (SetReady).
func (s *Session) Handshaking() bool { return !s.Ready }

// ConnectionState returns the negotiated parameters once the handshake
// has succeeded.
func (s *Session) ConnectionState() (tls.ConnectionState, bool) {
	return s.tc.ConnectionState()
}
