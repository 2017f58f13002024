package loadgen_test

import (
	"fmt"
	"net"

	"switchboard/loadgen"
)

// A template renders every message afresh; a typo is an error rather than
// text on the wire.
func ExampleParseTemplate() {
	t, err := loadgen.ParseTemplate("GET key:{rand:1-100000}")
	fmt.Println(t, t.Fixed(), err)
	_, err = loadgen.ParseTemplate("GET {key}")
	fmt.Println(err)
	// Output:
	// GET key:{rand:1-100000} false <nil>
	// payload template: field {key}: unknown field "key": want counter, seq, conn, rand:A-B or bytes:N (write {{ for a literal brace)
}

// The PROXY header a balancer would send for a client at 203.0.113.7.
func ExampleAppendProxyHeader() {
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 4000}
	dst := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8888}
	v1, _ := loadgen.AppendProxyHeader(nil, "v1", src, dst)
	v2, _ := loadgen.AppendProxyHeader(nil, "v2", src, dst)
	fmt.Printf("%q\n%d bytes\n", v1, len(v2))
	// Output:
	// "PROXY TCP4 203.0.113.7 127.0.0.1 4000 8888\r\n"
	// 28 bytes
}
