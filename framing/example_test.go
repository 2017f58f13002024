package framing_test

import (
	"fmt"

	"switchboard/framing"
)

// Frame three messages with a 2-byte length prefix, then decode the stream
// as it arrives in pieces, the way a server engine does.
func Example() {
	codec, err := framing.Parse("len:2", 0)
	if err != nil {
		panic(err)
	}

	var wire []byte
	for _, msg := range []string{"hello", "", "world!"} {
		if wire, err = codec.Append(wire, []byte(msg)); err != nil {
			panic(err)
		}
	}
	fmt.Printf("wire: %q\n", wire)

	// The bytes arrive in reads of 4 bytes; buf holds what is not yet
	// consumed.
	var buf []byte
	for len(wire) > 0 {
		k := min(4, len(wire))
		buf, wire = append(buf, wire[:k]...), wire[k:]
		for {
			frame, n, err := codec.Decode(buf, false)
			if err != nil {
				panic(err)
			}
			if n == 0 {
				break // need more bytes
			}
			fmt.Printf("message %q\n", frame)
			buf = buf[n:]
		}
	}
	// Output:
	// wire: "\x00\x05hello\x00\x00\x00\x06world!"
	// message "hello"
	// message ""
	// message "world!"
}

// A line codec strips "\r\n" or "\n"; an over-long line is an error that
// wraps ErrFrameTooLarge.
func ExampleLine() {
	codec := framing.Line(8)
	buf := []byte("ping\r\npong\nway too long\n")
	for {
		frame, n, err := codec.Decode(buf, true)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		if n == 0 {
			return
		}
		fmt.Printf("%q\n", frame)
		buf = buf[n:]
	}
	// Output:
	// "ping"
	// "pong"
	// error: framing: frame exceeds maximum size: line: no delimiter in the first 10 bytes (max frame 8)
}
