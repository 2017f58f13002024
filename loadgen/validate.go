package loadgen

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"time"

	"switchboard/framing"
	"switchboard/internal/netaddr"
)

// config is a validated Config with everything derived from it.
type config struct {
	Config
	network  string // "tcp" or "unix"
	address  string // for the net package
	tcpAddr  *net.TCPAddr
	proto    *proto
	proxySrc *net.TCPAddr
	workers  int
	cpus     int
}

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

// validate checks cfg and fills its defaults.
func validate(cfg Config) (*config, error) {
	c := &config{Config: cfg}
	if c.Addr == "" {
		return nil, configErr("no server address")
	}
	network, address, err := netaddr.Split(c.Addr)
	if err != nil {
		return nil, configErr("%v", err)
	}
	c.network, c.address = network, address
	if network == "tcp" {
		a, err := net.ResolveTCPAddr("tcp", address)
		if err != nil {
			return nil, configErr("resolving %s: %v", c.Addr, err)
		}
		if a.IP == nil || a.IP.IsUnspecified() {
			// Like net.Dial, an empty or unspecified host means this machine.
			a.IP = net.IPv4(127, 0, 0, 1)
		}
		c.tcpAddr = a
	}
	switch {
	case c.Conns < 0 || c.Idle < 0:
		return nil, configErr("negative connection count")
	case c.Conns == 0 && c.Idle == 0:
		return nil, configErr("no connections: Conns and Idle are both 0")
	case c.Pipeline < 0:
		return nil, configErr("pipeline must be at least 1, got %d", c.Pipeline)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return nil, configErr("rate must be a positive number of messages per second, got %v", c.Rate)
	case c.Duration < 0 || c.Warmup < 0 || c.Requests < 0:
		return nil, configErr("negative duration, warm-up or request count")
	case c.Duration == 0 && c.Requests == 0:
		return nil, configErr("neither a duration nor a request count")
	case c.Requests > 0 && c.Conns == 0:
		return nil, configErr("a request count needs active connections")
	case c.SourceIPs < 0 || c.SourceIPs > MaxSourceIPs:
		return nil, configErr("source IPs must be between 0 and %d, got %d", MaxSourceIPs, c.SourceIPs)
	case c.ConnectRate < 0 || math.IsNaN(c.ConnectRate):
		return nil, configErr("connect rate must be positive, got %v", c.ConnectRate)
	case c.Workers < 0:
		return nil, configErr("negative worker count")
	}
	if c.SourceIPs > 0 {
		if c.tcpAddr == nil || c.tcpAddr.IP.To4() == nil || !c.tcpAddr.IP.IsLoopback() {
			return nil, configErr("source IPs 127.0.0.x only reach an IPv4 loopback server, not %s", c.Addr)
		}
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.ConnectRate == 0 {
		c.ConnectRate = DefaultConnectRate
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 250 * time.Millisecond
	}
	switch c.Expect {
	case "":
		c.Expect = ExpectEcho
	case ExpectEcho, ExpectAny:
	default:
		return nil, configErr("expect must be %q or %q, got %q", ExpectEcho, ExpectAny, c.Expect)
	}
	switch c.Driver {
	case "", DriverAuto:
		c.Driver = defaultDriver
		if c.TLS != nil {
			c.Driver = DriverGoroutine
		}
	case DriverGoroutine:
	case DriverEpoll:
		if defaultDriver != DriverEpoll {
			return nil, configErr("the epoll driver needs Linux")
		}
		if c.TLS != nil {
			return nil, configErr("TLS runs on the goroutine driver; the epoll driver has no TLS layer")
		}
	default:
		return nil, configErr("unknown driver %q: want auto, epoll or goroutine", c.Driver)
	}
	if c.Codec == nil {
		c.Codec = framing.Raw(0)
	}
	if c.ReplyCodec == nil {
		c.ReplyCodec = c.Codec
	}
	if c.Template != nil && c.Payload != nil {
		return nil, configErr("a payload and a template exclude each other")
	}
	switch c.ProxyHeader {
	case "", "v1", "v2":
	default:
		return nil, configErr("proxy header must be v1 or v2, not %q", c.ProxyHeader)
	}
	if c.ProxySource != "" {
		if c.ProxyHeader == "" {
			return nil, configErr("a proxy source needs a proxy header version")
		}
		ap, err := netip.ParseAddrPort(c.ProxySource)
		if err != nil {
			return nil, configErr("proxy source %q: want ip:port", c.ProxySource)
		}
		c.proxySrc = net.TCPAddrFromAddrPort(ap)
	}
	p, err := newProto(c)
	if err != nil {
		return nil, err
	}
	c.proto = p
	c.Size = p.msgLen

	c.cpus = allowedCPUs()
	c.workers = c.Workers
	if c.workers == 0 {
		c.workers = c.cpus
	}
	if n := max(c.Conns, 1); c.workers > n {
		c.workers = n
	}
	if c.Driver == DriverGoroutine {
		// Shards of the statistics, not threads; one per CPU keeps the
		// locks cold.
		c.workers = max(1, min(runtime.GOMAXPROCS(0), max(c.Conns, 1)))
	}
	return c, nil
}
