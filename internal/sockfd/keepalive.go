//go:build linux || freebsd || netbsd

package sockfd

import (
	"time"

	"golang.org/x/sys/unix"
)

// SetKeepAlive turns on TCP keepalive probes after d of silence, then every
// d, as Go's net.KeepAliveConfig does with Idle and Interval both d.
func SetKeepAlive(fd int, d time.Duration) {
	secs := max(int((d+time.Second-1)/time.Second), 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs)
}
