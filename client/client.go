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
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"switchboard/framing"
	"switchboard/internal/netaddr"
)

// ErrTimeout matches, with errors.Is, every error caused by a dial timeout,
// a per-operation timeout or a deadline set with SetDeadline.
var ErrTimeout = errors.New("timed out")

// Error is the error of a failed operation on a connection.
type Error struct {
	// Op is the operation: "connect", "handshake" (TLS), "send",
	// "receive" or "close-write".
	Op string
	// Addr is the server's address as given to Dial (or the remote address
	// of a connection made with New).
	Addr string
	// Timeout is the per-operation timeout that expired, when one did (0
	// for an absolute deadline).
	Timeout time.Duration
	// Err is the cause.
	Err error
}

// Error returns "op addr: cause", with the cause in the plain words of the
// system ("connection refused", "connection reset by peer", "timed out
// after 5s").
func (e *Error) Error() string {
	return e.Op + " " + e.Addr + ": " + e.cause()
}

func (e *Error) cause() string {
	if e.isTimeout() {
		if e.Timeout > 0 {
			return "timed out after " + e.Timeout.String()
		}
		return "timed out"
	}
	var errno syscall.Errno
	if errors.As(e.Err, &errno) {
		return errno.Error()
	}
	if errors.Is(e.Err, net.ErrClosed) {
		return "connection closed"
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrTimeout) true for timeouts of every kind.
func (e *Error) Is(target error) bool { return target == ErrTimeout && e.isTimeout() }

func (e *Error) isTimeout() bool {
	if errors.Is(e.Err, os.ErrDeadlineExceeded) || errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

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

// Send frames msg with the codec and writes all of it. A message the codec
// cannot frame (one holding a newline, with line framing, say) returns an
// error wrapping framing.ErrInvalidMessage and sends nothing; the
// connection stays usable. msg may be reused when Send returns.
func (c *Conn) Send(msg []byte) error {
	buf, err := c.codec.Append(c.wbuf[:0], msg)
	if err != nil {
		return err
	}
	c.wbuf = buf
	return c.write(buf)
}

// SendBatch frames every message and writes them together, in one write
// call when the kernel takes it all. If any message cannot be framed,
// nothing is sent.
func (c *Conn) SendBatch(msgs ...[]byte) error {
	buf := c.wbuf[:0]
	for i, m := range msgs {
		var err error
		if buf, err = c.codec.Append(buf, m); err != nil {
			return fmt.Errorf("message %d: %w", i+1, err)
		}
	}
	c.wbuf = buf
	return c.write(buf)
}

// write writes all of buf, looping over short writes.
func (c *Conn) write(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	if c.timeout > 0 && !c.fixedDeadline.Load() {
		c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	for len(buf) > 0 {
		n, err := c.nc.Write(buf)
		buf = buf[n:]
		if err != nil {
			return c.opError("send", err)
		}
		if n == 0 {
			return c.opError("send", io.ErrShortWrite)
		}
	}
	// Keep a large one-off message from pinning its buffer.
	if cap(c.wbuf) > shrinkAbove {
		c.wbuf = nil
	}
	return nil
}

func (c *Conn) opError(op string, err error) error {
	var d time.Duration
	if !c.fixedDeadline.Load() {
		d = c.timeout
	}
	return newError(op, c.addr, err, d)
}

// newError builds an Error, recording the timeout d only when it is what
// expired.
func newError(op, addr string, err error, d time.Duration) *Error {
	e := &Error{Op: op, Addr: addr, Err: err}
	if e.isTimeout() {
		e.Timeout = d
	}
	return e
}

// Receive returns the next message. It reads as often as needed to
// complete one, and keeps any bytes after it for the next call. With raw
// framing a message is what one read returned.
//
// The returned slice aliases the connection's buffer: it is valid only
// until the next Receive, Request, ReadAll or WriteTo call. Copy it to keep
// it.
//
// When the server closes between messages, Receive returns io.EOF. A
// stream that ends inside a message returns an error wrapping
// framing.ErrTruncated; a frame over the codec's maximum, one wrapping
// framing.ErrFrameTooLarge. Errors are final: later calls return them
// again.
//
// ctx bounds the wait as well: its deadline, when sooner than the
// timeout, is the read deadline, and cancelling it interrupts a read in
// progress. Then Receive returns an Error wrapping ctx.Err(), and that one
// is not final: bytes already read are kept, and a later Receive carries
// on where this one stopped.
func (c *Conn) Receive(ctx context.Context) ([]byte, error) {
	if c.rerr != nil {
		return nil, c.rerr
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "receive", Addr: c.addr, Err: err}
	}
	armed, ctxDeadline := false, false
	for {
		frame, ok, err := c.in.Next(c.split, c.eof)
		if err != nil {
			c.rerr = &Error{Op: "receive", Addr: c.addr, Err: err}
			return nil, c.rerr
		}
		if ok {
			return frame, nil
		}
		if c.eof {
			// Nothing is left: Next reports bytes after the last
			// message as truncated.
			c.rerr = io.EOF
			return nil, io.EOF
		}
		if !armed {
			armed = true
			ctxDeadline = c.armRead(ctx)
		}
		if err := c.fillCtx(ctx, ctxDeadline); err != nil {
			return nil, err
		}
	}
}

// armRead sets the read deadline for one Receive: the per-operation
// timeout or SetDeadline's, or ctx's deadline when that is sooner, which
// it reports.
func (c *Conn) armRead(ctx context.Context) (ctxDeadline bool) {
	var d time.Time
	switch {
	case c.fixedDeadline.Load():
		d = c.deadline
	case c.timeout > 0:
		d = time.Now().Add(c.timeout)
	}
	if cd, ok := ctx.Deadline(); ok && (d.IsZero() || cd.Before(d)) {
		d, ctxDeadline = cd, true
	}
	if !d.IsZero() || ctx.Done() != nil {
		c.nc.SetReadDeadline(d)
	}
	return ctxDeadline
}

// fillCtx is fill, interrupted when ctx ends: a watcher moves the read
// deadline into the past, and the timeout that results is reported as
// ctx's error, which leaves the connection usable. A context that can
// never end costs nothing here.
func (c *Conn) fillCtx(ctx context.Context, ctxDeadline bool) error {
	if ctx.Done() == nil {
		if err := c.fill(); err != nil {
			c.rerr = err
			return err
		}
		return nil
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetReadDeadline(time.Unix(1, 0)) })
	err := c.fill()
	interrupted := !stop()
	if err != nil && (interrupted || ctxDeadline || ctx.Err() != nil) && errors.Is(err, os.ErrDeadlineExceeded) {
		c.ioErr = nil
		if interrupted {
			// Later calls arm their own deadline; this one is in the past.
			c.nc.SetReadDeadline(time.Time{})
		}
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded // the read deadline was ctx's, a moment early
		}
		return &Error{Op: "receive", Addr: c.addr, Err: cause}
	}
	if err != nil {
		c.rerr = err
	}
	return err
}

// fill reads once into the buffer, behind what it holds (the buffer grows
// only while a message bigger than it is being received). EOF sets c.eof
// and is not an error; other read errors are final.
func (c *Conn) fill() error {
	if c.ioErr != nil {
		return c.ioErr
	}
	c.in.Done(c.split)
	n, err := c.nc.Read(c.in.Room(c.split))
	c.in.Commit(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			c.eof = true
			return nil
		}
		c.ioErr = c.opError("receive", err)
		return c.ioErr
	}
	return nil
}

// Request sends msg and returns the next message received: one
// request-response exchange. The reply is valid until the next receiving
// call, as with Receive.
func (c *Conn) Request(msg []byte) ([]byte, error) {
	if err := c.Send(msg); err != nil {
		return nil, err
	}
	return c.Receive(context.Background())
}

// ReadAll returns everything the server sends until it closes its write
// half, raw, without framing: the bytes Receive has buffered but not
// returned, then the rest of the stream. Call it after CloseWrite in an
// HTTP-like exchange. It is not bounded; use WriteTo to stream a reply of
// unknown size. The slice is the caller's.
func (c *Conn) ReadAll() ([]byte, error) {
	var out []byte
	_, err := c.copyOut(func(p []byte) error {
		out = append(out, p...)
		return nil
	})
	return out, err
}

// WriteTo copies everything the server sends until it closes its write
// half to w, raw, as ReadAll does, without holding it in memory. It
// implements io.WriterTo. An error from w is returned as it is.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	return c.copyOut(func(p []byte) error {
		_, err := w.Write(p)
		return err
	})
}

func (c *Conn) copyOut(sink func([]byte) error) (int64, error) {
	var total int64
	for {
		if p := c.in.Bytes(); len(p) > 0 {
			c.in.Skip(len(p))
			total += int64(len(p))
			if err := sink(p); err != nil {
				return total, err
			}
		}
		if c.eof {
			return total, nil
		}
		if c.timeout > 0 && !c.fixedDeadline.Load() {
			c.nc.SetReadDeadline(time.Now().Add(c.timeout))
		}
		if err := c.fill(); err != nil {
			return total, err
		}
	}
}
