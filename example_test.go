package switchboard_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"switchboard"
)

// An upper-casing line server: the handler sees one decoded line at a time
// and its replies are framed the same way.
func Example() {
	upper := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		c.Write([]byte(strings.ToUpper(string(msg))))
	})
	srv, err := switchboard.NewServer(upper,
		switchboard.WithModel("goroutine"),
		switchboard.WithFraming("line", 4096),
		switchboard.WithIdleTimeout(time.Minute))
	if err != nil {
		panic(err)
	}
	lns, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(lns...)

	c, err := net.Dial("tcp", lns[0].Addr().String())
	if err != nil {
		panic(err)
	}
	fmt.Fprint(c, "hello\r\nswitchboard\n")
	r := bufio.NewReader(c)
	for range 2 {
		line, _ := r.ReadString('\n')
		fmt.Print(line)
	}
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	// Output:
	// HELLO
	// SWITCHBOARD
}

// A handler with per-connection state and a greeting, written once for
// every model.
type counter struct {
	switchboard.BaseHandler
}

func (counter) OnOpen(c switchboard.Conn) {
	n := 0
	c.SetValue(&n)
	c.Write([]byte("ready"))
}

func (counter) OnMessage(c switchboard.Conn, msg []byte) {
	n := c.Value().(*int)
	*n++
	c.Write(fmt.Appendf(nil, "%d: %s", *n, msg))
}

func ExampleBaseHandler() {
	for _, model := range []string{"blocking", "goroutine"} {
		srv, _ := switchboard.NewServer(counter{}, switchboard.WithModel(model), switchboard.WithFraming("line", 0))
		lns, _ := srv.Listen("127.0.0.1:0")
		go srv.Serve(lns...)
		c, _ := net.Dial("tcp", lns[0].Addr().String())
		r := bufio.NewReader(c)
		fmt.Fprint(c, "a\nb\n")
		for range 3 {
			line, _ := r.ReadString('\n')
			fmt.Print(model, " ", line)
		}
		c.Close()
		srv.Shutdown(context.Background())
	}
	// Output:
	// blocking ready
	// blocking 1: a
	// blocking 2: b
	// goroutine ready
	// goroutine 1: a
	// goroutine 2: b
}

// Prefer io_uring where this process may use it, and say why not
// otherwise; "auto" alone always means epoll on Linux.
func ExampleCheckModel() {
	model := switchboard.ModelUring
	if err := switchboard.CheckModel(model); err != nil {
		// e.g. "switchboard: unsupported: model uring: io_uring
		// unavailable: io_uring_setup is not permitted (a seccomp
		// profile, such as Docker's default, forbids it)"
		model = switchboard.ModelAuto
	}
	srv, err := switchboard.NewServer(switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write(msg) }),
		switchboard.WithModel(model))
	if err != nil {
		panic(err)
	}
	fmt.Println(srv.Model() == switchboard.ModelUring || srv.Model() == switchboard.ModelEpoll || srv.Model() == switchboard.ModelKqueue || srv.Model() == switchboard.ModelGoroutine)
	// Output: true
}

// reasons prints why each connection closed.
type reasons struct{ switchboard.BaseHandler }

func (reasons) OnMessage(c switchboard.Conn, msg []byte) {
	if string(msg) == "boom" {
		panic("a handler bug")
	}
	c.Write(msg)
}

func (reasons) OnClose(c switchboard.Conn, err error) {
	fmt.Println("frame timeout:", errors.Is(err, switchboard.ErrFrameTimeout), "panic:", errors.Is(err, switchboard.ErrPanic))
}

// A server that closes a peer trickling a line in (a slowloris), survives
// a handler's panic, and caps the connections from one address.
func ExampleWithFrameTimeout() {
	srv, _ := switchboard.NewServer(reasons{},
		switchboard.WithModel("goroutine"),
		switchboard.WithFraming("line", 0),
		switchboard.WithFrameTimeout(100*time.Millisecond),
		switchboard.WithMaxConnsPerIP(100))
	lns, _ := srv.Listen("127.0.0.1:0")
	go srv.Serve(lns...)
	addr := lns[0].Addr().String()

	slow, _ := net.Dial("tcp", addr)
	slow.Write([]byte("half a li")) // and nothing more
	slow.Read(make([]byte, 1))      // returns once the server closes it
	slow.Close()
	for srv.Stats().Active > 0 { // OnClose has run once it is uncounted
		time.Sleep(time.Millisecond)
	}

	bug, _ := net.Dial("tcp", addr)
	bug.Write([]byte("boom\n"))
	bug.Read(make([]byte, 1))
	bug.Close()

	for srv.Stats().Active > 0 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("panics recovered:", srv.Stats().Panics)
	srv.Shutdown(context.Background())
	// Output:
	// frame timeout: true panic: false
	// frame timeout: false panic: true
	// panics recovered: 1
}
