package switchboard

import "switchboard/internal/engine"

// CloseCounts counts closed connections by why they closed. Every closed
// connection is in exactly one field, so the fields sum to the connections
// that have closed.
type CloseCounts struct {
	Peer          int64 // orderly: the peer's EOF, or the handler's Close
	Error         int64 // the socket failed: reset by the peer, broken pipe, ...
	Idle          int64 // ErrIdleTimeout
	WriteTimeout  int64 // ErrWriteTimeout
	FrameTimeout  int64 // a frame did not complete within its deadline
	SlowConsumer  int64 // ErrSlowConsumer
	ProtocolError int64 // a framing or PROXY header error
	Panic         int64 // the handler panicked
	Shutdown      int64 // closed by Close, or still open at Shutdown's deadline
	Handshake     int64 // a handshake (TLS) failed
}

// AcceptErrorCounts splits failed accepts by errno: the process's and the
// system's descriptor limits, memory (ENOMEM and ENOBUFS), and the rest.
type AcceptErrorCounts struct {
	EMFILE int64
	ENFILE int64
	ENOMEM int64
	Other  int64
}

func closeCounts(st *engine.Stats) CloseCounts {
	c := &st.Closes
	return CloseCounts{
		Peer:          c[engine.ClosePeer].Load(),
		Error:         c[engine.CloseError].Load(),
		Idle:          c[engine.CloseIdle].Load(),
		WriteTimeout:  c[engine.CloseWriteTimeout].Load(),
		FrameTimeout:  c[engine.CloseFrameTimeout].Load(),
		SlowConsumer:  c[engine.CloseSlowConsumer].Load(),
		ProtocolError: c[engine.CloseProtocolError].Load(),
		Panic:         c[engine.ClosePanic].Load(),
		Shutdown:      c[engine.CloseShutdown].Load(),
		Handshake:     c[engine.CloseHandshake].Load(),
	}
}
