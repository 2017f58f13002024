//go:build linux || darwin || freebsd || netbsd || openbsd

// Package sockfd is the socket plumbing the event-loop engines share
// below their loops: a listener's own duplicate descriptor and the
// addresses it is bound to, accept4 where the platform has it, socket
// addresses without allocation, keepalive options, the reset close of a
// connection that is refused, and the spare descriptor that lets a loop
// shed connections when the process is out of descriptors. It holds no
// loop state, so the readiness reactor and the io_uring engine use the
// same code.
package sockfd

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"switchboard/internal/engine"
)

// Listener is a listening socket a loop accepts on. The loop works on its
// own duplicate of the descriptor, so Go's runtime poller never sees its
// accepts; the net.Listener stays open beside it and is closed on shutdown,
// which is what removes a Unix socket's file.
type Listener struct {
	Fd    int // the loop's duplicate, non-blocking, close-on-exec
	Ln    net.Listener
	Addr  net.Addr
	Unix  bool
	LAddr netip.AddrPort // the bound address, unless it is a wildcard
	Any   bool           // bound to 0.0.0.0 or ::: ask each connection
}

// NewListener duplicates ln's descriptor for a loop and records its
// addresses.
func NewListener(ln net.Listener) (*Listener, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%w: listener %T has no file descriptor", engine.ErrUnsupported, ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	err = rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, os.NewSyscallError("dup", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	li := &Listener{Fd: fd, Ln: ln, Addr: ln.Addr()}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("getsockname", err)
	}
	switch sa.(type) {
	case *unix.SockaddrUnix:
		li.Unix = true
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		li.LAddr = AddrPort(sa)
		li.Any = li.LAddr.Addr().IsUnspecified()
	default:
		unix.Close(fd)
		return nil, fmt.Errorf("%w: listener on %s", engine.ErrUnsupported, ln.Addr())
	}
	return li, nil
}

// AddrPort converts a socket address without allocating (except an IPv6
// zone name).
func AddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				ip = ip.WithZone(ifi.Name)
			}
		}
		return netip.AddrPortFrom(ip, uint16(a.Port))
	}
	return netip.AddrPort{}
}

// ConnAddrs returns a TCP connection's remote and local addresses: the
// remote one from accept's sockaddr, the local one from the listener
// unless it is bound to a wildcard, when only the socket can say.
func (li *Listener) ConnAddrs(fd int, sa unix.Sockaddr) (raddr, laddr netip.AddrPort) {
	raddr, laddr = AddrPort(sa), li.LAddr
	if li.Any {
		if lsa, err := unix.Getsockname(fd); err == nil {
			laddr = AddrPort(lsa)
		}
	}
	return raddr, laddr
}

// LocalAddr is a connection's local address as a net.Addr, built on
// demand: storing one per connection would cost an allocation and two
// words even for connections nobody asks.
func (li *Listener) LocalAddr(laddr netip.AddrPort) net.Addr {
	if li.Unix {
		return li.Addr
	}
	return net.TCPAddrFromAddrPort(laddr)
}

// RemoteAddr is a connection's remote address as a net.Addr (a Unix
// socket's peer is unnamed).
func (li *Listener) RemoteAddr(raddr netip.AddrPort) net.Addr {
	if li.Unix {
		return &net.UnixAddr{Net: "unix"}
	}
	return net.TCPAddrFromAddrPort(raddr)
}

// Reset closes a connection that will not be served with a reset
// (SO_LINGER 0), so it does not sit in TIME_WAIT on our side.
func Reset(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(fd)
}

// OpenSpare reserves a descriptor to give back when accept fails with
// EMFILE: closing it lets one more accept succeed, so the pending
// connection can be taken and reset instead of staying in the backlog
// (keeping the listener readable, or a multishot accept failing, forever).
// It returns -1 when even that fails.
func OpenSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}
