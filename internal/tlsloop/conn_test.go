package tlsloop_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"switchboard/internal/testcert"
	"switchboard/internal/tlsloop"
)

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// TestEcho runs a real crypto/tls client against the loop, over each
// version and key type, with the ciphertext fed whole, a byte at a time and
// in 7-byte pieces: handshake, negotiated state, echoes of one byte to
// several records, then close_notify each way.
func TestEcho(t *testing.T) {
	for _, k := range []testcert.KeyType{testcert.ECDSAP256, testcert.RSA2048} {
		for _, ver := range versions {
			for _, split := range []int{0, 1, 7} {
				t.Run(fmt.Sprintf("%v/%s/split%d", k, ver.name, split), func(t *testing.T) {
					testEcho(t, k, ver.v, split)
				})
			}
		}
	}
}

func testEcho(t *testing.T, k testcert.KeyType, ver uint16, split int) {
	set := certs(t, k)
	scfg := set.ServerConfig()
	scfg.NextProtos = []string{"sb/1"}
	l, sock := startLoop(t, &tlsloop.Config{TLS: scfg}, withSplit(split))

	ccfg := set.ClientConfig()
	ccfg.MaxVersion = ver
	ccfg.NextProtos = []string{"sb/1"}
	cli := tls.Client(sock, ccfg)
	cli.SetDeadline(time.Now().Add(20 * time.Second))
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := waitErr(t, l.done, "handshake result"); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	cs := <-l.state
	if cs.Version != ver || cs.NegotiatedProtocol != "sb/1" || cs.ServerName != testcert.ServerName || !cs.HandshakeComplete {
		t.Errorf("server state: version %x alpn %q sni %q complete %v", cs.Version, cs.NegotiatedProtocol, cs.ServerName, cs.HandshakeComplete)
	}
	if ccs := cli.ConnectionState(); ccs.CipherSuite != cs.CipherSuite {
		t.Errorf("cipher suite: server %s, client %s", tls.CipherSuiteName(cs.CipherSuite), tls.CipherSuiteName(ccs.CipherSuite))
	}

	sizes := []int{1, 64, 4096, 40000}
	if split == 1 {
		sizes = []int{1, 64, 4096} // a byte at a time is slow under -race
	}
	for _, n := range sizes {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		copy(msg, fmt.Sprintf("message of %d bytes", n))
		if _, err := cli.Write(msg); err != nil {
			t.Fatalf("write %d: %v", n, err)
		}
		got := make([]byte, n)
		if _, err := io.ReadFull(cli, got); err != nil {
			t.Fatalf("read echo of %d: %v", n, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes differs", n)
		}
	}

	// close_notify from the client: the server's Read says io.EOF while
	// the pipe is still open, replies and sends its own close_notify.
	if err := cli.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, l.readErr, "server EOF"); err != io.EOF {
		t.Fatalf("server Read after close_notify: %v, want io.EOF", err)
	}
	rest, err := io.ReadAll(cli)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after close_notify: %q, %v; want \"bye\" then EOF", rest, err)
	}
	if split > 0 && l.wouldBlock == 0 {
		t.Error("records fed in pieces never made Read wait")
	}
}

// TestWouldBlockIsNotSticky feeds a record a byte at a time, calling Read
// after each byte: every Read before the last byte says ErrWouldBlock, the
// last one returns the plaintext, and the connection goes on working.
// (TestRecordReaderResumes shows the same of crypto/tls itself, which Conn
// spares most of those calls.)
func TestWouldBlockIsNotSticky(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			set := certs(t, testcert.ECDSAP256)
			ccfg := set.ClientConfig()
			ccfg.MaxVersion = ver.v
			srv, cli := pair(t, set.ServerConfig(), ccfg)
			defer srv.Close()
			defer cli.Close()
			buf := make([]byte, 100)
			for round := range 3 {
				msg := fmt.Sprintf("round %d", round)
				rec, err := cli.Seal(nil, []byte(msg))
				if err != nil {
					t.Fatal(err)
				}
				for i := range rec {
					srv.Feed(rec[i : i+1])
					n, err := srv.Read(buf)
					if i < len(rec)-1 {
						if n != 0 || err != tlsloop.ErrWouldBlock {
							t.Fatalf("byte %d of %d: Read = %d, %v; want 0, ErrWouldBlock", i+1, len(rec), n, err)
						}
						continue
					}
					if err != nil || string(buf[:n]) != msg {
						t.Fatalf("last byte: Read = %q, %v", buf[:n], err)
					}
				}
				if n, err := srv.Read(buf); n != 0 || err != tlsloop.ErrWouldBlock {
					t.Fatalf("drained: Read = %d, %v", n, err)
				}
				// And back the other way, through Seal and Output.
				out, err := srv.Seal(srv.Output(nil), []byte(msg))
				if err != nil {
					t.Fatal(err)
				}
				cli.Feed(out)
				if got, err := readAll(cli); string(got) != msg || err != tlsloop.ErrWouldBlock {
					t.Fatalf("reply: %q, %v", got, err)
				}
			}
		})
	}
}

// TestManyRecordsOneFeed feeds many records at once and reads them into a
// small buffer: Read returns them in order without losing the rest.
func TestManyRecordsOneFeed(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	srv, cli := pair(t, set.ServerConfig(), set.ClientConfig())
	defer srv.Close()
	defer cli.Close()
	var want, ct []byte
	for i := range 200 {
		m := []byte(fmt.Sprintf("msg %03d;", i))
		want = append(want, m...)
		var err error
		if ct, err = cli.Seal(ct, m); err != nil {
			t.Fatal(err)
		}
	}
	srv.Feed(ct)
	var got []byte
	buf := make([]byte, 5)
	for range 10000 {
		n, err := srv.Read(buf)
		got = append(got, buf[:n]...)
		if err == tlsloop.ErrWouldBlock {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	if srv.Buffered() != 0 {
		t.Errorf("Buffered = %d after reading everything", srv.Buffered())
	}
}

// TestBeforeHandshake: Read and Seal wait for the handshake, CloseWrite
// refuses, and ConnectionState is not there yet.
func TestBeforeHandshake(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	ev := newChanEvents()
	c := tlsloop.Server(&tlsloop.Config{TLS: set.ServerConfig(), HandshakeTimeout: time.Minute}, ev)
	if n, err := c.Read(make([]byte, 10)); n != 0 || err != tlsloop.ErrWouldBlock {
		t.Errorf("Read before Start = %d, %v", n, err)
	}
	c.Start()
	if out, err := c.Seal([]byte("x"), []byte("hello")); string(out) != "x" || err != tlsloop.ErrWouldBlock {
		t.Errorf("Seal during handshake = %q, %v", out, err)
	}
	if err := c.CloseWrite(); err == nil {
		t.Error("CloseWrite during the handshake succeeded")
	}
	if _, ok := c.ConnectionState(); ok || c.HandshakeDone() {
		t.Error("state reported before the handshake")
	}
	c.Close()
	err := waitErr(t, ev.done, "handshake result")
	if !errors.Is(err, tlsloop.ErrHandshake) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("handshake after Close: %v", err)
	}
	if _, rerr := c.Read(make([]byte, 10)); rerr != err {
		t.Errorf("Read after a failed handshake: %v, want %v", rerr, err)
	}
	if _, err := c.Seal(nil, []byte("x")); !errors.Is(err, tlsloop.ErrHandshake) {
		t.Errorf("Seal after a failed handshake: %v", err)
	}
}

// clientHello returns the first flight of a real client.
func clientHello(t *testing.T, ccfg *tls.Config) []byte {
	t.Helper()
	ev := newChanEvents()
	c := tlsloop.Client(&tlsloop.Config{TLS: ccfg}, ev)
	c.Start()
	select {
	case <-ev.out:
	case <-time.After(10 * time.Second):
		t.Fatal("no ClientHello")
	}
	hello := c.Output(nil)
	c.Close()
	waitErr(t, ev.done, "client handshake end")
	return hello
}

func TestHandshakeTimeout(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	hello := clientHello(t, set.ClientConfig())
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"silent", nil},
		{"half a ClientHello", hello[:len(hello)/2]},
		{"five bytes", hello[:5]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newChanEvents()
			c := tlsloop.Server(&tlsloop.Config{TLS: set.ServerConfig(), HandshakeTimeout: 100 * time.Millisecond}, ev)
			defer c.Close()
			start := time.Now()
			c.Start()
			c.Feed(tc.send)
			err := waitErr(t, ev.done, "handshake timeout")
			if !errors.Is(err, tlsloop.ErrHandshake) || !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 100ms") {
				t.Fatalf("err = %v", err)
			}
			if d := time.Since(start); d < 100*time.Millisecond {
				t.Fatalf("failed after %v, before the timeout", d)
			}
		})
	}
}

func TestNotTLS(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	for _, tc := range []struct {
		name, input, want string
	}{
		{"http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", `plaintext "GET /"`},
		{"line", "hello world\n", `plaintext "hello"`},
		{"garbage", "\x00\x01\x02\x03\x04\x05\x06\x07", "does not look like a TLS handshake"},
		{"sslv2", "\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10", "SSLv2"},
		{"oversized", "\x16\x03\x01\xff\xff", "oversized record"},
		{"eof mid-hello", "\x16\x03\x01\x00\x80abc", "EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newChanEvents()
			c := tlsloop.Server(&tlsloop.Config{TLS: set.ServerConfig()}, ev)
			defer c.Close()
			c.Start()
			c.Feed([]byte(tc.input))
			c.FeedEOF()
			err := waitErr(t, ev.done, "handshake failure")
			if !errors.Is(err, tlsloop.ErrHandshake) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrHandshake mentioning %q", err, tc.want)
			}
		})
	}
}

func TestClientCertificates(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	other := testcert.New(t)
	for _, ver := range versions {
		t.Run(ver.name+"/accepted", func(t *testing.T) {
			ccfg := set.MutualClientConfig()
			ccfg.MaxVersion = ver.v
			srv, cli := pair(t, set.MutualServerConfig(), ccfg)
			defer srv.Close()
			defer cli.Close()
			cs, ok := srv.ConnectionState()
			if !ok || len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].Subject.CommonName != "switchboard test client" {
				t.Fatalf("peer certificates: %v %v", ok, cs.PeerCertificates)
			}
		})
		for _, tc := range []struct {
			name string
			cert []tls.Certificate
			want string
		}{
			{"none", nil, "certificate"},
			{"unknown CA", []tls.Certificate{other.Client}, "unknown authority"},
		} {
			t.Run(ver.name+"/refused "+tc.name, func(t *testing.T) {
				ccfg := set.ClientConfig()
				ccfg.MaxVersion = ver.v
				ccfg.Certificates = tc.cert
				srv, cli, serr, _ := tryPair(t, set.MutualServerConfig(), ccfg)
				defer srv.Close()
				defer cli.Close()
				if !errors.Is(serr, tlsloop.ErrHandshake) || !strings.Contains(serr.Error(), tc.want) {
					t.Fatalf("server: %v, want ErrHandshake mentioning %q", serr, tc.want)
				}
				// The client learns it from the server's alert.
				if _, err := readAll(cli); err == tlsloop.ErrWouldBlock || err == nil {
					t.Fatalf("client after refusal: %v", err)
				}
			})
		}
	}
}

// TestCloseNotify covers the closing cases by hand: Close queues a
// close_notify the peer reads as EOF; EOF at a record boundary is EOF,
// inside a record it is unexpected; a tampered record is refused with an
// alert.
func TestCloseNotify(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	t.Run("close", func(t *testing.T) {
		srv, cli := pair(t, set.ServerConfig(), set.ClientConfig())
		defer cli.Close()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		cli.Feed(srv.Output(nil))
		if _, err := readAll(cli); err != io.EOF {
			t.Fatalf("client after server Close: %v, want io.EOF", err)
		}
		if _, err := srv.Seal(nil, []byte("late")); err == nil {
			t.Error("Seal after Close succeeded")
		}
	})
	t.Run("closewrite", func(t *testing.T) {
		srv, cli := pair(t, set.ServerConfig(), set.ClientConfig())
		defer srv.Close()
		defer cli.Close()
		if err := cli.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		srv.Feed(cli.Output(nil))
		if _, err := readAll(srv); err != io.EOF {
			t.Fatalf("server after close_notify: %v", err)
		}
		// The server may still write after the client's half-close.
		out, err := srv.Seal(nil, []byte("still here"))
		if err != nil {
			t.Fatal(err)
		}
		cli.Feed(out)
		if got, _ := readAll(cli); string(got) != "still here" {
			t.Fatalf("client read %q", got)
		}
	})
	t.Run("eof at boundary", func(t *testing.T) {
		srv, cli := pair(t, set.ServerConfig(), set.ClientConfig())
		defer srv.Close()
		defer cli.Close()
		rec, _ := cli.Seal(nil, []byte("last"))
		srv.Feed(rec)
		srv.FeedEOF()
		if got, err := readAll(srv); string(got) != "last" || err != io.EOF {
			t.Fatalf("%q, %v", got, err)
		}
	})
	t.Run("eof inside a record", func(t *testing.T) {
		srv, cli := pair(t, set.ServerConfig(), set.ClientConfig())
		defer srv.Close()
		defer cli.Close()
		rec, _ := cli.Seal(nil, []byte("cut short"))
		srv.Feed(rec[:len(rec)-3])
		srv.FeedEOF()
		if got, err := readAll(srv); len(got) != 0 || err != io.ErrUnexpectedEOF {
			t.Fatalf("%q, %v", got, err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		srv, cli := pair(t, set.ServerConfig(), set.ClientConfig())
		defer srv.Close()
		defer cli.Close()
		rec, _ := cli.Seal(nil, []byte("do not touch"))
		rec[len(rec)-1] ^= 1
		srv.Feed(rec)
		got, err := readAll(srv)
		if len(got) != 0 || err == nil || err == tlsloop.ErrWouldBlock || !strings.Contains(err.Error(), "bad record MAC") {
			t.Fatalf("%q, %v", got, err)
		}
		if _, err2 := readAll(srv); err2 == tlsloop.ErrWouldBlock {
			t.Fatal("record error was not final")
		}
		cli.Feed(srv.Output(nil))
		if _, err := readAll(cli); err == nil || err == tlsloop.ErrWouldBlock {
			t.Fatalf("client did not get the alert: %v", err)
		}
	})
}

// TestLimiter: with one slot, later handshakes wait their turn in order,
// a wait longer than the timeout fails, and Close takes a connection out
// of the queue.
func TestLimiter(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	lim, err := tlsloop.NewLimiter(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsloop.NewLimiter(0); err == nil {
		t.Error("NewLimiter(0) succeeded")
	}
	cfg := &tlsloop.Config{TLS: set.ServerConfig(), Limiter: lim, HandshakeTimeout: 10 * time.Second}

	// A silent connection holds the only slot.
	holderEv := newChanEvents()
	holder := tlsloop.Server(cfg, holderEv)
	holder.Start()
	if lim.Running() != 1 {
		t.Fatalf("Running = %d", lim.Running())
	}

	// Two real handshakes queue behind it, then one with a short timeout,
	// then one that is closed while it waits.
	type side struct {
		srv, cli *tlsloop.Conn
		se, ce   *chanEvents
	}
	var queued []side
	for range 2 {
		s := side{se: newChanEvents(), ce: newChanEvents()}
		s.srv = tlsloop.Server(cfg, s.se)
		s.cli = tlsloop.Client(&tlsloop.Config{TLS: set.ClientConfig()}, s.ce)
		s.srv.Start()
		s.cli.Start()
		queued = append(queued, s)
	}
	shortEv := newChanEvents()
	short := tlsloop.Server(&tlsloop.Config{TLS: set.ServerConfig(), Limiter: lim, HandshakeTimeout: 50 * time.Millisecond}, shortEv)
	short.Start()
	closedEv := newChanEvents()
	closed := tlsloop.Server(cfg, closedEv)
	closed.Start()
	if lim.Waiting() != 4 {
		t.Fatalf("Waiting = %d, want 4", lim.Waiting())
	}

	err = waitErr(t, shortEv.done, "queued timeout")
	if !errors.Is(err, tlsloop.ErrHandshake) || !strings.Contains(err.Error(), "waiting for a handshake slot") {
		t.Fatalf("short timeout: %v", err)
	}
	closed.Close()
	if err := waitErr(t, closedEv.done, "closed while queued"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("closed while queued: %v", err)
	}
	if lim.Waiting() != 2 {
		t.Fatalf("Waiting = %d, want 2", lim.Waiting())
	}

	// The queued servers make no progress while the slot is held.
	for _, s := range queued {
		shuttle(s.srv, s.cli)
	}
	time.Sleep(20 * time.Millisecond)
	for _, s := range queued {
		if len(s.srv.Output(nil)) != 0 {
			t.Fatal("a queued handshake answered")
		}
		if s.srv.Buffered() == 0 {
			t.Fatal("the ClientHello fed to a queued connection is not buffered")
		}
	}

	holder.Close()
	waitErr(t, holderEv.done, "holder end")

	// Now they finish, first come first served: drive both, and record
	// which server finishes first.
	var order []int
	deadline := time.After(10 * time.Second)
	for len(order) < 2 {
		for _, s := range queued {
			shuttle(s.srv, s.cli)
		}
		select {
		case err := <-queued[0].se.done:
			if err != nil {
				t.Fatal(err)
			}
			order = append(order, 0)
		case err := <-queued[1].se.done:
			if err != nil {
				t.Fatal(err)
			}
			order = append(order, 1)
		case <-deadline:
			t.Fatal("queued handshakes did not finish")
		case <-time.After(time.Millisecond):
		}
	}
	if order[0] != 0 {
		t.Errorf("finished in order %v, want first come first served", order)
	}
	for _, s := range queued {
		waitErr(t, s.ce.done, "client handshake")
		s.srv.Close()
		s.cli.Close()
	}
	if lim.Running() != 0 || lim.Waiting() != 0 {
		t.Errorf("after all: Running %d, Waiting %d", lim.Running(), lim.Waiting())
	}
}

// TestDataWithFinished: a TLS 1.3 client may send application data right
// behind its Finished, in the same read. The handshake goroutine may read
// it along with the Finished; it must come out of Read once the handshake
// is done, not be lost.
func TestDataWithFinished(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	se, ce := newChanEvents(), newChanEvents()
	srv := tlsloop.Server(&tlsloop.Config{TLS: set.ServerConfig()}, se)
	cli := tlsloop.Client(&tlsloop.Config{TLS: set.ClientConfig()}, ce)
	defer srv.Close()
	defer cli.Close()
	srv.Start()
	cli.Start()
	// Until the client is done, move everything but its last flight: the
	// client speaks twice, its hello and then its Finished.
	deadline := time.After(10 * time.Second)
	movedHello := false
	for done := false; !done; {
		select {
		case <-ce.out:
		case <-se.out:
		case err := <-ce.done:
			if err != nil {
				t.Fatal(err)
			}
			done = true
			continue
		case <-deadline:
			t.Fatal("client handshake did not finish")
		}
		cli.Feed(srv.Output(nil))
		if !movedHello {
			if hello := cli.Output(nil); len(hello) > 0 {
				srv.Feed(hello)
				movedHello = true
			}
		}
	}
	flight, err := cli.Seal(cli.Output(nil), []byte("right behind Finished"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Feed(flight)
	if err := waitErr(t, se.done, "server handshake"); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(srv)
	if string(got) != "right behind Finished" || err != tlsloop.ErrWouldBlock {
		t.Fatalf("after the handshake: %q, %v", got, err)
	}
}

// TestTinyTimeout: a timeout so short that the timer may fire before the
// connection has queued for a slot, or before its handshake has read
// anything, still ends every handshake once, as a timeout, and leaves no
// one in the queue.
func TestTinyTimeout(t *testing.T) {
	set := certs(t, testcert.ECDSAP256)
	lim, _ := tlsloop.NewLimiter(1)
	holderEv := newChanEvents()
	holder := tlsloop.Server(&tlsloop.Config{TLS: set.ServerConfig(), Limiter: lim, HandshakeTimeout: time.Minute}, holderEv)
	holder.Start()
	for _, l := range []*tlsloop.Limiter{lim, nil} {
		for range 50 {
			ev := newChanEvents()
			c := tlsloop.Server(&tlsloop.Config{TLS: set.ServerConfig(), Limiter: l, HandshakeTimeout: time.Nanosecond}, ev)
			c.Start()
			err := waitErr(t, ev.done, "tiny timeout")
			if !errors.Is(err, tlsloop.ErrHandshake) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("limiter %v: %v", l != nil, err)
			}
			c.Close()
		}
	}
	if lim.Waiting() != 0 || lim.Running() != 1 {
		t.Errorf("Waiting %d, Running %d; want 0, 1 (the holder)", lim.Waiting(), lim.Running())
	}
	holder.Close()
	waitErr(t, holderEv.done, "holder end")
}
