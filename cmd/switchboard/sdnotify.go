package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// The systemd notification protocol is a datagram of "KEY=VALUE" lines
// sent to the unixgram socket named by NOTIFY_SOCKET. It is a few lines,
// so they are written here rather than taken from coreos/go-systemd: the
// one thing we need beyond sd_notify is MAINPID handed over across an
// upgrade, and that is clearer next to the upgrade code than behind a
// library's unset-the-environment switch.

// notifier sends state changes to systemd; with no NOTIFY_SOCKET it does
// nothing.
type notifier struct {
	addr *net.UnixAddr // nil: not under systemd
}

func newNotifier() *notifier {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return &notifier{}
	}
	// "@name" is a Linux abstract socket; Go spells it the same way.
	return &notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// send delivers one datagram of lines; errors are returned for the caller
// to log, never fatal: a service must not die because its supervisor's
// socket is gone.
func (n *notifier) send(lines ...string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	defer c.Close()
	_, err = c.Write([]byte(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	return nil
}

// watchdogInterval reports how often to ping systemd's watchdog: half of
// WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, and only when
// WATCHDOG_PID (if set) names this process.
func watchdogInterval() (time.Duration, error) {
	s := os.Getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, nil
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("bad WATCHDOG_PID %q", p)
		}
		if pid != os.Getpid() {
			return 0, nil
		}
	}
	us, err := strconv.ParseInt(s, 10, 64)
	if err != nil || us <= 0 {
		return 0, fmt.Errorf("bad WATCHDOG_USEC %q", s)
	}
	return time.Duration(us) * time.Microsecond / 2, nil
}

// watchdog pings every interval until stop is closed. The pings come from
// the serving goroutine's side of the process, so a process wedged hard
// enough to stop scheduling goroutines stops pinging and is restarted.
func (n *notifier) watchdog(interval time.Duration, stop <-chan struct{}, logf func(error)) {
	if interval <= 0 || n.addr == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := n.send("WATCHDOG=1"); err != nil {
				logf(err)
			}
		}
	}
}
