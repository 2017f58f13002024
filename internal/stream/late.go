package stream

import (
	"io"
	"net"
)

// lateAccept ends a connection that Accept returned just as Shutdown or
// Close began. Its request is already in the socket's receive buffer, and
// closing a socket with unread input makes the kernel send a reset; across
// a zero-downtime upgrade that reset is a failed request. It is ended the
// way drain ends a connection instead: our FIN, then the peer's input read
// and dropped until its FIN or the linger deadline, so the peer sees a
// clean EOF (its request unanswered, never half-handled) and may retry.
func (s *server) lateAccept(nc net.Conn) {
	defer s.conwg.Done()
	defer nc.Close()
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	nc.SetReadDeadline(s.lingerDeadline())
	io.Copy(io.Discard, nc)
}
