package loadgen

import (
	"errors"
	"sync/atomic"

	"switchboard/framing"
)

// flow is the message bookkeeping of one active connection, common to both
// drivers. The send side (sent, times) is written by whoever sends; the
// receive side (recvd, off, bad, in) by whoever receives. They may be
// two goroutines (goroutine driver), hence the atomics.
type flow struct {
	p    *proto
	id   int    // connection number: seeds the payloads
	pipe uint64 // messages in flight at most

	sent  atomic.Uint64
	recvd atomic.Uint64
	// times[k % pipe] is when message k was sent (closed loop) or due
	// (open loop), negated when it is not measured.
	times []atomic.Int64

	off     int    // raw: bytes of the current reply received so far
	bad     bool   // raw: the current reply has differed somewhere
	scratch []byte // typed framing: a message with its type byte

	// Framed replies: in holds a partial one between reads, cut by split
	// (the driver's); inRoom says the last recvBuf lent in's own room.
	in     framing.Accumulator
	split  *framing.Splitter
	inRoom bool

	// A template's messages: msgs[k % pipe] is message k as rendered,
	// kept until its reply is checked; rng the connection's generator,
	// text scratch space for a RESP command's text.
	msgs  [][]byte
	rng   uint64
	text  []byte
	tally *progress // counts the bytes of measured messages sent
}

func newFlow(p *proto, id, pipeline int, tally *progress, split *framing.Splitter) *flow {
	f := &flow{p: p, id: id, pipe: uint64(pipeline), times: make([]atomic.Int64, pipeline), tally: tally, split: split}
	if p.tmpl != nil {
		f.msgs = make([][]byte, pipeline)
		f.rng = seedFor(id)
	}
	return f
}

// expected returns message seq as sent (without its framing), for
// checking its reply.
func (f *flow) expected(seq uint64) []byte {
	if f.msgs != nil {
		return f.msgs[seq%f.pipe]
	}
	return f.p.body(f.id, seq)
}

// errUnsolicited: the server sent more replies than it was sent messages.
var errUnsolicited = errors.New("reply to no request: the server sent more than it was sent")

// appendNext frames message k = sent into dst, recording at (negated when
// not measured), and advances sent.
func (f *flow) appendNext(dst []byte, at int64, measured bool) []byte {
	k := f.sent.Load()
	var msg []byte
	if f.msgs != nil {
		msg = f.p.render(f.msgs[k%f.pipe], &f.text, f.id, k, &f.rng)
		f.msgs[k%f.pipe] = msg
	} else {
		msg = f.p.message(f.scratch[:0], f.id, k)
		if len(f.p.prefix) > 0 {
			f.scratch = msg
		}
	}
	if measured {
		f.tally.sentBytes.Add(int64(len(msg)))
	}
	// Append cannot fail: newProto framed this size and alphabet already.
	dst, _ = f.p.codec.Append(dst, msg)
	if !measured {
		at = -at
	}
	f.times[k%f.pipe].Store(at)
	f.sent.Store(k + 1)
	return dst
}

// inflight is the number of messages sent and not yet answered.
func (f *flow) inflight() uint64 { return f.sent.Load() - f.recvd.Load() }
