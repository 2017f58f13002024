// Command netpoll-echo is an echo server on github.com/cloudwego/netpoll,
// ByteDance's epoll networking library: one of the peers that
// "switchboard compare --peers" measures switchboard against.
//
//	netpoll-echo PORT [HOST]
//
// It lives in a module of its own so that switchboard does not depend on
// netpoll.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudwego/netpoll"
)

// echo answers whatever has arrived with the same bytes. The reply is
// copied into the writer's buffer before the read buffer is released, so
// no byte is referenced after netpoll may reuse it, and nothing is
// allocated per message.
func echo(_ context.Context, conn netpoll.Connection) error {
	r, w := conn.Reader(), conn.Writer()
	n := r.Len()
	if n == 0 {
		return nil
	}
	in, err := r.Next(n)
	if err != nil {
		return err
	}
	out, err := w.Malloc(n)
	if err != nil {
		return err
	}
	copy(out, in)
	if err := r.Release(); err != nil {
		return err
	}
	return w.Flush()
}

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: netpoll-echo PORT [HOST]")
		os.Exit(2)
	}
	host := "127.0.0.1"
	if len(os.Args) == 3 {
		host = os.Args[2]
	}
	ln, err := netpoll.CreateListener("tcp", net.JoinHostPort(host, os.Args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "netpoll-echo:", err)
		os.Exit(1)
	}
	loop, err := netpoll.NewEventLoop(echo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netpoll-echo:", err)
		os.Exit(1)
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		os.Exit(0)
	}()
	fmt.Println("listening on", ln.Addr())
	if err := loop.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "netpoll-echo:", err)
		os.Exit(1)
	}
}
