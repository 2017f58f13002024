//go:build darwin || freebsd || netbsd || openbsd

package poller

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// kqueue is the BSD and macOS backend. Read and write readiness are two
// separate filters per descriptor, so Modify adds or deletes only the
// filter whose interest changed; interest tracks which are registered,
// because deleting a filter that is not there is an error. Filters are
// level-triggered (no EV_CLEAR), like every other backend.
type kqueue struct {
	kq       int
	wk       *waker
	interest []uint8 // fd -> kqRead|kqWrite currently registered
	changes  [2]unix.Kevent_t
	evs      []unix.Kevent_t
}

const (
	kqRead  = 1
	kqWrite = 2
	kqAdded = 4 // registered with the poller, even with no filter
)

func init() { register("kqueue", newKqueue) }

func newKqueue() (Poller, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, os.NewSyscallError("kqueue", err)
	}
	unix.CloseOnExec(kq)
	wk, err := newWaker()
	if err != nil {
		unix.Close(kq)
		return nil, os.NewSyscallError("waker", err)
	}
	p := &kqueue{kq: kq, wk: wk}
	if err := p.Add(wk.readFd(), true, false); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *kqueue) state(fd int) uint8 {
	if fd < 0 || fd >= len(p.interest) {
		return 0
	}
	return p.interest[fd]
}

// apply registers the difference between fd's current filters and want.
func (p *kqueue) apply(fd int, want uint8) error {
	have := p.state(fd)
	n := 0
	for _, f := range [...]struct {
		bit    uint8
		filter int
	}{{kqRead, unix.EVFILT_READ}, {kqWrite, unix.EVFILT_WRITE}} {
		switch {
		case want&f.bit != 0 && have&f.bit == 0:
			unix.SetKevent(&p.changes[n], fd, f.filter, unix.EV_ADD|unix.EV_ENABLE)
			n++
		case want&f.bit == 0 && have&f.bit != 0:
			unix.SetKevent(&p.changes[n], fd, f.filter, unix.EV_DELETE)
			n++
		}
	}
	if n > 0 {
		if _, err := unix.Kevent(p.kq, p.changes[:n], nil, nil); err != nil {
			return os.NewSyscallError("kevent", err)
		}
	}
	for fd >= len(p.interest) {
		p.interest = append(p.interest, make([]uint8, len(p.interest)+64)...)
	}
	p.interest[fd] = want
	return nil
}

func kqMask(read, write bool) uint8 {
	m := uint8(kqAdded)
	if read {
		m |= kqRead
	}
	if write {
		m |= kqWrite
	}
	return m
}

func (p *kqueue) Add(fd int, read, write bool) error {
	if fd < 0 {
		return fmt.Errorf("kqueue: bad descriptor %d", fd)
	}
	if p.state(fd) != 0 {
		return fmt.Errorf("kqueue: descriptor %d already registered", fd)
	}
	return p.apply(fd, kqMask(read, write))
}

func (p *kqueue) Modify(fd int, read, write bool) error {
	if p.state(fd) == 0 {
		return fmt.Errorf("kqueue: descriptor %d not registered", fd)
	}
	return p.apply(fd, kqMask(read, write))
}

func (p *kqueue) Delete(fd int) error {
	if p.state(fd) == 0 {
		return fmt.Errorf("kqueue: descriptor %d not registered", fd)
	}
	err := p.apply(fd, kqAdded)
	p.interest[fd] = 0
	return err
}

func (p *kqueue) Wait(events []Event, timeout time.Duration) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	if len(p.evs) < len(events) {
		p.evs = make([]unix.Kevent_t, len(events))
	}
	var ts *unix.Timespec
	if timeout >= 0 {
		t := unix.NsecToTimespec(timeout.Nanoseconds())
		ts = &t
	}
	n, err := unix.Kevent(p.kq, nil, p.evs[:len(events)], ts)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, os.NewSyscallError("kevent", err)
	}
	j := 0
	for i := range n {
		ev := &p.evs[i]
		fd := int(ev.Ident)
		if fd == p.wk.readFd() {
			p.wk.drain()
			continue
		}
		e := Event{Fd: int32(fd), HangUp: ev.Flags&unix.EV_ERROR != 0}
		switch ev.Filter {
		case unix.EVFILT_READ:
			// EV_EOF on the read filter is the peer's FIN: data may still
			// be queued before it, so it is a plain read event.
			e.Readable = true
		case unix.EVFILT_WRITE:
			e.Writable = true
			e.HangUp = e.HangUp || ev.Flags&unix.EV_EOF != 0
		}
		events[j] = e
		j++
	}
	return j, nil
}

func (p *kqueue) Wake() error { return p.wk.wake() }

func (p *kqueue) Close() error {
	p.wk.close()
	return unix.Close(p.kq)
}

func (p *kqueue) Name() string { return "kqueue" }
