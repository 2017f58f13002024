//go:build linux

package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ringBuf is struct io_uring_buf; entry 0's last field doubles as the
// ring's tail (struct io_uring_buf_ring overlays them).
type ringBuf struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// BufRing is a provided-buffer ring (IORING_REGISTER_PBUF_RING): a pool
// of equal buffers the kernel takes from when a receive completes, so a
// connection holds a buffer only between a completion and its Recycle,
// and an idle connection holds none.
//
// Both the ring of descriptors and the buffers are anonymous mmap memory,
// outside the Go heap: the kernel writes received data into the buffers
// at any moment while they are in the ring, and the collector must never
// move or free them; munmap in Close is their only release, after the
// group is unregistered. Use it on the ring's thread only.
type BufRing struct {
	ring     *Ring
	group    uint16
	mask     uint16
	size     int
	mem      []byte    // descriptor ring
	descs    []ringBuf // view of mem
	data     []byte    // count*size bytes of buffers
	tail     uint16    // staged tail, published by Publish
	tailWord *uint32   // the aligned word holding descs[0].resv (the tail)
	slotBid  []uint16  // the id staged in each slot, for walking bundles
	head     uint16    // the next slot the kernel will consume
	inc      bool      // IOU_PBUF_RING_INC: buffers are consumed a receive's bytes at a time
	off      int       // inc: how much of the head buffer the kernel has filled
	open     bool      // inc: the head buffer is partly filled, so Recycle leaves it in the ring
}

// ErrBufOrder means a completion named a different buffer than the next
// one in the ring, so bundle accounting cannot continue; it indicates a
// bug (two users of one group, or a recycled id that was not taken).
var ErrBufOrder = errors.New("io_uring: provided buffer out of ring order")

// NewBufRing registers group as a buffer ring of count buffers of size
// bytes each (count a power of two, at most 32768) and gives every buffer
// to the kernel.
func (r *Ring) NewBufRing(group uint16, count, size int) (*BufRing, error) {
	return r.newBufRing(group, count, size, false)
}

// ErrNoIncBuf means the kernel cannot consume provided buffers
// incrementally (IOU_PBUF_RING_INC, Linux 6.12).
var ErrNoIncBuf = errors.New("io_uring: incremental buffer rings need Linux 6.12")

// NewIncBufRing is NewBufRing with incremental consumption
// (IOU_PBUF_RING_INC): a receive takes only as many bytes of the head
// buffer as it received, and the next receive, on any connection,
// continues in the same buffer, so large buffers cost no more per small
// message than small ones do and a large read lands in one piece. Bundle
// tracks where each completion's bytes start; a buffer goes back to the
// kernel once it is full and every piece of it has been recycled. Where
// the kernel lacks the feature the error wraps ErrNoIncBuf.
func (r *Ring) NewIncBufRing(group uint16, count, size int) (*BufRing, error) {
	return r.newBufRing(group, count, size, true)
}

func (r *Ring) newBufRing(group uint16, count, size int, inc bool) (*BufRing, error) {
	if count <= 0 || count > 1<<15 || count&(count-1) != 0 {
		return nil, fmt.Errorf("io_uring: buffer ring size %d is not a power of two in [1, 32768]", count)
	}
	if size <= 0 || size > 1<<31-1 {
		return nil, fmt.Errorf("io_uring: buffer size %d out of range", size)
	}
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS
	b := &BufRing{ring: r, group: group, mask: uint16(count - 1), size: size, slotBid: make([]uint16, count), inc: inc}
	var err error
	if b.mem, err = unix.Mmap(-1, 0, count*int(unsafe.Sizeof(ringBuf{})), prot, flags); err != nil {
		return nil, fmt.Errorf("io_uring: mmap of the buffer ring: %w", err)
	}
	if b.data, err = unix.Mmap(-1, 0, count*size, prot, flags); err != nil {
		unix.Munmap(b.mem)
		return nil, fmt.Errorf("io_uring: mmap of %d buffers of %d bytes: %w", count, size, err)
	}
	b.descs = unsafe.Slice((*ringBuf)(unsafe.Pointer(&b.mem[0])), count)
	b.tailWord = (*uint32)(unsafe.Pointer(&b.mem[12]))
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&b.mem[0]))), ringEntries: uint32(count), bgid: group}
	if inc {
		reg.flags = pbufRingInc
	}
	if _, errno := register(r.fd, registerPbufRing, unsafe.Pointer(&reg), 1); errno != 0 {
		unix.Munmap(b.data)
		unix.Munmap(b.mem)
		if errno == unix.EINVAL && inc {
			return nil, fmt.Errorf("%w: %w", ErrNoIncBuf, errno)
		}
		if errno == unix.EINVAL {
			return nil, fmt.Errorf("io_uring: buffer rings need Linux 5.19: %w", errno)
		}
		return nil, fmt.Errorf("io_uring: register buffer ring %d: %w", group, errno)
	}
	for id := range count {
		b.Recycle(uint16(id))
	}
	b.Publish()
	return b, nil
}

// Group is the buffer group id to pass to PrepRecv.
func (b *BufRing) Group() uint16 { return b.group }

// Size is each buffer's length.
func (b *BufRing) Size() int { return b.size }

// Buf is buffer id's memory, its full size.
func (b *BufRing) Buf(id uint16) []byte {
	off := int(id) * b.size
	return b.data[off : off+b.size : off+b.size]
}

// Incremental reports whether the ring consumes buffers incrementally.
func (b *BufRing) Incremental() bool { return b.inc }

// Recycle stages buffer id's return to the kernel; Publish makes staged
// buffers visible. The caller must own id: taken from a completion and
// not recycled since. On an incremental ring, the piece of a buffer the
// kernel is still filling is released by Recycle but the buffer stays in
// the ring; its last piece's Recycle stages it.
func (b *BufRing) Recycle(id uint16) {
	if b.open && id == b.slotBid[b.head&b.mask] {
		return
	}
	slot := b.tail & b.mask
	// Field by field: slot 0's resv is the shared tail, which only
	// Publish may store.
	d := &b.descs[slot]
	d.addr = uint64(uintptr(unsafe.Pointer(&b.data[int(id)*b.size])))
	d.len = uint32(b.size)
	d.bid = id
	b.slotBid[slot] = id
	b.tail++
}

// Publish hands every staged buffer to the kernel with one release store
// of the ring's tail. The tail is a 16-bit field sharing an aligned word
// with entry 0's id, and Go has no 16-bit atomics, so the whole word is
// stored; this process is its only writer, and the id half is rewritten
// with the value it already holds.
func (b *BufRing) Publish() {
	w := atomic.LoadUint32(b.tailWord)
	(*[2]uint16)(unsafe.Pointer(&w))[1] = b.tail
	atomic.StoreUint32(b.tailWord, w)
}

// Bundle calls f for each buffer a receive completion filled, in order,
// with the bytes received into it, and returns how many buffers that was
// (0 when the completion carries no buffer). Every completion with a
// buffer from this group must go through Bundle, in completion order, so
// that the ring's consumption is tracked; a bundle receive fills
// consecutive ring slots, whose ids only this accounting knows. f owns
// each buffer until it recycles it.
func (b *BufRing) Bundle(c *CQE, f func(id uint16, data []byte)) (int, error) {
	id, ok := c.Buffer()
	if !ok {
		return 0, nil
	}
	if got := b.slotBid[b.head&b.mask]; got != id {
		return 0, fmt.Errorf("%w: completion has buffer %d, ring slot %d holds %d", ErrBufOrder, id, b.head&b.mask, got)
	}
	left := int(c.Res)
	if b.inc {
		return b.incBundle(c, left, f)
	}
	n := 0
	for {
		take := min(left, b.size)
		id := b.slotBid[b.head&b.mask]
		b.head++
		n++
		f(id, b.Buf(id)[:max(take, 0)])
		left -= take
		if left <= 0 {
			return n, nil
		}
	}
}

// incBundle is Bundle on an incremental ring: the bytes start where the
// previous completion left the head buffer, fill it to its end, then the
// next ones; the last buffer may stay open for the next completion.
func (b *BufRing) incBundle(c *CQE, left int, f func(id uint16, data []byte)) (int, error) {
	n := 0
	for left > 0 {
		id := b.slotBid[b.head&b.mask]
		start := b.off
		take := min(left, b.size-start)
		if start+take == b.size {
			b.head++
			b.off, b.open = 0, false
		} else {
			b.off, b.open = start+take, true
		}
		n++
		f(id, b.Buf(id)[start:start+take])
		left -= take
	}
	if c.BufMore() != b.open {
		return n, fmt.Errorf("%w: completion says the buffer is %s, the accounting that it is %s", ErrBufOrder, openWord(c.BufMore()), openWord(b.open))
	}
	return n, nil
}

func openWord(open bool) string {
	if open {
		return "partly filled"
	}
	return "full"
}

// Close unregisters the group and unmaps its memory. Requests that may
// still select from it should be cancelled first, or the ring closed
// first (which ends them).
func (b *BufRing) Close() error {
	var errs []error
	if b.mem == nil {
		return nil
	}
	reg := bufReg{bgid: b.group}
	if b.ring.fd < 0 {
		// The ring's close already released the group.
	} else if _, errno := register(b.ring.fd, unregisterPbufRing, unsafe.Pointer(&reg), 1); errno != 0 {
		errs = append(errs, fmt.Errorf("io_uring: unregister buffer ring %d: %w", b.group, errno))
	}
	errs = append(errs, unix.Munmap(b.data), unix.Munmap(b.mem))
	b.mem, b.data, b.descs = nil, nil, nil
	return errors.Join(errs...)
}
