package client

import (
	"context"
	"errors"
	"io"
	"os"
	"time"
)

// Receive returns the next message. It reads as often as needed to
// complete one, and keeps any bytes after it for the next call. With raw
// framing a message is what one read returned.
//
// The returned slice aliases the connection's buffer: it is valid only
// until the next Receive, Request, ReadAll or WriteTo call. Copy it to keep
// it.
//
// When the server closes between messages, Receive returns io.EOF. A
// stream that ends inside a message returns an error wrapping
// framing.ErrTruncated; a frame over the codec's maximum, one wrapping
// framing.ErrFrameTooLarge. Errors are final: later calls return them
// again.
//
// ctx bounds the wait as well: its deadline, when sooner than the
// timeout, is the read deadline, and cancelling it interrupts a read in
// progress. Then Receive returns an Error wrapping ctx.Err(), and that one
// is not final: bytes already read are kept, and a later Receive carries
// on where this one stopped.
func (c *Conn) Receive(ctx context.Context) ([]byte, error) {
	if c.rerr != nil {
		return nil, c.rerr
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Op: "receive", Addr: c.addr, Err: err}
	}
	armed, ctxDeadline := false, false
	for {
		frame, ok, err := c.in.Next(c.split, c.eof)
		if err != nil {
			c.rerr = &Error{Op: "receive", Addr: c.addr, Err: err}
			return nil, c.rerr
		}
		if ok {
			return frame, nil
		}
		if c.eof {
			// Nothing is left: Next reports bytes after the last
			// message as truncated.
			c.rerr = io.EOF
			return nil, io.EOF
		}
		if !armed {
			armed = true
			ctxDeadline = c.armRead(ctx)
		}
		if err := c.fillCtx(ctx, ctxDeadline); err != nil {
			return nil, err
		}
	}
}

// armRead sets the read deadline for one Receive: the per-operation
// timeout or SetDeadline's, or ctx's deadline when that is sooner, which
// it reports.
func (c *Conn) armRead(ctx context.Context) (ctxDeadline bool) {
	var d time.Time
	switch {
	case c.fixedDeadline.Load():
		d = c.deadline
	case c.timeout > 0:
		d = time.Now().Add(c.timeout)
	}
	if cd, ok := ctx.Deadline(); ok && (d.IsZero() || cd.Before(d)) {
		d, ctxDeadline = cd, true
	}
	if !d.IsZero() || ctx.Done() != nil {
		c.nc.SetReadDeadline(d)
	}
	return ctxDeadline
}

// fillCtx is fill, interrupted when ctx ends: a watcher moves the read
// deadline into the past, and the timeout that results is reported as
// ctx's error, which leaves the connection usable. A context that can
// never end costs nothing here.
func (c *Conn) fillCtx(ctx context.Context, ctxDeadline bool) error {
	if ctx.Done() == nil {
		if err := c.fill(); err != nil {
			c.rerr = err
			return err
		}
		return nil
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetReadDeadline(time.Unix(1, 0)) })
	err := c.fill()
	interrupted := !stop()
	if err != nil && (interrupted || ctxDeadline || ctx.Err() != nil) && errors.Is(err, os.ErrDeadlineExceeded) {
		c.ioErr = nil
		if interrupted {
			// Later calls arm their own deadline; this one is in the past.
			c.nc.SetReadDeadline(time.Time{})
		}
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded // the read deadline was ctx's, a moment early
		}
		return &Error{Op: "receive", Addr: c.addr, Err: cause}
	}
	if err != nil {
		c.rerr = err
	}
	return err
}

// fill reads once into the buffer, behind what it holds (the buffer grows
// only while a message bigger than it is being received). EOF sets c.eof
// and is not an error; other read errors are final.
func (c *Conn) fill() error {
	if c.ioErr != nil {
		return c.ioErr
	}
	c.in.Done(c.split)
	n, err := c.nc.Read(c.in.Room(c.split))
	c.in.Commit(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			c.eof = true
			return nil
		}
		c.ioErr = c.opError("receive", err)
		return c.ioErr
	}
	return nil
}

// Request sends msg and returns the next message received: one
// request-response exchange. The reply is valid until the next receiving
// call, as with Receive.
func (c *Conn) Request(msg []byte) ([]byte, error) {
	if err := c.Send(msg); err != nil {
		return nil, err
	}
	return c.Receive(context.Background())
}

// ReadAll returns everything the server sends until it closes its write
// half, raw, without framing: the bytes Receive has buffered but not
// returned, then the rest of the stream. Call it after CloseWrite in an
// HTTP-like exchange. It is not bounded; use WriteTo to stream a reply of
// unknown size. The slice is the caller's.
func (c *Conn) ReadAll() ([]byte, error) {
	var out []byte
	_, err := c.copyOut(func(p []byte) error {
		out = append(out, p...)
		return nil
	})
	return out, err
}

// WriteTo copies everything the server sends until it closes its write
// half to w, raw, as ReadAll does, without holding it in memory. It
// implements io.WriterTo. An error from w is returned as it is.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	return c.copyOut(func(p []byte) error {
		_, err := w.Write(p)
		return err
	})
}

func (c *Conn) copyOut(sink func([]byte) error) (int64, error) {
	var total int64
	for {
		if p := c.in.Bytes(); len(p) > 0 {
			c.in.Skip(len(p))
			total += int64(len(p))
			if err := sink(p); err != nil {
				return total, err
			}
		}
		if c.eof {
			return total, nil
		}
		if c.timeout > 0 && !c.fixedDeadline.Load() {
			c.nc.SetReadDeadline(time.Now().Add(c.timeout))
		}
		if err := c.fill(); err != nil {
			return total, err
		}
	}
}
