package client

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrTimeout matches, with errors.Is, every error caused by a dial timeout,
// a per-operation timeout or a deadline set with SetDeadline.
var ErrTimeout = errors.New("timed out")

// Error is the error of a failed operation on a connection.
type Error struct {
	// Op is the operation: "connect", "handshake" (TLS), "send",
	// "receive" or "close-write".
	Op string
	// Addr is the server's address as given to Dial (or the remote address
	// of a connection made with New).
	Addr string
	// Timeout is the per-operation timeout that expired, when one did (0
	// for an absolute deadline).
	Timeout time.Duration
	// Err is the cause.
	Err error
}

// Error returns "op addr: cause", with the cause in the plain words of the
// system ("connection refused", "connection reset by peer", "timed out
// after 5s").
func (e *Error) Error() string {
	return e.Op + " " + e.Addr + ": " + e.cause()
}

func (e *Error) cause() string {
	if e.isTimeout() {
		if e.Timeout > 0 {
			return "timed out after " + e.Timeout.String()
		}
		return "timed out"
	}
	var errno syscall.Errno
	if errors.As(e.Err, &errno) {
		return errno.Error()
	}
	if errors.Is(e.Err, net.ErrClosed) {
		return "connection closed"
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrTimeout) true for timeouts of every kind.
func (e *Error) Is(target error) bool { return target == ErrTimeout && e.isTimeout() }

func (e *Error) isTimeout() bool {
	if errors.Is(e.Err, os.ErrDeadlineExceeded) || errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

func (c *Conn) opError(op string, err error) error {
	var d time.Duration
	if !c.fixedDeadline.Load() {
		d = c.timeout
	}
	return newError(op, c.addr, err, d)
}

// newError builds an Error, recording the timeout d only when it is what
// expired.
func newError(op, addr string, err error, d time.Duration) *Error {
	e := &Error{Op: op, Addr: addr, Err: err}
	if e.isTimeout() {
		e.Timeout = d
	}
	return e
}
