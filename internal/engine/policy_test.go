package engine

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"switchboard/framing"
)

// TestProxyHeaderTimeout: ten seconds, or the idle timeout when shorter.
func TestProxyHeaderTimeout(t *testing.T) {
	for _, c := range []struct{ idle, want time.Duration }{
		{0, ProxyHeaderWait}, {time.Second, time.Second}, {time.Hour, ProxyHeaderWait},
	} {
		cfg := Config{IdleTimeout: c.idle}
		if got := cfg.ProxyHeaderTimeout(); got != c.want {
			t.Errorf("idle %v: %v, want %v", c.idle, got, c.want)
		}
	}
}

// TestProxyHeaderErrors: every refusal is a protocol error that matches
// ErrProxyHeader.
func TestProxyHeaderErrors(t *testing.T) {
	for _, err := range []error{ProxyHeaderEOF(), ProxyHeaderTooLong(), ProxyHeaderLate(time.Second)} {
		if !errors.Is(err, ErrProxyHeader) || !IsProtocolError(err) {
			t.Errorf("%v: not an ErrProxyHeader protocol error", err)
		}
	}
}

// TestLogClose: protocol errors and slow consumers warn, other reasons
// are debug lines, an orderly close logs nothing.
func TestLogClose(t *testing.T) {
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("%w: x", framing.ErrMalformed), "level=WARN"},
		{ErrSlowConsumer, "level=WARN"},
		{ErrIdleTimeout, "level=DEBUG"},
	} {
		var buf bytes.Buffer
		LogClose(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), remote, c.err)
		got := buf.String()
		if c.want == "" && got != "" || c.want != "" && (!strings.Contains(got, c.want) || !strings.Contains(got, "remote=192.0.2.1:9")) {
			t.Errorf("%v: logged %q, want %s", c.err, got, c.want)
		}
	}
}
