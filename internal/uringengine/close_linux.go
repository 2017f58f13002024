package uringengine

import (
	"switchboard/internal/uring"
)

// Closing: the core (loopconn.Loop.Close, Drain, CloseAll) does what is
// the same on every engine; these are this engine's parts of it.

// ReleaseLocked drops c's output as it closes, unless a send in flight
// still has the kernel reading it: then the send's completion does
// (retire). Over TLS the send is of the ciphertext, and the plaintext
// goes at once.
func (l *loop) ReleaseLocked(c *conn) {
	if c.Flags&connTLS != 0 {
		l.closeTLS(c)
		c.Out.Release()
	} else if c.Flags&connSending == 0 {
		c.Out.Release()
	}
}

// CloseIO asks the kernel to cancel c's requests and then close the
// descriptor, in that order (a hard link, so that nothing to cancel does
// not stop the close); a send still in flight, or a wait for a sendmsg
// header, keeps c's slot and outbox until it ends.
func (l *loop) CloseIO(c *conn) {
	fd := int(c.Fd)
	sqe := l.sqe()
	sqe.PrepCancelFd(fd)
	sqe.SetUserData(userData(udCancel, 0, 0))
	sqe.SetFlags(uring.SQEIOHardlink | uring.SQECQESkipSuccess)
	sqe = l.sqe()
	sqe.PrepClose(fd)
	sqe.SetUserData(userData(udCancel, 0, 0))
	sqe.SetFlags(uring.SQECQESkipSuccess)
	l.dropHeld(c)
	if c.Flags&(connSending|connSendWait) == 0 {
		l.retire(c)
	}
}

// retire frees a closed connection's slot once nothing of it is in
// flight; completions still to come for it carry an older generation.
func (l *loop) retire(c *conn) {
	c.Mu.Lock()
	c.Out.Release()
	if c.Flags&connTLS != 0 {
		tlsOf(c).Out.Release()
	}
	c.Mu.Unlock()
	if l.Conns[c.IO.slot] == c {
		l.Conns[c.IO.slot] = nil
		l.freeSlots = append(l.freeSlots, c.IO.slot)
	}
}

// DrainConn drops the input c holds back (received while paused), and
// lets a FIN that came behind it count now.
func (l *loop) DrainConn(c *conn) bool {
	l.dropHeld(c)
	if c.Flags&connEOFHeld != 0 {
		c.Flags &^= connEOFHeld
		c.State.PeerEOF(false)
	}
	return true
}

// CloseListeners cancels each listener's accept. The loop's duplicate of
// the descriptor (the net.Listener is closed by Serve) stays open until
// the accept's last completion, when takeBacklog has used it.
func (l *loop) CloseListeners() {
	for _, li := range l.lns {
		if li.closed {
			continue
		}
		li.closed = true
		if !li.armed {
			li.closeFd()
			continue
		}
		sqe := l.sqe()
		sqe.PrepCancel(userData(udAccept, 0, uint32(li.idx)), true)
		sqe.SetUserData(userData(udCancel, 0, 0))
		sqe.SetFlags(uring.SQECQESkipSuccess)
	}
}
