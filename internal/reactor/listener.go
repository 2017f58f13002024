//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"switchboard/internal/engine"
)

// listener is a listening socket a loop accepts on. The loop works on its
// own duplicate of the descriptor, so Go's runtime poller never sees our
// accepts; the net.Listener stays open beside it and is closed on shutdown,
// which is what removes a Unix socket's file.
type listener struct {
	fd    int
	ln    net.Listener
	addr  net.Addr
	unix  bool
	laddr netip.AddrPort // the bound address, unless it is a wildcard
	any   bool           // bound to 0.0.0.0 or ::: ask each connection
	// Accepting pauses after running out of descriptors with no spare
	// left to shed the backlog with.
	paused      bool
	resumeAfter int64
}

func newListener(ln net.Listener) (*listener, error) {
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
	li := &listener{fd: fd, ln: ln, addr: ln.Addr()}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("getsockname", err)
	}
	switch sa.(type) {
	case *unix.SockaddrUnix:
		li.unix = true
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		li.laddr = addrPort(sa)
		li.any = li.laddr.Addr().IsUnspecified()
	default:
		unix.Close(fd)
		return nil, fmt.Errorf("%w: listener on %s", engine.ErrUnsupported, ln.Addr())
	}
	return li, nil
}

// addrPort converts a socket address without allocating (except an IPv6
// zone name).
func addrPort(sa unix.Sockaddr) netip.AddrPort {
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
