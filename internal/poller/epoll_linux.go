package poller

import (
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"switchboard/internal/rawio"
)

// epoll is the Linux backend: the kernel keeps the interest set, so a Wait
// costs O(ready) rather than O(registered), and changing interest is one
// epoll_ctl. Registration is level-triggered, like every backend's (why:
// ARCHITECTURE.md, "Why level-triggered").
type epoll struct {
	epfd int
	wk   *waker
	evs  []unix.EpollEvent // kernel-format buffer, as long as the caller's
}

func init() { register("epoll", newEpoll) }

func newEpoll() (Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wk, err := newWaker()
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &epoll{epfd: epfd, wk: wk}
	if err := p.ctl(unix.EPOLL_CTL_ADD, wk.readFd(), unix.EPOLLIN); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func epollMask(read, write bool) uint32 {
	var m uint32
	if read {
		m |= unix.EPOLLIN
	}
	if write {
		m |= unix.EPOLLOUT
	}
	return m
}

func (p *epoll) ctl(op, fd int, mask uint32) error {
	ev := unix.EpollEvent{Events: mask, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (p *epoll) Add(fd int, read, write bool) error {
	return p.ctl(unix.EPOLL_CTL_ADD, fd, epollMask(read, write))
}

func (p *epoll) Modify(fd int, read, write bool) error {
	return p.ctl(unix.EPOLL_CTL_MOD, fd, epollMask(read, write))
}

func (p *epoll) Delete(fd int) error { return p.ctl(unix.EPOLL_CTL_DEL, fd, 0) }

func (p *epoll) Wait(events []Event, timeout time.Duration) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	if len(p.evs) < len(events) {
		p.evs = make([]unix.EpollEvent, len(events))
	}
	var n int
	var err error
	if timeout == 0 {
		// A poll that cannot block skips the scheduler's syscall
		// bookkeeping, like the reactor's reads and writes.
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.evs[0])), uintptr(len(events)), 0, 0, 0)
		n = int(r)
		if e != 0 {
			err = e
		}
	} else {
		n, err = unix.EpollWait(p.epfd, p.evs[:len(events)], rawio.Millis(timeout))
	}
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, os.NewSyscallError("epoll_wait", err)
	}
	j := 0
	for i := range n {
		ev := &p.evs[i]
		if int(ev.Fd) == p.wk.fd {
			p.wk.drain()
			continue
		}
		events[j] = Event{
			Fd:       ev.Fd,
			Readable: ev.Events&unix.EPOLLIN != 0,
			Writable: ev.Events&unix.EPOLLOUT != 0,
			HangUp:   ev.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0,
		}
		j++
	}
	return j, nil
}

func (p *epoll) Wake() error { return p.wk.wake() }

func (p *epoll) Close() error {
	p.wk.close()
	return unix.Close(p.epfd)
}

func (p *epoll) Name() string { return "epoll" }
