package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"switchboard"
	"switchboard/client"
)

// Example starts a line-framed echo server on a free loopback port, then
// talks to it: a request, a batch, and a half-close.
func Example() {
	echo := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write(msg) })
	srv, err := switchboard.NewServer(echo, switchboard.WithFraming("line", 0))
	if err != nil {
		log.Fatal(err)
	}
	lns, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lns...) }()
	defer func() { srv.Close(); <-done }()

	ctx := context.Background()
	c, err := client.Dial(ctx, lns[0].Addr().String(),
		client.WithFraming("line", 0), client.WithTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	reply, err := c.Request([]byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", reply)

	if err := c.SendBatch([]byte("one"), []byte("two")); err != nil {
		log.Fatal(err)
	}
	c.CloseWrite() // no more requests; the server sees EOF
	rest, err := c.ReadAll()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", rest)
	// Output:
	// hello
	// "one\ntwo\n"
}
