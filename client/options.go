package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"switchboard/framing"
)

// Option configures Dial and New.
type Option func(*config) error

type config struct {
	codec   framing.Codec
	timeout time.Duration
	local   net.Addr
	tls     *tls.Config
}

// WithCodec sets the framing codec (default: raw with the default maximum
// frame size). Its MaxFrame bounds what Receive buffers for one message.
func WithCodec(c framing.Codec) Option {
	return func(cfg *config) error {
		if c == nil {
			return errors.New("client: nil codec")
		}
		cfg.codec = c
		return nil
	}
}

// WithFraming parses a framing spec ("line", "len:4", ...; see
// framing.Parse) with the given maximum frame size (0: the default) and
// uses it.
func WithFraming(spec string, maxFrame int) Option {
	return func(cfg *config) error {
		c, err := framing.Parse(spec, maxFrame)
		if err != nil {
			return err
		}
		cfg.codec = c
		return nil
	}
}

// WithTimeout bounds the dial and, unless SetDeadline has set a deadline,
// each later operation: one Send, SendBatch or Receive call (Request gets
// d for each half), or each wait for data in ReadAll and WriteTo, so a long
// stream that keeps flowing is not cut. 0, the default, means no timeout.
func WithTimeout(d time.Duration) Option {
	return func(cfg *config) error {
		if d < 0 {
			return fmt.Errorf("client: negative timeout %v", d)
		}
		cfg.timeout = d
		return nil
	}
}

// WithLocalAddr binds the connection's local end to addr before
// connecting: a *net.TCPAddr (an IP with port 0 picks a source address and
// leaves the port to the kernel) or a *net.UnixAddr. nil means any.
func WithLocalAddr(addr net.Addr) Option {
	return func(cfg *config) error { cfg.local = addr; return nil }
}

// WithTLS makes the connection speak TLS with cfg: Dial completes the
// handshake before returning (bounded by ctx and WithTimeout), over TCP or
// a unix socket; New wraps the connection it is given and handshakes on
// first use. When cfg.ServerName is empty, Dial verifies the certificate
// against the host of a "host:port" address (a copy of cfg is made); a
// unix address has no host, so it needs ServerName or InsecureSkipVerify.
// CloseWrite sends close_notify and then shuts down the write half.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) error {
		if cfg == nil {
			return errors.New("client: nil TLS config")
		}
		c.tls = cfg
		return nil
	}
}
