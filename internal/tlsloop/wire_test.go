package tlsloop

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"switchboard/internal/testcert"
)

// TestRecordReaderResumes proves, on crypto/tls itself with no Conn
// logic in between, the property the package rests on: a tls.Conn whose
// conn answers "no input" with a temporary net.Error returns that error
// from Read and keeps no trace of it, so feeding the rest of the record
// and reading again works. Every byte of several records is fed alone and
// followed by a Read, in both TLS versions.
func TestRecordReaderResumes(t *testing.T) {
	set := testcert.New(t)
	for _, ver := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(ver), func(t *testing.T) {
			var sw, cw wire
			sw.cond.L, cw.cond.L = &sw.mu, &cw.mu
			sw.blocking, cw.blocking = true, true
			ccfg := set.ClientConfig()
			ccfg.MaxVersion = ver
			srv, cli := tls.Server(&sw, set.ServerConfig()), tls.Client(&cw, ccfg)
			errs := make(chan error, 2)
			go func() { errs <- srv.Handshake() }()
			go func() { errs <- cli.Handshake() }()
			deadline := time.Now().Add(10 * time.Second)
			for done := 0; done < 2; {
				select {
				case err := <-errs:
					if err != nil {
						t.Fatal(err)
					}
					done++
				case <-time.After(time.Millisecond):
					if time.Now().After(deadline) {
						t.Fatal("handshake did not finish")
					}
				}
				cw.feed(sw.takeOutput(nil))
				sw.feed(cw.takeOutput(nil))
			}
			sw.endHandshake()
			cw.endHandshake()
			sw.feed(cw.takeOutput(nil))

			buf := make([]byte, 64)
			for i := range 3 {
				msg := fmt.Sprintf("record %d", i)
				if _, err := cli.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				rec := cw.takeOutput(nil)
				for j := range rec {
					sw.feed(rec[j : j+1])
					n, err := srv.Read(buf)
					if j < len(rec)-1 {
						if n != 0 || err != errWouldBlock {
							t.Fatalf("byte %d of %d: Read = %d, %v", j+1, len(rec), n, err)
						}
						continue
					}
					if err != nil || string(buf[:n]) != msg {
						t.Fatalf("whole record: Read = %q, %v", buf[:n], err)
					}
				}
			}
		})
	}
}

// TestRecordCursor checks the record framing the wire follows: it hands
// no bytes past a record's end, whatever the pieces it is fed in.
func TestRecordCursor(t *testing.T) {
	stream := []byte{}
	for _, n := range []int{0, 1, 300, 7} {
		stream = append(stream, 23, 3, 3, byte(n>>8), byte(n))
		for range n {
			stream = append(stream, 'x')
		}
	}
	ends := map[int]bool{5: true, 11: true, 316: true, 328: true}
	var r recordCursor
	for pos := 0; pos < len(stream); {
		k := r.limit(stream[pos:])
		if k == 0 {
			t.Fatalf("no progress at %d", pos)
		}
		r.advance(stream[pos : pos+k])
		pos += k
		if !ends[pos] {
			t.Fatalf("handed up to %d, not a record end", pos)
		}
	}
	// Piecewise: a header split in two, then a body in pieces.
	r = recordCursor{}
	r.advance([]byte{23, 3})
	if got := r.limit([]byte{3, 0, 4, 'a', 'b', 'c', 'd', 23}); got != 7 {
		t.Fatalf("limit across a split header = %d, want 7", got)
	}
	r.advance([]byte{3, 0, 4, 'a'})
	if r.body != 3 || r.left([]byte{'b'}) != 3 {
		t.Fatalf("body left %d", r.body)
	}
}

// TestFeedStorage: fed bytes come out in order whatever storage they go
// through: the small class, moved up to the large one behind unread
// input, moved to the front, and a buffer of their own past the large.
// A record header announcing a 64 KiB body lets the wire hand the first
// reads whole; the last drains the rest across whatever record
// boundaries the bytes make.
func TestFeedStorage(t *testing.T) {
	var w wire
	w.cond.L = &w.mu
	var want []byte
	fill := func(n int, b byte) {
		p := make([]byte, n)
		for i := range p {
			p[i] = b + byte(i%7)
		}
		want = append(want, p...)
		w.feed(p)
	}
	read := func(n int) {
		t.Helper()
		p := make([]byte, n)
		k, err := w.Read(p)
		if err != nil || k != n {
			t.Fatalf("Read(%d) = %d, %v", n, k, err)
		}
		if string(p) != string(want[:n]) {
			t.Fatalf("Read(%d): bytes out of order", n)
		}
		want = want[n:]
	}
	w.feed([]byte{23, 3, 3, 0xff, 0xff}) // the header of a record longer than the first reads
	want = append(want, 23, 3, 3, 0xff, 0xff)
	fill(1000, 'a')
	if cap(w.in) != smallBufSize {
		t.Fatalf("a small feed took %d bytes of storage, want the %d class", cap(w.in), smallBufSize)
	}
	read(500)
	fill(10<<10, 'b') // outgrows the small class behind 505 unread bytes
	if cap(w.in) != poolBufSize {
		t.Fatalf("after outgrowing: %d bytes of storage, want the %d class", cap(w.in), poolBufSize)
	}
	read(10 << 10)
	fill(50<<10, 'c') // fits once the unread bytes move to the front
	fill(100<<10, 'd')
	if cap(w.in) <= poolBufSize {
		t.Fatalf("a feed past the large class kept %d bytes of storage", cap(w.in))
	}
	for len(want) > 0 {
		p := make([]byte, len(want))
		k, err := w.Read(p)
		if err != nil || k == 0 || string(p[:k]) != string(want[:k]) {
			t.Fatalf("draining: Read = %d, %v (or bytes out of order)", k, err)
		}
		want = want[k:]
	}
	if w.in != nil || w.pooled != nil {
		t.Fatal("storage kept once everything fed was read")
	}
}
