//go:build linux

package uring

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestIncBufRing: on an incremental ring, small receives on two
// connections share one buffer, each completion's bytes start where the
// previous one's ended, a buffer goes back to the kernel only once it is
// full, and (with bundles) a receive larger than what is left of a buffer
// continues into the next.
func TestIncBufRing(t *testing.T) {
	r := newRing(t, Options{})
	br, err := r.NewIncBufRing(2, 4, 32)
	if errors.Is(err, ErrNoIncBuf) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if !br.Incremental() {
		t.Fatal("not incremental")
	}
	bundle := r.Features().RecvSendBundle
	var fds [2]int
	var got [2][]byte
	var want [2][]byte
	clis := make([]interface{ Write([]byte) (int, error) }, 2)
	for i := range fds {
		fd, cli := tcpPair(t)
		fds[i], clis[i] = fd, cli
		s := sqe(t, r)
		s.PrepRecv(fd, br.Group(), true, bundle)
		s.SetUserData(uint64(i))
	}
	ids := map[uint16]bool{}
	recycled := 0
	reapOne := func() {
		t.Helper()
		c := reap(t, r, 1, 5*time.Second)[0]
		if c.Res <= 0 {
			t.Fatalf("receive: %+v (%v)", c, c.Err())
		}
		i := c.UserData
		if _, err := br.Bundle(&c, func(id uint16, data []byte) {
			ids[id] = true
			got[i] = append(got[i], data...)
			if !br.open || id != br.slotBid[br.head&br.mask] {
				recycled++
			}
			br.Recycle(id)
		}); err != nil {
			t.Fatal(err)
		}
		br.Publish()
	}
	// Ten 5-byte writes, alternating: 50 bytes over buffers of 32, so the
	// first buffer holds both connections' pieces and then fills.
	for k := range 10 {
		i := k % 2
		msg := fmt.Appendf(nil, "%d:%03d", i, k)[:5]
		want[i] = append(want[i], msg...)
		clis[i].Write(msg)
		reapOne()
	}
	if recycled != 1 || len(ids) != 2 {
		t.Fatalf("after 50 bytes in 32-byte buffers: %d recycled, ids %v; want 1 recycled, 2 used", recycled, ids)
	}
	if bundle {
		// 40 bytes at once: the rest of the open buffer (14) and beyond.
		big := bytes.Repeat([]byte("x"), 40)
		want[0] = append(want[0], big...)
		clis[0].Write(big)
		for len(got[0]) < len(want[0]) {
			reapOne()
		}
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("connection %d received %q, want %q", i, got[i], want[i])
		}
	}
}
