// Package netaddr parses switchboard's address syntax, shared by the server,
// the client and the CLI.
package netaddr

import (
	"fmt"
	"net"
	"strings"
)

// Split turns "host:port", "[::1]:port" or "unix:/path" into a network
// ("tcp" or "unix") and an address for the net package.
func Split(addr string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return "", "", fmt.Errorf("empty unix socket path in %q", addr)
		}
		return "unix", path, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("bad address %q: want host:port, [ipv6]:port or unix:/path", addr)
	}
	return "tcp", addr, nil
}

// Format is the inverse of Split for an address the net package returned.
func Format(a net.Addr) string {
	if a.Network() == "unix" {
		return "unix:" + a.String()
	}
	return a.String()
}
