// Package client is a framed TCP and Unix-socket client: the client side of
// the socket tutorials (connect, send everything, receive, close), with the
// loops they leave to the reader done once.
//
// Dial connects to a switchboard address ("host:port", "[::1]:port" or
// "unix:/path"). Send frames a message with the connection's codec (raw by
// default) and writes all of it, however many write calls that takes.
// Receive returns the next complete message, whatever way the stream was
// split into reads. Request does both. CloseWrite shuts down the write half
// so the server reads EOF, and ReadAll or WriteTo then collect everything
// the server sends until it closes: the HTTP-like exchange of the HOWTO.
//
// Errors name the operation and the address, e.g. "connect 127.0.0.1:8888:
// connection refused", and wrap the cause for errors.Is: syscall errors
// such as syscall.ECONNREFUSED, ErrTimeout (and os.ErrDeadlineExceeded for
// an expired read or write deadline), and the framing package's sentinels
// (framing.ErrFrameTooLarge, framing.ErrTruncated, ...). Receive returns
// io.EOF itself when the server closes cleanly between messages.
//
// A Conn may be used by two goroutines at once, one sending (Send,
// SendBatch, CloseWrite) and one receiving (Receive, ReadAll, WriteTo); each
// side on its own is not safe for concurrent use. Request uses both sides.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"switchboard/framing"
	"switchboard/internal/netaddr"
)

// Default read buffer sizes. The buffer grows, up to the codec's largest
// frame plus its overhead, only while a message bigger than it arrives.
const (
	initialReadBuf = 32 << 10
	shrinkAbove    = 256 << 10
)

// Conn is a client connection that sends and receives framed messages.
type Conn struct {
	nc      net.Conn
	addr    string
	codec   framing.Codec
	timeout time.Duration
	// fixedDeadline is set while a deadline from SetDeadline is in force,
	// which replaces the per-operation timeout; deadline is its value.
	fixedDeadline atomic.Bool
	deadline      time.Time

	// Sending side.
	wbuf []byte

	// Receiving side: bytes read but not yet returned as messages.
	in    framing.Accumulator
	split *framing.Splitter
	eof   bool  // the server has shut down its write half
	ioErr error // sticky read error
	rerr  error // sticky Receive error: ioErr, a framing error or io.EOF
}

// Dial connects to addr ("host:port", "[::1]:port" or "unix:/path"). ctx
// bounds the connection attempt only, as does WithTimeout's duration; once
// connected, ctx has no effect.
func Dial(ctx context.Context, addr string, opts ...Option) (*Conn, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	network, address, err := netaddr.Split(addr)
	if err != nil {
		return nil, &Error{Op: "connect", Addr: addr, Err: err}
	}
	d := net.Dialer{Timeout: cfg.timeout, LocalAddr: cfg.local}
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, newError("connect", addr, err, cfg.timeout)
	}
	if cfg.tls != nil {
		if nc, err = handshake(ctx, nc, network, address, cfg); err != nil {
			return nil, newError("handshake", addr, err, cfg.timeout)
		}
	}
	return newConn(nc, addr, cfg), nil
}

// handshake runs the TLS client handshake over nc, closing nc if it fails.
func handshake(ctx context.Context, nc net.Conn, network, address string, cfg *config) (net.Conn, error) {
	tcfg := cfg.tls
	if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify {
		host, _, err := net.SplitHostPort(address)
		if network == "unix" || err != nil {
			nc.Close()
			return nil, errors.New("TLS over a unix socket needs a server name (tls.Config.ServerName) or InsecureSkipVerify")
		}
		tcfg = tcfg.Clone()
		tcfg.ServerName = host
	}
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}
	tc := tls.Client(nc, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

// New wraps a connection made elsewhere (net.Pipe, a socket handed over,
// a custom dialer). The Conn owns nc from then on.
func New(nc net.Conn, opts ...Option) (*Conn, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	addr := "?"
	if ra := nc.RemoteAddr(); ra != nil {
		addr = netaddr.Format(ra)
	}
	if cfg.tls != nil {
		nc = tls.Client(nc, cfg.tls)
	}
	return newConn(nc, addr, cfg), nil
}

func newConfig(opts []Option) (*config, error) {
	cfg := &config{}
	for _, o := range opts {
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.codec == nil {
		cfg.codec = framing.Raw(0)
	}
	return cfg, nil
}

func newConn(nc net.Conn, addr string, cfg *config) *Conn {
	c := &Conn{nc: nc, addr: addr, codec: cfg.codec, timeout: cfg.timeout}
	c.split = framing.NewSplitter(cfg.codec, framing.SplitterOptions{Initial: initialReadBuf, Keep: shrinkAbove})
	return c
}

// Codec returns the connection's framing codec.
func (c *Conn) Codec() framing.Codec { return c.codec }

// NetConn returns the underlying connection, for socket options (with
// WithTLS, the *tls.Conn: its NetConn method gives the socket). Reading
// from it directly skips bytes Receive has already buffered.
func (c *Conn) NetConn() net.Conn { return c.nc }

// ConnectionState returns the TLS parameters negotiated (version, cipher
// suite, ALPN protocol, the server's certificates); ok is false without
// WithTLS.
func (c *Conn) ConnectionState() (cs tls.ConnectionState, ok bool) {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return cs, false
	}
	return tc.ConnectionState(), true
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the server's network address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SetDeadline sets an absolute deadline for every operation from now on,
// in place of the per-operation timeout of WithTimeout. The zero time
// removes it and brings the per-operation timeout back.
func (c *Conn) SetDeadline(t time.Time) error {
	c.deadline = t
	c.fixedDeadline.Store(!t.IsZero())
	return c.nc.SetDeadline(t)
}

// Close closes the connection. Unread input is dropped.
func (c *Conn) Close() error { return c.nc.Close() }

// CloseWrite shuts down the write half of the connection, so the server
// reads EOF (the end of an eof-framed message, or of the whole exchange),
// while replies can still be received.
func (c *Conn) CloseWrite() error {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok {
		return &Error{Op: "close-write", Addr: c.addr, Err: errors.ErrUnsupported}
	}
	if err := cw.CloseWrite(); err != nil {
		return &Error{Op: "close-write", Addr: c.addr, Err: err}
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		// close_notify is sent; now the socket's write half, so the
		// server reads EOF whether or not it looks at alerts.
		if cw, ok := tc.NetConn().(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil {
				return &Error{Op: "close-write", Addr: c.addr, Err: err}
			}
		}
	}
	return nil
}
