package main

import (
	"bytes"
	"errors"
	"testing"

	"switchboard/framing"
)

func TestParseCommand(t *testing.T) {
	for _, c := range []struct {
		frame string
		want  []string
		err   error
	}{
		{"*1\r\n$4\r\nPING\r\n", []string{"PING"}, nil},
		{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", []string{"SET", "k", ""}, nil},
		{"GET  k", []string{"GET", "k"}, nil},
		{"  ", nil, errEmpty},
		{"*0\r\n", nil, errProtocol},
		{"*1\r\n:1\r\n", nil, errProtocol},
		{"*1\r\n$3\r\nab\r\n", nil, errProtocol},
		{"*1\r\n$2\r\nab\r\nx", nil, errProtocol},
		{"*1\r\n$-1\r\n", nil, errProtocol},
	} {
		args, err := parseCommand([]byte(c.frame), nil)
		if !errors.Is(err, c.err) {
			t.Errorf("%q: err %v, want %v", c.frame, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		var got []string
		for _, a := range args {
			got = append(got, string(a))
		}
		if len(got) != len(c.want) {
			t.Errorf("%q: %q, want %q", c.frame, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%q: %q, want %q", c.frame, got, c.want)
			}
		}
	}
}

func TestCommandCodec(t *testing.T) {
	c := newCommandCodec(1 << 20)
	stream := []byte("PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nGET k\n")
	var frames []string
	for len(stream) > 0 {
		f, n, err := c.Decode(stream, false)
		if err != nil || n == 0 {
			t.Fatalf("decode %q: %d, %v", stream, n, err)
		}
		frames = append(frames, string(f))
		stream = stream[n:]
	}
	want := []string{"PING", "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n", "GET k"}
	if len(frames) != 3 || frames[0] != want[0] || frames[1] != want[1] || frames[2] != want[2] {
		t.Fatalf("frames %q, want %q", frames, want)
	}
	if _, n, err := c.Decode([]byte("PIN"), false); n != 0 || err != nil {
		t.Fatalf("partial inline: %d, %v", n, err)
	}
	if _, _, err := c.Decode([]byte("PIN"), true); !errors.Is(err, framing.ErrTruncated) {
		t.Fatalf("inline at EOF: %v", err)
	}
	if _, _, err := c.Decode(bytes.Repeat([]byte("a"), maxInline+1), false); !errors.Is(err, framing.ErrFrameTooLarge) {
		t.Fatalf("long inline: %v", err)
	}
	if _, _, err := c.Decode([]byte("*1\r\n$x\r\n"), false); !errors.Is(err, framing.ErrMalformed) {
		t.Fatalf("bad RESP: %v", err)
	}
}

// FuzzCommand feeds any bytes through the codec and the parser: neither
// may panic, a frame never spans more than was given, and every argument
// lies inside its frame.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{"PING\r\n", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "*1\r\n$-1\r\n", "SET a b EX 1\n", "*1\r\n*1\r\n$1\r\nx\r\n"} {
		f.Add([]byte(s))
	}
	c := newCommandCodec(1 << 16)
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			frame, n, err := c.Decode(b, true)
			if err != nil || n == 0 {
				return
			}
			if n > len(b) || len(frame) > n {
				t.Fatalf("frame of %d, n %d, from %d bytes", len(frame), n, len(b))
			}
			args, _ := parseCommand(frame, nil)
			for _, a := range args {
				if len(a) > len(frame) {
					t.Fatalf("argument longer than its frame")
				}
			}
			b = b[n:]
		}
	})
}
