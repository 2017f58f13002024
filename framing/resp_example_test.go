package framing_test

import (
	"fmt"

	"switchboard/framing"
)

// A Redis reply is one frame however nested it is; a command is built
// with RESPCommand.
func ExampleRESP() {
	c := framing.RESP(0)
	wire, _ := c.Append(nil, framing.RESPCommand(nil, []byte("GET"), []byte("key:1")))
	fmt.Printf("%q\n", wire)
	buf := []byte("*2\r\n$5\r\nhello\r\n*1\r\n:42\r\n+OK\r\n")
	for len(buf) > 0 {
		frame, n, err := c.Decode(buf, false)
		if err != nil || n == 0 {
			break
		}
		fmt.Printf("%q\n", frame)
		buf = buf[n:]
	}
	// Output:
	// "*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n"
	// "*2\r\n$5\r\nhello\r\n*1\r\n:42\r\n"
	// "+OK\r\n"
}
