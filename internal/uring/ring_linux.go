//go:build linux

package uring

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options chooses the ring's size and which optional kernel features New
// asks for. The zero value asks for every feature; each No* field turns one
// off, so that what a feature is worth can be measured by running without it.
type Options struct {
	// Entries is the submission queue size, rounded up to a power of two
	// by the kernel; 0 means 256.
	Entries uint32
	// CQEntries is the completion queue size (IORING_SETUP_CQSIZE); 0
	// leaves the kernel's default of twice Entries. A multishot engine
	// wants it large: one armed receive can post many completions.
	CQEntries uint32

	// NoSingleIssuer drops IORING_SETUP_SINGLE_ISSUER (one task submits,
	// so the kernel skips its submission lock).
	NoSingleIssuer bool
	// NoDeferTaskrun drops IORING_SETUP_DEFER_TASKRUN (completion work
	// runs only when the ring's thread enters the kernel to wait, never
	// by interrupting it). It needs SINGLE_ISSUER, so NoSingleIssuer
	// implies it.
	NoDeferTaskrun bool
	// NoCoopTaskrun drops IORING_SETUP_COOP_TASKRUN (no inter-processor
	// interrupt to run completion work; the next entry runs it).
	NoCoopTaskrun bool
	// NoTaskrunFlag drops IORING_SETUP_TASKRUN_FLAG (the kernel raises
	// a flag in the shared ring when completion work is pending, so the
	// caller can tell without a system call that a non-blocking enter
	// will find something; see TaskrunPending).
	NoTaskrunFlag bool
	// NoSubmitAll drops IORING_SETUP_SUBMIT_ALL (keep submitting the
	// batch when one SQE fails to prepare).
	NoSubmitAll bool
	// NoSQArray drops IORING_SETUP_NO_SQARRAY: with it on, the kernel
	// reads SQEs in ring order and the index array is not mapped.
	NoSQArray bool
	// NoRegisteredRing skips IORING_REGISTER_RING_FDS, so every
	// io_uring_enter looks the ring's descriptor up again.
	NoRegisteredRing bool
}

// Features records what New obtained: a flag asked for but refused by the
// kernel (EINVAL, an older kernel) is false here.
type Features struct {
	SingleIssuer   bool // IORING_SETUP_SINGLE_ISSUER
	DeferTaskrun   bool // IORING_SETUP_DEFER_TASKRUN
	CoopTaskrun    bool // IORING_SETUP_COOP_TASKRUN
	TaskrunFlag    bool // IORING_SETUP_TASKRUN_FLAG
	SubmitAll      bool // IORING_SETUP_SUBMIT_ALL
	NoSQArray      bool // IORING_SETUP_NO_SQARRAY
	RegisteredRing bool // IORING_REGISTER_RING_FDS + IORING_ENTER_REGISTERED_RING
	ExtArg         bool // IORING_FEAT_EXT_ARG: a wait can carry its timeout
	NoDrop         bool // IORING_FEAT_NODROP: overflowing completions are kept
	FastPoll       bool // IORING_FEAT_FAST_POLL: no worker thread for a socket that is not ready
	RecvSendBundle bool // IORING_FEAT_RECVSEND_BUNDLE: one receive fills several buffers
	SQEntries      uint32
	CQEntries      uint32
}

// String lists the features that are on, for logs and benchmark notes.
func (f Features) String() string {
	var on []string
	add := func(b bool, name string) {
		if b {
			on = append(on, name)
		}
	}
	add(f.SingleIssuer, "single-issuer")
	add(f.DeferTaskrun, "defer-taskrun")
	add(f.CoopTaskrun, "coop-taskrun")
	add(f.TaskrunFlag, "taskrun-flag")
	add(f.SubmitAll, "submit-all")
	add(f.NoSQArray, "no-sqarray")
	add(f.RegisteredRing, "registered-ring")
	add(f.ExtArg, "ext-arg")
	add(f.NoDrop, "nodrop")
	add(f.FastPoll, "fast-poll")
	add(f.RecvSendBundle, "bundle")
	return fmt.Sprintf("sq=%d cq=%d %s", f.SQEntries, f.CQEntries, strings.Join(on, ","))
}

// Ring is one io_uring instance: its submission and completion queues,
// mapped from the kernel.
//
// A Ring belongs to one OS thread. With SINGLE_ISSUER the kernel refuses
// submissions from any other task, with DEFER_TASKRUN completions are only
// produced when that task waits, and a registered ring descriptor is an
// index into that thread's private table. So: call runtime.LockOSThread,
// then New, then use and Close the ring on that goroutine only. The one
// exception is the ring's descriptor (Fd), which other goroutines may use
// as the target of WakeRing.
//
// The rings and the SQE array are mmap'd from the ring descriptor: kernel
// memory shared with this process, outside the Go heap, so the collector
// neither scans nor moves it and the kernel may read and write it at any
// time until Close unmaps it. Head and tail indices are shared with the
// kernel and accessed only with atomic loads and stores (Go's atomics are
// sequentially consistent, at least the acquire/release the ABI asks for).
type Ring struct {
	fd         int
	enterFd    int    // fd, or the registered index
	enterFlags uint32 // enterRegisteredRing when enterFd is an index
	tid        int    // the thread that created it
	features   Features

	sqMem, cqMem, sqeMem []byte

	sqHead, sqTail, sqFlags *uint32
	sqMask, sqEntries       uint32
	sqes                    []SQE
	sqeTail                 uint32 // next free SQE, ahead of *sqTail until flushed

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []CQE

	// timeouts holds one kernel timespec per SQE slot, off the Go heap,
	// for PrepTimeout and PrepLinkTimeout; the kernel copies it while it
	// takes the SQE, so slot i is free again once SQE i is consumed.
	timeouts []kernelTimespec
	tsMem    []byte

	// waitArg and waitTS carry a wait's timeout; they are read by the
	// kernel only during the io_uring_enter that passes them.
	waitArg getEventsArg
	waitTS  kernelTimespec
}

// New creates a ring. A setup flag the kernel refuses with EINVAL is
// dropped (newest first) and the setup retried, and Features says what
// stayed on. If the kernel has no usable io_uring, the error wraps
// ErrUnavailable and says why.
func New(opt Options) (*Ring, error) {
	if err := forcedUnavailable(); err != nil {
		return nil, err
	}
	return setupRing(opt)
}

// setupRing is New without the test hooks.
func setupRing(opt Options) (*Ring, error) {
	entries := opt.Entries
	if entries == 0 {
		entries = 256
	}
	want := uint32(0)
	if !opt.NoSingleIssuer {
		want |= setupSingleIssuer
		if !opt.NoDeferTaskrun {
			want |= setupDeferTaskrun
		}
	}
	if !opt.NoCoopTaskrun {
		want |= setupCoopTaskrun
	}
	if !opt.NoTaskrunFlag && want&(setupCoopTaskrun|setupDeferTaskrun) != 0 {
		// It needs one of the two: it reports their pending work.
		want |= setupTaskrunFlag
	}
	if !opt.NoSubmitAll {
		want |= setupSubmitAll
	}
	if !opt.NoSQArray {
		want |= setupNoSQArray
	}
	// Dropped newest-kernel first, so an older kernel keeps what it has.
	dropOrder := []uint32{setupNoSQArray, setupDeferTaskrun, setupSingleIssuer, setupTaskrunFlag, setupCoopTaskrun, setupSubmitAll}
	var p params
	var fd int
	for {
		p = params{flags: want}
		if opt.CQEntries != 0 {
			p.flags |= setupCQSize | setupClamp
			p.cqEntries = opt.CQEntries
		}
		var errno unix.Errno
		fd, errno = setup(entries, &p)
		if errno == 0 {
			break
		}
		if errno != unix.EINVAL || want == 0 {
			return nil, setupError(errno)
		}
		for _, f := range dropOrder {
			if want&f != 0 {
				want &^= f
				if f == setupSingleIssuer {
					want &^= setupDeferTaskrun
				}
				break
			}
		}
	}
	r := &Ring{fd: fd, enterFd: fd, tid: unix.Gettid()}
	r.features = Features{
		SingleIssuer:   p.flags&setupSingleIssuer != 0,
		DeferTaskrun:   p.flags&setupDeferTaskrun != 0,
		CoopTaskrun:    p.flags&setupCoopTaskrun != 0,
		TaskrunFlag:    p.flags&setupTaskrunFlag != 0,
		SubmitAll:      p.flags&setupSubmitAll != 0,
		NoSQArray:      p.flags&setupNoSQArray != 0,
		ExtArg:         p.features&featExtArg != 0,
		NoDrop:         p.features&featNoDrop != 0,
		FastPoll:       p.features&featFastPoll != 0,
		RecvSendBundle: p.features&featRecvSendBundle != 0,
		SQEntries:      p.sqEntries,
		CQEntries:      p.cqEntries,
	}
	if err := r.mapRings(&p); err != nil {
		r.Close()
		return nil, err
	}
	if !opt.NoRegisteredRing {
		up := rsrcUpdate{offset: registerRingAutoOffset, data: uint64(fd)}
		if n, errno := register(fd, registerRingFds, unsafe.Pointer(&up), 1); errno == 0 && n == 1 {
			r.enterFd = int(up.offset)
			r.enterFlags = enterRegisteredRing
			r.features.RegisteredRing = true
		}
	}
	return r, nil
}

func setupError(errno unix.Errno) error {
	switch errno {
	case unix.ENOSYS:
		return &UnavailableError{Reason: "the kernel has no io_uring (older than 5.1, or built without it)", Err: errno}
	case unix.EPERM:
		return &UnavailableError{Reason: permReason(), Err: errno}
	}
	return fmt.Errorf("io_uring_setup: %w", errno)
}

func (r *Ring) mapRings(p *params) error {
	prot := unix.PROT_READ | unix.PROT_WRITE
	flags := unix.MAP_SHARED | unix.MAP_POPULATE
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	if r.features.NoSQArray {
		// No index array: the mapping ends with the ring header.
		sqSize = int(max(p.sqOff.head, p.sqOff.tail, p.sqOff.ringMask, p.sqOff.ringEntries, p.sqOff.flags, p.sqOff.dropped) + 4)
	}
	cqSize := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(CQE{})))
	single := p.features&featSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
		cqSize = sqSize
	}
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring: mmap of the submission ring: %w", err)
	}
	r.cqMem = r.sqMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			r.cqMem = nil
			return fmt.Errorf("io_uring: mmap of the completion ring: %w", err)
		}
	}
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(SQE{}))
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeSize, prot, flags); err != nil {
		return fmt.Errorf("io_uring: mmap of the SQE array: %w", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail, r.sqFlags = u32(r.sqMem, p.sqOff.head), u32(r.sqMem, p.sqOff.tail), u32(r.sqMem, p.sqOff.flags)
	r.sqMask, r.sqEntries = *u32(r.sqMem, p.sqOff.ringMask), p.sqEntries
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	if !r.features.NoSQArray {
		// An identity index array, written once: SQE i is always slot i.
		arr := unsafe.Slice(u32(r.sqMem, p.sqOff.array), p.sqEntries)
		for i := range arr {
			arr[i] = uint32(i)
		}
	}
	r.cqHead, r.cqTail = u32(r.cqMem, p.cqOff.head), u32(r.cqMem, p.cqOff.tail)
	r.cqMask = *u32(r.cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)

	tsSize := int(p.sqEntries) * kernelTimespecLen
	if r.tsMem, err = unix.Mmap(-1, 0, tsSize, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		return fmt.Errorf("io_uring: mmap of the timeout slots: %w", err)
	}
	r.timeouts = unsafe.Slice((*kernelTimespec)(unsafe.Pointer(&r.tsMem[0])), p.sqEntries)
	return nil
}

// Features reports which optional features the ring has.
func (r *Ring) Features() Features { return r.features }

// Fd is the ring's descriptor, the target for WakeRing and MSG_RING.
func (r *Ring) Fd() int { return r.fd }

// NextSQE returns the next free submission entry, or nil when the queue is
// full (submit, then ask again). The entry's previous contents are stale:
// call exactly one Prep method on it before setting user data or flags.
func (r *Ring) NextSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqeTail-head >= r.sqEntries {
		return nil
	}
	s := &r.sqes[r.sqeTail&r.sqMask]
	r.sqeTail++
	return s
}

// Pending is how many prepared SQEs the kernel has not taken yet.
func (r *Ring) Pending() int { return int(r.sqeTail - atomic.LoadUint32(r.sqHead)) }

// SubmitAndWait submits every prepared SQE and waits until at least
// minComplete completions are ready or timeout passes, in one
// io_uring_enter. minComplete 0 never blocks (it still runs deferred
// completion work, which a DEFER_TASKRUN ring needs to produce CQEs); a
// negative timeout waits without limit. It returns how many SQEs the
// kernel took. A timeout, or a signal (the Go runtime preempts with
// SIGURG), ends the wait early without an error: the caller reaps what is
// ready and loops. EAGAIN or EBUSY (the kernel short of request memory,
// or holding overflowed completions) come back wrapped: reap, then retry.
func (r *Ring) SubmitAndWait(minComplete uint32, timeout time.Duration) (int, error) {
	if debugThreadCheck && r.tid != unix.Gettid() {
		panic("uring: ring used from a thread other than its creator's (runtime.LockOSThread missing?)")
	}
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	toSubmit := r.sqeTail - atomic.LoadUint32(r.sqHead)
	flags := r.enterFlags | enterGetEvents
	var arg unsafe.Pointer
	var argSize uintptr
	if minComplete > 0 && timeout >= 0 {
		if !r.features.ExtArg {
			return 0, errors.New("io_uring: this kernel cannot bound a wait (no IORING_FEAT_EXT_ARG)")
		}
		r.waitTS = kernelTimespec{sec: int64(timeout / time.Second), nsec: int64(timeout % time.Second)}
		r.waitArg = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.waitTS)))}
		arg, argSize, flags = unsafe.Pointer(&r.waitArg), getEventsArgSize, flags|enterExtArg
	}
	n, errno := enter(r.enterFd, toSubmit, minComplete, flags, arg, argSize)
	switch errno {
	case 0:
		return n, nil
	case unix.ETIME, unix.EINTR:
		return 0, nil
	}
	return 0, fmt.Errorf("io_uring_enter: %w", errno)
}

// Poll submits every prepared SQE and runs the completion work that is
// pending (DEFER_TASKRUN's included), without waiting, and returns how
// many SQEs the kernel took. It cannot sleep, so it skips the Go
// scheduler's system call bookkeeping: a loop that polls while work keeps
// arriving never hands its P to another thread and back.
func (r *Ring) Poll() (int, error) {
	if debugThreadCheck && r.tid != unix.Gettid() {
		panic("uring: ring used from a thread other than its creator's (runtime.LockOSThread missing?)")
	}
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	toSubmit := r.sqeTail - atomic.LoadUint32(r.sqHead)
	n, errno := enterNoBlock(r.enterFd, toSubmit, r.enterFlags|enterGetEvents)
	switch errno {
	case 0:
		return n, nil
	case unix.EINTR:
		return 0, nil
	}
	return 0, fmt.Errorf("io_uring_enter: %w", errno)
}

// TaskrunPending reports that the kernel has completion work queued for
// this ring's thread (IORING_SQ_TASKRUN, with Features.TaskrunFlag): a
// Poll would produce completions. Without the feature it is always false,
// so a caller that polls on it falls back to waiting.
func (r *Ring) TaskrunPending() bool {
	return atomic.LoadUint32(r.sqFlags)&sqTaskrun != 0
}

// Ready is how many completions can be reaped now without entering the
// kernel.
func (r *Ring) Ready() int {
	return int(atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead))
}

// Completions copies up to len(dst) ready completions into dst, frees
// their slots for the kernel, and returns how many it copied. It allocates
// nothing; copying lets the kernel reuse a slot as soon as it is read.
func (r *Ring) Completions(dst []CQE) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for head != tail && n < len(dst) {
		dst[n] = r.cqes[head&r.cqMask]
		head++
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// Overflowed reports that completions did not fit the CQ ring and wait in
// the kernel (kept there when Features.NoDrop); the next SubmitAndWait
// flushes them as room appears.
func (r *Ring) Overflowed() bool { return atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0 }

// Close unregisters and unmaps everything and closes the ring, which
// cancels every request still in flight. Call it on the ring's thread: the
// registered descriptor lives in that thread's table, and from another
// thread it is left there (keeping the ring alive until the thread exits)
// and Close reports that.
func (r *Ring) Close() error {
	var errs []error
	if r.features.RegisteredRing {
		if r.tid != unix.Gettid() {
			errs = append(errs, errors.New("io_uring: Close on another thread than New's; the registered ring descriptor stays until that thread exits"))
		} else {
			up := rsrcUpdate{offset: uint32(r.enterFd)}
			if _, errno := register(r.fd, unregisterRingFds, unsafe.Pointer(&up), 1); errno != 0 {
				errs = append(errs, fmt.Errorf("io_uring: unregister ring fd: %w", errno))
			}
		}
		r.features.RegisteredRing = false
	}
	for _, m := range []*[]byte{&r.sqeMem, &r.tsMem} {
		if *m != nil {
			errs = append(errs, unix.Munmap(*m))
			*m = nil
		}
	}
	if len(r.cqMem) > 0 && (len(r.sqMem) == 0 || &r.cqMem[0] != &r.sqMem[0]) {
		errs = append(errs, unix.Munmap(r.cqMem))
	}
	r.cqMem = nil
	if r.sqMem != nil {
		errs = append(errs, unix.Munmap(r.sqMem))
		r.sqMem = nil
	}
	r.sqes, r.cqes, r.timeouts = nil, nil, nil
	if r.fd >= 0 {
		errs = append(errs, unix.Close(r.fd))
		r.fd = -1
	}
	return errors.Join(errs...)
}

// debugThreadCheck makes SubmitAndWait verify it runs on the ring's
// thread; the tests turn it on (it costs a gettid per call).
var debugThreadCheck = false
