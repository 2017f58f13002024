// Package testserver starts in-process switchboard servers for tests, so
// every package's tests start, address and stop them the same way.
package testserver

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"switchboard"
	"switchboard/internal/netaddr"
)

// Start serves h on addr ("127.0.0.1:0", "[::1]:0" or "unix:/path") until
// the test ends, then shuts the server down gracefully and checks that
// Serve returned ErrServerClosed. It returns the address to dial, in
// switchboard's syntax, and the server.
func Start(t testing.TB, addr string, h switchboard.Handler, opts ...switchboard.Option) (string, *switchboard.Server) {
	t.Helper()
	srv, err := switchboard.NewServer(h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	lns, err := srv.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lns...) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-served:
			if !errors.Is(err, switchboard.ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return netaddr.Format(lns[0].Addr()), srv
}

// FreeAddr returns a loopback address that nothing listens on, for tests
// of refused connections.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
