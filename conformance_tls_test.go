package switchboard_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard"
	"switchboard/internal/testcert"
)

// The conformance suite's TLS variant: every case runs again with the
// model name suffixed "+tls". start, startOn and launch then serve TLS
// with one certificate made per test binary, and dial (and dialConn, for
// code without a *testing.T) speak TLS to any address such a server
// listens on. Cases that cannot apply over TLS are listed in tlsSkip.

const tlsSuffix = "+tls"

// tlsSkip names the cases the TLS variant skips, with the reason: on
// every model ("Case"), or on one ("model/Case").
var tlsSkip = map[string]string{
	"blocking/GracefulShutdown": "clients waiting in the blocking model's backlog cannot finish a handshake, " +
		"so they cannot write ahead into the kernel as plaintext clients do",
	"blocking/ShutdownNotice": "waits for OnOpen before the client writes; on blocking the suite's TLS dial leaves the handshake to the first write",
	"uring/SlowReaderBoundedMemory": "the uring engine cannot stop a multishot receive the moment reading pauses: " +
		"the kernel fills the loop's whole buffer ring (16 MiB) first, so the server holds what the client sent; " +
		"in the clear the check passes only because the echo's output reaches the kernel's socket buffers first, " +
		"over TLS it fails about half the time. An engine issue (backpressure on uring), not a TLS one",
}

// testCerts is the suite's CA, server and client certificates, made once.
var testCerts = sync.OnceValue(func() *testcert.Set {
	set, err := testcert.Generate(testcert.ECDSAP256)
	if err != nil {
		panic(err)
	}
	return set
})

// tlsAddrs holds the addresses TLS servers of the suite listen on.
var tlsAddrs sync.Map

// tlsSkipReason says why the TLS variant of model skips a case, if it does.
func tlsSkipReason(model, name string) (string, bool) {
	m, on := splitModel(model)
	if !on {
		return "", false
	}
	if why, ok := tlsSkip[m+"/"+name]; ok {
		return why, true
	}
	why, ok := tlsSkip[name]
	return why, ok
}

// splitModel strips the TLS variant's suffix: the model to run, and
// whether to run it over TLS.
func splitModel(model string) (string, bool) {
	return strings.CutSuffix(model, tlsSuffix)
}

// modelOptions turns a suite model name into server options.
func modelOptions(model string) []switchboard.Option {
	name, on := splitModel(model)
	opts := []switchboard.Option{switchboard.WithModel(name), switchboard.WithLoops(2)}
	if on {
		opts = append(opts, switchboard.WithTLS(testCerts().ServerConfig()))
	}
	return opts
}

// markTLS records that addr serves TLS, until the test ends.
func markTLS(t *testing.T, model, addr string) {
	if _, on := splitModel(model); on {
		name, _ := splitModel(model)
		tlsAddrs.Store(addr, name)
		t.Cleanup(func() { tlsAddrs.Delete(addr) })
	}
}

// dialConn connects to addr (switchboard's syntax), over TLS when a TLS
// server of the suite listens there. The TLS handshake happens with the
// first read or write, as the first segment does without TLS, so a
// blocking server's backlog behaves alike.
func dialConn(addr string, timeout time.Duration) (net.Conn, error) {
	network, address, err := switchboard.SplitAddr(addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout(network, address, timeout)
	if err != nil {
		return nil, err
	}
	return clientOver(addr, c), nil
}

// clientOver is c as the client side of addr's server: TLS when the
// server speaks it, else c itself.
func clientOver(addr string, c net.Conn) net.Conn {
	if _, on := tlsAddrs.Load(addr); on {
		return &tlsTestConn{tls.Client(c, testCerts().ClientConfig())}
	}
	return c
}

// dialProxied connects to addr as a load balancer would: header (a PROXY
// header) in the clear, then the connection's own stream, TLS when the
// server speaks it, as HAProxy sends PROXY v2 ahead of TLS passthrough.
// The header goes out with the first write (the first message, or the
// ClientHello), in one segment, so engines see it followed by more in the
// same read.
func dialProxied(t *testing.T, addr string, header []byte) net.Conn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	var c net.Conn = &headerConn{TCPConn: raw.(*net.TCPConn), header: header}
	if _, on := tlsAddrs.Load(addr); on {
		c = &tlsTestConn{tls.Client(c, testCerts().ClientConfig())}
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// headerConn sends header in front of the first write.
type headerConn struct {
	*net.TCPConn
	header []byte
}

func (c *headerConn) Write(p []byte) (int, error) {
	if c.header == nil {
		return c.TCPConn.Write(p)
	}
	b := append(c.header[:len(c.header):len(c.header)], p...)
	c.header = nil
	n, err := c.TCPConn.Write(b)
	return max(n-(len(b)-len(p)), 0), err
}

// handshake completes a client TLS handshake now, for cases that wait for
// OnOpen before writing; not on the blocking model, where a second
// connection's handshake waits for the first connection to end, as its
// plaintext data would wait in the backlog.
func handshake(addr string, c net.Conn) error {
	tc, ok := c.(*tlsTestConn)
	if m, _ := tlsAddrs.Load(addr); !ok || m == switchboard.ModelBlocking {
		return nil
	}
	return tc.Handshake()
}

// tlsTestConn is a client TLS connection whose CloseWrite does what the
// plaintext cases mean by it: close_notify, then the socket's FIN.
type tlsTestConn struct{ *tls.Conn }

func (c *tlsTestConn) CloseWrite() error {
	if err := c.Conn.CloseWrite(); err != nil {
		return err
	}
	return c.NetConn().(interface{ CloseWrite() error }).CloseWrite()
}

// closeWrite half-closes a connection of either kind.
func closeWrite(c net.Conn) error {
	return c.(interface{ CloseWrite() error }).CloseWrite()
}

// tcpConn is the socket under c, for socket options.
func tcpConn(c net.Conn) *net.TCPConn {
	if tc, ok := c.(*tlsTestConn); ok {
		return tc.NetConn().(*net.TCPConn)
	}
	return c.(*net.TCPConn)
}

// httpTransport is an HTTP transport for addr's server, and the URL
// scheme to use with it.
func httpTransport(addr string) (*http.Transport, string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	if _, on := tlsAddrs.Load(addr); on {
		tr.TLSClientConfig = testCerts().ClientConfig()
		return tr, "https://"
	}
	return tr, "http://"
}
