//go:build darwin || openbsd

package rawio

import "golang.org/x/sys/unix"

// macOS and OpenBSD reach the kernel through libc, so reads and writes go
// through x/sys.

// Read reads from a non-blocking descriptor.
func Read(fd int, p []byte) (int, error) { return unix.Read(fd, p) }

// Write writes to a non-blocking descriptor.
func Write(fd int, p []byte) (int, error) { return unix.Write(fd, p) }

// VecWriter gathers several buffers into one writev(2), through x/sys's
// Writev, which keeps up to eight iovecs on the stack.
type VecWriter struct{}

// Write writes bufs, in order, with one writev(2).
func (v *VecWriter) Write(fd int, bufs [][]byte) (int, error) {
	return unix.Writev(fd, bufs)
}
