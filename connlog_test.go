package switchboard_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard"
)

// lockedBuffer is a log destination that tests read while servers write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON records written so far, decoded.
func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// testConnLog asserts the connection log line field by field: one
// connection behind a PROXY header that exchanges two lines and hangs up,
// and one that sends a line over the maximum frame.
func testConnLog(t *testing.T, model string) {
	var logged lockedBuffer
	l := slog.New(slog.NewJSONHandler(&logged, nil))
	_, addr := start(t, model, echo,
		switchboard.WithFraming("line", 16),
		switchboard.WithProxyProtocol(true),
		switchboard.WithConnLog(l))
	const header = "PROXY TCP4 203.0.113.7 127.0.0.1 51234 8888\r\n"
	began := time.Now()

	c1 := dialProxied(t, addr, []byte(header))
	io.WriteString(c1, "ab\ncd\n")
	r := bufio.NewReader(c1)
	for _, want := range []string{"ab\n", "cd\n"} {
		if got, err := r.ReadString('\n'); err != nil || got != want {
			t.Fatalf("echo: %q, %v", got, err)
		}
	}
	c1.Close()
	first := awaitLines(t, &logged, 1)[0]
	took := time.Since(began)

	c2 := dialProxied(t, addr, []byte("PROXY TCP6 2001:db8::9 ::1 4000 8888\r\n"))
	io.WriteString(c2, strings.Repeat("x", 20))
	io.Copy(io.Discard, c2)
	c2.Close()
	second := awaitLines(t, &logged, 2)[1]

	checkLine := func(m map[string]any, want map[string]any) {
		t.Helper()
		d, ok := m["duration"].(float64) // JSON: nanoseconds
		if !ok || d < 0 || time.Duration(d) > took+time.Second {
			t.Errorf("duration %v, want 0..%v", m["duration"], took)
		}
		delete(m, "duration")
		delete(m, "time")
		if len(m) != len(want) {
			t.Errorf("fields %v, want %v", m, want)
		}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s = %v (%T), want %v", k, m[k], m[k], v)
			}
		}
	}
	checkLine(first, map[string]any{
		"level": "INFO", "msg": "connection",
		"remote": "203.0.113.7:51234", "local": addr,
		"bytes_in": float64(len(header) + 6), "bytes_out": float64(6),
		"messages_in": float64(2), "messages_out": float64(2),
		"reason": "peer",
	})
	errText, _ := second["error"].(string)
	if !strings.Contains(errText, "frame") {
		t.Errorf("error %q does not say the frame was too large", errText)
	}
	checkLine(second, map[string]any{
		"level": "INFO", "msg": "connection",
		"remote": "[2001:db8::9]:4000", "local": addr,
		"bytes_in": float64(len("PROXY TCP6 2001:db8::9 ::1 4000 8888\r\n") + 20), "bytes_out": float64(0),
		"messages_in": float64(0), "messages_out": float64(0),
		"reason": "protocol_error", "error": errText,
	})
}

// awaitLines waits (bounded) until the log holds n records.
func awaitLines(t *testing.T, b *lockedBuffer, n int) []map[string]any {
	t.Helper()
	for range 500 {
		if ls := b.lines(t); len(ls) >= n {
			return ls
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d connection log lines, want %d: %v", len(b.lines(t)), n, b.lines(t))
	return nil
}
