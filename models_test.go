package switchboard_test

import (
	"crypto/tls"
	"errors"
	"testing"

	"switchboard"
)

func TestLookupModel(t *testing.T) {
	for _, name := range switchboard.Models() {
		info, err := switchboard.LookupModel(name)
		if err != nil || info.Name != name {
			t.Fatalf("LookupModel(%q) = %+v, %v", name, info, err)
		}
		switch name {
		case switchboard.ModelBlocking:
			if !info.Iterative || info.EventLoop {
				t.Errorf("blocking: %+v, want iterative and no event loop", info)
			}
		case switchboard.ModelGoroutine:
			if info.Iterative || info.EventLoop || info.MaxFD != 0 {
				t.Errorf("goroutine: %+v, want no loops, no ceiling", info)
			}
		case switchboard.ModelSelect:
			if !info.EventLoop || info.MaxFD != 1024 {
				t.Errorf("select: %+v, want an event loop and FD_SETSIZE 1024", info)
			}
		default:
			if !info.EventLoop || info.MaxFD != 0 {
				t.Errorf("%s: %+v, want an event loop and no ceiling", name, info)
			}
		}
	}
	// A model that does not speak TLS refuses a TLS configuration at
	// once rather than serving plaintext.
	for _, name := range switchboard.Models() {
		info, _ := switchboard.LookupModel(name)
		_, err := switchboard.NewServer(switchboard.BaseHandler{}, switchboard.WithModel(name), switchboard.WithTLS(&tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("unused") }}))
		if info.TLS != (err == nil) || (err != nil && !errors.Is(err, switchboard.ErrUnsupported)) {
			t.Errorf("%s (TLS %v): NewServer with TLS: %v", name, info.TLS, err)
		}
	}
	auto, err := switchboard.LookupModel("auto")
	if err != nil || auto.Name == "" {
		t.Fatalf("auto: %+v, %v", auto, err)
	}
	if _, err := switchboard.LookupModel("nope"); err == nil {
		t.Error("unknown model accepted")
	}
	if _, err := switchboard.LookupModel(switchboard.ModelKqueue); err != nil && !errors.Is(err, switchboard.ErrUnsupported) {
		t.Errorf("kqueue on linux: %v, want ErrUnsupported", err)
	}
}
