//go:build linux

package uring

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel ABI, from include/uapi/linux/io_uring.h. x/sys/unix exposes
// only the three system call numbers, so the structures are declared here
// with the kernel's field order and sizes; sizes are checked in the tests.

// Setup flags (io_uring_params.flags).
const (
	setupCQSize        = 1 << 3
	setupClamp         = 1 << 4
	setupSubmitAll     = 1 << 7
	setupCoopTaskrun   = 1 << 8
	setupTaskrunFlag   = 1 << 9
	setupSingleIssuer  = 1 << 12
	setupDeferTaskrun  = 1 << 13
	setupNoSQArray     = 1 << 16
	featSingleMmap     = 1 << 0
	featNoDrop         = 1 << 1
	featFastPoll       = 1 << 5
	featExtArg         = 1 << 8
	featRecvSendBundle = 1 << 14
)

// io_uring_enter flags.
const (
	enterGetEvents      = 1 << 0
	enterExtArg         = 1 << 3
	enterRegisteredRing = 1 << 4
)

// io_uring_register opcodes.
const (
	registerProbe          = 8
	registerRingFds        = 20
	unregisterRingFds      = 21
	registerPbufRing       = 22
	unregisterPbufRing     = 23
	registerSendMsgRing    = 31
	probeOpSupported       = 1 << 0
	offSQRing              = 0
	offCQRing              = 0x8000000
	offSQEs                = 0x10000000
	sqCQOverflow           = 1 << 1
	sqTaskrun              = 1 << 2
	cqeBufferShift         = 16
	registerRingAutoOffset = ^uint32(0)
)

// Opcodes (io_uring_sqe.opcode) this package prepares.
const (
	OpNop         = 0
	OpSendmsg     = 9
	OpTimeout     = 11
	OpAccept      = 13
	OpAsyncCancel = 14
	OpLinkTimeout = 15
	OpClose       = 19
	OpRead        = 22
	OpSend        = 26
	OpRecv        = 27
	OpShutdown    = 34
	OpMsgRing     = 40
	OpSendZC      = 47
)

// SQE flags (io_uring_sqe.flags).
const (
	// SQEIOLink makes the next SQE start only after this one succeeds
	// (used to attach a link timeout).
	SQEIOLink = 1 << 2
	// SQEIOHardlink links like SQEIOLink but starts the next SQE even if
	// this one fails: a cancellation that finds nothing to cancel must
	// not stop the close linked behind it.
	SQEIOHardlink = 1 << 3
	// SQEAsync forces the request to the kernel's worker threads; only
	// for measurement, an echo engine never wants it.
	SQEAsync = 1 << 4
	// sqeBufferSelect takes the buffer from a provided-buffer group.
	sqeBufferSelect = 1 << 5
	// SQECQESkipSuccess posts no completion when the request succeeds.
	SQECQESkipSuccess = 1 << 6
)

// Per-opcode flags.
const (
	recvMultishot     = 1 << 1 // ioprio of RECV
	recvSendBundle    = 1 << 4 // ioprio of RECV/SEND
	acceptMultishot   = 1 << 0 // ioprio of ACCEPT
	cancelAll         = 1 << 0
	cancelFd          = 1 << 1
	msgRingData       = 0 // IORING_MSG_DATA, the msg_ring command in addr
	getEventsArgSize  = unsafe.Sizeof(getEventsArg{})
	kernelTimespecLen = 16
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

type getEventsArg struct {
	sigmask     uint64
	sigmaskSz   uint32
	minWaitUsec uint32
	ts          uint64
}

// kernelTimespec is struct __kernel_timespec: 64-bit on every arch.
type kernelTimespec struct {
	sec, nsec int64
}

type rsrcUpdate struct {
	offset, resv uint32
	data         uint64
}

// pbufRingInc is IOU_PBUF_RING_INC, bufReg.flags: consume buffers
// incrementally.
const pbufRingInc = 2

type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	minLeft     uint32
	resv        [5]uint32
}

type probeHeader struct {
	lastOp, opsLen uint8
	resv           uint16
	resv2          [3]uint32
}

type probeOp struct {
	op, resv uint8
	flags    uint16
	resv2    uint32
}

// iovec and msghdr mirror the C structs with uintptr for pointers and
// size_t, so that no Go pointer is ever stored in memory the collector
// does not scan.
type iovec struct {
	base, len uintptr
}

type msghdr struct {
	name       uintptr
	namelen    uint32
	iov        uintptr
	iovlen     uintptr
	control    uintptr
	controllen uintptr
	flags      int32
}

func setup(entries uint32, p *params) (int, unix.Errno) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	return int(fd), errno
}

func register(fd int, op uint32, arg unsafe.Pointer, nargs uint32) (int, unix.Errno) {
	r, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd), uintptr(op), uintptr(arg), uintptr(nargs), 0, 0)
	return int(r), errno
}

// enterNoBlock is enter for a call that cannot sleep (minComplete 0):
// through RawSyscall, so the Go scheduler's system call bookkeeping (and,
// on a P left in a system call, the hand-off of the P to another thread)
// is skipped, as the reactor's reads and writes skip it.
func enterNoBlock(fd int, toSubmit, flags uint32) (int, unix.Errno) {
	r, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), 0, uintptr(flags), 0, 0)
	return int(r), errno
}

func enter(fd int, toSubmit, minComplete, flags uint32, arg unsafe.Pointer, argSize uintptr) (int, unix.Errno) {
	r, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), uintptr(arg), argSize)
	return int(r), errno
}
