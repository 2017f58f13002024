package switchboard_test

import (
	"errors"
	"strings"
	"testing"

	"switchboard"
	"switchboard/internal/uring"
)

// TestUringRefusal: with io_uring unavailable, NewServer refuses the
// uring model with the reason (before anything listens), CheckModel says
// the same, and "auto" still resolves to epoll.
func TestUringRefusal(t *testing.T) {
	restore := uring.ForceUnavailable("forbidden by the test")
	defer restore()
	_, err := switchboard.NewServer(echo, switchboard.WithModel(switchboard.ModelUring))
	if !errors.Is(err, switchboard.ErrUnsupported) || !errors.Is(err, uring.ErrUnavailable) {
		t.Fatalf("NewServer(uring) = %v, want ErrUnsupported and uring.ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "forbidden by the test") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("the refusal should say why on one line: %q", err)
	}
	if err := switchboard.CheckModel(switchboard.ModelUring); !errors.Is(err, uring.ErrUnavailable) {
		t.Fatalf("CheckModel(uring) = %v", err)
	}
	if m, err := switchboard.ResolveModel(switchboard.ModelAuto); err != nil || m != switchboard.ModelEpoll {
		t.Fatalf("auto = %q, %v; want epoll", m, err)
	}
	srv, err := switchboard.NewServer(echo)
	if err != nil || srv.Model() != switchboard.ModelEpoll {
		t.Fatalf("default server: %v, %v", srv, err)
	}
	restore()
	if _, err := uring.Available(); err == nil {
		if err := switchboard.CheckModel(switchboard.ModelUring); err != nil {
			t.Fatalf("CheckModel(uring) with io_uring available: %v", err)
		}
	}
}
