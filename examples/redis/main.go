// Command redis is a Redis-protocol server on switchboard: GET, SET (with
// EX or PX), DEL, DBSIZE, PING, ECHO, PUBLISH and SUBSCRIBE, with pub/sub
// fan-out across event loops and expiry driven by the server's tick.
// redis-cli and redis-benchmark talk to it:
//
//	go run ./examples/redis --listen 127.0.0.1:6380 --model epoll
//	redis-benchmark -p 6380 -t ping,set,get -n 200000 -q
//
// With --backend-delay 50ms every reply is written later from a worker
// goroutine, and `printf 'SET k v\r\nGET k\r\n' | nc -N 127.0.0.1 6380`
// still gets both replies before the connection closes (see async.go).
//
// Requests are framed by framing.RESP (one complete RESP value per
// message), or as inline commands (a line, as typed into nc); replies are
// RESP values built by the handler, so the server frames them with
// framing.Raw (switchboard.WithReplyCodec) instead of having RESP's
// Append check each again.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"switchboard"
	"switchboard/framing"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:6380", "address to listen on")
	model := flag.String("model", switchboard.ModelAuto, "I/O model")
	loops := flag.Int("loops", 0, "event loops (0: GOMAXPROCS)")
	delay := flag.Duration("backend-delay", 0, "answer each command from a worker goroutine after this delay, as in front of a slow store (0: answer in the callback)")
	flag.Parse()
	if err := run(*listen, *model, *loops, *delay); err != nil {
		fmt.Fprintln(os.Stderr, "redis:", err)
		os.Exit(1)
	}
}

// newRedisServer returns the switchboard server for the handler, ready to
// Listen and Serve; delay > 0 answers from worker goroutines (async.go).
func newRedisServer(model string, loops int, delay time.Duration, opts ...switchboard.Option) (*switchboard.Server, error) {
	h := newServer()
	h.delay = delay
	return switchboard.NewServer(h, append([]switchboard.Option{
		switchboard.WithModel(model),
		switchboard.WithLoops(loops),
		switchboard.WithCodec(newCommandCodec(512 << 20)),
		switchboard.WithReplyCodec(framing.Raw(512 << 20)),
	}, opts...)...)
}

func run(addr, model string, loops int, delay time.Duration) error {
	srv, err := newRedisServer(model, loops, delay)
	if err != nil {
		return err
	}
	lns, err := srv.Listen(addr)
	if err != nil {
		return err
	}
	slog.Info("redis example serving", "addr", lns[0].Addr(), "model", srv.Model(), "loops", srv.Loops())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(lns...); !errors.Is(err, switchboard.ErrServerClosed) {
		return err
	}
	return nil
}
