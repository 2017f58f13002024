package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/term"

	"switchboard/client"
	"switchboard/loadgen"
)

// isTerminal reports whether r is a terminal, where send streams by
// default.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// parseProxyFlags checks --proxy-header and --proxy-source and returns the
// announced source address (nil: the connection's own).
func parseProxyFlags(version, source string) (net.Addr, error) {
	switch version {
	case "", "v1", "v2":
	default:
		return nil, usagef("--proxy-header must be v1 or v2, not %q", version)
	}
	if source == "" {
		return nil, nil
	}
	if version == "" {
		return nil, usagef("--proxy-source needs --proxy-header v1 or v2")
	}
	ap, err := netip.ParseAddrPort(source)
	if err != nil {
		return nil, usagef("--proxy-source %q: want ip:port", source)
	}
	return net.TCPAddrFromAddrPort(ap), nil
}

// sendProxyHeader opens the connection with a PROXY header announcing src
// (or the connection's own address) to the server's address.
func sendProxyHeader(c *client.Conn, version string, src net.Addr, timeout time.Duration) error {
	if src == nil {
		src = c.LocalAddr()
	}
	hdr, err := loadgen.AppendProxyHeader(nil, version, src, c.RemoteAddr())
	if err != nil {
		return err
	}
	nc := c.NetConn()
	if timeout > 0 {
		nc.SetWriteDeadline(time.Now().Add(timeout))
		defer nc.SetWriteDeadline(time.Time{})
	}
	if _, err := nc.Write(hdr); err != nil {
		return fmt.Errorf("send %s: PROXY header: %w", c.RemoteAddr(), err)
	}
	return nil
}

// rawReply prints the raw reply to message i as it arrives: it waits up to
// --timeout for the first byte, then takes everything until the server
// is quiet for --quiet or closes. A raw stream has no message boundaries,
// so silence is the only end a reply has.
func (s *sendSession) rawReply(c *client.Conn, i int) error {
	nc := c.NetConn()
	defer nc.SetReadDeadline(time.Time{})
	if s.rbuf == nil {
		s.rbuf = make([]byte, 64<<10)
	}
	got := 0
	var last byte
	for {
		wait := s.f.quiet
		if got == 0 {
			wait = s.f.timeout
		}
		if wait > 0 {
			nc.SetReadDeadline(time.Now().Add(wait))
		} else {
			nc.SetReadDeadline(time.Time{})
		}
		n, err := nc.Read(s.rbuf)
		if n > 0 {
			s.out.Write(s.rbuf[:n])
			got += n
			last = s.rbuf[n-1]
			if ferr := s.out.Flush(); ferr != nil {
				return fmt.Errorf("stdout: %w", ferr)
			}
		}
		if err == nil {
			continue
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout() && got > 0:
			// Quiet: the reply is complete.
		case errors.As(err, &ne) && ne.Timeout():
			return fmt.Errorf("receive %s: timed out after %v", s.f.connect, s.f.timeout)
		case errors.Is(err, io.EOF) && got == 0:
			return fmt.Errorf("receive %s: connection closed by the server before replying to message %d", s.f.connect, i)
		case errors.Is(err, io.EOF):
		default:
			return fmt.Errorf("receive %s: %w", s.f.connect, err)
		}
		break
	}
	if last != '\n' {
		s.out.WriteByte('\n')
	}
	return s.out.Flush()
}

// stream is the netcat mode: input goes out as it comes (raw: bytes as
// read; other framings: one message per line), and whatever the server
// sends is printed as it arrives, until the server closes, or until input
// ends and then the server closes (or --timeout passes).
func (s *sendSession) stream(c *client.Conn, in io.Reader) error {
	// No per-operation timeout: a conversation may be idle for long.
	c.SetDeadline(time.Now().Add(100 * 365 * 24 * time.Hour))
	recvDone := make(chan error, 1)
	go func() { recvDone <- s.streamReplies(c) }()
	sendDone := make(chan error, 1)
	go func() { sendDone <- s.streamInput(c, in) }()
	select {
	case err := <-recvDone:
		// The server closed (or broke) the connection: the session is
		// over, whatever input is still to come.
		return err
	case err := <-sendDone:
		if err != nil {
			c.Close()
			<-recvDone
			return err
		}
	}
	if s.f.timeout <= 0 {
		return <-recvDone
	}
	t := time.NewTimer(s.f.timeout)
	defer t.Stop()
	select {
	case err := <-recvDone:
		return err
	case <-t.C:
		// Input is done and the server keeps the connection open: stop.
		c.Close()
		<-recvDone
		return nil
	}
}

func (s *sendSession) streamInput(c *client.Conn, in io.Reader) error {
	var src msgSource
	if s.codec.String() == "raw" {
		src = &chunkSource{r: in}
	} else {
		src = newLineSource(in, s.codec.MaxFrame())
	}
	for i := 1; ; i++ {
		msg, err := src.next()
		if err == io.EOF {
			return c.CloseWrite()
		}
		if err != nil {
			return err
		}
		if err := c.Send(msg); err != nil {
			return messageErr(i, err)
		}
	}
}

// streamReplies prints what the server sends until it closes: raw bytes
// as they come, or one framed reply per line, flushed at once.
func (s *sendSession) streamReplies(c *client.Conn) error {
	if s.rawish {
		nc := c.NetConn()
		buf := make([]byte, 64<<10)
		for {
			n, err := nc.Read(buf)
			if n > 0 {
				s.out.Write(buf[:n])
				if ferr := s.out.Flush(); ferr != nil {
					return fmt.Errorf("stdout: %w", ferr)
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("receive %s: %w", s.f.connect, err)
			}
		}
	}
	for {
		reply, err := c.Receive(context.Background())
		if err == io.EOF || errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		s.printReply(reply)
		if err := s.out.Flush(); err != nil {
			return fmt.Errorf("stdout: %w", err)
		}
	}
}
