package switchboard

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"switchboard/internal/netaddr"
)

// SplitAddr turns a switchboard address into a network and an address for
// the net package: "unix:/path" is a Unix socket, anything else TCP
// ("host:port", "[::1]:port", ":port").
func SplitAddr(addr string) (network, address string, err error) {
	network, address, err = netaddr.Split(addr)
	if err != nil {
		return "", "", fmt.Errorf("switchboard: %w", err)
	}
	return network, address, nil
}

// Listen opens a listening socket on a switchboard address. TCP listeners
// get SO_REUSEADDR (Go's default) and, when reusePort is set, SO_REUSEPORT
// so several sockets can share the port. For "unix:/path", a stale socket
// file left by a dead server is removed first; a live one is an error, and
// so is a path that is not a socket. The file is removed when the listener
// closes.
func Listen(addr string, reusePort bool) (net.Listener, error) {
	network, address, err := SplitAddr(addr)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{}
	if network == "unix" {
		if err := removeStaleSocket(address); err != nil {
			return nil, err
		}
	} else if reusePort {
		lc.Control = setReusePort
	}
	return lc.Listen(context.Background(), network, address)
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("switchboard: %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("switchboard: %s: a server is already listening there", path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return os.Remove(path)
	}
	return fmt.Errorf("switchboard: %s: %w", path, err)
}

// InheritFromParentEnv, set to "1" beside LISTEN_FDS, tells
// ListenersFromEnv that the descriptors come from the parent process, whose
// pid LISTEN_PID then holds. A process handing its sockets to a successor
// it starts (a zero-downtime upgrade) cannot know the child's pid before
// the exec, which is what systemd's convention asks for; the parent's pid
// is the next best proof that the variables were meant for this process
// and not inherited from further up.
const InheritFromParentEnv = "SWITCHBOARD_LISTEN_FROM_PARENT"

// ListenersFromEnv returns the listening sockets handed over by systemd
// socket activation (LISTEN_PID and LISTEN_FDS, descriptors from 3), or by
// a parent process (see InheritFromParentEnv), or nil when the process was
// not started that way. The variables are cleared so child processes do not
// inherit them.
func ListenersFromEnv() ([]net.Listener, error) {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	fromParent := os.Getenv(InheritFromParentEnv) == "1"
	os.Unsetenv(InheritFromParentEnv)
	if err != nil || (pid != os.Getpid() && !(fromParent && pid == os.Getppid())) {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("switchboard: bad LISTEN_FDS %q", os.Getenv("LISTEN_FDS"))
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	const firstFd = 3
	lns := make([]net.Listener, 0, n)
	for fd := firstFd; fd < firstFd+n; fd++ {
		f := os.NewFile(uintptr(fd), "LISTEN_FD_"+strconv.Itoa(fd))
		ln, err := net.FileListener(f)
		f.Close() // FileListener dups the descriptor
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("switchboard: socket activation fd %d: %w", fd, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}
