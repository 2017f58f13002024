package sockfd

import (
	"time"

	"golang.org/x/sys/unix"
)

// SetKeepAlive turns on TCP keepalive. OpenBSD has no per-socket timing:
// the probes follow the net.inet.tcp.keepidle and keepintvl sysctls.
func SetKeepAlive(fd int, _ time.Duration) {
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
}
