package stream

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"switchboard/internal/engine"
)

// TLS on the net-package models is what a Go programmer would write: a
// tls.Conn over the socket, its handshake run by the connection's own
// goroutine before the handler hears of it, bounded by the handshake
// timeout (a deadline on the socket) and by a counting semaphore of
// handshake slots (server.slots) that the wait for a slot shares the
// timeout with.

// handshake runs the server handshake. done with a nil error means the
// server began draining meanwhile: the connection ends unopened, quietly.
func (c *conn) handshake() (done bool, err error) {
	s := c.s
	if c.tc == nil {
		// The PROXY header came first; what followed it is the start
		// of the TLS stream.
		rest := append([]byte(nil), c.in.Bytes()...)
		c.in.Skip(len(rest))
		// Counted with the header as received; counted again as the
		// plaintext it decrypts to, as every model counts TLS.
		c.bytesIn.Add(-int64(len(rest)))
		c.s.cfg.Stats.BytesIn.Add(-int64(len(rest)))
		c.tc = tls.Server(&prefixConn{Conn: c.nc, pre: rest}, s.cfg.TLS)
		c.rw = c.tc
	}
	d := s.cfg.HandshakeTimeout
	c.nc.SetDeadline(time.Now().Add(d))
	defer c.nc.SetDeadline(time.Time{})
	// Checked after setting the deadline: Shutdown marks draining before
	// it moves read deadlines into the past, so one of the two is seen.
	if s.isDraining() {
		return true, nil
	}
	wait := time.NewTimer(d)
	select {
	case s.slots <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		return true, engine.HandshakeTimeout(d)
	case <-s.draining:
		wait.Stop()
		return true, nil
	}
	err = c.tc.Handshake()
	<-s.slots
	switch {
	case err == nil:
		s.cfg.Stats.Handshakes.Add(1)
		return false, nil
	case s.isDraining():
		return true, nil
	case isTimeout(err):
		return true, engine.HandshakeTimeout(d)
	case errors.Is(err, io.EOF):
		return true, engine.HandshakeEOF()
	}
	return true, engine.HandshakeFailed(err)
}

// shutWrite sends close_notify when the connection speaks TLS, then shuts
// down the socket's write half.
func (c *conn) shutWrite() {
	if c.tc != nil && c.opened {
		// crypto/tls bounds the alert's write by a deadline of its own.
		c.tc.CloseWrite()
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// ConnectionState returns the negotiated TLS parameters; ok is false for
// a connection without TLS.
func (c *conn) ConnectionState() (cs tls.ConnectionState, ok bool) {
	if c.tc == nil {
		return cs, false
	}
	cs = c.tc.ConnectionState()
	return cs, cs.HandshakeComplete
}

// prefixConn is the socket with bytes already read from it (those after
// a PROXY header) put back in front.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
