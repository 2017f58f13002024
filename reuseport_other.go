//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package switchboard

import (
	"fmt"
	"syscall"
)

func setReusePort(network, address string, c syscall.RawConn) error {
	return fmt.Errorf("%w: SO_REUSEPORT on this platform", ErrUnsupported)
}
