package service

import (
	"slices"
	"sync"
	"sync/atomic"

	"switchboard"
)

// Chat returns the chat service's handler, for line framing: each line a
// client sends is written to every other connected client, not back to
// the sender. Every call returns a new, empty room.
//
// The members are a copy-on-write snapshot: joining and leaving copy the
// slice under a mutex, and a broadcast reads the current snapshot without
// any lock. No lock is held while calling Conn.Write, because an engine may
// close a slow consumer from inside Write and run its OnClose, which
// leaves the room, on the same goroutine.
//
// A member that does not read fast enough is not buffered for without
// bound: once its pending output passes the server's limit (WithMaxPending)
// the engine closes it with switchboard.ErrSlowConsumer and the others carry
// on.
func Chat() switchboard.Handler {
	r := &chatRoom{}
	r.members.Store(new([]switchboard.Conn))
	return r
}

type chatRoom struct {
	mu      sync.Mutex // serialises joins and leaves
	members atomic.Pointer[[]switchboard.Conn]
}

func (r *chatRoom) OnOpen(c switchboard.Conn) {
	r.mu.Lock()
	old := *r.members.Load()
	next := make([]switchboard.Conn, len(old), len(old)+1)
	copy(next, old)
	next = append(next, c)
	r.members.Store(&next)
	r.mu.Unlock()
}

func (r *chatRoom) OnClose(c switchboard.Conn, _ error) {
	r.mu.Lock()
	old := *r.members.Load()
	if i := slices.Index(old, c); i >= 0 {
		next := make([]switchboard.Conn, 0, len(old)-1)
		next = append(next, old[:i]...)
		next = append(next, old[i+1:]...)
		r.members.Store(&next)
	}
	r.mu.Unlock()
}

func (r *chatRoom) OnMessage(from switchboard.Conn, msg []byte) {
	// The snapshot stays valid while members come and go: writers only
	// ever store new slices.
	for _, m := range *r.members.Load() {
		if m != from {
			// Write copies msg into m's queue, so the engine's buffer may
			// be reused as soon as we return. An error means m is closed
			// or has just been closed as a slow consumer; its OnClose
			// removes it.
			_ = m.Write(msg)
		}
	}
}
