//go:build darwin || netbsd || openbsd

package sockfd

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Accept takes one pending connection and makes it non-blocking and
// close-on-exec. Without accept4 that takes three calls; ForkLock keeps a
// concurrent fork+exec from inheriting the descriptor in between, as Go's
// own net package does.
func Accept(fd int) (int, unix.Sockaddr, error) {
	syscall.ForkLock.RLock()
	nfd, sa, err := unix.Accept(fd)
	if err == nil {
		unix.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, nil, err
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, nil, err
	}
	return nfd, sa, nil
}
