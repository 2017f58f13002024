package main

import (
	"bytes"
	"errors"
	"strconv"
)

// errProtocol is a frame that is one RESP value but not a command: a
// command is an array of bulk strings, as redis-cli and redis-benchmark
// send it.
var errProtocol = errors.New("protocol error: expected an array of bulk strings")

// errEmpty is an inline command of no words (an empty line).
var errEmpty = errors.New("empty command")

// parseCommand splits one frame of commandCodec into its arguments,
// appended to args: a RESP array of bulk strings (framing.RESP has
// checked it is one complete value), or an inline command's words. The
// arguments alias frame.
func parseCommand(frame []byte, args [][]byte) ([][]byte, error) {
	if len(frame) == 0 || frame[0] != '*' {
		args = append(args, bytes.Fields(frame)...)
		if len(args) == 0 {
			return args, errEmpty
		}
		return args, nil
	}
	n, rest, ok := header(frame, '*')
	if !ok || n < 1 {
		return args, errProtocol
	}
	for range n {
		var size int
		size, rest, ok = header(rest, '$')
		if !ok || size < 0 || len(rest) < size+2 || rest[size] != '\r' || rest[size+1] != '\n' {
			return args, errProtocol
		}
		args = append(args, rest[:size:size])
		rest = rest[size+2:]
	}
	if len(rest) != 0 {
		return args, errProtocol
	}
	return args, nil
}

// header reads "<kind><decimal>\r\n" at the start of b.
func header(b []byte, kind byte) (n int, rest []byte, ok bool) {
	if len(b) < 4 || b[0] != kind {
		return 0, nil, false
	}
	end := bytes.Index(b, []byte("\r\n"))
	if end < 2 || end > 12 {
		return 0, nil, false
	}
	v, err := strconv.Atoi(string(b[1:end]))
	if err != nil {
		return 0, nil, false
	}
	return v, b[end+2:], true
}

// Reply builders: each appends one RESP value to dst.

func appendSimple(dst []byte, s string) []byte {
	dst = append(dst, '+')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

func appendError(dst []byte, msg string) []byte {
	dst = append(dst, "-ERR "...)
	dst = append(dst, msg...)
	return append(dst, '\r', '\n')
}

func appendInt(dst []byte, n int64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

func appendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func appendNull(dst []byte) []byte { return append(dst, "$-1\r\n"...) }

func appendArray(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}
