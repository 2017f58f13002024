//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"switchboard/internal/sockfd"
)

// A connection's addresses, in 20 bytes rather than the 64 of two
// netip.AddrPorts and a listener pointer: the peer's address is written
// once at accept, as 16 bytes, a port and its family; the listener is an
// index into the server's table; the local address is the listener's,
// unless it is bound to a wildcard, when it is asked of the socket the
// first time someone wants it (rare.laddr). An IPv6 zone, which
// link-local peers have, is kept in the side struct.

// peer is the part of Conn that holds its addresses.
type peer struct {
	rport uint16
	lnfam uint16 // listener index | family << famShift
	rip   [16]byte
}

const (
	famShift = 14
	famNone  = 0 // no address: a Unix socket, or getpeername failed
	fam4     = 1
	fam6     = 2
	famZoned = 3 // IPv6 with a zone: rare.zoned is the address

	// MaxListeners is how many listeners one server can serve: the
	// listener index shares a word with the address family.
	MaxListeners = 1 << famShift
)

// setPeer records the peer's address; c is not shared yet.
func (c *Conn[IO]) setPeer(ap netip.AddrPort) {
	a := ap.Addr()
	fam := uint16(famNone)
	switch {
	case !a.IsValid():
	case a.Zone() != "":
		fam = famZoned
		c.rare = &rare[IO]{zoned: ap}
	case a.Is4():
		fam = fam4
	default:
		fam = fam6
	}
	c.rip = a.As16()
	if fam == famNone {
		c.rip = [16]byte{}
	}
	c.rport = ap.Port()
	c.lnfam = c.lnfam&(1<<famShift-1) | fam<<famShift
}

// raddr is the peer's address as accepted (not the PROXY header's). It
// is written once before c is shared, so any goroutine may read it.
func (c *Conn[IO]) raddr() netip.AddrPort {
	var a netip.Addr
	switch c.lnfam >> famShift {
	case famNone:
		return netip.AddrPort{}
	case famZoned:
		return c.rare.zoned
	case fam4:
		a = netip.AddrFrom16(c.rip).Unmap()
	default:
		a = netip.AddrFrom16(c.rip)
	}
	return netip.AddrPortFrom(a, c.rport)
}

// listener is the listener c was accepted on.
func (c *Conn[IO]) listener() *sockfd.Listener {
	return c.L.S.lns[c.lnfam&(1<<famShift-1)]
}

// RemoteAddr is the PROXY header's client address when there was one.
func (c *Conn[IO]) RemoteAddr() net.Addr {
	c.Mu.Lock()
	var proxied net.Addr
	if c.rare != nil {
		proxied = c.rare.proxied
	}
	c.Mu.Unlock()
	if proxied != nil {
		return proxied
	}
	return c.listener().RemoteAddr(c.raddr())
}

// LocalAddr is built on demand (sockfd.Listener.LocalAddr says why).
func (c *Conn[IO]) LocalAddr() net.Addr {
	c.Mu.Lock()
	laddr := c.localLocked()
	c.Mu.Unlock()
	return c.listener().LocalAddr(laddr)
}

// localLocked is the connection's local address: the listener's, or,
// for a listener bound to a wildcard, the socket's, asked once and kept.
// While c is open its descriptor is: Close marks it closed under Mu
// before the engine closes the descriptor. After that, an address never
// asked for is the listener's. Under Mu.
func (c *Conn[IO]) localLocked() netip.AddrPort {
	li := c.listener()
	if !li.Any {
		return li.LAddr
	}
	if c.rare != nil && c.rare.laddr.IsValid() {
		return c.rare.laddr
	}
	if c.shared&sharedClosed != 0 {
		return li.LAddr
	}
	sa, err := unix.Getsockname(int(c.Fd))
	if err != nil {
		return li.LAddr
	}
	r := c.rareLocked()
	r.laddr = sockfd.AddrPort(sa)
	return r.laddr
}

// AddListener enters li in the server's table for its connections to
// refer to, returning its index, or false past MaxListeners. Under Mu,
// from Loops.Setup.
func (s *Server[IO]) AddListener(li *sockfd.Listener) (uint16, bool) {
	if len(s.lns) >= MaxListeners {
		return 0, false
	}
	s.lns = append(s.lns, li)
	return uint16(len(s.lns) - 1), true
}
