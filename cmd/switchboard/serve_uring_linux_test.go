package main

import (
	"strings"
	"testing"
	"time"

	"switchboard/internal/uring"
	"switchboard/internal/uringengine"
)

// TestServeUringUnavailable: where io_uring cannot be used, `serve --model
// uring` exits 1 before listening, with one line that says why; an
// unknown SWITCHBOARD_URING_OPTS entry is refused the same way.
func TestServeUringUnavailable(t *testing.T) {
	for _, tc := range []struct{ env, val, want string }{
		{uring.DisableEnv, "refused by the test", "io_uring unavailable: refused by the test"},
		{uringengine.OptionsEnv, "no-defer-taskrun,fast", `unknown option "fast"`},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(tc.env, tc.val)
			c := startChild(t, "serve", "--model", "uring", "--listen", "127.0.0.1:0")
			if code := c.wait(t, 20*time.Second); code != 1 {
				t.Fatalf("exit %d, want 1; log:\n%s", code, c.log())
			}
			log := c.log()
			if !strings.HasPrefix(log, "switchboard: ") || strings.Count(log, "\n") != 1 || !strings.Contains(log, tc.want) {
				t.Fatalf("want one line saying %q, got:\n%s", tc.want, log)
			}
		})
	}
}
