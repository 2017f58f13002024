package client_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"time"

	"switchboard/client"
	"switchboard/internal/testcert"
)

// ExampleWithTLS dials a TLS line-echo server (crypto/tls's own listener,
// with a certificate made for the example) and checks what was negotiated.
func ExampleWithTLS() {
	certs, err := testcert.Generate(testcert.ECDSAP256)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", certs.ServerConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			nc.Write(line)
		}
	}()

	// The certificate names 127.0.0.1, so the address verifies as given;
	// tls.Config.ServerName would name it otherwise.
	c, err := client.Dial(context.Background(), ln.Addr().String(),
		client.WithTLS(&tls.Config{RootCAs: certs.Pool}),
		client.WithFraming("line", 0), client.WithTimeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	reply, err := c.Request([]byte("hello over TLS"))
	if err != nil {
		log.Fatal(err)
	}
	cs, _ := c.ConnectionState()
	fmt.Printf("%s: %s\n", tls.VersionName(cs.Version), reply)
	// Output:
	// TLS 1.3: hello over TLS
}
