package switchboard_test

import (
	"bufio"
	"crypto/tls"
	"fmt"

	"switchboard"
	"switchboard/internal/testcert"
)

// A TLS line server on the epoll model (goroutine elsewhere): handlers see
// decrypted lines, as without TLS, and reach the negotiated parameters
// through switchboard.TLSConn.
func ExampleTLSConn() {
	certs, err := testcert.Generate(testcert.ECDSAP256) // a throwaway CA and server certificate
	if err != nil {
		panic(err)
	}
	greet := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		cs, _ := c.(switchboard.TLSConn).ConnectionState()
		c.Write([]byte(fmt.Sprintf("%s over %s to %s", msg, tls.VersionName(cs.Version), cs.ServerName)))
	})
	srv, err := switchboard.NewServer(greet,
		switchboard.WithModel(exampleModel()),
		switchboard.WithFraming("line", 4096),
		switchboard.WithTLS(certs.ServerConfig()))
	if err != nil {
		panic(err)
	}
	lns, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(lns...)
	defer srv.Close()

	c, err := tls.Dial("tcp", lns[0].Addr().String(), &tls.Config{RootCAs: certs.Pool, ServerName: "localhost"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Fprint(c, "hello\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(line)
	// Output:
	// hello over TLS 1.3 to localhost
}

func exampleModel() string {
	for _, m := range switchboard.Models() {
		if m == switchboard.ModelEpoll {
			return m
		}
	}
	return switchboard.ModelGoroutine
}
