package uringengine

import (
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/sockfd"
	"switchboard/internal/uring"
)

// Accepting: one multishot accept per listener posts a completion per
// connection. It ends on any error; after running out of descriptors the
// loop sheds a pending connection with its spare descriptor (as the
// reactor does) and arms it again, or, with no spare, backs off first.

// acceptPause is how long accepting stops after a failure that shedding
// could not cure, so that an accept failing at once cannot spin the loop.
const acceptPause = 100 * time.Millisecond

func (l *loop) armAccept(li *listener) {
	sqe := l.sqe()
	sqe.PrepAccept(li.Fd, true, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	sqe.SetUserData(userData(udAccept, 0, uint32(li.idx)))
	li.armed = true
	li.resumeAfter = 0
	l.inflight++
}

func (l *loop) accepted(cqe *uring.CQE, li *listener) {
	if !cqe.More() {
		li.armed = false
		l.inflight--
	}
	if cqe.Res >= 0 {
		fd := int(cqe.Res)
		if l.Closing {
			sockfd.Reset(fd)
			return
		}
		if overLimit(fd) {
			// io_uring took the descriptor limit when the accept was
			// prepared; it has been lowered since. Honour the current
			// one: shed this connection as accept(2) would have failed,
			// and re-arm the accept so it takes the limit afresh.
			sockfd.Reset(fd)
			l.s.Stats.CountAcceptError(unix.EMFILE)
			l.s.Stats.Rejected.Add(1)
			l.Warnf("accept failed: out of descriptors; shedding connections", "listener", li.Addr, "err", unix.EMFILE)
			if li.armed {
				sqe := l.sqe()
				sqe.PrepCancel(userData(udAccept, 0, uint32(li.idx)), true)
				sqe.SetUserData(userData(udCancel, 0, 0))
				sqe.SetFlags(uring.SQECQESkipSuccess)
			}
			return
		}
		// While draining, a connection the kernel accepted before the
		// accept was cancelled is still taken, and closed gracefully
		// (adopt).
		if c := l.Admit(fd, li.id, nil); c != nil {
			l.Place(c)
		}
	} else {
		switch err := unix.Errno(-cqe.Res); err {
		case unix.ECANCELED:
		case unix.EINTR, unix.ECONNABORTED, unix.EPROTO, unix.EAGAIN:
			// The connection died in the queue; the next is taken when
			// the accept is armed again.
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			l.s.Stats.CountAcceptError(err)
			l.outOfDescriptors(li, err)
		default:
			l.s.Stats.CountAcceptError(err)
			l.Warnf("accept failed", "listener", li.Addr, "err", err)
			li.resumeAfter = l.Now + int64(acceptPause)
		}
	}
	if !li.armed && li.closed && !li.fdClosed {
		l.takeBacklog(li)
		li.closeFd()
	}
	if !li.armed && !li.closed && !l.Draining && !l.Closing && li.resumeAfter == 0 {
		l.armAccept(li)
	}
}

// maxBacklog bounds the connections takeBacklog takes: at most a full
// accept queue.
const maxBacklog = 4096

// takeBacklog accepts, with accept4, what is still queued on li once its
// multishot accept has been cancelled, and drains it with the rest (or
// resets it, closing). The accept queue is shared with any other process
// holding the socket (an upgrade's successor), but io_uring waits for a
// connection as an exclusive waiter: the wake-up for one that arrived
// while our cancelled accept still sat on the socket's wait queue can be
// spent on it, and the other process, never woken, would leave that
// connection in the queue until the next one arrives (seen with
// DEFER_TASKRUN, where the cancel is submitted before the deferred
// accept runs). Taken here, it gets a clean EOF its client can retry.
func (l *loop) takeBacklog(li *listener) {
	for range maxBacklog {
		fd, _, err := sockfd.Accept(li.Fd)
		if err != nil {
			return // EAGAIN: empty; anything else: nothing more to take
		}
		if l.Closing {
			sockfd.Reset(fd)
			continue
		}
		if c := l.Admit(fd, li.id, nil); c != nil {
			l.Place(c)
		}
	}
}

// closeFd closes the loop's duplicate of the listening descriptor, once.
func (li *listener) closeFd() {
	if !li.fdClosed {
		unix.Close(li.Fd)
		li.fdClosed = true
	}
}

// outOfDescriptors sheds one pending connection with the spare
// descriptor and arms the accept again at once, for the next; when
// nothing was pending, or there is no spare, it stops accepting for a
// moment. Unlike accept(2), io_uring's accept takes a descriptor before it
// looks for a connection, so it fails with EMFILE with none pending, and
// arming it again at once would spin.
func (l *loop) outOfDescriptors(li *listener, err error) {
	if l.Shed(li.Fd, li.Addr, err) == nil {
		return
	}
	li.resumeAfter = l.Now + int64(acceptPause)
}

// Adopt gives c a slot, arms its receive and opens it
// (loopconn.Loop.Start). While the loop drains, c is not opened: it gets
// our FIN at once, its input is dropped and it closes on the peer's FIN
// or at the end of the linger wait, the way a served connection ends in
// a drain. A multishot accept takes connections off the backlog ahead of
// the loop, so there may be several that were accepted in the kernel but
// not yet seen when Shutdown came; resetting them would lose what their
// clients had sent.
func (l *loop) Adopt(c *conn) {
	if l.Closing {
		l.Refuse(c, "server closing")
		return
	}
	if k := len(l.freeSlots); k > 0 {
		c.IO.slot = l.freeSlots[k-1]
		l.freeSlots = l.freeSlots[:k-1]
		l.gens[c.IO.slot]++
		l.Conns[c.IO.slot] = c
	} else {
		c.IO.slot = uint32(len(l.Conns))
		l.Conns = append(l.Conns, c)
		l.gens = append(l.gens, 0)
		l.msgs = append(l.msgs, -1)
	}
	l.Adopted(c)
	l.armRecv(c)
	l.Start(c)
}

// overLimit reports whether fd is at or above the process's descriptor
// limit as it is now (one prlimit per accepted connection).
func overLimit(fd int) bool {
	var rl unix.Rlimit
	return unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && uint64(fd) >= rl.Cur
}
