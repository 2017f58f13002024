//go:build linux || darwin || freebsd || netbsd || openbsd

package switchboard

import "switchboard/internal/reactor"

// The event-loop models register whatever poller backends this platform
// has: select and poll on every Unix, epoll on Linux, kqueue on BSD and
// macOS. The poller package's own build tags decide, so this one file
// serves every OS.
func init() {
	for _, name := range reactor.Backends() {
		registerModel(ModelInfo{Name: name, EventLoop: true, MaxFD: reactor.MaxFD(name), TLS: true}, reactor.Constructor(name))
	}
}
