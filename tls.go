package switchboard

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"switchboard/internal/engine"
)

// ErrHandshake is wrapped by the reason a connection whose TLS handshake
// failed was closed: a timeout, a peer speaking plaintext or garbage, a
// refused client certificate. The handler never hears of such a
// connection; the server counts it (Stats.HandshakeFailures) and logs why.
var ErrHandshake = engine.ErrHandshake

// DefaultHandshakeTimeout bounds a TLS handshake unless WithHandshakeTimeout
// says otherwise.
const DefaultHandshakeTimeout = engine.DefaultHandshakeTimeout

// TLSConn is implemented by the Conn of every model. A handler reaches the
// negotiated TLS parameters (version, cipher suite, ALPN protocol, SNI
// server name, peer certificates) with a type assertion:
//
//	if tc, ok := c.(switchboard.TLSConn); ok {
//		if cs, ok := tc.ConnectionState(); ok { ... }
//	}
//
// ok is false for a connection that does not speak TLS. Handlers hear of a
// TLS connection only after its handshake, so from OnOpen on the state is
// there.
type TLSConn interface {
	ConnectionState() (cs tls.ConnectionState, ok bool)
}

// WithTLS makes every connection, on every model, speak TLS with cfg
// (crypto/tls's own, unforked). cfg needs a certificate (Certificates or
// GetCertificate); ClientAuth and ClientCAs ask for client certificates.
// Framing applies to the decrypted stream: handlers see the same messages
// as without TLS. With WithProxyProtocol the PROXY header comes first, in
// the clear, as load balancers send it.
func WithTLS(cfg *tls.Config) Option {
	return func(s *Server) error {
		if cfg == nil {
			return errors.New("switchboard: nil TLS config")
		}
		if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
			return errors.New("switchboard: TLS config has no certificate")
		}
		s.cfg.TLS = cfg
		return nil
	}
}

// WithHandshakeTimeout bounds each TLS handshake, from accept (or the end
// of the PROXY header) to its last message, including any wait for a
// handshake slot (WithMaxHandshakes). A connection that takes longer is
// closed. Default DefaultHandshakeTimeout (10 s).
func WithHandshakeTimeout(d time.Duration) Option {
	return func(s *Server) error {
		if d <= 0 {
			return fmt.Errorf("switchboard: handshake timeout must be positive, got %v", d)
		}
		s.cfg.HandshakeTimeout = d
		return nil
	}
}

// WithMaxHandshakes bounds how many TLS handshakes run at once; the
// connections beyond it wait, in order of arrival and within their
// handshake timeout, for a slot. The default, 64 per GOMAXPROCS, keeps the
// cores busy with handshakes across WAN round trips while a flood of
// connections that never finish their handshake can hold only that many
// key exchanges.
func WithMaxHandshakes(n int) Option {
	return func(s *Server) error {
		if n < 1 {
			return fmt.Errorf("switchboard: max handshakes must be at least 1, got %d", n)
		}
		s.cfg.MaxHandshakes = n
		return nil
	}
}

// TLS reports whether the server speaks TLS.
func (s *Server) TLS() bool { return s.cfg.TLS != nil }
