package client

import (
	"fmt"
	"io"
	"time"
)

// Send frames msg with the codec and writes all of it. A message the codec
// cannot frame (one holding a newline, with line framing, say) returns an
// error wrapping framing.ErrInvalidMessage and sends nothing; the
// connection stays usable. msg may be reused when Send returns.
func (c *Conn) Send(msg []byte) error {
	buf, err := c.codec.Append(c.wbuf[:0], msg)
	if err != nil {
		return err
	}
	c.wbuf = buf
	return c.write(buf)
}

// SendBatch frames every message and writes them together, in one write
// call when the kernel takes it all. If any message cannot be framed,
// nothing is sent.
func (c *Conn) SendBatch(msgs ...[]byte) error {
	buf := c.wbuf[:0]
	for i, m := range msgs {
		var err error
		if buf, err = c.codec.Append(buf, m); err != nil {
			return fmt.Errorf("message %d: %w", i+1, err)
		}
	}
	c.wbuf = buf
	return c.write(buf)
}

// write writes all of buf, looping over short writes.
func (c *Conn) write(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	if c.timeout > 0 && !c.fixedDeadline.Load() {
		c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	for len(buf) > 0 {
		n, err := c.nc.Write(buf)
		buf = buf[n:]
		if err != nil {
			return c.opError("send", err)
		}
		if n == 0 {
			return c.opError("send", io.ErrShortWrite)
		}
	}
	// Keep a large one-off message from pinning its buffer.
	if cap(c.wbuf) > shrinkAbove {
		c.wbuf = nil
	}
	return nil
}
