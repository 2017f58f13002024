package loadgen_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"switchboard"
	"switchboard/framing"
	"switchboard/loadgen"
)

// Load an echo server with 10 connections of 4 pipelined 128-byte
// messages, framed with a 4-byte length, for half a second after a short
// warm-up, and check that every reply came back intact.
func ExampleRun() {
	// An echo server to load; any server reachable by address will do.
	srv, err := switchboard.NewServer(
		switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write(msg) }),
		switchboard.WithModel(switchboard.ModelGoroutine),
		switchboard.WithFraming("len:4", 0),
	)
	if err != nil {
		log.Fatal(err)
	}
	lns, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(lns...)
	defer srv.Close()

	codec, _ := framing.Parse("len:4", 0)
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		Addr:     lns[0].Addr().String(),
		Conns:    10,
		Pipeline: 4,
		Size:     128,
		Codec:    codec,
		Warmup:   100 * time.Millisecond,
		Duration: 500 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	// res also holds res.MsgsPerSec, res.Latency.P99 and, with ServerPID
	// set, the server's CPU time per message.
	fmt.Println("replies measured:", res.Messages > 0)
	fmt.Println("errors:", res.Errors.Total())
	// Output:
	// replies measured: true
	// errors: 0
}
