//go:build linux

package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MsgArena holds count Msgs, each a msghdr and up to maxIov iovecs, in one
// anonymous mapping outside the Go heap: the kernel reads a sendmsg's
// header and iovecs when it runs the request, which may be long after the
// SQE was submitted (a full socket send queue), so they must stay put and
// alive until the completion whatever the collector does meanwhile.
// Size the arena by sends in flight (at most one per connection), not by
// connections, so idle connections cost nothing.
type MsgArena struct {
	mem  []byte
	msgs []Msg
}

// Msg is a sendmsg's gather list. The buffers appended to it are pinned
// (runtime.Pinner) until Reset, so Go heap memory can be appended and the
// collector neither frees nor moves it while the kernel may read it;
// memory outside the Go heap (BufRing buffers) needs no pin.
type Msg struct {
	hdr   *msghdr
	iov   []iovec
	n     int
	first int // iovecs before it were fully sent (see Advance)
	pin   runtime.Pinner
}

// NewMsgArena maps count Msgs of up to maxIov buffers each.
func NewMsgArena(count, maxIov int) (*MsgArena, error) {
	if count <= 0 || maxIov <= 0 || maxIov > 1024 {
		return nil, fmt.Errorf("io_uring: message arena of %d × %d iovecs is out of range", count, maxIov)
	}
	hdrSize, iovSize := int(unsafe.Sizeof(msghdr{})), int(unsafe.Sizeof(iovec{}))
	per := (hdrSize + maxIov*iovSize + 15) &^ 15
	mem, err := unix.Mmap(-1, 0, count*per, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("io_uring: mmap of the message arena: %w", err)
	}
	a := &MsgArena{mem: mem, msgs: make([]Msg, count)}
	for i := range a.msgs {
		base := unsafe.Pointer(&mem[i*per])
		a.msgs[i].hdr = (*msghdr)(base)
		a.msgs[i].iov = unsafe.Slice((*iovec)(unsafe.Add(base, hdrSize)), maxIov)
	}
	return a, nil
}

// Len is the number of Msgs.
func (a *MsgArena) Len() int { return len(a.msgs) }

// Msg returns Msg i; the caller decides which is free.
func (a *MsgArena) Msg(i int) *Msg { return &a.msgs[i] }

// Close unpins and unmaps every Msg; none may be in flight.
func (a *MsgArena) Close() error {
	if a.mem == nil {
		return nil
	}
	for i := range a.msgs {
		a.msgs[i].Reset()
	}
	err := unix.Munmap(a.mem)
	a.mem, a.msgs = nil, nil
	return err
}

// Append adds b to the gather list, or reports false when it is full.
func (m *Msg) Append(b []byte) bool {
	if m.n == len(m.iov) {
		return false
	}
	if len(b) == 0 {
		return true
	}
	p := unsafe.SliceData(b)
	m.pin.Pin(p)
	m.iov[m.n] = iovec{base: uintptr(unsafe.Pointer(p)), len: uintptr(len(b))}
	m.n++
	m.sync()
	return true
}

// Len is the number of bytes still to send.
func (m *Msg) Len() int {
	t := 0
	for _, v := range m.iov[m.first:m.n] {
		t += int(v.len)
	}
	return t
}

// Advance drops the first n bytes after a short send, so that the same
// Msg can be submitted again for the rest; it reports whether anything is
// left.
func (m *Msg) Advance(n int) bool {
	for n > 0 && m.first < m.n {
		v := &m.iov[m.first]
		if uintptr(n) < v.len {
			v.base += uintptr(n)
			v.len -= uintptr(n)
			break
		}
		n -= int(v.len)
		m.first++
	}
	m.sync()
	return m.first < m.n
}

func (m *Msg) sync() {
	*m.hdr = msghdr{iovlen: uintptr(m.n - m.first)}
	if m.first < m.n {
		m.hdr.iov = uintptr(unsafe.Pointer(&m.iov[m.first]))
	}
}

// Reset empties the list and unpins its buffers; the completion of the
// sendmsg that used it must have been reaped.
func (m *Msg) Reset() {
	m.pin.Unpin()
	m.n, m.first = 0, 0
	if m.hdr != nil {
		m.sync()
	}
}

// Eventfd wakes a ring from other goroutines: they Wake, and the ring
// keeps a read of the eventfd armed, whose completion is the wake-up.
// The read's 8-byte target is mapped outside the Go heap because the
// kernel writes it whenever the read completes.
type Eventfd struct {
	fd  int
	mem []byte
}

var wakeOne = binary.NativeEndian.AppendUint64(nil, 1)

// NewEventfd creates a non-blocking eventfd.
func NewEventfd() (*Eventfd, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	mem, err := unix.Mmap(-1, 0, 8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("io_uring: mmap of the eventfd buffer: %w", err)
	}
	return &Eventfd{fd: fd, mem: mem}, nil
}

// Fd is the eventfd's descriptor.
func (e *Eventfd) Fd() int { return e.fd }

// Wake makes the armed read complete; any goroutine may call it, and
// wakes before the read is re-armed merge into one.
func (e *Eventfd) Wake() error {
	_, err := unix.Write(e.fd, wakeOne)
	if errors.Is(err, unix.EAGAIN) {
		return nil // the counter is saturated: a wake-up is already due
	}
	return err
}

// PrepRead arms the read that a Wake completes (Res 8). Re-arm it after
// each completion.
func (e *Eventfd) PrepRead(s *SQE) { s.PrepRead(e.fd, e.mem) }

// Close closes the eventfd and unmaps its buffer; the read must have
// completed or the ring been closed.
func (e *Eventfd) Close() error {
	if e.mem == nil {
		return nil
	}
	err := errors.Join(unix.Close(e.fd), unix.Munmap(e.mem))
	e.mem = nil
	return err
}

// WakeRing posts a completion carrying userData (Res res) on the ring whose
// descriptor is ringFd, from any goroutine and without a ring of its own
// (IORING_REGISTER_SEND_MSG_RING, Linux 6.13): one system call, and the
// ring needs nothing armed. Where the kernel lacks it the error is EINVAL
// and Eventfd is the fallback. The SQE is read during the call only.
func WakeRing(ringFd int, userData uint64, res int32) error {
	var s SQE
	s.PrepMsgRing(ringFd, res, userData)
	if _, errno := register(-1, registerSendMsgRing, unsafe.Pointer(&s), 1); errno != 0 {
		return fmt.Errorf("io_uring: send msg_ring: %w", errno)
	}
	return nil
}
