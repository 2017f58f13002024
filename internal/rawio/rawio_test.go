//go:build linux || darwin || freebsd || netbsd || openbsd

package rawio

import (
	"bytes"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMillisRoundsUp(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{-1, -1}, {-time.Hour, -1}, {0, 0}, {1, 1}, {300 * time.Microsecond, 1},
		{time.Millisecond, 1}, {time.Millisecond + 1, 2}, {1500 * time.Millisecond, 1500},
		{1 << 62, 1 << 30},
	} {
		if got := Millis(c.d); got != c.want {
			t.Errorf("Millis(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}

// TestReadWriteVec moves bytes through a socket pair with each call, and
// sees EAGAIN, not a block, on an empty non-blocking socket.
func TestReadWriteVec(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := unix.SetNonblock(fds[1], true); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := Read(fds[1], buf); err != unix.EAGAIN {
		t.Fatalf("Read on an empty socket = %d, %v; want EAGAIN", n, err)
	}
	if n, err := Write(fds[0], []byte("one ")); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	var v VecWriter
	for range 2 { // the second call reuses the iovec array
		if n, err := v.Write(fds[0], [][]byte{[]byte("two "), []byte("three ")}); n != 10 || err != nil {
			t.Fatalf("VecWriter.Write = %d, %v", n, err)
		}
	}
	n, err := Read(fds[1], buf)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte("one two three two three "); !bytes.Equal(buf[:n], want) {
		t.Fatalf("read %q, want %q", buf[:n], want)
	}
}
