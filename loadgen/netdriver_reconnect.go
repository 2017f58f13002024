package loadgen

import (
	"context"
	"net"
	"time"
)

// connBox holds a connection for an atomic pointer.
type connBox struct{ net.Conn }

func (gc *gconn) conn() net.Conn { return gc.box.Load().Conn }

// reconnect replaces a connection the server closed cleanly, as the epoll
// driver does: what was in flight is abandoned, its credits come back, and
// the writer goes on with the new connection. It reports false when the
// connection is done for (sending stopped, the run is closing, or the
// connect failed, which is counted).
func (d *netDriver) reconnect(gc *gconn) bool {
	c := d.c
	f := gc.f
	st := gc.st
	gc.mu.Lock()
	defer gc.mu.Unlock()
	lost := f.inflight()
	refund := int64(0)
	for k := f.recvd.Load(); k < f.sent.Load(); k++ {
		if f.times[k%f.pipe].Load() > 0 {
			refund++
		}
	}
	if c.Requests > 0 {
		// Before the messages leave the flight: a writer waiting for
		// quota sees it come back before it sees nothing in flight.
		d.quota.Add(refund)
	}
	f.restart()
	st.mu.Lock()
	st.abandoned += int64(lost)
	st.mu.Unlock()
	for i := uint64(0); i < lost; i++ {
		gc.credits <- struct{}{} // never blocks: credits + in flight = pipeline
	}
	old := gc.conn()
	old.Close()
	if gc.stopped.Load() || d.closing.Load() {
		return false
	}
	nc, err := d.open(context.Background(), gc)
	if err != nil {
		st.mu.Lock()
		st.connectError(now(), "reconnect to %s: %v", c.Addr, err)
		st.mu.Unlock()
		gc.dead.Store(true)
		return false
	}
	gc.box.Store(&connBox{nc})
	if d.closing.Load() {
		// shutdown may have closed the old one only.
		nc.Close()
		return false
	}
	st.mu.Lock()
	st.reconnects++
	st.mu.Unlock()
	gc.base = f.recvd.Load()
	close(gc.reconnected)
	gc.reconnected = make(chan struct{})
	return true
}

// awaitReconnect tells a writer whose write failed whether the reader
// replaced the connection (the server had closed it cleanly), waiting at
// most the connect timeout for the reader to see the close.
func (d *netDriver) awaitReconnect(gc *gconn, reconnected <-chan struct{}) bool {
	if d.c.CloseIsError {
		return false
	}
	t := time.NewTimer(d.c.ConnectTimeout)
	defer t.Stop()
	select {
	case <-reconnected:
		return true
	case <-gc.gone:
	case <-t.C:
	}
	return false
}

// fail reports the first error of a connection, unless the driver is
// closing it, and closes it.
func (d *netDriver) fail(gc *gconn, format string, args ...any) {
	if !d.closing.Load() && gc.dead.CompareAndSwap(false, true) {
		gc.st.mu.Lock()
		gc.st.connError(now(), format, args...)
		gc.st.mu.Unlock()
	}
	gc.conn().Close()
}
