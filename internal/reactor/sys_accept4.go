//go:build linux || freebsd

package reactor

import "golang.org/x/sys/unix"

// accept takes one pending connection, already non-blocking and
// close-on-exec, in one system call.
func accept(fd int) (int, unix.Sockaddr, error) {
	return unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
}
