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

// An engine's frame loop: each read is lent to the Accumulator with Feed
// and decoded where it lies; Done keeps the partial frame at its end, so
// the read buffer can be reused for the next read.
func ExampleAccumulator() {
	split := framing.NewSplitter(framing.Line(0), framing.SplitterOptions{})
	var acc framing.Accumulator
	readBuf := make([]byte, 64) // shared by every connection of a loop
	for _, read := range []string{"GET /a\r\nGET", " /b\r\n", "GET /c"} {
		n := copy(readBuf, read)
		acc.Feed(split, readBuf[:n])
		for {
			frame, ok, err := acc.Next(split, false)
			if err != nil {
				panic(err)
			}
			if !ok {
				break
			}
			fmt.Printf("message %q\n", frame)
		}
		acc.Done(split)
		fmt.Printf("holding %d bytes\n", acc.Buffered())
	}
	// The peer closes in the middle of a line.
	_, _, err := acc.Next(split, true)
	fmt.Println("at EOF:", err)
	// Output:
	// message "GET /a"
	// holding 3 bytes
	// message "GET /b"
	// holding 0 bytes
	// holding 6 bytes
	// at EOF: framing: stream ended inside a frame: line: stream ended after 6 bytes of a frame
}
