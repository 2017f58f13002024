//go:build darwin || openbsd

package reactor

import "golang.org/x/sys/unix"

// macOS and OpenBSD reach the kernel through libc, so reads and writes go
// through x/sys.

func sysRead(fd int, p []byte) (int, error)  { return unix.Read(fd, p) }
func sysWrite(fd int, p []byte) (int, error) { return unix.Write(fd, p) }

// vecWriter gathers several outbox chunks into one writev(2), through
// x/sys's Writev, which keeps up to eight iovecs on the stack.
type vecWriter struct{}

func (v *vecWriter) write(fd int, bufs [][]byte) (int, error) {
	return unix.Writev(fd, bufs)
}
