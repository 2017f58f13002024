//go:build linux || freebsd

package sockfd

import "golang.org/x/sys/unix"

// Accept takes one pending connection, already non-blocking and
// close-on-exec, in one system call.
func Accept(fd int) (int, unix.Sockaddr, error) {
	return unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
}
