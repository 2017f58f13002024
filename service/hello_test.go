package service

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseHead(t *testing.T) {
	ok := []struct {
		in   string
		want head
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", head{minor: 1, keepAlive: true}},
		{"GET / HTTP/1.1\nHost: x\n\n", head{minor: 1, keepAlive: true}},
		{"\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", head{minor: 1, keepAlive: true}},
		{"HEAD /x?y=1 HTTP/1.1\r\nhost: x\r\n\r\n", head{head: 1, minor: 1, keepAlive: true}},
		{"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", head{minor: 1}},
		{"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n", head{minor: 1}},
		{"GET / HTTP/1.0\r\n\r\n", head{}},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", head{keepAlive: true}},
		{"GET / HTTP/1.0\r\nConnection:Keep-Alive\r\nConnection: close\r\n\r\n", head{}},
		{"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length:5 \r\n\r\nhello", head{minor: 1, keepAlive: true, contentLength: 5}},
		{"GET / HTTP/1.1\r\nHost:\r\nX-Empty:\r\nX-Tab:\tv\t\r\nX-Utf8: \xc3\xa9\r\n\r\n", head{minor: 1, keepAlive: true}},
		{"M-S.E~ARCH * HTTP/1.1\r\nHost: x\r\n\r\n", head{minor: 1, keepAlive: true}},
		{"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nab", head{minor: 1, keepAlive: true, expectContinue: true, contentLength: 2}},
	}
	for _, tt := range ok {
		h, n, err := parseHead([]byte(tt.in))
		wantN := len(tt.in)
		if tt.want.contentLength > 0 {
			wantN -= int(tt.want.contentLength)
		}
		if err != nil || n != wantN || h != tt.want {
			t.Errorf("parseHead(%q) = %+v, %d, %v; want %+v, %d", tt.in, h, n, err, tt.want, wantN)
		}
		// Every proper prefix of the head is incomplete.
		for i := range wantN {
			if _, n, err := parseHead([]byte(tt.in[:i])); n != 0 || err != nil {
				t.Errorf("parseHead(%q) = %d, %v; want incomplete", tt.in[:i], n, err)
			}
		}
	}

	bad := []struct {
		in   string
		want error
	}{
		{"GET\r\n\r\n", errRequestLine},
		{"GET /\r\n\r\n", errRequestLine},
		{"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", errRequestLine},
		{"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", errRequestLine},
		{" GET / HTTP/1.1\r\n", errRequestLine},
		{"G(T / HTTP/1.1\r\n", errRequestLine},
		{"GET /a\x7fb HTTP/1.1\r\n", errRequestLine},
		{"GET / http/1.1\r\n", errRequestLine},
		{"GET / HTTP/1.1x\r\n", errRequestLine},
		{"GET / HTTP/2.0\r\n", errVersion},
		{"GET / HTTP/1.2\r\n", errVersion},
		{"GET / HTTP/0.9\r\n", errVersion},
		{"GET / HTTP/1.1\rHost: x\r\n\r\n", errBareCR},
		{"GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", errBareCR},
		{"GET / HTTP/1.1\r\nHost : x\r\n\r\n", errHeaderLine},
		{"GET / HTTP/1.1\r\nHost x\r\n\r\n", errHeaderLine},
		{"GET / HTTP/1.1\r\n: x\r\n\r\n", errHeaderLine},
		{"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", errHeaderLine},
		{"GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", errHeaderLine},
		{"GET / HTTP/1.1\r\n\r\n", errHost},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", errHost},
		{"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", errHost},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", errContentLength},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", errContentLength},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", errContentLength},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n", errContentLength},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", errContentLength},
		{"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", errTransferCoding},
		{"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", maxHeadBytes) + "\r\n\r\n", errHeadTooLarge},
		{strings.Repeat("\r\n", maxHeadBytes/2), errHeadTooLarge},
	}
	for _, tt := range bad {
		h, n, err := parseHead([]byte(tt.in))
		if !errors.Is(err, tt.want) || n != 0 || h != (head{}) {
			t.Errorf("parseHead(%.60q) = %+v, %d, %v; want %v", tt.in, h, n, err, tt.want)
		}
	}

	// The size limit: a head of exactly maxHeadBytes is accepted, one byte
	// more is not.
	base := "GET / HTTP/1.1\r\nHost: x\r\nX: \r\n\r\n"
	exact := strings.Replace(base, "X: ", "X: "+strings.Repeat("a", maxHeadBytes-len(base)), 1)
	if _, n, err := parseHead([]byte(exact)); n != maxHeadBytes || err != nil {
		t.Errorf("head of %d bytes: n = %d, err = %v", len(exact), n, err)
	}
	over := strings.Replace(exact, "X: ", "X: a", 1)
	if _, _, err := parseHead([]byte(over)); !errors.Is(err, errHeadTooLarge) {
		t.Errorf("head of %d bytes: err = %v, want too large", len(over), err)
	}
	if _, n, err := parseHead([]byte(over[:maxHeadBytes-1])); n != 0 || err != nil {
		t.Errorf("prefix below the limit: n = %d, err = %v, want incomplete", n, err)
	}
}

func TestParseHeadNoAllocs(t *testing.T) {
	req := []byte("GET /plaintext HTTP/1.1\r\nHost: localhost\r\nUser-Agent: wrk\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
	if a := testing.AllocsPerRun(1000, func() { parseHead(req) }); a != 0 {
		t.Errorf("parseHead allocates %v times per call", a)
	}
}

// FuzzParseHead checks, for any input: no panic; n within bounds and only
// without an error; the head parsed from buf[:n] is the same; and any
// prefix that decides already decides the same way, so how the stream is
// split never matters. Heads parseHead accepts are compared with net/http.
// Each input is parsed with the real 8 KiB limit and with a small one
// (16 to 271 bytes, from lim), so the size limit is reached by short
// inputs, which the fuzzer can minimize quickly.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD / HTTP/1.0\nConnection: keep-alive\n\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\rX",
		"",
	} {
		f.Add([]byte(s), uint8(len(s)))
	}
	f.Fuzz(func(t *testing.T, buf []byte, lim uint8) {
		checkParseHead(t, buf, maxHeadBytes)
		checkParseHead(t, buf, 16+int(lim))
	})
}

func checkParseHead(t *testing.T, buf []byte, limit int) {
	t.Helper()
	h, n, err := parseHeadLimit(buf, limit)
	if n < 0 || n > len(buf) || n > limit {
		t.Fatalf("limit %d: n = %d for %d bytes", limit, n, len(buf))
	}
	if err != nil && (n != 0 || h != (head{})) {
		t.Fatalf("limit %d: error %v with n = %d, head %+v", limit, err, n, h)
	}
	if err == nil && n == 0 && len(buf) >= limit {
		t.Fatalf("incomplete at %d bytes, limit %d", len(buf), limit)
	}
	if n > 0 {
		if h.minor > 1 || h.head > 1 || h.contentLength < 0 {
			t.Fatalf("bad head %+v", h)
		}
		if h2, n2, err2 := parseHeadLimit(buf[:n], limit); h2 != h || n2 != n || err2 != nil {
			t.Fatalf("limit %d: on buf[:n]: %+v, %d, %v; on buf: %+v, %d", limit, h2, n2, err2, h, n)
		}
		compareNetHTTP(t, buf[:n], h)
	}
	// Prefixes: every one for short inputs; for longer ones a sample, and
	// those around the end of the head and the size limit. (Checking every
	// prefix of long inputs makes each run quadratic, and the fuzzer's
	// minimizer then spends the budget on it.)
	check := func(i int) {
		if i < 0 || i >= len(buf) {
			return
		}
		ph, pn, perr := parseHeadLimit(buf[:i], limit)
		if pn == 0 && perr == nil {
			return // undecided: more bytes may go either way
		}
		if ph != h || pn != n || !errors.Is(err, perr) {
			t.Fatalf("limit %d: prefix of %d bytes: %+v, %d, %v; whole: %+v, %d, %v", limit, i, ph, pn, perr, h, n, err)
		}
	}
	step := 1
	if len(buf) > 64 {
		step = len(buf)/32 + 1
		for _, i := range []int{n - 1, n - 2, limit - 1, limit, limit + 1} {
			check(i)
		}
	}
	for i := 0; i < len(buf); i += step {
		check(i)
	}
}

// compareNetHTTP checks a head parseHead accepted against net/http's
// parser. net/http accepts things parseHead rejects (it is stricter: Host,
// versions, Transfer-Encoding) and the reverse for request targets, which
// the hello service ignores; so when net/http fails there is nothing to
// compare. When both accept, they must agree on where the head ends, the
// method being HEAD, the version, keep-alive and the body length: a
// disagreement there is the stuff of request smuggling.
func compareNetHTTP(t testing.TB, headBytes []byte, h head) {
	t.Helper()
	// net/http does not skip the empty lines RFC 9112 lets a server skip.
	trimmed := headBytes
	for {
		if len(trimmed) > 0 && trimmed[0] == '\n' {
			trimmed = trimmed[1:]
		} else if len(trimmed) > 1 && trimmed[0] == '\r' && trimmed[1] == '\n' {
			trimmed = trimmed[2:]
		} else {
			break
		}
	}
	br := bufio.NewReader(bytes.NewReader(trimmed))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if rest := br.Buffered(); rest != 0 {
		t.Fatalf("net/http ends the head %d bytes earlier", rest)
	}
	if (req.Method == http.MethodHead) != (h.head == 1) || req.ProtoMinor != h.minor ||
		req.Close == h.keepAlive || req.ContentLength != h.contentLength {
		t.Fatalf("net/http: method %s, HTTP/1.%d, close %v, length %d; parseHead: %+v",
			req.Method, req.ProtoMinor, req.Close, req.ContentLength, h)
	}
}

var dateLine = regexp.MustCompile(`Date: [^\r]*\r\n`)

// normalize replaces the Date headers, which change every second.
func normalize(b []byte) string {
	return dateLine.ReplaceAllString(string(b), "Date: X\r\n")
}

const (
	ok11     = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: X\r\n\r\nHello, world!"
	ok10ka   = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: X\r\nConnection: keep-alive\r\n\r\nHello, world!"
	okClose  = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: X\r\nConnection: close\r\n\r\nHello, world!"
	head11   = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nDate: X\r\n\r\n"
	badReply = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nDate: X\r\nConnection: close\r\n\r\nBad Request"
)

// pipeline is a stream of requests that exercises every path: bodies,
// HEAD, HTTP/1.0 keep-alive, bare LF, and a final Connection: close after
// which input is ignored.
var pipeline = "GET / HTTP/1.1\r\nHost: a\r\n\r\n" +
	"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello=world" +
	"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" +
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" +
	"\r\nGET /lf HTTP/1.1\nHost: a\n\n" +
	"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" +
	"GET /ignored HTTP/1.1\r\nHost: a\r\n\r\n"

var pipelineReply = ok11 + ok11 + head11 + ok10ka + ok11 + okClose

// feed drives a hello handler with the chunks of a stream, as an engine
// would, and returns what it wrote and whether it shut down its write half.
func feed(chunks ...[]byte) (string, bool) {
	h := Hello()
	c := &fakeConn{}
	h.OnOpen(c)
	for _, ch := range chunks {
		h.OnMessage(c, bytes.Clone(ch)) // a fresh slice, as engines reuse theirs
	}
	h.OnClose(c, nil)
	return normalize(c.out), c.closedWrite
}

func TestHelloSplitAtEveryByte(t *testing.T) {
	in := []byte(pipeline)
	if got, cw := feed(in); got != pipelineReply || !cw {
		t.Fatalf("whole stream:\n got %q, closeWrite %v\nwant %q", got, cw, pipelineReply)
	}
	for i := range in {
		if got, cw := feed(in[:i], in[i:]); got != pipelineReply || !cw {
			t.Fatalf("split at %d:\n got %q\nwant %q", i, got, pipelineReply)
		}
	}
	for i := 0; i < len(in); i += 7 {
		for j := i; j < len(in); j += 5 {
			if got, _ := feed(in[:i], in[i:j], in[j:]); got != pipelineReply {
				t.Fatalf("split at %d and %d:\n got %q\nwant %q", i, j, got, pipelineReply)
			}
		}
	}
	var bytewise [][]byte
	for i := range in {
		bytewise = append(bytewise, in[i:i+1])
	}
	if got, _ := feed(bytewise...); got != pipelineReply {
		t.Fatalf("one byte at a time:\n got %q\nwant %q", got, pipelineReply)
	}
}

func TestHelloStateReleased(t *testing.T) {
	h := Hello()
	c := &fakeConn{}
	h.OnOpen(c)
	req := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	h.OnMessage(c, []byte(req[:10]))
	if c.Value() == nil {
		t.Fatal("no state kept for a partial head")
	}
	h.OnMessage(c, []byte(req[10:]))
	if c.Value() != nil {
		t.Fatal("state kept after the head completed")
	}
	h.OnMessage(c, []byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab"))
	if c.Value() == nil {
		t.Fatal("no state kept for a pending body")
	}
	h.OnMessage(c, []byte("cd"+req))
	if c.Value() != nil {
		t.Fatal("state kept after the body was skipped")
	}
	if got, want := normalize(c.out), ok11+ok11+ok11; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestHelloNoAllocs(t *testing.T) {
	h := Hello()
	c := &fakeConn{out: make([]byte, 0, 1<<20)}
	reqs := []byte(strings.Repeat("GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n", 16))
	a := testing.AllocsPerRun(1000, func() {
		c.out = c.out[:0]
		h.OnMessage(c, reqs)
	})
	if a != 0 {
		t.Errorf("OnMessage allocates %v times per read of 16 pipelined requests", a)
	}
	if !strings.HasPrefix(normalize(c.out), ok11+ok11) {
		t.Fatalf("unexpected reply %q", c.out)
	}
}

func TestHelloBadRequestsFake(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1\r\n\r\n",            // no Host
		"GET / HTTP/9.9\r\nHost: a\r\n\r\n", // version
		"garbage\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("y", 9000),
	} {
		// A good request first, then the bad one, then one that must be
		// ignored.
		stream := "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + in + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
		got, cw := feed([]byte(stream))
		if want := ok11 + badReply; got != want || !cw {
			t.Errorf("%.40q: got %q, closeWrite %v; want %q", in, got, cw, want)
		}
	}
}

func TestHelloIgnoresThenClosesAfterLastReply(t *testing.T) {
	h := Hello()
	c := &fakeConn{}
	h.OnMessage(c, []byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
	if !c.closedWrite || c.closed {
		t.Fatalf("closeWrite %v, closed %v", c.closedWrite, c.closed)
	}
	junk := make([]byte, 16<<10)
	for range maxIgnored / len(junk) {
		h.OnMessage(c, junk)
	}
	if c.closed {
		t.Fatal("closed before the limit")
	}
	h.OnMessage(c, junk)
	if !c.closed {
		t.Fatal("not closed after ignoring more than the limit")
	}
	h.OnClose(c, nil)
	if c.Value() != nil {
		t.Fatal("state left after OnClose")
	}
}

// rawExchange sends in on a new connection, writing it in pieces of size
// step, and returns everything the server sends until it closes.
func rawExchange(t *testing.T, addr, in string, step int) string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < len(in); i += step {
			if _, err := io.WriteString(nc, in[i:min(i+step, len(in))]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	out, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	return normalize(out)
}

func TestHelloPipelinedOverTCP(t *testing.T) {
	forModels(t, false, func(t *testing.T, model string) {
		addr, _ := startServer(t, model, Hello())
		for _, step := range []int{len(pipeline), 1, 2, 3, 13, 64} {
			if got := rawExchange(t, addr, pipeline, step); got != pipelineReply {
				t.Fatalf("in pieces of %d:\n got %q\nwant %q", step, got, pipelineReply)
			}
		}
	})
}

func TestHelloBadRequestsOverTCP(t *testing.T) {
	forModels(t, false, func(t *testing.T, model string) {
		addr, _ := startServer(t, model, Hello())
		for _, in := range []string{
			"GET / HTTP/1.1\r\n\r\n",
			"GET / HTTP/3\r\nHost: a\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: a\r\n bad fold\r\n\r\n",
			"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", // TLS hello
			"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("y", 20000) + "\r\n\r\n",
		} {
			stream := "GET / HTTP/1.1\r\nHost: a\r\n\r\n" + in + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
			if got, want := rawExchange(t, addr, stream, 4096), ok11+badReply; got != want {
				t.Errorf("%.40q:\n got %q\nwant %q", in, got, want)
			}
		}
	})
}

func TestHelloHTTP10(t *testing.T) {
	forModels(t, false, func(t *testing.T, model string) {
		addr, _ := startServer(t, model, Hello())
		// Without keep-alive the server replies with Connection: close and
		// ends the exchange.
		if got := rawExchange(t, addr, "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", 1024); got != okClose {
			t.Fatalf("got %q, want %q", got, okClose)
		}
		// With keep-alive it keeps the connection.
		in := "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n"
		want := ok10ka + strings.Replace(head11, "\r\n\r\n", "\r\nConnection: keep-alive\r\n\r\n", 1) + okClose
		if got := rawExchange(t, addr, in, 1024); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

func TestHelloNetHTTPClient(t *testing.T) {
	forModels(t, false, func(t *testing.T, model string) {
		addr, srv := startServer(t, model, Hello())
		tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		reused := 0
		for i := range 10 {
			method := http.MethodGet
			var body io.Reader
			switch i % 3 {
			case 1:
				method = http.MethodHead
			case 2:
				method, body = http.MethodPost, strings.NewReader(strings.Repeat("x", 100*i))
			}
			req, err := http.NewRequest(method, "http://"+addr+"/plaintext", body)
			if err != nil {
				t.Fatal(err)
			}
			trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			}}
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("request %d: body: %v", i, err)
			}
			wantBody := "Hello, world!"
			if method == http.MethodHead {
				wantBody = ""
			}
			if resp.StatusCode != 200 || string(b) != wantBody || resp.ContentLength != 13 ||
				resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("Date") == "" {
				t.Fatalf("request %d: %s %v %q", i, resp.Status, resp.Header, b)
			}
		}
		if reused != 9 {
			t.Errorf("%d of 9 requests reused the connection", reused)
		}
		if acc := srv.Stats().Accepted; acc != 1 {
			t.Errorf("server accepted %d connections, want 1", acc)
		}

		// Connection: close from the client: the reply says close and the
		// server ends the connection.
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Close = true
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		// net/http turns "Connection: close" into resp.Close.
		if !resp.Close {
			t.Errorf("Connection: close not honoured: %v", resp.Header)
		}
	})
}

func TestHelloExpectContinue(t *testing.T) {
	in := "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc" +
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"
	if got, _ := feed([]byte(in)); got != "HTTP/1.1 100 Continue\r\n\r\n"+ok11+ok11 {
		t.Fatalf("got %q", got)
	}
	forModels(t, false, func(t *testing.T, model string) {
		addr, _ := startServer(t, model, Hello())
		tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for i := range 3 {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(strings.Repeat("b", 5000)))
			req.Header.Set("Expect", "100-continue")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "Hello, world!" {
				t.Fatalf("request %d: %s %q", i, resp.Status, b)
			}
		}
	})
}

func TestHelloConnectionClose(t *testing.T) {
	forModels(t, false, func(t *testing.T, model string) {
		addr, _ := startServer(t, model, Hello())
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(nc, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "Hello, world!" || !resp.Close {
			t.Fatalf("body %q, close %v", b, resp.Close)
		}
		// The server has shut down its write half: EOF, while our writes
		// are still accepted (and ignored).
		if _, err := fmt.Fprint(nc, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatalf("write after close reply: %v", err)
		}
		if n, err := nc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("read after close reply = %d, %v; want EOF", n, err)
		}
	})
}

func BenchmarkHelloPipelined(b *testing.B) {
	h := Hello()
	c := &fakeConn{out: make([]byte, 0, 1<<20)}
	reqs := []byte(strings.Repeat("GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n", 16))
	b.SetBytes(int64(len(reqs)))
	b.ReportAllocs()
	for b.Loop() {
		c.out = c.out[:0]
		h.OnMessage(c, reqs)
	}
}
