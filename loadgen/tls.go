package loadgen

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// TLS runs on the goroutine driver: each connection is crypto/tls over
// its net.Conn, the handshake done as part of connecting, and timed.
// (The epoll driver would need an event-driven TLS layer of its own; the
// goroutine driver is what a Go client would write, and what bench runs
// TLS on.)

// handshakes records the handshakes of one run.
type handshakes struct {
	mu   sync.Mutex
	hist *hdrhistogram.Histogram
}

func (h *handshakes) record(d time.Duration) {
	h.mu.Lock()
	if h.hist == nil {
		h.hist = newHist()
	}
	h.hist.RecordValue(max(int64(d), histMin))
	h.mu.Unlock()
}

// summary returns the figures, with the handshakes per second of a connect
// phase that lasted phase and completed connected of them.
func (h *handshakes) summary(connected int, phase time.Duration) *HandshakeStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hist == nil {
		return &HandshakeStats{}
	}
	hs := &HandshakeStats{Count: h.hist.TotalCount(), Latency: latency(h.hist)}
	if phase > 0 {
		hs.PerSec = float64(connected) / phase.Seconds()
	}
	return hs
}

// handshake runs the client handshake over nc within the connect timeout,
// closing nc if it fails.
func (d *netDriver) handshake(nc net.Conn) (net.Conn, error) {
	c := d.c
	tc := tls.Client(nc, d.tlsConfig())
	began := time.Now()
	tc.SetDeadline(began.Add(c.ConnectTimeout))
	err := tc.Handshake()
	tc.SetDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, err
	}
	d.hs.record(time.Since(began))
	return tc, nil
}

// tlsConfig is Config.TLS with the server's host as the name to verify,
// when the caller gave none and does not skip verification.
func (d *netDriver) tlsConfig() *tls.Config {
	d.tlsOnce.Do(func() {
		cfg := d.c.TLS
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify && d.c.network == "tcp" {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(d.c.address); err == nil {
				cfg.ServerName = host
			}
		}
		d.tls = cfg
	})
	return d.tls
}
