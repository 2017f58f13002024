package main

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeFrameTimeoutAndPerIPLimit runs serve --service hello with a
// short --frame-timeout and --max-conns-per-ip 2: a request head trickled
// a byte at a time is closed and the reason logged, complete requests are
// answered, and a third connection from one address is refused.
func TestServeFrameTimeoutAndPerIPLimit(t *testing.T) {
	c := startChild(t, "serve", "--listen", "127.0.0.1:0", "--service", "hello",
		"--frame-timeout", "300ms", "--max-conns-per-ip", "2")
	addr := c.await(t, servingRE)

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.SetDeadline(time.Now().Add(10 * time.Second))
	began := time.Now()
	go func() {
		for _, b := range []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") {
			if _, err := slow.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if _, err := io.Copy(io.Discard, slow); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("trickled head closed after %v", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.log(), "frame timeout") {
		if time.Now().After(deadline) {
			t.Fatalf("no frame timeout in the log:\n%s", c.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	slow.Close()

	// Two connections from one address are served; a third is refused.
	for range 2 {
		k, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		k.SetDeadline(time.Now().Add(10 * time.Second))
		k.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		reply := make([]byte, 15)
		if _, err := io.ReadFull(k, reply); err != nil || string(reply) != "HTTP/1.1 200 OK" {
			t.Fatalf("%q, %v", reply, err)
		}
	}
	// The slow connection's slot may take a moment to free.
	time.Sleep(100 * time.Millisecond)
	extra, err := net.Dial("tcp", addr)
	if err == nil {
		defer extra.Close()
		extra.SetDeadline(time.Now().Add(10 * time.Second))
		extra.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if n, err := extra.Read(make([]byte, 64)); n > 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("a third connection from one address read %d, %v", n, err)
		}
	}
}
