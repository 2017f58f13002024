//go:build linux

package uring

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SQE is a submission queue entry, laid out as struct io_uring_sqe. It
// lives in the mapped SQE array; get one from Ring.NextSQE, call one Prep
// method, then SetUserData (and SetFlags if needed).
type SQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64 // off / addr2 / target user_data
	addr        uint64 // addr / splice_off_in
	len         uint32
	opFlags     uint32 // msg_flags, accept_flags, timeout_flags, ...
	userData    uint64
	bufIndex    uint16 // buf_index / buf_group
	personality uint16
	fileIndex   int32 // splice_fd_in / file_index
	addr3       uint64
	pad         uint64
}

// CQE is a completion queue entry, laid out as struct io_uring_cqe.
type CQE struct {
	// UserData is the value the SQE carried; its encoding is the caller's.
	UserData uint64
	// Res is the operation's result: a count or descriptor, or -errno.
	Res int32
	// Flags holds IORING_CQE_F_* bits and, with F_BUFFER, the buffer id.
	Flags uint32
}

const (
	cqeFBuffer       = 1 << 0
	cqeFMore         = 1 << 1
	cqeFSockNonEmpty = 1 << 2
	cqeFNotif        = 1 << 3
	cqeFBufMore      = 1 << 4
)

// More reports that the request stays armed (IORING_CQE_F_MORE): a
// multishot accept or receive without it has ended and must be re-armed.
func (c CQE) More() bool { return c.Flags&cqeFMore != 0 }

// Buffer returns the provided buffer the kernel filled (IORING_CQE_F_BUFFER
// and the id in the upper 16 bits of Flags).
func (c CQE) Buffer() (id uint16, ok bool) {
	return uint16(c.Flags >> cqeBufferShift), c.Flags&cqeFBuffer != 0
}

// Notif marks a zero-copy send's notification (IORING_CQE_F_NOTIF): the
// kernel no longer reads the data.
func (c CQE) Notif() bool { return c.Flags&cqeFNotif != 0 }

// BufMore reports that the kernel keeps using the completion's last
// buffer (IORING_CQE_F_BUF_MORE, incremental buffer rings only).
func (c CQE) BufMore() bool { return c.Flags&cqeFBufMore != 0 }

// SockNonEmpty reports that the socket still held data after this receive.
func (c CQE) SockNonEmpty() bool { return c.Flags&cqeFSockNonEmpty != 0 }

// Err is the failure as an errno, or nil when Res is not negative.
func (c CQE) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return unix.Errno(-c.Res)
}

func (s *SQE) reset(op uint8, fd int) {
	*s = SQE{opcode: op, fd: int32(fd)}
}

// SetUserData sets the value the completion will carry.
func (s *SQE) SetUserData(u uint64) { s.userData = u }

// SetFlags adds IOSQE_* flags (SQEIOLink, SQECQESkipSuccess, SQEAsync).
func (s *SQE) SetFlags(f uint8) { s.flags |= f }

// PrepNop prepares a no-op, whose completion has Res 0.
func (s *SQE) PrepNop() { s.reset(OpNop, -1) }

// PrepAccept prepares an accept on a listening socket; flags are accept4's
// (unix.SOCK_NONBLOCK, unix.SOCK_CLOEXEC). Multishot posts one completion
// per connection (Res the new descriptor) while More is set. The peer
// address is not asked for: getpeername answers it when wanted.
func (s *SQE) PrepAccept(fd int, multishot bool, flags int) {
	s.reset(OpAccept, fd)
	s.opFlags = uint32(flags)
	if multishot {
		s.ioprio |= acceptMultishot
	}
}

// PrepRecv prepares a receive into a buffer the kernel picks from the
// provided-buffer group, so that no buffer is tied to a connection until
// data arrives. Multishot keeps it armed (one completion per arrival while
// More is set); bundle lets one completion fill several consecutive
// buffers of the ring (BufRing.Bundle walks them), where the kernel has
// Features.RecvSendBundle. A multishot receive ends with -ENOBUFS when the
// group is empty; recycle buffers and arm it again.
func (s *SQE) PrepRecv(fd int, group uint16, multishot, bundle bool) {
	s.reset(OpRecv, fd)
	s.flags = sqeBufferSelect
	s.bufIndex = group
	if multishot {
		s.ioprio |= recvMultishot
	}
	if bundle {
		s.ioprio |= recvSendBundle
	}
}

// PrepSend prepares a send of b. The SQE holds only b's address, so b must
// stay reachable and unchanged until the completion: memory from a
// BufRing or a Msg arena is outside the Go heap and always safe; a Go
// slice must be heap memory (the collector does not move heap objects,
// but it does move stacks) kept referenced by the caller, e.g. a
// connection's outbox. msgFlags are send(2)'s; pass unix.MSG_NOSIGNAL so
// a reset peer gives -EPIPE rather than SIGPIPE. A short send completes
// with the count sent.
func (s *SQE) PrepSend(fd int, b []byte, msgFlags int) {
	s.reset(OpSend, fd)
	s.addr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	s.len = uint32(len(b))
	s.opFlags = uint32(msgFlags)
}

// PrepSendmsg prepares a sendmsg over m's iovec chain (one system call's
// worth of gathered buffers). m and the buffers it holds must not change
// until the completion; see Msg.
func (s *SQE) PrepSendmsg(fd int, m *Msg, msgFlags int) {
	s.reset(OpSendmsg, fd)
	s.addr = uint64(uintptr(unsafe.Pointer(m.hdr)))
	s.len = 1
	s.opFlags = uint32(msgFlags)
}

// PrepShutdown prepares shutdown(fd, how), e.g. unix.SHUT_WR for a
// half-close, after which the peer reads EOF.
func (s *SQE) PrepShutdown(fd, how int) {
	s.reset(OpShutdown, fd)
	s.len = uint32(how)
}

// PrepClose prepares close(fd); requests still armed on fd are not
// cancelled by it (cancel them first with PrepCancelFd).
func (s *SQE) PrepClose(fd int) { s.reset(OpClose, fd) }

// PrepRead prepares a read of fd at its current position into b, which
// must stay valid until the completion (see PrepSend). Eventfd.PrepRead
// is the usual caller.
func (s *SQE) PrepRead(fd int, b []byte) {
	s.reset(OpRead, fd)
	s.addr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	s.len = uint32(len(b))
	s.off = ^uint64(0) // -1: the file position, which pipes and eventfds need
}

// PrepMsgRing prepares a message to another ring: it posts a completion
// with userData and res on the ring whose descriptor is ringFd, waking it.
// This ring also gets a completion unless SQECQESkipSuccess is set.
func (s *SQE) PrepMsgRing(ringFd int, res int32, userData uint64) {
	s.reset(OpMsgRing, ringFd)
	s.addr = msgRingData
	s.len = uint32(res)
	s.off = userData
}

// PrepCancel prepares a cancellation of the request(s) whose user data is
// userData; all cancels every match rather than the first.
func (s *SQE) PrepCancel(userData uint64, all bool) {
	s.reset(OpAsyncCancel, -1)
	s.addr = userData
	if all {
		s.opFlags = cancelAll
	}
}

// PrepCancelFd prepares a cancellation of every request on fd, e.g. a
// multishot receive before the descriptor is closed.
func (s *SQE) PrepCancelFd(fd int) {
	s.reset(OpAsyncCancel, fd)
	s.opFlags = cancelFd | cancelAll
}

// PrepTimeout prepares a timeout that completes with -ETIME after d (or
// Res 0 if count other completions arrive first; count 0 means only the
// time matters). The kernel copies the duration when it takes the SQE, so
// the slot this ring keeps for s is reused safely.
func (r *Ring) PrepTimeout(s *SQE, d time.Duration, count uint32) {
	ts := r.timespecFor(s, d)
	s.reset(OpTimeout, -1)
	s.addr = uint64(uintptr(unsafe.Pointer(ts)))
	s.len = 1
	s.off = uint64(count)
}

// PrepLinkTimeout prepares a timeout for the SQE prepared just before s,
// which must carry SQEIOLink: if that request has not completed after d
// it is cancelled (-ECANCELED), and this one completes with -ETIME;
// otherwise this one completes with -ECANCELED.
func (r *Ring) PrepLinkTimeout(s *SQE, d time.Duration) {
	ts := r.timespecFor(s, d)
	s.reset(OpLinkTimeout, -1)
	s.addr = uint64(uintptr(unsafe.Pointer(ts)))
	s.len = 1
}

func (r *Ring) timespecFor(s *SQE, d time.Duration) *kernelTimespec {
	i := (uintptr(unsafe.Pointer(s)) - uintptr(unsafe.Pointer(&r.sqes[0]))) / unsafe.Sizeof(SQE{})
	ts := &r.timeouts[i]
	*ts = kernelTimespec{sec: int64(d / time.Second), nsec: int64(d % time.Second)}
	return ts
}
