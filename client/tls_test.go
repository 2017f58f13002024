package client

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/internal/testcert"
)

// tlsEcho serves TLS on network/address with crypto/tls's own listener:
// each connection is echoed until the client's close_notify, after which
// the server checks that the socket's write half was shut down too, sends
// "bye" and its own close_notify. Results of that check arrive on fin.
func tlsEcho(t *testing.T, network, address string, cfg *tls.Config) (addr string, fin <-chan error) {
	t.Helper()
	ln, err := tls.Listen(network, address, cfg)
	if err != nil {
		t.Fatal(err)
	}
	finc := make(chan error, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				tc := nc.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.Copy(tc, tc); err != nil {
					return // a failed handshake, say
				}
				// After close_notify, the socket itself must read EOF.
				_, err := tc.NetConn().Read(make([]byte, 1))
				if err != io.EOF {
					finc <- errors.New("socket still open after CloseWrite: " + errString(err))
				} else {
					finc <- nil
				}
				tc.Write([]byte("bye"))
				tc.CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	if network == "unix" {
		return "unix:" + address, finc
	}
	return ln.Addr().String(), finc
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

func TestTLS(t *testing.T) {
	set := testcert.New(t)
	cases := []struct {
		name, network, address string
		cfg                    *tls.Config
	}{
		{"tcp server name", "tcp", "127.0.0.1:0", set.ClientConfig()},
		{"tcp verified against the IP", "tcp", "127.0.0.1:0", &tls.Config{RootCAs: set.Pool}},
		{"tcp6", "tcp", "[::1]:0", &tls.Config{RootCAs: set.Pool, MaxVersion: tls.VersionTLS12}},
		{"unix", "unix", filepath.Join(t.TempDir(), "tls.sock"), set.ClientConfig()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, fin := tlsEcho(t, tc.network, tc.address, set.ServerConfig())
			if tc.network == "tcp" && strings.HasPrefix(tc.address, "[") {
				if _, err := net.ResolveTCPAddr("tcp6", addr); err != nil {
					t.Skip("no IPv6 loopback")
				}
			}
			c := dial(t, addr, WithTLS(tc.cfg), WithFraming("line", 0))
			for _, m := range []string{"hello", "over", "tls"} {
				got, err := c.Request([]byte(m))
				if err != nil || string(got) != m {
					t.Fatalf("Request(%q) = %q, %v", m, got, err)
				}
			}
			cs, ok := c.ConnectionState()
			want := uint16(tls.VersionTLS13)
			if tc.cfg.MaxVersion != 0 {
				want = tc.cfg.MaxVersion
			}
			if !ok || !cs.HandshakeComplete || cs.Version != want {
				t.Errorf("ConnectionState: ok %v complete %v version %x", ok, cs.HandshakeComplete, cs.Version)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			rest, err := c.ReadAll()
			if err != nil || string(rest) != "bye" {
				t.Fatalf("ReadAll = %q, %v", rest, err)
			}
			if err := <-fin; err != nil {
				t.Error(err)
			}
		})
	}
}

func TestTLSErrors(t *testing.T) {
	set := testcert.New(t)
	other := testcert.New(t)
	addr, _ := tlsEcho(t, "tcp", "127.0.0.1:0", set.ServerConfig())

	if _, err := Dial(context.Background(), addr, WithTLS(nil)); err == nil {
		t.Error("WithTLS(nil) accepted")
	}

	_, err := Dial(context.Background(), addr, WithTLS(other.ClientConfig()), WithTimeout(5*time.Second))
	var e *Error
	if !errors.As(err, &e) || e.Op != "handshake" || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("untrusted server: %v", err)
	}

	sock := filepath.Join(t.TempDir(), "u.sock")
	tlsEcho(t, "unix", sock, set.ServerConfig())
	_, err = Dial(context.Background(), "unix:"+sock, WithTLS(&tls.Config{RootCAs: set.Pool}))
	if err == nil || !strings.Contains(err.Error(), "server name") {
		t.Errorf("unix without a server name: %v", err)
	}

	// A server that never answers the ClientHello: the timeout bounds
	// the handshake.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		if nc, err := ln.Accept(); err == nil {
			held <- nc
		}
	}()
	start := time.Now()
	_, err = Dial(context.Background(), ln.Addr().String(), WithTLS(set.ClientConfig()), WithTimeout(200*time.Millisecond))
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "handshake") || time.Since(start) > 5*time.Second {
		t.Errorf("silent server: %v after %v", err, time.Since(start))
	}
	select {
	case nc := <-held:
		nc.Close()
	case <-time.After(5 * time.Second):
		t.Error("listener never accepted")
	}
}

// TestTLSNew wraps a connection dialed elsewhere: the handshake happens
// on first use.
func TestTLSNew(t *testing.T) {
	set := testcert.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		b, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		s := tls.Server(b, set.ServerConfig())
		defer s.Close()
		buf := make([]byte, 64)
		n, err := s.Read(buf)
		if err == nil {
			_, err = s.Write(buf[:n])
		}
		done <- err
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(a, WithTLS(set.ClientConfig()), WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Request([]byte("piped"))
	if err != nil || string(got) != "piped" {
		t.Fatalf("Request = %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
