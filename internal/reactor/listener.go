//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"fmt"
	"net"

	"switchboard/internal/loopconn"
	"switchboard/internal/sockfd"
)

// listener is a listening socket a loop accepts on (sockfd.Listener), and
// the loop's own state for it.
type listener struct {
	sockfd.Listener
	id uint16 // in the server's table (loopconn.Server.AddListener)
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

// errTooManyListeners refuses a Serve with more listeners than a
// connection can name.
var errTooManyListeners = fmt.Errorf("switchboard: at most %d listeners", loopconn.MaxListeners)
