//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"net"

	"switchboard/internal/sockfd"
)

// listener is a listening socket a loop accepts on (sockfd.Listener), and
// the loop's own state for it.
type listener struct {
	sockfd.Listener
	// Accepting pauses after running out of descriptors with no spare
	// left to shed the backlog with.
	paused      bool
	resumeAfter int64
}

func newListener(ln net.Listener) (*listener, error) {
	li, err := sockfd.NewListener(ln)
	if err != nil {
		return nil, err
	}
	return &listener{Listener: *li}, nil
}
