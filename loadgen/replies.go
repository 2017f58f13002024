package loadgen

import (
	"bytes"
	"fmt"

	"switchboard/framing"
)

// The receiving side of a flow: where a read lands, and the verifying of
// what it brought. Framed replies go through a framing.Accumulator, the
// frame loop the engines and the client share; raw replies, which only
// their length delimits, are checked byte by byte as they come.

// readBufSize is the size of the buffer a connection's replies are read
// into: a worker's shared buffer, or a goroutine's own.
const readBufSize = 64 << 10

// readRoom is the least free space a read behind a partial reply gets:
// smaller reads would cost more system calls than the copies they save.
const readRoom = 16 << 10

// lentSplitter cuts replies for a reader that reads into one buffer of
// its own and lends each read to the connection's accumulator (an epoll
// worker): a partial reply moves into a buffer from bufs until the rest
// comes.
func lentSplitter(p *proto, bufs framing.Buffers) *framing.Splitter {
	return framing.NewSplitter(p.reply, framing.SplitterOptions{Room: readRoom, Buffers: bufs})
}

// ownSplitter cuts replies for connections that always read into their
// accumulator (a goroutine each), which keeps its buffer between reads as
// the goroutine's own read buffer. It holds no state, so connections
// share it.
func ownSplitter(p *proto) *framing.Splitter {
	return framing.NewSplitter(p.reply, framing.SplitterOptions{Room: readRoom, Initial: readBufSize, Keep: readBufSize})
}

// recvBuf returns where f's next read should land. Framed replies are
// read straight behind a partial one f holds, and always into f's
// accumulator when shared is nil; otherwise into shared, the reader's own
// buffer, which consume then lends to the accumulator (or, for raw
// replies, verifies in place).
func (f *flow) recvBuf(shared []byte) []byte {
	f.inRoom = f.p.framed && (shared == nil || f.in.Buffered() > 0)
	if f.inRoom {
		return f.in.Room(f.split)
	}
	return shared
}

// consume takes the n bytes a read received at t put into buf, which
// recvBuf returned, verifies them and records each reply they complete.
// An error is final for the connection.
func (f *flow) consume(buf []byte, n int, st *stats, t int64) error {
	if !f.p.framed {
		return f.consumeRaw(buf[:n], st, t)
	}
	if f.inRoom {
		f.in.Commit(n)
	} else {
		f.in.Feed(f.split, buf[:n])
	}
	return f.consumeFrames(st, t)
}

// consumeRaw verifies a stream of raw replies, recognised by length
// alone, byte by byte as they come.
func (f *flow) consumeRaw(data []byte, st *stats, t int64) error {
	recvd := f.recvd.Load()
	sent := f.sent.Load()
	for len(data) > 0 {
		if recvd >= sent {
			f.recvd.Store(recvd)
			return errUnsolicited
		}
		full := f.expected(recvd)
		want := full[f.off:]
		n := min(len(want), len(data))
		if ok, at := equalAt(data[:n], want[:n]); !ok && !f.bad {
			f.bad = true
			got, off, seq := data[at], f.off+at, recvd
			st.mismatch(t, func() string {
				return fmt.Sprintf("connection %d, message %d: byte %d is 0x%02x, sent 0x%02x", f.id, seq, off, got, want[at])
			})
		}
		f.off += n
		data = data[n:]
		if f.off == len(full) {
			st.complete(f, recvd, t)
			recvd++
			f.off, f.bad = 0, false
		}
	}
	f.recvd.Store(recvd)
	return nil
}

// consumeFrames verifies and records every complete reply f's accumulator
// holds; it keeps a partial one for the next read.
func (f *flow) consumeFrames(st *stats, t int64) error {
	recvd := f.recvd.Load()
	sent := f.sent.Load()
	for {
		frame, ok, err := f.in.Next(f.split, false)
		if err == nil && ok && recvd >= sent {
			err = errUnsolicited
		}
		if err != nil {
			f.recvd.Store(recvd)
			f.in.Reset(f.split) // the connection is done for
			return err
		}
		if !ok {
			break
		}
		if f.p.echo {
			f.check(frame, recvd, st, t)
		}
		st.complete(f, recvd, t)
		recvd++
	}
	f.recvd.Store(recvd)
	f.in.Done(f.split)
	return nil
}

// check compares frame with message seq as sent, noting a mismatch.
func (f *flow) check(frame []byte, seq uint64, st *stats, t int64) {
	p := f.p
	var ok bool
	var at int
	if f.msgs != nil {
		ok, at = equalAt(frame, f.msgs[seq%f.pipe])
	} else {
		ok, at = p.equal(frame, f.id, seq)
	}
	if ok {
		return
	}
	var want []byte
	if f.msgs != nil {
		want = bytes.Clone(f.msgs[seq%f.pipe])
	} else {
		want = p.message(nil, f.id, seq)
	}
	got := frame
	if len(got) > 64 {
		got = got[:64:64] // enough to describe it; do not pin the buffer
	}
	got = append([]byte(nil), got...)
	st.mismatch(t, func() string { return describeMismatch(f.id, seq, got, want, at) })
}

// restart forgets the replies in progress: the connection was replaced
// and what was in flight on it abandoned.
func (f *flow) restart() {
	f.recvd.Store(f.sent.Load())
	f.off, f.bad = 0, false
	f.in.Reset(f.split)
}
