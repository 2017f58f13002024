//go:build linux

package uring

import (
	"testing"
	"time"
)

// TestPollTaskrun: a receive's completion work raises IORING_SQ_TASKRUN
// (or, without DEFER_TASKRUN, may already have run), Poll turns it into a
// completion without waiting, and the flag is down again afterwards, so a
// loop that polls on the flag goes back to sleeping once the work is done.
func TestPollTaskrun(t *testing.T) {
	for _, opt := range []Options{{}, {NoDeferTaskrun: true}} {
		t.Run(r0(opt), func(t *testing.T) {
			r := newRing(t, opt)
			if !r.Features().TaskrunFlag {
				t.Skip("kernel without IORING_SETUP_TASKRUN_FLAG")
			}
			if r.TaskrunPending() {
				t.Fatal("work pending on a new ring")
			}
			br, err := r.NewBufRing(0, 4, 64)
			if err != nil {
				t.Fatal(err)
			}
			defer br.Close()
			fd, cli := tcpPair(t)
			s := sqe(t, r)
			s.PrepRecv(fd, br.Group(), true, false)
			s.SetUserData(7)
			if _, err := r.Poll(); err != nil {
				t.Fatal(err)
			}
			cli.Write([]byte("ping"))
			deadline := time.Now().Add(5 * time.Second)
			for r.Ready() == 0 && !r.TaskrunPending() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if !opt.NoDeferTaskrun && (r.Ready() != 0 || !r.TaskrunPending()) {
				t.Fatalf("DEFER_TASKRUN ring: %d ready, taskrun flag %v; want the work pending, not done", r.Ready(), r.TaskrunPending())
			}
			if _, err := r.Poll(); err != nil {
				t.Fatal(err)
			}
			cqes := make([]CQE, 4)
			if n := r.Completions(cqes); n != 1 || cqes[0].UserData != 7 || cqes[0].Res != 4 {
				t.Fatalf("after Poll: %d completions %+v", n, cqes[:n])
			}
			if r.TaskrunPending() {
				t.Fatal("IORING_SQ_TASKRUN still up after the work ran")
			}
		})
	}
}

func r0(o Options) string {
	if o.NoDeferTaskrun {
		return "coop"
	}
	return "defer"
}
