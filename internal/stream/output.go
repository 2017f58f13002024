package stream

import (
	"io"
	"net"
	"time"

	"switchboard/internal/engine"
)

// The output side of a connection: Write queues into the outbox under
// the mutex, and the reader or a short-lived flusher sends it.

func (c *conn) Write(msg []byte) error {
	c.mu.Lock()
	if c.closed || c.wantCloseW {
		c.mu.Unlock()
		return engine.ErrConnClosed
	}
	pending := c.out.Len()
	if pending+len(msg) > c.s.writeLimit {
		// Over the limit whatever the framing adds.
		return c.slowLocked()
	}
	codec, overhead := c.s.cfg.ReplyCodec, c.s.overhead
	if c.reply != nil {
		codec, overhead = c.reply, c.reply.Overhead()
	}
	t := c.out.Reserve(len(msg) + overhead)
	b, err := codec.Append(t, msg)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	if pending+len(b)-len(t) > c.s.writeLimit {
		return c.slowLocked()
	}
	c.out.Commit(b)
	c.msgsOut++
	c.s.cfg.Stats.MessagesOut.Add(1)
	c.kickLocked()
	c.mu.Unlock()
	return nil
}

// slowLocked refuses a Write that would pass the write limit and closes
// the connection for it. It unlocks c.mu.
func (c *conn) slowLocked() error {
	c.mu.Unlock()
	c.closeWith(engine.ErrSlowConsumer)
	return engine.ErrSlowConsumer
}

func (c *conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return engine.ErrConnClosed
	}
	c.wantCloseW = true
	c.kickLocked()
	return nil
}

func (c *conn) Close() error {
	if !c.closeWith(nil) {
		return engine.ErrConnClosed
	}
	return nil
}

// kickLocked makes sure queued output will be written: the reader flushes
// after its handler batch, otherwise a flusher goroutine is started.
func (c *conn) kickLocked() {
	if c.flushing || c.dispatch || c.closed {
		return
	}
	c.flushing = true
	c.s.conwg.Add(1)
	go func() {
		defer c.s.conwg.Done()
		c.flushOwned()
	}()
}

// flush writes everything queued, on the caller's goroutine, unless
// another goroutine owns the write side already.
func (c *conn) flush() {
	c.mu.Lock()
	if c.flushing || c.closed {
		c.mu.Unlock()
		return
	}
	c.flushing = true
	c.mu.Unlock()
	c.flushOwned()
}

// flushBatch is flush for the reader, after a batch of messages. With
// more than MaxPending queued the reader is about to spend a while writing
// instead of reading, which is backpressure just as waitBelowHighWater
// is, so it counts in Stats.Paused meanwhile (a batch that big is rare:
// the common case costs a comparison).
func (c *conn) flushBatch() {
	c.mu.Lock()
	if c.flushing || c.closed {
		c.mu.Unlock()
		return
	}
	c.flushing = true
	over := c.out.Len() > c.s.cfg.MaxPending
	c.mu.Unlock()
	if over {
		c.s.cfg.Stats.Paused.Add(1)
		defer c.s.cfg.Stats.Paused.Add(-1)
	}
	c.flushOwned()
}

// flushAll writes everything queued and waits for a concurrent flusher to
// finish, so the caller may close the socket without losing output.
func (c *conn) flushAll() {
	for {
		c.flush()
		c.mu.Lock()
		for c.flushing && !c.closed {
			c.cond.Wait()
		}
		done := c.closed || c.out.Len() == 0
		c.mu.Unlock()
		if done {
			return
		}
	}
}

// flushOwned runs with c.flushing set and clears it when done.
func (c *conn) flushOwned() {
	c.mu.Lock()
	for !c.closed && c.out.Len() > 0 {
		// The chunks gathered are not touched by writers, who append
		// behind them, nor released until written (or the flusher is
		// done: see serve), so the write runs without the lock.
		var n int
		c.iov, n = c.out.Gather(c.iov[:0], writeChunks)
		c.reportPendingLocked()
		c.mu.Unlock()
		written, err := c.writeBufs(c.iov, n)
		clear(c.iov)
		c.mu.Lock()
		c.out.Consume(written)
		c.bytesOut += int64(written)
		c.reportPendingLocked()
		if c.out.Len() <= c.s.lowWater {
			c.cond.Broadcast()
		}
		if err != nil {
			c.flushing = false
			c.cond.Broadcast()
			c.mu.Unlock()
			c.closeWith(err)
			return
		}
	}
	if !c.closed && c.wantCloseW && !c.wclosed {
		c.wclosed = true
		c.shutWrite()
	}
	c.flushing = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

// reportPendingLocked adds the change in c's pending output since it was
// last reported to Stats.PendingBytes. It is called before each write
// (which may block for as long as the peer does not read: the gauge must
// show that output meanwhile) and after it, so a flush costs two shared
// adds, and a write that leaves nothing and follows a report of nothing
// costs none. Under c.mu.
func (c *conn) reportPendingLocked() {
	if d := int64(c.out.Len()) - c.reported; d != 0 {
		c.s.cfg.Stats.PendingBytes.Add(d)
		c.reported += d
	}
}

// writeBufs writes n bytes from bufs in one vectored write (net.Buffers
// uses writev on TCP), with a fresh write deadline, and returns how many
// were written.
func (c *conn) writeBufs(bufs [][]byte, n int) (int, error) {
	if wt := c.s.cfg.WriteTimeout; wt > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(wt))
	}
	var written int64
	var err error
	switch {
	case len(bufs) == 1:
		var k int
		k, err = c.rw.Write(bufs[0])
		written = int64(k)
	case c.tc != nil:
		// crypto/tls seals each buffer into records of its own; the
		// chunks are 4 KiB or more, so that costs little.
		for _, b := range bufs {
			var k int
			k, err = c.tc.Write(b)
			written += int64(k)
			if err != nil {
				break
			}
		}
	default:
		nb := net.Buffers(bufs)
		written, err = nb.WriteTo(c.nc)
	}
	c.s.cfg.Stats.BytesOut.Add(written)
	if err == nil && int(written) < n {
		err = io.ErrShortWrite
	}
	if err != nil && isTimeout(err) {
		err = engine.ErrWriteTimeout
	}
	return int(written), err
}
