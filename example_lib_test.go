package switchboard_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"switchboard"
	"switchboard/framing"
)

// slowUpper answers each line from a goroutine, as a handler whose work
// is slow must (callbacks must not block). As a HalfCloser it hears of
// the peer's FIN and closes once the last reply is out, so a client that
// sends and half-closes at once (`printf 'hello\n' | nc -N`) still gets
// its replies.
type slowUpper struct {
	switchboard.BaseHandler
}

type pending struct {
	mu         sync.Mutex
	inflight   int
	peerClosed bool
}

func (slowUpper) OnOpen(c switchboard.Conn) { c.SetValue(new(pending)) }

func (slowUpper) OnMessage(c switchboard.Conn, msg []byte) {
	p := c.Value().(*pending)
	p.mu.Lock()
	p.inflight++
	p.mu.Unlock()
	reply := strings.ToUpper(string(msg))
	go func() {
		time.Sleep(10 * time.Millisecond) // the slow part
		c.Write([]byte(reply))
		p.mu.Lock()
		p.inflight--
		last := p.inflight == 0 && p.peerClosed
		p.mu.Unlock()
		if last {
			c.CloseWrite() // sends what is queued, then closes
		}
	}()
}

func (slowUpper) OnPeerClose(c switchboard.Conn) {
	p := c.Value().(*pending)
	p.mu.Lock()
	p.peerClosed = true
	idle := p.inflight == 0
	p.mu.Unlock()
	if idle {
		c.CloseWrite()
	}
}

func ExampleHalfCloser() {
	srv, _ := switchboard.NewServer(slowUpper{}, switchboard.WithFraming("line", 0))
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)
	defer srv.Shutdown(context.Background())

	c, _ := net.Dial("tcp", lns[0].Addr().String())
	defer c.Close()
	fmt.Fprint(c, "hello\n")
	c.(*net.TCPConn).CloseWrite() // the FIN goes before the reply is ready
	reply, _ := io.ReadAll(c)
	fmt.Print(string(reply))
	// Output:
	// HELLO
}

// ticker counts its ticks and stops after three.
type ticker struct {
	switchboard.BaseHandler
	n    atomic.Int32
	done chan struct{}
}

func (t *ticker) OnTick() time.Duration {
	fmt.Println("tick", t.n.Add(1))
	if t.n.Load() == 3 {
		close(t.done)
		return 0 // no more ticks
	}
	return 10 * time.Millisecond
}

func ExampleTicker() {
	h := &ticker{done: make(chan struct{})}
	srv, _ := switchboard.NewServer(h)
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)
	<-h.done
	srv.Shutdown(context.Background())
	// Output:
	// tick 1
	// tick 2
	// tick 3
}

// A reply written from the connection's own timer: on the event-loop
// models it runs on the connection's loop, out of the loop's timer heap.
func ExampleConn_AfterFunc() {
	h := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		c.Write([]byte("soon"))
		c.AfterFunc(20*time.Millisecond, func() { c.Write([]byte("later")) })
	})
	srv, _ := switchboard.NewServer(h, switchboard.WithFraming("line", 0))
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)
	defer srv.Shutdown(context.Background())

	c, _ := net.Dial("tcp", lns[0].Addr().String())
	defer c.Close()
	fmt.Fprint(c, "go\n")
	r := bufio.NewReader(c)
	for range 2 {
		line, _ := r.ReadString('\n')
		fmt.Print(line)
	}
	// Output:
	// soon
	// later
}

// A login line sets a short idle timeout for that connection only.
func ExampleConn_SetIdleTimeout() {
	h := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		if string(msg) == "guest" {
			c.SetIdleTimeout(50 * time.Millisecond)
		}
		c.Write([]byte("welcome " + string(msg)))
	})
	srv, _ := switchboard.NewServer(h, switchboard.WithFraming("line", 0))
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)
	defer srv.Shutdown(context.Background())

	c, _ := net.Dial("tcp", lns[0].Addr().String())
	defer c.Close()
	fmt.Fprint(c, "guest\n")
	rest, _ := io.ReadAll(c) // the reply, then EOF when the timeout closes it
	fmt.Print(string(rest))
	// Output:
	// welcome guest
}

// A handshake line, then length-prefixed frames: the bytes after the
// handshake may have arrived in the same read, and are decoded with the
// new codec.
func ExampleConn_SetCodec() {
	h := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		if string(msg) == "HELLO v2" {
			c.Write([]byte("OK"))
			len1, _ := framing.Parse("len:1", 0)
			c.SetCodec(len1)
			return
		}
		c.Write([]byte(strings.ToUpper(string(msg))))
	})
	srv, _ := switchboard.NewServer(h, switchboard.WithFraming("line", 0))
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)
	defer srv.Shutdown(context.Background())

	c, _ := net.Dial("tcp", lns[0].Addr().String())
	defer c.Close()
	fmt.Fprint(c, "HELLO v2\n\x03abc\x02de")
	reply := make([]byte, len("OK\n")+4+3)
	io.ReadFull(c, reply)
	fmt.Printf("%q\n", reply)
	// Output:
	// "OK\n\x03ABC\x02DE"
}

// Requests are lines, replies are sent as written: the handler frames
// them itself (here as a tiny HTTP-like status line).
func ExampleWithReplyCodec() {
	h := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		c.Write(fmt.Appendf(nil, "200 %s\r\n", msg))
	})
	srv, _ := switchboard.NewServer(h, switchboard.WithFraming("line", 0),
		switchboard.WithReplyCodec(framing.Raw(0)))
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)
	defer srv.Shutdown(context.Background())

	c, _ := net.Dial("tcp", lns[0].Addr().String())
	defer c.Close()
	fmt.Fprint(c, "ok\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Printf("%q\n", line)
	// Output:
	// "200 ok\r\n"
}

// Telling every client before the server drains: the hook runs when
// Shutdown begins, while connections can still be written to.
func ExampleServer_RegisterOnShutdown() {
	var mu sync.Mutex
	conns := map[switchboard.Conn]bool{}
	opened := make(chan struct{})
	h := &joinLeave{mu: &mu, conns: conns, opened: opened}
	srv, _ := switchboard.NewServer(h, switchboard.WithFraming("line", 0))
	srv.RegisterOnShutdown(func() {
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Write([]byte("server going away"))
		}
	})
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)

	c, _ := net.Dial("tcp", lns[0].Addr().String())
	defer c.Close()
	<-opened
	go srv.Shutdown(context.Background())
	rest, _ := io.ReadAll(c)
	fmt.Print(string(rest))
	// Output:
	// server going away
}

type joinLeave struct {
	switchboard.BaseHandler
	mu     *sync.Mutex
	conns  map[switchboard.Conn]bool
	opened chan struct{}
}

func (h *joinLeave) OnOpen(c switchboard.Conn) {
	h.mu.Lock()
	h.conns[c] = true
	h.mu.Unlock()
	h.opened <- struct{}{}
}

func (h *joinLeave) OnClose(c switchboard.Conn, err error) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// Work started for a connection stops when it closes, and its counters
// say what it did.
func ExampleConn_Context() {
	h := &ctxHandler{cancelled: make(chan string), stats: make(chan string, 1)}
	srv, _ := switchboard.NewServer(h, switchboard.WithFraming("line", 0))
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)
	defer srv.Shutdown(context.Background())

	c, _ := net.Dial("tcp", lns[0].Addr().String())
	fmt.Fprint(c, "a\nbb\n")
	io.ReadFull(c, make([]byte, len("a\nbb\n")))
	c.Close()
	fmt.Println(<-h.cancelled)
	fmt.Println(<-h.stats)
	// Output:
	// context canceled
	// in 2 messages, 5 bytes; out 2 messages, 5 bytes
}

type ctxHandler struct {
	switchboard.BaseHandler
	cancelled, stats chan string
}

func (h *ctxHandler) OnOpen(c switchboard.Conn) {
	ctx := c.Context()
	go func() {
		<-ctx.Done() // a background job for this connection would stop here
		h.cancelled <- ctx.Err().Error()
	}()
}

func (h *ctxHandler) OnMessage(c switchboard.Conn, msg []byte) { c.Write(msg) }

func (h *ctxHandler) OnClose(c switchboard.Conn, err error) {
	st := c.Stats()
	h.stats <- fmt.Sprintf("in %d messages, %d bytes; out %d messages, %d bytes",
		st.MessagesIn, st.BytesIn, st.MessagesOut, st.BytesOut)
}
