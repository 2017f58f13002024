package main

import (
	"sync"
	"time"

	"switchboard"
)

// With --backend-delay the commands are not answered in the callback but
// by a worker goroutine per connection, after the delay, as a server in
// front of a slower store (a disk, another service) would answer them:
// the replies are Writes from another goroutine, in order. A client that
// pipes its commands in and shuts its write half at once
// (`printf 'GET k\r\n' | nc -N`) still gets every reply, because the
// server is a HalfCloser: OnPeerClose tells the worker, which closes the
// connection (CloseWrite: after the replies) once the queue is empty.

// backlog is one connection's queue of commands for its worker.
type backlog struct {
	mu     sync.Mutex
	frames [][]byte
	ended  bool // no more commands: the peer's FIN, or the connection closed
	signal chan struct{}
}

func newBacklog() *backlog { return &backlog{signal: make(chan struct{}, 1)} }

// push queues a copy of frame; the callback that calls it never waits.
func (b *backlog) push(frame []byte) {
	b.mu.Lock()
	b.frames = append(b.frames, append([]byte(nil), frame...))
	b.mu.Unlock()
	b.wake()
}

// end says no command follows.
func (b *backlog) end() {
	b.mu.Lock()
	b.ended = true
	b.mu.Unlock()
	b.wake()
}

func (b *backlog) wake() {
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// take waits for commands; ok is false once the queue is empty and ended.
func (b *backlog) take() (frames [][]byte, ok bool) {
	for {
		b.mu.Lock()
		frames, b.frames = b.frames, nil
		ended := b.ended
		b.mu.Unlock()
		if len(frames) > 0 {
			return frames, true
		}
		if ended {
			return nil, false
		}
		<-b.signal
	}
}

// work answers c's commands until its backlog ends, then closes c (a no-op
// when it is closed already) and forgets its subscriptions. It owns ss.
func (s *server) work(c switchboard.Conn, ss *session) {
	for {
		frames, ok := ss.queue.take()
		if !ok {
			break
		}
		for _, f := range frames {
			time.Sleep(s.delay)
			c.Write(s.answer(c, ss, f))
		}
	}
	c.CloseWrite()
	for ch := range ss.subs {
		s.unsubscribe(c, ch)
	}
}
