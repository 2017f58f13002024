package tlsloop_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"switchboard/internal/testcert"
	"switchboard/internal/tlsloop"
)

// FuzzHandshakeInput feeds arbitrary bytes, then EOF, to a server's
// handshake, in pieces of step bytes (0: all at once). Whatever they
// are, the handshake ends once, with an error wrapping ErrHandshake, and
// its goroutine is gone (goleak checks at exit).
//
//	go test -fuzz FuzzHandshakeInput ./internal/tlsloop
func FuzzHandshakeInput(f *testing.F) {
	set := certs(f, testcert.ECDSAP256)
	f.Fuzz(func(t *testing.T, step uint8, data []byte) {
		ev := newChanEvents()
		c := tlsloop.Server(&tlsloop.Config{TLS: set.MutualServerConfig(), HandshakeTimeout: 5 * time.Second}, ev)
		defer c.Close()
		c.Start()
		n := int(step)
		if n == 0 {
			n = len(data)
		}
		for p := data; len(p) > 0; {
			n := min(n, len(p))
			c.Feed(p[:n])
			p = p[n:]
		}
		c.FeedEOF()
		select {
		case err := <-ev.done:
			if !errors.Is(err, tlsloop.ErrHandshake) {
				t.Fatalf("handshake ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("handshake did not end")
		}
		if _, ok := c.ConnectionState(); ok {
			t.Fatal("state after a failed handshake")
		}
	})
}

// FuzzRecordInput drives a connected pair's record layer: the client seals
// messages, the fuzzer chooses how the ciphertext is cut into Feeds, may
// flip one bit of it, and appends bytes of its own. Whatever it does, the
// server's plaintext is a prefix of what was sent, all of it when nothing
// was tampered with, and the input ends in an error or EOF, never in a
// hang.
//
//	go test -fuzz FuzzRecordInput ./internal/tlsloop
func FuzzRecordInput(f *testing.F) {
	set := certs(f, testcert.ECDSAP256)
	f.Fuzz(func(t *testing.T, step uint8, flip uint16, tail []byte) {
		srv, cli := pair(t, set.ServerConfig(), set.ClientConfig())
		defer srv.Close()
		defer cli.Close()
		var sent, ct []byte
		for _, m := range []string{"a", "second message", string(bytes.Repeat([]byte("x"), 3000))} {
			sent = append(sent, m...)
			var err error
			if ct, err = cli.Seal(ct, []byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		tampered := flip&0x8000 != 0
		if tampered {
			i := int(flip&0x7fff) % len(ct)
			ct[i] ^= 1 << (flip % 8)
		}
		ct = append(ct, tail...)
		n := int(step)
		if n == 0 {
			n = len(ct)
		}
		var got []byte
		var final error
		for p := ct; len(p) > 0 && final == nil; {
			k := min(n, len(p))
			srv.Feed(p[:k])
			p = p[k:]
			b, err := readAll(srv)
			got = append(got, b...)
			if err != tlsloop.ErrWouldBlock {
				final = err
			}
		}
		if final == nil {
			srv.FeedEOF()
			var b []byte
			b, final = readAll(srv)
			got = append(got, b...)
		}
		if final == tlsloop.ErrWouldBlock || final == nil {
			t.Fatalf("input did not end after EOF: %v", final)
		}
		if !bytes.HasPrefix(sent, got) {
			t.Fatalf("plaintext %q is not a prefix of what was sent", got)
		}
		if !tampered && !bytes.Equal(got, sent) {
			t.Fatalf("got %d of %d bytes, untampered", len(got), len(sent))
		}
		if !tampered && len(tail) == 0 && final != io.EOF {
			t.Fatalf("clean end: %v, want io.EOF", final)
		}
	})
}
