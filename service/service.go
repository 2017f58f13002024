// Package service holds the ready-made handlers that `switchboard serve`
// runs: echo, discard, hello (an HTTP/1.1 plaintext responder) and chat.
// They are ordinary switchboard.Handlers and run unchanged on every I/O
// model.
//
// Look a service up by name, check the framing it needs, and serve a fresh
// handler:
//
//	svc, err := service.Lookup("chat")
//	spec, err := svc.ResolveFraming(userSpec) // "" when the user gave none
//	srv, err := switchboard.NewServer(svc.New(), switchboard.WithFraming(spec, 0))
package service

import (
	"errors"
	"fmt"
	"strings"

	"switchboard"
	"switchboard/framing"
)

// Sentinel errors, for errors.Is.
var (
	// ErrUnknown: Lookup was given a name no service has.
	ErrUnknown = errors.New("service: unknown service")
	// ErrFraming: a service was asked to run with a framing it cannot
	// speak (hello needs raw, chat needs line).
	ErrFraming = errors.New("service: incompatible framing")
)

// Service describes one ready-made service.
type Service struct {
	// Name is what `serve --service` takes.
	Name string
	// Summary is a one-line description for help text.
	Summary string
	// Framing is the framing spec the service requires, in canonical form
	// (framing.Codec.String), or "" when it works with any framing.
	Framing string
	// New returns a handler for one server. Handlers that share state
	// between connections (chat's members) keep it per handler, so two
	// servers made from two New calls are independent.
	New func() switchboard.Handler
}

// registry lists the services in the order Names reports them.
var registry = []Service{
	{
		Name:    "echo",
		Summary: "sends each message back, framed the same way",
		New:     Echo,
	},
	{
		Name:    "discard",
		Summary: "reads and drops everything (one-way throughput)",
		New:     Discard,
	},
	{
		Name:    "hello",
		Summary: "HTTP/1.1 plaintext responder: 200 OK, \"Hello, world!\", keep-alive and pipelining",
		Framing: "raw",
		New:     Hello,
	},
	{
		Name:    "chat",
		Summary: "each line a client sends goes to every other client",
		Framing: "line",
		New:     Chat,
	},
}

// Names lists the services, simplest first: echo, discard, hello, chat.
func Names() []string {
	names := make([]string, len(registry))
	for i, s := range registry {
		names[i] = s.Name
	}
	return names
}

// All returns every service, in the order of Names.
func All() []Service {
	return append([]Service(nil), registry...)
}

// Lookup returns the service called name. An unknown name returns an
// error wrapping ErrUnknown that lists the known ones.
func Lookup(name string) (Service, error) {
	for _, s := range registry {
		if s.Name == name {
			return s, nil
		}
	}
	return Service{}, fmt.Errorf("%w %q: want %s", ErrUnknown, name, strings.Join(Names(), ", "))
}

// ResolveFraming returns the framing spec to run the service with, given
// the one the user asked for ("" when they asked for none). A service that
// works with any framing takes spec as it is ("" means raw); one that needs
// a framing gets it when spec is "", keeps spec when it names the same
// codec (compared in canonical form, so "len:4be" equals "len:4"), and
// otherwise returns an error wrapping ErrFraming. An unparsable spec
// returns framing.Parse's error (wrapping framing.ErrSpec).
func (s Service) ResolveFraming(spec string) (string, error) {
	if s.Framing == "" {
		if spec == "" {
			return "raw", nil
		}
		return spec, nil
	}
	if spec == "" {
		return s.Framing, nil
	}
	c, err := framing.Parse(spec, 0)
	if err != nil {
		return "", err
	}
	if c.String() != s.Framing {
		return "", fmt.Errorf("%w: service %s speaks %s framing, not %s", ErrFraming, s.Name, s.Framing, c.String())
	}
	return spec, nil
}

// Echo returns the echo service's handler: each message is written back
// as it came, and the server's codec frames it the same way it was
// received.
func Echo() switchboard.Handler {
	return switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		// An error means the connection is closing (the engine has
		// already closed a slow consumer); there is nothing to do.
		_ = c.Write(msg)
	})
}

// Discard returns the discard service's handler: it reads and drops
// everything, for measuring one-way throughput.
func Discard() switchboard.Handler { return switchboard.BaseHandler{} }
