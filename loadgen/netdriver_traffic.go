package loadgen

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"time"
)

func (d *netDriver) traffic(ctx context.Context, tl *timeline) {
	stop := context.AfterFunc(ctx, func() { d.shutdown() })
	defer stop()
	var wg sync.WaitGroup
	for _, gc := range d.conns {
		if gc.idle || gc.box.Load() == nil {
			continue
		}
		gc.credits = make(chan struct{}, d.c.Pipeline)
		for i := 0; i < d.c.Pipeline; i++ {
			gc.credits <- struct{}{}
		}
		gc.gone = make(chan struct{})
		gc.reconnected = make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); d.writer(gc, tl) }()
		go func() { defer wg.Done(); d.reader(gc) }()
	}
	if d.c.Conns == 0 && tl.me != math.MaxInt64 {
		// Only idle connections: hold them for the duration.
		sleepCtx(ctx, time.Duration(tl.me-now()))
	}
	wg.Wait()
}

// writer sends on one connection while pipeline credits, the schedule and
// the quota allow.
func (d *netDriver) writer(gc *gconn, tl *timeline) {
	c := d.c
	f := gc.f
	var sched schedule
	if c.Rate > 0 {
		sched = schedule{t0: tl.t0, tick: 1e9 / c.Rate, n: uint64(c.Conns)}
	}
	buf := make([]byte, 0, c.Pipeline*(c.proto.msgLen+c.Codec.Overhead()))
	defer func() {
		end := min(now(), tl.me)
		gc.st.mu.Lock()
		gc.st.sendEnd = max(gc.st.sendEnd, end)
		if c.Rate > 0 {
			gc.st.behind += max(int64(sched.dueBefore(end, gc.idx))-int64(f.sent.Load()), 0)
		}
		gc.st.mu.Unlock()
		gc.stopped.Store(true)
		// Wake the reader now if nothing is in flight; otherwise give the
		// replies the drain timeout.
		gc.mu.Lock()
		defer gc.mu.Unlock()
		if f.inflight() == 0 {
			gc.conn().SetReadDeadline(time.Now())
		} else {
			gc.conn().SetReadDeadline(time.Now().Add(c.DrainTimeout))
		}
	}()
	// The end of the window stops a writer that waits for a credit a
	// silent server never hands back.
	var end <-chan time.Time
	if tl.me != math.MaxInt64 {
		tm := time.NewTimer(time.Duration(tl.me - now()))
		defer tm.Stop()
		end = tm.C
	}
	for {
		select {
		case <-gc.credits:
		case <-gc.gone:
			return
		case <-end:
			return
		}
		n := 1
		if c.Rate == 0 {
			// Batch whatever else is free into one write.
		more:
			for {
				select {
				case <-gc.credits:
					n++
				default:
					break more
				}
			}
		}
		if c.Rate > 0 {
			// One message at a time (n is 1), when it is due.
			if w := sched.due(f.sent.Load(), gc.idx) - now(); w > 0 && !sleepCh(gc.gone, time.Duration(w)) {
				return
			}
		}
		gc.mu.Lock()
		buf = buf[:0]
		done, exhausted := false, false
		i := 0
		for ; i < n && !done && !exhausted; i++ {
			at := now()
			if c.Rate > 0 {
				at = sched.due(f.sent.Load(), gc.idx)
			}
			// A message counts when it is sent inside the window; in open
			// loop its latency runs from when it was due.
			t := now()
			if t >= tl.me {
				done = true
				break
			}
			measured := t >= tl.ms
			if measured && c.Requests > 0 && d.quota.Add(-1) < 0 {
				d.quota.Add(1)
				exhausted = true
				break
			}
			buf = f.appendNext(buf, at, measured)
		}
		var err error
		if len(buf) > 0 {
			_, err = gc.conn().Write(buf)
		}
		reconnected := gc.reconnected
		gc.mu.Unlock()
		if err != nil && !d.awaitReconnect(gc, reconnected) {
			d.fail(gc, "connection %d: write: %v", gc.id, err)
			return
		}
		if done {
			return
		}
		if exhausted {
			for ; i < n; i++ {
				gc.credits <- struct{}{} // unspent: never blocks
			}
			if !d.awaitQuota(gc, end) {
				return
			}
		}
	}
}

// awaitQuota holds a writer whose quota ran out while its replies are in
// flight: a reconnect may abandon some and give their quota back. It
// reports whether there is quota to send again.
func (d *netDriver) awaitQuota(gc *gconn, end <-chan time.Time) bool {
	f := gc.f
	tk := time.NewTicker(time.Millisecond)
	defer tk.Stop()
	last, since := f.recvd.Load(), time.Now()
	for {
		if d.quota.Load() > 0 {
			return true
		}
		if f.inflight() == 0 {
			return false
		}
		select {
		case <-gc.gone:
			return false
		case <-end:
			return false
		case <-tk.C:
		}
		if r := f.recvd.Load(); r != last {
			last, since = r, time.Now()
		} else if time.Since(since) > d.c.DrainTimeout {
			return false
		}
	}
}

// reader verifies one connection's replies and hands back a credit for
// each.
func (d *netDriver) reader(gc *gconn) {
	defer close(gc.gone)
	f := gc.f
	st := gc.st
	var rbuf []byte // raw replies; framed ones are read into f's accumulator
	if !f.p.framed {
		rbuf = make([]byte, readBufSize)
	}
	for {
		buf := f.recvBuf(rbuf)
		n, err := gc.conn().Read(buf)
		if n > 0 {
			t := now()
			st.mu.Lock()
			before := f.recvd.Load()
			cerr := f.consume(buf, n, st, t)
			st.publish()
			st.mu.Unlock()
			for i := before; i < f.recvd.Load(); i++ {
				gc.credits <- struct{}{} // never blocks: credits + in flight = pipeline
			}
			if cerr != nil {
				d.fail(gc, "connection %d: %v", gc.id, cerr)
				return
			}
		}
		if gc.stopped.Load() && f.inflight() == 0 {
			return
		}
		if err != nil {
			if d.closing.Load() {
				return
			}
			if errors.Is(err, io.EOF) && !d.c.CloseIsError && f.recvd.Load() > gc.base {
				// A clean close after replies: a keep-alive limit.
				if d.reconnect(gc) {
					continue
				}
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && gc.stopped.Load() {
				lost := int64(f.inflight())
				st.mu.Lock()
				st.unanswered += lost
				st.noteErr(now(), "%d replies had not come %v after sending stopped", lost, d.c.DrainTimeout)
				st.mu.Unlock()
				return
			}
			d.fail(gc, "connection %d: %v after %d replies", gc.id, closedBy(ignoreEOF(err)), f.recvd.Load())
			return
		}
	}
}
