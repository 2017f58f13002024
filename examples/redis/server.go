package main

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"switchboard"
)

// tickEvery is the pace of active expiry.
const tickEvery = 100 * time.Millisecond

// server is the handler: a keyspace, pub/sub channels, and per connection
// a session (Conn.Value) with its scratch buffers and subscriptions.
//
// It is a switchboard.Ticker, for expiry, and a HalfCloser: a client that
// sends its commands and shuts its write half (a script piping into
// `nc -N`) still gets every reply, and the connection closes once they
// are out.
type server struct {
	db    *store
	delay time.Duration // --backend-delay: answer from a worker goroutine (async.go)

	mu       sync.Mutex
	channels map[string][]switchboard.Conn // copy-on-write: PUBLISH writes without the lock
}

type session struct {
	args  [][]byte
	out   []byte
	subs  map[string]bool
	queue *backlog // with a backend delay: the worker's commands
}

func newServer() *server {
	return &server{db: newStore(), channels: make(map[string][]switchboard.Conn)}
}

func (s *server) OnOpen(c switchboard.Conn) {
	ss := &session{}
	c.SetValue(ss)
	if s.delay > 0 {
		ss.queue = newBacklog()
		go s.work(c, ss)
	}
}

// OnPeerClose: without a backend delay the replies to everything the peer
// sent are queued by now (they are written from the callbacks), so the
// connection may close once they are out; with one, the worker closes it
// when it has answered the rest.
func (s *server) OnPeerClose(c switchboard.Conn) {
	ss := c.Value().(*session)
	if ss.queue != nil {
		ss.queue.end()
		return
	}
	c.CloseWrite()
}

func (s *server) OnClose(c switchboard.Conn, err error) {
	ss := c.Value().(*session)
	if ss.queue != nil {
		// The worker owns the session; it forgets the subscriptions.
		ss.queue.end()
		return
	}
	for ch := range ss.subs {
		s.unsubscribe(c, ch)
	}
}

// OnTick expires keys whose time to live has passed.
func (s *server) OnTick() time.Duration {
	s.db.expire(time.Now().UnixNano())
	return tickEvery
}

func (s *server) OnMessage(c switchboard.Conn, frame []byte) {
	ss := c.Value().(*session)
	if ss.queue != nil {
		ss.queue.push(frame)
		return
	}
	if out := s.answer(c, ss, frame); len(out) > 0 {
		c.Write(out)
	}
}

// answer runs one command and returns its reply, built in ss.out: empty
// for an empty inline line, which Redis ignores.
func (s *server) answer(c switchboard.Conn, ss *session, frame []byte) []byte {
	var err error
	ss.args, err = parseCommand(frame, ss.args[:0])
	out := ss.out[:0]
	switch {
	case err == errEmpty:
	case err != nil:
		out = appendError(out, err.Error())
	default:
		out = s.command(c, ss, out)
	}
	ss.out = out
	clear(ss.args)
	return out
}

func (s *server) command(c switchboard.Conn, ss *session, out []byte) []byte {
	args := ss.args
	name := args[0]
	now := time.Now().UnixNano()
	switch {
	case is(name, "PING"):
		if len(args) > 1 {
			return appendBulk(out, args[1])
		}
		return appendSimple(out, "PONG")
	case is(name, "ECHO") && len(args) == 2:
		return appendBulk(out, args[1])
	case is(name, "GET") && len(args) == 2:
		if out, ok := s.db.get(out, args[1], now); ok {
			return out
		}
		return appendNull(out)
	case is(name, "SET") && len(args) >= 3:
		ttl, err := setTTL(args[3:])
		if err != "" {
			return appendError(out, err)
		}
		s.db.set(args[1], args[2], ttl, now)
		return appendSimple(out, "OK")
	case is(name, "DEL") && len(args) >= 2:
		n := int64(0)
		for _, k := range args[1:] {
			if s.db.del(k, now) {
				n++
			}
		}
		return appendInt(out, n)
	case is(name, "DBSIZE"):
		return appendInt(out, s.db.size())
	case is(name, "PUBLISH") && len(args) == 3:
		return appendInt(out, s.publish(args[1], args[2]))
	case is(name, "SUBSCRIBE") && len(args) >= 2:
		for _, ch := range args[1:] {
			if ss.subs == nil {
				ss.subs = make(map[string]bool)
			}
			if !ss.subs[string(ch)] {
				ss.subs[string(ch)] = true
				s.subscribe(c, string(ch))
			}
			out = appendArray(out, 3)
			out = appendBulk(out, []byte("subscribe"))
			out = appendBulk(out, ch)
			out = appendInt(out, int64(len(ss.subs)))
		}
		return out
	case is(name, "CONFIG") && len(args) == 3 && is(args[1], "GET"):
		// redis-benchmark asks for "save" and "appendonly": neither is
		// kept, so each is empty.
		out = appendArray(out, 2)
		out = appendBulk(out, args[2])
		return appendBulk(out, nil)
	case is(name, "QUIT"):
		c.CloseWrite()
		return appendSimple(out, "OK")
	}
	return appendError(out, "unknown command or wrong number of arguments for '"+string(name)+"'")
}

// setTTL reads SET's options: EX seconds or PX milliseconds.
func setTTL(opts [][]byte) (time.Duration, string) {
	switch {
	case len(opts) == 0:
		return 0, ""
	case len(opts) == 2 && (is(opts[0], "EX") || is(opts[0], "PX")):
		n, err := strconv.ParseInt(string(opts[1]), 10, 64)
		if err != nil || n <= 0 || n > 1<<31 {
			return 0, "invalid expire time in 'set' command"
		}
		unit := time.Second
		if is(opts[0], "PX") {
			unit = time.Millisecond
		}
		return time.Duration(n) * unit, ""
	}
	return 0, "syntax error"
}

func is(arg []byte, name string) bool { return bytes.EqualFold(arg, []byte(name)) }

func (s *server) subscribe(c switchboard.Conn, ch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.channels[ch]
	subs := make([]switchboard.Conn, len(old), len(old)+1)
	copy(subs, old)
	s.channels[ch] = append(subs, c)
}

func (s *server) unsubscribe(c switchboard.Conn, ch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.channels[ch]
	subs := make([]switchboard.Conn, 0, len(old))
	for _, x := range old {
		if x != c {
			subs = append(subs, x)
		}
	}
	if len(subs) == 0 {
		delete(s.channels, ch)
		return
	}
	s.channels[ch] = subs
}

// publish sends msg to every subscriber of ch, on whatever loop owns it:
// the Writes come from the publisher's goroutine. No lock is held while
// writing, since a Write to a slow consumer may close it, and its OnClose
// takes the lock.
func (s *server) publish(ch, msg []byte) int64 {
	s.mu.Lock()
	subs := s.channels[string(ch)]
	s.mu.Unlock()
	if len(subs) == 0 {
		return 0
	}
	push := appendArray(nil, 3)
	push = appendBulk(push, []byte("message"))
	push = appendBulk(push, ch)
	push = appendBulk(push, msg)
	n := int64(0)
	for _, c := range subs {
		if c.Write(push) == nil {
			n++
		}
	}
	return n
}
