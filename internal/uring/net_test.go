//go:build linux

package uring

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestMultishotAccept(t *testing.T) {
	r := newRing(t, Options{})
	ln, addr := listener(t)
	s := sqe(t, r)
	s.PrepAccept(ln, true, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	s.SetUserData(7)
	const n = 3
	for range n {
		dial(t, addr)
	}
	got := reap(t, r, n, 5*time.Second)
	for _, c := range got {
		if c.UserData != 7 || c.Res < 0 || !c.More() {
			t.Fatalf("accept completion %+v (%v)", c, c.Err())
		}
		if fl, err := unix.FcntlInt(uintptr(c.Res), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("accepted fd %d: flags %#x, %v", c.Res, fl, err)
		}
		unix.Close(int(c.Res))
	}
	// Cancelling ends the multishot accept with a final completion
	// without F_MORE.
	s = sqe(t, r)
	s.PrepCancelFd(ln)
	s.SetUserData(8)
	byUD := map[uint64]CQE{}
	for _, c := range reap(t, r, 2, 5*time.Second) {
		byUD[c.UserData] = c
	}
	if c := byUD[7]; c.More() || !errors.Is(c.Err(), unix.ECANCELED) {
		t.Fatalf("cancelled accept: %+v", c)
	}
	if byUD[8].Res != 1 {
		t.Fatalf("cancel matched %d requests, want 1", byUD[8].Res)
	}
}

// TestMultishotRecvRecycling sends more messages than the group has
// buffers, one at a time, recycling each: one armed receive serves all.
func TestMultishotRecvRecycling(t *testing.T) {
	r := newRing(t, Options{})
	fd, cli := tcpPair(t)
	br, err := r.NewBufRing(3, 4, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	s := sqe(t, r)
	s.PrepRecv(fd, br.Group(), true, false)
	s.SetUserData(1)
	seen := map[uint16]bool{}
	for i := range 12 {
		msg := []byte{'m', byte('a' + i)}
		if _, err := cli.Write(msg); err != nil {
			t.Fatal(err)
		}
		c := reap(t, r, 1, 5*time.Second)[0]
		if !c.More() || c.Res != 2 {
			t.Fatalf("message %d: completion %+v (%v)", i, c, c.Err())
		}
		n, err := br.Bundle(&c, func(id uint16, data []byte) {
			seen[id] = true
			if !bytes.Equal(data, msg) {
				t.Errorf("message %d: buffer %d holds %q", i, id, data)
			}
			br.Recycle(id)
		})
		if err != nil || n != 1 {
			t.Fatalf("message %d: %d buffers, %v", i, n, err)
		}
		br.Publish()
	}
	if len(seen) != 4 {
		t.Fatalf("used buffers %v, want all 4 in turn", seen)
	}
	// The peer's close is a zero-byte completion that ends the receive.
	cli.Close()
	c := reap(t, r, 1, 5*time.Second)[0]
	if c.Res != 0 || c.More() {
		t.Fatalf("end of stream: %+v", c)
	}
	if _, err := br.Bundle(&c, func(uint16, []byte) { t.Error("a buffer with the end of stream") }); err != nil {
		t.Fatal(err)
	}
}

// TestBufRingExhaustion holds the only buffer: the next arrival ends the
// receive with ENOBUFS, and after recycling a re-armed receive gets the
// data that waited in the socket.
func TestBufRingExhaustion(t *testing.T) {
	r := newRing(t, Options{})
	fd, cli := tcpPair(t)
	br, err := r.NewBufRing(0, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	arm := func() {
		s := sqe(t, r)
		s.PrepRecv(fd, br.Group(), true, false)
		s.SetUserData(1)
	}
	arm()
	cli.Write([]byte("first"))
	c := reap(t, r, 1, 5*time.Second)[0]
	var held uint16
	if _, err := br.Bundle(&c, func(id uint16, data []byte) { held = id }); err != nil || c.Res != 5 {
		t.Fatalf("first: %+v, %v", c, err)
	}
	cli.Write([]byte("second"))
	c = reap(t, r, 1, 5*time.Second)[0]
	if !errors.Is(c.Err(), unix.ENOBUFS) || c.More() {
		t.Fatalf("with no buffer: %+v (%v), want a final ENOBUFS", c, c.Err())
	}
	br.Recycle(held)
	br.Publish()
	arm()
	c = reap(t, r, 1, 5*time.Second)[0]
	var got []byte
	if _, err := br.Bundle(&c, func(id uint16, data []byte) { got = append(got, data...); br.Recycle(id) }); err != nil {
		t.Fatal(err)
	}
	if string(got) != "second" || !c.More() {
		t.Fatalf("after recycling: %q, %+v", got, c)
	}
}

// TestRecvBundle has data waiting before the receive is armed, more than
// one buffer's worth: a bundle completion spans several buffers.
func TestRecvBundle(t *testing.T) {
	r := newRing(t, Options{})
	if !r.Features().RecvSendBundle {
		t.Skip("kernel without IORING_FEAT_RECVSEND_BUNDLE")
	}
	fd, cli := tcpPair(t)
	br, err := r.NewBufRing(1, 8, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	want := bytes.Repeat([]byte("0123456789"), 5) // 50 bytes: 4 buffers
	if _, err := cli.Write(want); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // let it all reach the socket
	s := sqe(t, r)
	s.PrepRecv(fd, br.Group(), true, true)
	s.SetUserData(1)
	var got []byte
	maxBufs := 0
	for i := 0; len(got) < len(want) && i < 10; i++ {
		for _, c := range reap(t, r, 1, 5*time.Second) {
			if c.Res <= 0 {
				t.Fatalf("bundle: %+v (%v)", c, c.Err())
			}
			n, err := br.Bundle(&c, func(id uint16, data []byte) { got = append(got, data...); br.Recycle(id) })
			if err != nil {
				t.Fatal(err)
			}
			maxBufs = max(maxBufs, n)
		}
		br.Publish()
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("received %q", got)
	}
	if maxBufs < 2 {
		t.Fatalf("no completion spanned more than %d buffer", maxBufs)
	}
}

func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSendAndSendmsg(t *testing.T) {
	r := newRing(t, Options{})
	fd, cli := tcpPair(t)
	out := []byte("hello, ")
	s := sqe(t, r)
	s.PrepSend(fd, out, unix.MSG_NOSIGNAL)
	s.SetUserData(1)
	if c := reap(t, r, 1, 5*time.Second)[0]; c.Res != int32(len(out)) {
		t.Fatalf("send: %+v (%v)", c, c.Err())
	}
	if got := readN(t, cli, len(out)); !bytes.Equal(got, out) {
		t.Fatalf("peer read %q", got)
	}

	arena, err := NewMsgArena(2, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	m := arena.Msg(1)
	// The empty part takes no iovec, and the last comes from a buffer
	// ring, outside the Go heap.
	br, err := r.NewBufRing(0, 1, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ring := br.Buf(0)[:6]
	copy(ring, " rings")
	parts := [][]byte{[]byte("gathered "), []byte("from "), {}, []byte("three"), ring}
	for _, p := range parts {
		if !m.Append(p) {
			t.Fatal("arena message full early")
		}
	}
	if m.Append([]byte("x")) {
		t.Fatal("a fifth buffer fitted four iovecs")
	}
	want := "gathered from three rings"
	if m.Len() != len(want) {
		t.Fatalf("Len %d", m.Len())
	}
	s = sqe(t, r)
	s.PrepSendmsg(fd, m, unix.MSG_NOSIGNAL)
	s.SetUserData(2)
	if c := reap(t, r, 1, 5*time.Second)[0]; c.Res != int32(len(want)) {
		t.Fatalf("sendmsg: %+v (%v)", c, c.Err())
	}
	m.Reset()
	if got := readN(t, cli, len(want)); string(got) != want {
		t.Fatalf("peer read %q", got)
	}
}

func TestMsgAdvance(t *testing.T) {
	arena, err := NewMsgArena(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	m := arena.Msg(0)
	srcs := [][]byte{[]byte("abc"), []byte("de"), []byte("fghi")}
	for _, b := range srcs {
		m.Append(b)
	}
	// rest reads the iovecs back by finding each one's source slice.
	rest := func() string {
		var s []byte
		for _, v := range m.iov[m.first:m.n] {
			for _, b := range srcs {
				b0 := uintptr(unsafe.Pointer(&b[0]))
				if v.base >= b0 && v.base+v.len <= b0+uintptr(len(b)) {
					s = append(s, b[v.base-b0:v.base-b0+v.len]...)
				}
			}
		}
		return string(s)
	}
	for _, step := range []struct {
		n    int
		left string
	}{{1, "bcdefghi"}, {2, "defghi"}, {3, "ghi"}, {0, "ghi"}} {
		if more := m.Advance(step.n); !more || rest() != step.left || m.Len() != len(step.left) {
			t.Fatalf("after %d: %q (more %v)", step.n, rest(), more)
		}
		if int(m.hdr.iovlen) != m.n-m.first || m.hdr.iov != uintptr(unsafe.Pointer(&m.iov[m.first])) {
			t.Fatalf("header not following the iovecs: %+v", *m.hdr)
		}
	}
	if m.Advance(3) || m.Len() != 0 || m.hdr.iovlen != 0 {
		t.Fatal("fully sent message reports more")
	}
	if _, err := NewMsgArena(0, 1); err == nil {
		t.Fatal("empty arena accepted")
	}
}

func TestShutdownGivesPeerEOF(t *testing.T) {
	r := newRing(t, Options{})
	fd, cli := tcpPair(t)
	s := sqe(t, r)
	s.PrepShutdown(fd, unix.SHUT_WR)
	s.SetUserData(1)
	if c := reap(t, r, 1, 5*time.Second)[0]; c.Res != 0 {
		t.Fatalf("shutdown: %+v (%v)", c, c.Err())
	}
	if n, err := cli.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("peer read %d, %v; want EOF", n, err)
	}
	// Half-closed: the peer can still send to us.
	if _, err := cli.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestClose(t *testing.T) {
	r := newRing(t, Options{})
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	s := sqe(t, r)
	s.PrepClose(fds[0])
	s.SetUserData(1)
	if c := reap(t, r, 1, 5*time.Second)[0]; c.Res != 0 {
		t.Fatalf("close: %+v (%v)", c, c.Err())
	}
	if _, err := unix.Write(fds[1], []byte("x")); !errors.Is(err, unix.EPIPE) {
		t.Fatalf("write to a closed peer: %v, want EPIPE", err)
	}
}

func TestEventfdWake(t *testing.T) {
	r := newRing(t, Options{})
	e, err := NewEventfd()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for round := range 3 {
		s := sqe(t, r)
		e.PrepRead(s)
		s.SetUserData(uint64(round))
		if got := quiet(t, r, time.Millisecond); len(got) != 0 {
			t.Fatalf("read completed before any wake: %+v", got)
		}
		done := make(chan error, 1)
		go func() { done <- e.Wake() }()
		c := reap(t, r, 1, 5*time.Second)[0]
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if c.UserData != uint64(round) || c.Res != 8 {
			t.Fatalf("round %d: %+v (%v)", round, c, c.Err())
		}
	}
}

func TestWakeRing(t *testing.T) {
	r := newRing(t, Options{})
	p, _ := Available()
	if !p.SendMsgRing {
		t.Skip("kernel without IORING_REGISTER_SEND_MSG_RING")
	}
	done := make(chan error, 1)
	go func() { done <- WakeRing(r.Fd(), 0xabc, 42) }()
	c := reap(t, r, 1, 5*time.Second)[0]
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.UserData != 0xabc || c.Res != 42 {
		t.Fatalf("msg_ring completion %+v", c)
	}
}

func TestBufRingArguments(t *testing.T) {
	r := newRing(t, Options{})
	for _, c := range []struct{ count, size int }{{0, 64}, {3, 64}, {1 << 16, 64}, {4, 0}} {
		if b, err := r.NewBufRing(9, c.count, c.size); err == nil {
			b.Close()
			t.Errorf("NewBufRing(%d, %d) accepted", c.count, c.size)
		}
	}
	b, err := r.NewBufRing(9, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := r.NewBufRing(9, 2, 8); err == nil {
		t.Fatal("a second ring for the same group accepted")
	}
	// Staging a buffer must not disturb the tail the kernel reads, which
	// shares slot 0's memory; Publish moves it.
	shared := func() uint16 { return (*[2]uint16)(unsafe.Pointer(b.tailWord))[1] }
	if shared() != 2 {
		t.Fatalf("tail after setup %d, want 2", shared())
	}
	b.Recycle(0) // slot 0 again, as after two receives
	if shared() != 2 || b.descs[0].bid != 0 {
		t.Fatalf("staging moved the shared tail to %d", shared())
	}
	b.Publish()
	if shared() != 3 {
		t.Fatalf("tail after Publish %d, want 3", shared())
	}
	// A completion naming a buffer out of ring order is refused.
	bad := CQE{Res: 4, Flags: cqeFBuffer | 1<<cqeBufferShift}
	if _, err := b.Bundle(&bad, func(uint16, []byte) {}); !errors.Is(err, ErrBufOrder) {
		t.Fatalf("out-of-order buffer: %v", err)
	}
}

// echoPair arms a multishot receive on the server side of a loopback pair
// and returns the client's raw blocking descriptor.
func echoPair(t testing.TB, r *Ring) (srv, cli int, br *BufRing) {
	ln, _ := listener(t)
	sa, _ := unix.Getsockname(ln)
	cli, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(cli) })
	if err := unix.Connect(cli, sa); err != nil {
		t.Fatal(err)
	}
	unix.SetsockoptInt(cli, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	srv, _, err = unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(srv) })
	unix.SetsockoptInt(srv, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if br, err = r.NewBufRing(0, 16, 4096); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Close() })
	s := r.NextSQE()
	s.PrepRecv(srv, br.Group(), true, false)
	s.SetUserData(1)
	return srv, cli, br
}

// echoOnce is one message through the ring: the client writes, the ring
// receives into a provided buffer and sends it back from there, the
// client reads it. It returns false on any failure.
func echoOnce(r *Ring, srv, cli int, br *BufRing, msg, in []byte, cqes []CQE) bool {
	if n, err := unix.Write(cli, msg); n != len(msg) || err != nil {
		return false
	}
	sent := 0
	for got := 0; got < len(msg) || sent < got; {
		r.SubmitAndWait(1, time.Second)
		k := r.Completions(cqes)
		if k == 0 {
			return false
		}
		for i := range cqes[:k] {
			c := &cqes[i]
			switch c.UserData {
			case 1: // receive: echo the buffer, recycle it when sent
				if c.Res <= 0 || !c.More() {
					return false
				}
				if _, err := br.Bundle(c, func(id uint16, data []byte) {
					s := r.NextSQE()
					s.PrepSend(srv, data, unix.MSG_NOSIGNAL)
					s.SetUserData(2 | uint64(id)<<8)
				}); err != nil {
					return false
				}
				got += int(c.Res)
			default: // send complete
				if c.Res <= 0 {
					return false
				}
				sent += int(c.Res)
				br.Recycle(uint16(c.UserData >> 8))
				br.Publish()
			}
		}
	}
	for read := 0; read < len(msg); {
		n, err := unix.Read(cli, in[read:])
		if n <= 0 || err != nil {
			return false
		}
		read += n
	}
	return true
}

func TestEchoAllocations(t *testing.T) {
	r := newRing(t, Options{})
	srv, cli, br := echoPair(t, r)
	msg, in, cqes := bytes.Repeat([]byte("e"), 64), make([]byte, 64), make([]CQE, 8)
	if !echoOnce(r, srv, cli, br, msg, in, cqes) || !bytes.Equal(in, msg) {
		t.Fatal("echo failed")
	}
	ok := true
	allocs := testing.AllocsPerRun(200, func() { ok = ok && echoOnce(r, srv, cli, br, msg, in, cqes) })
	if !ok {
		t.Fatal("echo failed")
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per echoed message", allocs)
	}
}

// BenchmarkEcho is one 64-byte message's round trip through a ring:
// client write, multishot receive into a provided buffer, send from it,
// client read; all on one thread, so it is the ring's and the loopback
// stack's cost without any scheduling.
func BenchmarkEcho(b *testing.B) {
	noThreadCheck(b)
	r := newRing(b, Options{})
	srv, cli, br := echoPair(b, r)
	msg, in, cqes := bytes.Repeat([]byte("e"), 64), make([]byte, 64), make([]CQE, 8)
	b.ReportAllocs()
	for b.Loop() {
		if !echoOnce(r, srv, cli, br, msg, in, cqes) {
			b.Fatal("echo failed")
		}
	}
}

// TestMsgAllocations: pinning and unpinning a gather list of heap buffers
// reuses the runtime's pinner, so a sendmsg per message allocates nothing.
func TestMsgAllocations(t *testing.T) {
	arena, err := NewMsgArena(1, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Close()
	m := arena.Msg(0)
	a, b := make([]byte, 100), make([]byte, 200)
	allocs := testing.AllocsPerRun(1000, func() {
		m.Append(a)
		m.Append(b)
		m.Advance(150)
		m.Reset()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per gather list", allocs)
	}
}
