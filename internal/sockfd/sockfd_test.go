//go:build linux || darwin || freebsd || netbsd || openbsd

package sockfd

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestListenerAddrs: a listener's duplicate accepts on its own, a
// wildcard listener asks each connection for its local address, and the
// addresses come back as the net package would give them.
func TestListenerAddrs(t *testing.T) {
	for _, bind := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		ln, err := net.Listen("tcp4", bind)
		if err != nil {
			t.Fatal(err)
		}
		li, err := NewListener(ln)
		if err != nil {
			t.Fatal(err)
		}
		if li.Any != (bind == "0.0.0.0:0") || li.Unix {
			t.Fatalf("%s: Any=%t Unix=%t", bind, li.Any, li.Unix)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		var fd int
		var sa unix.Sockaddr
		for range 1000 {
			if fd, sa, err = Accept(li.Fd); err != unix.EAGAIN {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err != nil {
			t.Fatalf("accept on the duplicate: %v", err)
		}
		raddr, laddr := li.ConnAddrs(fd, sa)
		want := netip.MustParseAddrPort(c.LocalAddr().String())
		if raddr != want {
			t.Fatalf("remote %v, want %v", raddr, want)
		}
		if laddr.Port() != uint16(port) || !laddr.Addr().IsLoopback() {
			t.Fatalf("%s: local %v", bind, laddr)
		}
		if got := li.RemoteAddr(raddr).String(); got != c.LocalAddr().String() {
			t.Fatalf("RemoteAddr %s, want %s", got, c.LocalAddr())
		}
		Reset(fd)
		c.Close()
		unix.Close(li.Fd)
		ln.Close()
	}
}

// TestSpare: the spare is a real descriptor, given back with Close.
func TestSpare(t *testing.T) {
	fd := OpenSpare()
	if fd < 0 {
		t.Fatal("no spare descriptor")
	}
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
}
