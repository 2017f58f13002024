//go:build linux

package loadgen

import (
	"time"

	"golang.org/x/sys/unix"
)

func (w *eworker) connectPhase() {
	c := w.d.c
	lim := w.d.lim
	next, pending := 0, 0
	var retry []*econn
	var lastScan int64
	for (next < len(w.conns) || pending > 0 || len(retry) > 0) && !w.aborted {
		t := now()
		wait := time.Duration(-1)
	dialing:
		for (next < len(w.conns) || len(retry) > 0) && pending < maxPendingConnects {
			ok, d := lim.take(t)
			if !ok {
				wait = d
				break
			}
			var ec *econn
			if len(retry) > 0 {
				ec, retry = retry[0], retry[1:]
			} else {
				ec = w.conns[next]
				next++
				ec.since = t
			}
			switch w.dial(ec, t) {
			case dialPending:
				pending++
			case dialRetry:
				retry = append(retry, ec)
				wait = time.Millisecond
				break dialing
			}
		}
		if next == len(w.conns) && pending == 0 && len(retry) == 0 {
			break
		}
		if pending > 0 {
			// Wake now and then to time out connects that hang.
			if wait < 0 || wait > 10*time.Millisecond {
				wait = 10 * time.Millisecond
			}
		}
		for _, ev := range w.wait(wait) {
			idx := int(ev.Fd)
			switch {
			case idx == evWake:
				w.aborted = true
			case idx >= 0:
				ec := w.conns[idx]
				if ec.state == stateConnecting {
					pending--
					w.finishConnect(ec, now())
				} else if ec.state == stateOpen {
					// A server that closes connections right away (a
					// connection limit) shows it already.
					w.readConn(ec, now())
				}
			}
		}
		t = now()
		if pending > 0 && t-lastScan > int64(10*time.Millisecond) {
			lastScan = t
			for _, ec := range w.conns[:next] {
				if ec.state == stateConnecting && time.Duration(t-ec.since) > c.ConnectTimeout {
					pending--
					w.st.connectError(t, "connect to %s: timed out after %v", c.Addr, c.ConnectTimeout)
					w.kill(ec)
				}
			}
		}
		for len(retry) > 0 && time.Duration(t-retry[0].since) > c.ConnectTimeout {
			w.st.connectError(t, "connect to %s: listen queue full for %v", c.Addr, c.ConnectTimeout)
			retry[0].state = stateDead
			retry = retry[1:]
		}
	}
}

type dialResult int

const (
	dialDone dialResult = iota
	dialPending
	dialRetry
	dialFailed
)

// dial starts a non-blocking connect.
func (w *eworker) dial(ec *econn, t int64) dialResult {
	d := w.d
	c := d.c
	fd, err := unix.Socket(d.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		w.st.connectError(t, "socket: %v", err)
		ec.state = stateDead
		return dialFailed
	}
	if d.domain != unix.AF_UNIX {
		// Small messages go out at once, as every latency-minded client
		// does; the server sets the same on its side.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if c.SourceIPs > 0 {
		// Bind the source address now but leave the port to connect, so
		// the port only has to be unique per destination: this is what
		// lets several source addresses multiply the ephemeral ports.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: sourceIP(c, ec.id)}); err != nil {
			unix.Close(fd)
			w.st.connectError(t, "bind %v: %v", sourceIP(c, ec.id), err)
			ec.state = stateDead
			return dialFailed
		}
	}
	err = unix.Connect(fd, w.sa)
	switch err {
	case nil:
		ec.fd = fd
		if !w.register(ec, unix.EPOLLIN) {
			return dialFailed
		}
		w.opened(ec)
		return dialDone
	case unix.EINPROGRESS:
		ec.fd = fd
		ec.state = stateConnecting
		if !w.register(ec, unix.EPOLLOUT) {
			return dialFailed
		}
		return dialPending
	case unix.EAGAIN:
		// A Unix socket whose listen queue is full: try again shortly.
		unix.Close(fd)
		return dialRetry
	}
	unix.Close(fd)
	w.st.connectError(t, "connect to %s: %v", c.Addr, err)
	ec.state = stateDead
	return dialFailed
}

func (w *eworker) register(ec *econn, events uint32) bool {
	ev := unix.EpollEvent{Events: events, Fd: int32(ec.pos)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, ec.fd, &ev); err != nil {
		w.st.connectError(now(), "epoll_ctl: %v", err)
		unix.Close(ec.fd)
		ec.fd = -1
		ec.state = stateDead
		return false
	}
	return true
}

// finishConnect completes a pending connect once the socket is writable.
func (w *eworker) finishConnect(ec *econn, t int64) {
	errno, err := unix.GetsockoptInt(ec.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && errno != 0 {
		err = unix.Errno(errno)
	}
	if err != nil {
		w.st.connectError(t, "connect to %s: %v", w.d.c.Addr, err)
		w.kill(ec)
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ec.pos)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, ec.fd, &ev); err != nil {
		w.st.connectError(t, "epoll_ctl: %v", err)
		w.kill(ec)
		return
	}
	w.opened(ec)
}

func (w *eworker) opened(ec *econn) {
	ec.state = stateOpen
	if !ec.reopen {
		if !ec.idle {
			w.live++
		}
		w.st.prog.connected.Add(1)
	}
	if ec.f != nil {
		ec.base = ec.f.recvd.Load()
	}
	if c := w.d.c; c.ProxyHeader != "" {
		w.sendProxyHeader(ec)
	}
}

// kill closes a connection for good.
func (w *eworker) kill(ec *econn) {
	if ec.fd >= 0 {
		unix.Close(ec.fd) // also removes it from the epoll set
		ec.fd = -1
	}
	if ec.f != nil && (ec.state == stateOpen || (ec.reopen && ec.state == stateConnecting)) {
		w.inflight -= int64(ec.f.inflight())
		w.live--
	}
	ec.state = stateDead
}

// ---------------------------------------------------------------- traffic
