package tlsloop_test

import (
	"crypto/tls"
	"fmt"
	"log"

	"switchboard/internal/testcert"
	"switchboard/internal/tlsloop"
)

// posted stands for an engine's task queue: Events methods run on the
// handshake's goroutine and only post.
type posted struct {
	output chan struct{}
	done   chan error
}

func (p posted) Output() {
	select {
	case p.output <- struct{}{}:
	default:
	}
}

func (p posted) HandshakeDone(err error) { p.done <- err }

// Example connects a server Conn to a client Conn, the example's goroutine
// playing both event loops and the network between them: what one side
// puts out (Output, Seal) is what the other is fed (Feed), and plaintext
// comes out of Read.
func Example() {
	set, err := testcert.Generate(testcert.ECDSAP256)
	if err != nil {
		log.Fatal(err)
	}
	limiter, _ := tlsloop.NewLimiter(64)
	srvEv := posted{make(chan struct{}, 1), make(chan error, 1)}
	cliEv := posted{make(chan struct{}, 1), make(chan error, 1)}
	srv := tlsloop.Server(&tlsloop.Config{TLS: set.ServerConfig(), Limiter: limiter}, srvEv)
	cli := tlsloop.Client(&tlsloop.Config{TLS: set.ClientConfig()}, cliEv)
	srv.Start() // on accept
	cli.Start()

	// The loops until both handshakes are done: move each side's output
	// to the other whenever Output is signalled.
	for srvDone, cliDone := false, false; !srvDone || !cliDone; {
		select {
		case <-srvEv.output:
		case <-cliEv.output:
		case err := <-srvEv.done:
			if err != nil {
				log.Fatal(err)
			}
			srvDone = true
		case err := <-cliEv.done:
			if err != nil {
				log.Fatal(err)
			}
			cliDone = true
		}
		cli.Feed(srv.Output(nil))
		srv.Feed(cli.Output(nil))
	}
	cs, _ := srv.ConnectionState()
	fmt.Println("negotiated", tls.VersionName(cs.Version), "with", cs.ServerName)

	// A write on the client's loop; the ciphertext goes to its outbox.
	outbox, _ := cli.Seal(nil, []byte("hello over TLS"))

	// The server's loop reads it from the socket, feeds it, reads plaintext.
	srv.Feed(outbox)
	buf := make([]byte, 100)
	n, _ := srv.Read(buf)
	fmt.Printf("server read %q\n", buf[:n])
	_, err = srv.Read(buf)
	fmt.Println("then:", err)

	// Half-close: close_notify goes out; the client reads it as EOF.
	srv.CloseWrite()
	cli.Feed(srv.Output(nil))
	_, err = cli.Read(buf)
	fmt.Println("client:", err)
	srv.Close()
	cli.Close()
	// Output:
	// negotiated TLS 1.3 with localhost
	// server read "hello over TLS"
	// then: tlsloop: would block
	// client: EOF
}
