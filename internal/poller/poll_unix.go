//go:build linux || darwin || freebsd || netbsd || openbsd

package poller

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/internal/rawio"
)

// pollPoller is the poll(2) backend: no descriptor-number limit, but every
// Wait hands the kernel the whole interest array and scans it back, so it
// costs O(registered) per call.
//
// The array is kept dense: idx maps a descriptor to its slot, and Delete
// moves the last slot into the hole. Wait copies what fired into the
// caller's events before returning, so a Delete while the caller walks
// them cannot skip or repeat an event.
type pollPoller struct {
	fds  []unix.PollFd // slot 0 is the waker
	idx  []int32       // fd -> slot+1; 0 = not registered
	wk   *waker
	next int // slot where the next scan starts, for fairness on overflow
}

func init() { register("poll", newPoll) }

func newPoll() (Poller, error) {
	wk, err := newWaker()
	if err != nil {
		return nil, os.NewSyscallError("waker", err)
	}
	p := &pollPoller{wk: wk}
	p.fds = append(p.fds, unix.PollFd{Fd: int32(wk.readFd()), Events: unix.POLLIN})
	return p, nil
}

func pollMask(read, write bool) int16 {
	var m int16
	if read {
		m |= unix.POLLIN
	}
	if write {
		m |= unix.POLLOUT
	}
	return m
}

func (p *pollPoller) slot(fd int) int {
	if fd < 0 || fd >= len(p.idx) {
		return -1
	}
	return int(p.idx[fd]) - 1
}

func (p *pollPoller) Add(fd int, read, write bool) error {
	if fd < 0 {
		return fmt.Errorf("poll: bad descriptor %d", fd)
	}
	if p.slot(fd) >= 0 {
		return fmt.Errorf("poll: descriptor %d already registered", fd)
	}
	for fd >= len(p.idx) {
		p.idx = append(p.idx, make([]int32, len(p.idx)+64)...)
	}
	p.fds = append(p.fds, unix.PollFd{Fd: int32(fd), Events: pollMask(read, write)})
	p.idx[fd] = int32(len(p.fds))
	return nil
}

func (p *pollPoller) Modify(fd int, read, write bool) error {
	i := p.slot(fd)
	if i < 0 {
		return fmt.Errorf("poll: descriptor %d not registered", fd)
	}
	p.fds[i].Events = pollMask(read, write)
	return nil
}

func (p *pollPoller) Delete(fd int) error {
	i := p.slot(fd)
	if i < 0 {
		return fmt.Errorf("poll: descriptor %d not registered", fd)
	}
	last := len(p.fds) - 1
	if i != last {
		p.fds[i] = p.fds[last]
		p.idx[p.fds[i].Fd] = int32(i + 1)
	}
	p.fds = p.fds[:last]
	p.idx[fd] = 0
	return nil
}

func (p *pollPoller) Wait(events []Event, timeout time.Duration) (int, error) {
	n, err := unix.Poll(p.fds, rawio.Millis(timeout))
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, os.NewSyscallError("poll", err)
	}
	if n == 0 {
		return 0, nil
	}
	if p.fds[0].Revents != 0 {
		p.wk.drain()
		n--
	}
	// Walk the slots from where the last overflowing scan stopped, so a
	// caller with a short events buffer cannot starve the later slots.
	total := len(p.fds) - 1
	if p.next >= total {
		p.next = 0
	}
	j := 0
	i := p.next
	for k := 0; k < total && n > 0; k++ {
		pfd := &p.fds[1+i]
		if re := pfd.Revents; re != 0 {
			n--
			if j == len(events) {
				p.next = i
				return j, nil
			}
			events[j] = Event{
				Fd:       pfd.Fd,
				Readable: re&unix.POLLIN != 0,
				Writable: re&unix.POLLOUT != 0,
				HangUp:   re&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0,
			}
			j++
		}
		if i++; i == total {
			i = 0
		}
	}
	p.next = i
	return j, nil
}

func (p *pollPoller) Wake() error { return p.wk.wake() }

func (p *pollPoller) Close() error { return p.wk.close() }

func (p *pollPoller) Name() string { return "poll" }
