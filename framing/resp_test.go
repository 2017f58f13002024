package framing

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestRESPValues(t *testing.T) {
	c := mustParse(t, "resp", 64)
	for _, v := range []string{
		"+OK\r\n", "+\r\n", "-ERR unknown command\r\n", ":0\r\n", ":-42\r\n", ":+7\r\n",
		"$5\r\nhello\r\n", "$0\r\n\r\n", "$-1\r\n", "$4\r\na\r\nb\r\n",
		"*0\r\n", "*-1\r\n", "*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n",
		"*2\r\n*1\r\n:1\r\n*-1\r\n", "*1\r\n*1\r\n*1\r\n*0\r\n",
		"_\r\n", "#t\r\n", ",3.14\r\n", ",inf\r\n", "(-12345678901234567890\r\n", "!3\r\nerr\r\n",
		"=7\r\ntxt:abc\r\n", "%1\r\n+k\r\n:1\r\n", "~2\r\n:1\r\n:2\r\n", ">1\r\n+msg\r\n",
		"|1\r\n+ttl\r\n:3\r\n+value\r\n",
	} {
		stream := []byte(v + ":9\r\n")
		frame, n, err := checkedDecode(t, c, stream, false)
		if err != nil || n != len(v) || string(frame) != v {
			t.Errorf("Decode(%q) = %q, %d, %v; want the whole value", stream, frame, n, err)
		}
		for k := 0; k < len(v); k++ {
			if _, m, err := checkedDecode(t, c, []byte(v[:k]), false); m != 0 || err != nil {
				t.Errorf("prefix %q of %q: n = %d, err = %v", v[:k], v, m, err)
			}
		}
		if err := roundTrip(t, c, []byte(v)); err != nil {
			t.Errorf("round trip %q: %v", v, err)
		}
	}
}

func TestRESPErrors(t *testing.T) {
	c := mustParse(t, "resp", 64)
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"PING\r\n", ErrMalformed},
		{"+OK\n", ErrMalformed},
		{"+O\rK\r\n", ErrMalformed},
		{":12a\r\n", ErrMalformed},
		{":\r\n", ErrMalformed},
		{"$-2\r\n", ErrMalformed},
		{"$3\r\nabcd\r\n", ErrMalformed},
		{"*x\r\n", ErrMalformed},
		{"~-1\r\n", ErrMalformed},
		{"#x\r\n", ErrMalformed},
		{",abc\r\n", ErrMalformed},
		{"_0\r\n", ErrMalformed},
		{"(1.5\r\n", ErrMalformed},
		{"$100\r\n", ErrFrameTooLarge},
		{"*30\r\n", ErrFrameTooLarge},
		{"+" + strings.Repeat("a", 70), ErrFrameTooLarge},
		{"*999999999999999999\r\n", ErrFrameTooLarge},
	} {
		_, _, err := checkedDecode(t, c, []byte(tc.in), false)
		if !errors.Is(err, tc.want) {
			t.Errorf("Decode(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
	if _, _, err := c.Decode([]byte("*2\r\n:1\r\n"), true); !errors.Is(err, ErrTruncated) {
		t.Errorf("partial value at EOF: %v, want ErrTruncated", err)
	}
	for _, msg := range []string{"PING", "+OK\r\n+OK\r\n", "$5\r\nab\r\n", ""} {
		if out, err := c.Append([]byte("x"), []byte(msg)); !errors.Is(err, ErrInvalidMessage) || string(out) != "x" {
			t.Errorf("Append(%q) = %q, %v; want ErrInvalidMessage and dst unchanged", msg, out, err)
		}
	}
}

// A value nested far deeper than any stack would allow costs nothing.
func TestRESPDeep(t *testing.T) {
	const depth = 100000
	v := bytes.Repeat([]byte("*1\r\n"), depth)
	v = append(v, ":1\r\n"...)
	c := RESP(len(v))
	frame, n, err := c.Decode(v, false)
	if err != nil || n != len(v) || len(frame) != len(v) {
		t.Fatalf("deep value: n = %d of %d, err %v", n, len(v), err)
	}
}

func TestRESPCommand(t *testing.T) {
	got := RESPCommand(nil, []byte("SET"), []byte("key:1"), []byte(""))
	want := "*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$0\r\n\r\n"
	if string(got) != want {
		t.Fatalf("RESPCommand = %q, want %q", got, want)
	}
	if _, err := RESP(0).Append(nil, got); err != nil {
		t.Fatalf("a command is not a value: %v", err)
	}
}

func FuzzRESP(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n+OK\r\n"), uint16(64))
	f.Add([]byte("$-1\r\n*-1\r\n:-3\r\n"), uint16(10))
	f.Add([]byte("%1\r\n+k\r\n|1\r\n+a\r\n:1\r\n~0\r\n"), uint16(200))
	f.Fuzz(func(t *testing.T, data []byte, maxFrame uint16) {
		fuzzCodec(t, RESP(fuzzMax(maxFrame)), data)
	})
}
