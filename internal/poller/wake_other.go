//go:build darwin || freebsd || netbsd || openbsd

package poller

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// waker lets another goroutine end a Wait: a non-blocking pipe, the
// portable self-pipe trick. Wakes that find the pipe full are dropped,
// since the loop is already due to wake.
type waker struct {
	r, w int
	buf  [128]byte // drain target; only the owning loop reads into it
}

var wakeByte = [1]byte{1}

func newWaker() (*waker, error) {
	var p [2]int
	// ForkLock keeps a concurrent fork+exec from inheriting the pipe
	// between pipe(2) and the close-on-exec flag.
	syscall.ForkLock.RLock()
	err := unix.Pipe(p[:])
	if err == nil {
		unix.CloseOnExec(p[0])
		unix.CloseOnExec(p[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, err
	}
	for _, fd := range p {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(p[0])
			unix.Close(p[1])
			return nil, err
		}
	}
	return &waker{r: p[0], w: p[1]}, nil
}

func (w *waker) readFd() int { return w.r }

func (w *waker) wake() error {
	_, err := unix.Write(w.w, wakeByte[:])
	if errors.Is(err, unix.EAGAIN) {
		return nil
	}
	return err
}

// drain empties the pipe so the next Wait blocks again.
func (w *waker) drain() {
	for {
		n, err := unix.Read(w.r, w.buf[:])
		if n < len(w.buf) || err != nil {
			return
		}
	}
}

func (w *waker) close() error {
	unix.Close(w.w)
	return unix.Close(w.r)
}
