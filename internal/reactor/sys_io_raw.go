//go:build linux || freebsd || netbsd

package reactor

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket reads and writes go through RawSyscall: the descriptors are
// non-blocking, so the call never waits, and skipping the runtime's
// entersyscall/exitsyscall bookkeeping saves a measurable share of the
// per-message CPU. Blocking calls (the poller's Wait) keep the ordinary
// path, so the scheduler can hand the P to other goroutines meanwhile.

func sysRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func sysWrite(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// vecWriter gathers several outbox chunks into one writev(2). Its iovec
// array is reused, so a flush allocates nothing (x/sys's Writev builds a
// fresh one on every call).
type vecWriter struct{ iov []unix.Iovec }

func (v *vecWriter) write(fd int, bufs [][]byte) (int, error) {
	v.iov = v.iov[:0]
	for _, b := range bufs {
		iov := unix.Iovec{Base: unsafe.SliceData(b)}
		iov.SetLen(len(b))
		v.iov = append(v.iov, iov)
	}
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(v.iov))), uintptr(len(v.iov)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
