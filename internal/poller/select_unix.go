//go:build linux || darwin || freebsd || netbsd || openbsd

package poller

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FdSetSize is FD_SETSIZE, the number of descriptors an fd_set holds:
// select(2) cannot watch a descriptor numbered at or above it.
const FdSetSize = int(unsafe.Sizeof(unix.FdSet{})) * 8

// selectPoller is the select(2) backend, the one the seeds' tutorial
// servers use: three bitmaps copied into the kernel and scanned back on
// every call, O(highest descriptor) per Wait, and no descriptor numbered
// FD_SETSIZE (1024) or above. Add refuses those with ErrFdTooLarge instead
// of corrupting memory, which is what FD_SET does in C.
type selectPoller struct {
	rset, wset unix.FdSet // interest
	reg        unix.FdSet // registered, to find the new maximum on Delete
	rout, wout unix.FdSet // scratch for the kernel's answer
	maxfd      int
	wk         *waker
}

func init() {
	register("select", newSelect)
	fdCeilings["select"] = FdSetSize
}

func newSelect() (Poller, error) {
	wk, err := newWaker()
	if err != nil {
		return nil, os.NewSyscallError("waker", err)
	}
	p := &selectPoller{wk: wk, maxfd: -1}
	if err := p.Add(wk.readFd(), true, false); err != nil {
		wk.close()
		return nil, err
	}
	return p, nil
}

func (p *selectPoller) check(fd int) error {
	if fd < 0 || fd >= FdSetSize {
		return fmt.Errorf("%w: select: descriptor %d, FD_SETSIZE is %d", ErrFdTooLarge, fd, FdSetSize)
	}
	return nil
}

func (p *selectPoller) Add(fd int, read, write bool) error {
	if err := p.check(fd); err != nil {
		return err
	}
	if p.reg.IsSet(fd) {
		return fmt.Errorf("select: descriptor %d already registered", fd)
	}
	p.reg.Set(fd)
	p.maxfd = max(p.maxfd, fd)
	return p.Modify(fd, read, write)
}

func (p *selectPoller) Modify(fd int, read, write bool) error {
	if p.check(fd) != nil || !p.reg.IsSet(fd) {
		return fmt.Errorf("select: descriptor %d not registered", fd)
	}
	if read {
		p.rset.Set(fd)
	} else {
		p.rset.Clear(fd)
	}
	if write {
		p.wset.Set(fd)
	} else {
		p.wset.Clear(fd)
	}
	return nil
}

func (p *selectPoller) Delete(fd int) error {
	if p.check(fd) != nil || !p.reg.IsSet(fd) {
		return fmt.Errorf("select: descriptor %d not registered", fd)
	}
	p.rset.Clear(fd)
	p.wset.Clear(fd)
	p.reg.Clear(fd)
	for p.maxfd >= 0 && !p.reg.IsSet(p.maxfd) {
		p.maxfd--
	}
	return nil
}

// Wait reports at most len(events) descriptors; a caller whose buffer holds
// FdSetSize events never loses one, and with a shorter buffer the rest are
// reported by the next call, since select is level-triggered.
func (p *selectPoller) Wait(events []Event, timeout time.Duration) (int, error) {
	p.rout, p.wout = p.rset, p.wset
	var tv *unix.Timeval
	if timeout >= 0 {
		t := unix.NsecToTimeval(timeout.Nanoseconds())
		tv = &t
	}
	n, err := unix.Select(p.maxfd+1, &p.rout, &p.wout, nil, tv)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, os.NewSyscallError("select", err)
	}
	j := 0
	for fd := 0; fd <= p.maxfd && n > 0 && j < len(events); fd++ {
		r, w := p.rout.IsSet(fd), p.wout.IsSet(fd)
		if !r && !w {
			continue
		}
		if r {
			n--
		}
		if w {
			n--
		}
		if fd == p.wk.readFd() {
			p.wk.drain()
			continue
		}
		events[j] = Event{Fd: int32(fd), Readable: r, Writable: w}
		j++
	}
	return j, nil
}

func (p *selectPoller) Wake() error { return p.wk.wake() }

func (p *selectPoller) Close() error { return p.wk.close() }

func (p *selectPoller) Name() string { return "select" }
