//go:build linux || freebsd || netbsd

package rawio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket reads and writes go through RawSyscall: the descriptors are
// non-blocking, so the call never waits, and skipping the runtime's
// entersyscall/exitsyscall bookkeeping saves a measurable share of the
// per-message CPU. Blocking calls (the poller's Wait) keep the ordinary
// path, so the scheduler can hand the P to other goroutines meanwhile.

// Read reads from a non-blocking descriptor.
func Read(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// Write writes to a non-blocking descriptor.
func Write(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// VecWriter gathers several buffers into one writev(2). Its iovec array
// is reused, so a write allocates nothing (x/sys's Writev builds a fresh
// one on every call). The zero value is ready; one VecWriter serves one
// goroutine.
type VecWriter struct{ iov []unix.Iovec }

// Write writes bufs, in order, with one writev(2).
func (v *VecWriter) Write(fd int, bufs [][]byte) (int, error) {
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
