package poller

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// waker lets another goroutine end a Wait. On Linux it is an eventfd: one
// descriptor, and any number of wakes before the loop drains it cost one
// readable event.
type waker struct {
	fd  int
	buf [8]byte // drain target; only the owning loop reads into it
}

// wakeOne is the eventfd increment: the kernel reads a native-endian
// uint64, and 1 keeps the counter far from saturation.
var wakeOne = func() (b [8]byte) {
	binary.NativeEndian.PutUint64(b[:], 1)
	return b
}()

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &waker{fd: fd}, nil
}

// readFd is the descriptor the backend watches for readability.
func (w *waker) readFd() int { return w.fd }

func (w *waker) wake() error {
	_, err := unix.Write(w.fd, wakeOne[:])
	if errors.Is(err, unix.EAGAIN) {
		return nil // counter saturated: the loop is already due to wake
	}
	return err
}

// drain resets the counter so the next Wait blocks again.
func (w *waker) drain() { unix.Read(w.fd, w.buf[:]) }

func (w *waker) close() error { return unix.Close(w.fd) }
