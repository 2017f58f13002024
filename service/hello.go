package service

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"switchboard"
)

// Hello returns the hello service's handler: an HTTP/1.1 plaintext
// responder, for raw framing, that curl, wrk and Go's net/http accept.
//
// Every request, whatever its method and target, gets
//
//	HTTP/1.1 200 OK
//	Content-Type: text/plain
//	Content-Length: 13
//	Date: <now>
//
//	Hello, world!
//
// HEAD gets the same head without the body. Connections persist by
// default for HTTP/1.1 and close for HTTP/1.0 unless it asks for
// "Connection: keep-alive" (the reply then says so too). Requests may be
// pipelined, many in one read or split across reads at any byte. A request
// with "Connection: close", or an HTTP/1.0 one without keep-alive, gets
// its reply with "Connection: close", after which the server shuts down its
// write half and ignores further input (a lingering close, as net/http
// does, so the reply is not lost to a reset).
//
// A request body announced by Content-Length is read and discarded; when
// the request says "Expect: 100-continue", "100 Continue" goes out first so
// that the client sends the body it then waits to send. Transfer-Encoding
// (chunked bodies) is not supported and gets 400.
//
// A head that is malformed (a bad request line, a bad header line,
// obs-fold continuation lines, a bare CR, an HTTP version other than 1.0
// and 1.1, a missing or repeated Host in HTTP/1.1,
// conflicting Content-Length values), or one larger than 8 KiB, gets
// "400 Bad Request" with "Connection: close", and the connection is closed
// the same lingering way after the reply. Lines may end in CRLF or, as RFC
// 9112 allows, in a bare LF.
//
// A head that arrives in pieces is marked as a partial frame
// (switchboard.PartialFramer) until it is complete, so the server's frame
// timeout (switchboard.WithFrameTimeout, serve --frame-timeout) closes a
// client that trickles its head in a byte at a time (a slowloris).
//
// In the steady state, whole requests in each read, the handler allocates
// nothing: replies are prebuilt once a second (for the Date header) and
// per-connection state lives in Conn.Value only while a partial head or
// the rest of a body is pending, taken from and returned to a pool.
func Hello() switchboard.Handler { return helloHandler{} }

const (
	// maxHeadBytes is the largest request head accepted, from the request
	// line through the empty line that ends it.
	maxHeadBytes = 8 << 10
	// maxIgnored is how much input a connection may send after its last
	// reply (Connection: close or 400) before it is closed outright.
	maxIgnored = 64 << 10
)

// helloState is a connection's state between reads, present only while
// something is pending.
type helloState struct {
	buf     []byte // an incomplete head, at most maxHeadBytes
	skip    int64  // body bytes still to discard
	closing bool   // the last reply is out; input is ignored
	ignored int    // bytes ignored since then
}

var statePool = sync.Pool{New: func() any { return &helloState{buf: make([]byte, 0, maxHeadBytes)} }}

type helloHandler struct{}

func (helloHandler) OnOpen(switchboard.Conn) {}

func (helloHandler) OnClose(c switchboard.Conn, _ error) {
	if st, ok := c.Value().(*helloState); ok {
		c.SetValue(nil)
		releaseState(st)
	}
}

func releaseState(st *helloState) {
	*st = helloState{buf: st.buf[:0]}
	statePool.Put(st)
}

// state returns st, or a state from the pool stored with c.
func state(c switchboard.Conn, st *helloState) *helloState {
	if st == nil {
		st = statePool.Get().(*helloState)
		c.SetValue(st)
	}
	return st
}

func (helloHandler) OnMessage(c switchboard.Conn, msg []byte) {
	st, _ := c.Value().(*helloState)
	if st != nil && st.closing {
		st.ignored += len(msg)
		if st.ignored > maxIgnored {
			c.Close()
		}
		return
	}
	var rs *responses
	for {
		if st != nil && st.skip > 0 {
			k := min(st.skip, int64(len(msg)))
			st.skip -= k
			msg = msg[k:]
		}
		if len(msg) == 0 {
			break
		}
		var (
			h   head
			n   int
			err error
		)
		if st != nil && len(st.buf) > 0 {
			// Complete the pending head. It was incomplete on its own,
			// so the head ends inside what is added now, if at all.
			old := len(st.buf)
			st.buf = append(st.buf, msg[:min(len(msg), maxHeadBytes-old)]...)
			h, n, err = parseHead(st.buf)
			if err == nil && n == 0 {
				return // all of msg is buffered (else the head is too large)
			}
			markPartial(c, false) // complete, or a 400
			if n > 0 {
				msg = msg[n-old:]
				st.buf = st.buf[:0]
			}
		} else {
			h, n, err = parseHead(msg)
			if err == nil && n == 0 {
				st = state(c, st)
				st.buf = append(st.buf, msg...) // len(msg) < maxHeadBytes here
				markPartial(c, true)
				return
			}
			msg = msg[n:]
		}
		if rs == nil {
			rs = currentResponses()
		}
		if err != nil {
			st = state(c, st)
			st.closing = true
			st.buf = st.buf[:0]
			if c.Write(rs.bad) == nil {
				c.CloseWrite()
			}
			return
		}
		kind := replyKeepAlive
		switch {
		case !h.keepAlive:
			kind = replyClose
		case h.minor == 0:
			kind = replyKeepAlive10
		}
		if h.expectContinue && h.contentLength > 0 && h.minor == 1 {
			// The client waits for this before sending the body, which is
			// then skipped like any other.
			if c.Write(continueReply) != nil {
				return
			}
		}
		if c.Write(rs.ok[h.head][kind]) != nil {
			return // closed meanwhile
		}
		if kind == replyClose {
			st = state(c, st)
			st.closing = true
			c.CloseWrite()
			return
		}
		if h.contentLength > 0 {
			k := min(h.contentLength, int64(len(msg)))
			msg = msg[k:]
			if rest := h.contentLength - k; rest > 0 {
				st = state(c, st)
				st.skip = rest // msg is empty now
			}
		}
	}
	if st != nil && len(st.buf) == 0 && st.skip == 0 {
		c.SetValue(nil)
		releaseState(st)
	}
}

// markPartial tells the engine a request head is (or is no longer) half
// received, so the server's frame timeout bounds how long a head may
// trickle in: on raw framing the engine's own decoder sees every read as
// a whole message and cannot know.
func markPartial(c switchboard.Conn, on bool) {
	if pf, ok := c.(switchboard.PartialFramer); ok {
		pf.PartialFrame(on)
	}
}

// Reply kinds, the second index of responses.ok.
const (
	replyKeepAlive   = iota // HTTP/1.1 default: no Connection header
	replyKeepAlive10        // HTTP/1.0 that asked for keep-alive
	replyClose              // Connection: close
)

// responses are the prebuilt replies for one second.
type responses struct {
	sec int64
	ok  [2][3][]byte // [HEAD?][reply kind]
	bad []byte
}

var cachedResponses atomic.Pointer[responses]

// currentResponses returns the replies with this second's Date, building
// them when the second has changed. Two goroutines may both build them at
// a second's turn; either result is right.
func currentResponses() *responses {
	now := time.Now()
	if r := cachedResponses.Load(); r != nil && r.sec == now.Unix() {
		return r
	}
	r := buildResponses(now)
	cachedResponses.Store(r)
	return r
}

const helloBody = "Hello, world!"

var continueReply = []byte("HTTP/1.1 100 Continue\r\n\r\n")

func buildResponses(now time.Time) *responses {
	date := "Date: " + now.UTC().Format(http.TimeFormat) + "\r\n"
	conn := [3]string{"", "Connection: keep-alive\r\n", "Connection: close\r\n"}
	r := &responses{sec: now.Unix()}
	for kind, ch := range conn {
		hdr := "HTTP/1.1 200 OK\r\n" +
			"Content-Type: text/plain\r\n" +
			"Content-Length: " + strconv.Itoa(len(helloBody)) + "\r\n" +
			date + ch + "\r\n"
		r.ok[1][kind] = []byte(hdr)
		r.ok[0][kind] = []byte(hdr + helloBody)
	}
	const badBody = "Bad Request"
	r.bad = []byte("HTTP/1.1 400 Bad Request\r\n" +
		"Content-Type: text/plain\r\n" +
		"Content-Length: " + strconv.Itoa(len(badBody)) + "\r\n" +
		date + "Connection: close\r\n\r\n" + badBody)
	return r
}
