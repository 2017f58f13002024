package service

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard"
	"switchboard/client"
	"switchboard/framing"
	"switchboard/internal/testserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer serves h with the given model on 127.0.0.1:0 and stops it
// when the test ends.
func startServer(t *testing.T, model string, h switchboard.Handler, opts ...switchboard.Option) (string, *switchboard.Server) {
	t.Helper()
	return startServerOn(t, "127.0.0.1:0", model, h, opts...)
}

func startServerOn(t *testing.T, addr, model string, h switchboard.Handler, opts ...switchboard.Option) (string, *switchboard.Server) {
	t.Helper()
	opts = append([]switchboard.Option{switchboard.WithModel(model), switchboard.WithLoops(2)}, opts...)
	return testserver.Start(t, addr, h, opts...)
}

// forModels runs f for every model this build has. Tests with several
// connections at once skip "blocking", which serves one at a time.
func forModels(t *testing.T, concurrent bool, f func(t *testing.T, model string)) {
	for _, m := range switchboard.Models() {
		if concurrent && m == switchboard.ModelBlocking {
			continue
		}
		t.Run(m, func(t *testing.T) { f(t, m) })
	}
}

func dial(t *testing.T, addr string, opts ...client.Option) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, append([]client.Option{client.WithTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRegistry(t *testing.T) {
	if got, want := Names(), []string{"echo", "discard", "hello", "chat"}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	if len(All()) != len(Names()) {
		t.Fatalf("All() has %d services", len(All()))
	}
	for _, name := range Names() {
		s, err := Lookup(name)
		if err != nil || s.Name != name || s.Summary == "" || s.New == nil || s.New() == nil {
			t.Errorf("Lookup(%q) = %+v, %v", name, s, err)
		}
		if s.Framing != "" {
			if c, err := framing.Parse(s.Framing, 0); err != nil || c.String() != s.Framing {
				t.Errorf("%s: Framing %q is not canonical", name, s.Framing)
			}
		}
	}
	_, err := Lookup("nope")
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Lookup(nope) error = %v, want ErrUnknown", err)
	}
	if want := `service: unknown service "nope": want echo, discard, hello, chat`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestResolveFraming(t *testing.T) {
	tests := []struct {
		service, spec, want string
		wantErr             error
	}{
		{"echo", "", "raw", nil},
		{"echo", "len:4", "len:4", nil},
		{"discard", "eof", "eof", nil},
		{"hello", "", "raw", nil},
		{"hello", "raw", "raw", nil},
		{"hello", "line", "", ErrFraming},
		{"chat", "", "line", nil},
		{"chat", "line", "line", nil},
		{"chat", "raw", "", ErrFraming},
		{"chat", "len:4", "", ErrFraming},
		{"chat", "bogus", "", framing.ErrSpec},
	}
	for _, tt := range tests {
		s, err := Lookup(tt.service)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ResolveFraming(tt.spec)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("%s.ResolveFraming(%q) = %q, %v; want %q, %v", tt.service, tt.spec, got, err, tt.want, tt.wantErr)
		}
	}
	s, _ := Lookup("chat")
	_, err := s.ResolveFraming("raw")
	if want := "service: incompatible framing: service chat speaks line framing, not raw"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestEcho(t *testing.T) {
	forModels(t, false, func(t *testing.T, model string) {
		for _, spec := range []string{"line", "len:4", "digits:5", "fixed:3"} {
			addr, _ := startServer(t, model, Echo(), switchboard.WithFraming(spec, 0))
			c := dial(t, addr, client.WithFraming(spec, 0))
			for _, m := range []string{"abc", "xyz", "123"} {
				got, err := c.Request([]byte(m))
				if err != nil || string(got) != m {
					t.Fatalf("%s: Request(%q) = %q, %v", spec, m, got, err)
				}
			}
			c.Close()
		}
	})
}

func TestEchoEOFFraming(t *testing.T) {
	forModels(t, false, func(t *testing.T, model string) {
		addr, _ := startServer(t, model, Echo(), switchboard.WithFraming("eof", 0))
		c := dial(t, addr, client.WithFraming("eof", 0))
		if err := c.Send([]byte("GET /\r\n")); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := c.ReadAll()
		if err != nil || string(got) != "GET /\r\n" {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
	})
}

func TestDiscard(t *testing.T) {
	forModels(t, false, func(t *testing.T, model string) {
		addr, srv := startServer(t, model, Discard())
		c := dial(t, addr)
		msg := make([]byte, 256<<10)
		for range 8 {
			if err := c.Send(msg); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := c.ReadAll()
		if err != nil || len(got) != 0 {
			t.Fatalf("ReadAll = %d bytes, %v; want nothing", len(got), err)
		}
		if in := srv.Stats().BytesIn; in != 8*256<<10 {
			t.Errorf("server read %d bytes, want %d", in, 8*256<<10)
		}
	})
}

// fakeConn is a switchboard.Conn that records what a handler does, for
// driving handlers without a network.
type fakeConn struct {
	mu          sync.Mutex
	out         []byte
	value       any
	closed      bool
	closedWrite bool
}

func (c *fakeConn) Write(msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.closedWrite {
		return switchboard.ErrConnClosed
	}
	c.out = append(c.out, msg...)
	return nil
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) CloseWrite() error {
	c.mu.Lock()
	c.closedWrite = true
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8888} }
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *fakeConn) Value() any                      { return c.value }
func (c *fakeConn) SetValue(v any)                  { c.value = v }
func (c *fakeConn) Context() context.Context        { return context.Background() }
func (c *fakeConn) Stats() switchboard.ConnStats    { return switchboard.ConnStats{} }
func (c *fakeConn) SetIdleTimeout(time.Duration)    {}
func (c *fakeConn) AfterFunc(time.Duration, func()) {}
func (c *fakeConn) SetCodec(framing.Codec)          {}
func (c *fakeConn) SetReplyCodec(framing.Codec)     {}
