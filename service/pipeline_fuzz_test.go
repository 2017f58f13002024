package service

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// markConn is a fakeConn that also takes the partial-frame mark, as every
// engine's Conn does.
type markConn struct {
	fakeConn
	partial bool
}

func (c *markConn) PartialFrame(on bool) { c.partial = on }

// feedMarked drives a hello handler like feed, and also returns whether it
// left the partial-frame mark set.
func feedMarked(chunks ...[]byte) (out string, closedWrite, partial bool) {
	h := Hello()
	c := &markConn{}
	h.OnOpen(c)
	for _, ch := range chunks {
		h.OnMessage(c, bytes.Clone(ch))
	}
	partial = c.partial
	h.OnClose(c, nil)
	return normalize(c.out), c.closedWrite, partial
}

// cutAt splits in into reads at the points cuts picks (each byte a gap of
// 1 to 256 bytes), as a network might.
func cutAt(in, cuts []byte) [][]byte {
	var pieces [][]byte
	for i := 0; len(in) > 0; i++ {
		n := len(in)
		if i < len(cuts) {
			n = min(n, 1+int(cuts[i]))
		}
		pieces = append(pieces, in[:n])
		in = in[n:]
	}
	return pieces
}

// FuzzHelloPipeline drives the whole hello service the way an engine on
// raw framing does: any bytes, in reads cut where the fuzzer says. It
// checks that nothing panics; that the replies are the same however the
// input is cut (the Date header aside), and so is the partial-frame mark
// the frame timeout relies on; that the replies are a sequence of
// complete HTTP responses net/http reads; that nothing follows a 400 or a
// "Connection: close" reply; and, against net/http's request parser, that
// every request both accept is answered in the same order with the same
// HEAD-ness, and that when net/http reads the whole input as requests and
// hello rejects none, both count the same number — a disagreement there
// is the stuff of request smuggling. Seed corpus:
// testdata/fuzz/FuzzHelloPipeline.
func FuzzHelloPipeline(f *testing.F) {
	f.Add([]byte(pipeline), []byte{9, 200, 3, 0, 0, 40})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhelloHEAD / HTTP/1.1\r\nHost: x\r\n\r\n"), []byte{1, 1, 1})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), []byte{})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"), []byte{30})
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x"), []byte{2})
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		whole, wholeCW, wholePartial := feedMarked(in)
		got, cw, partial := feedMarked(cutAt(in, cuts)...)
		if got != whole || cw != wholeCW || partial != wholePartial {
			t.Fatalf("cut differently, the replies differ:\nwhole %q (closeWrite %v, partial %v)\n  cut %q (closeWrite %v, partial %v)",
				whole, wholeCW, wholePartial, got, cw, partial)
		}
		reqs, clean := netHTTPRequests(in)
		br := bufio.NewReader(strings.NewReader(got))
		oks, last := 0, ""
		for {
			if _, err := br.Peek(1); err != nil {
				break
			}
			if last == "400" || last == "close" {
				t.Fatalf("a reply after the last one: %q", got)
			}
			var req *http.Request
			if oks < len(reqs) {
				req = reqs[oks]
			}
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatalf("reply %d does not parse (%v): %q", oks, err, got)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusContinue:
				continue
			case http.StatusBadRequest:
				last = "400"
				continue
			case http.StatusOK:
			default:
				t.Fatalf("status %d", resp.StatusCode)
			}
			if resp.Close {
				last = "close"
			}
			if req != nil && req.Close != resp.Close && (req.ProtoMinor == 1 || !req.Close) {
				t.Fatalf("reply %d: close %v, net/http's request %d: close %v", oks, resp.Close, oks, req.Close)
			}
			oks++
		}
		if clean && last != "400" && !partial && oks < len(reqs) && last != "close" {
			t.Fatalf("net/http reads %d requests in the whole input, hello answered %d: %q", len(reqs), oks, in)
		}
	})
}

// netHTTPRequests parses in as a sequence of requests with net/http,
// skipping the empty lines before each that RFC 9112 allows (and net/http
// does not skip), reading each body. clean reports that the whole input
// was read that way.
func netHTTPRequests(in []byte) (reqs []*http.Request, clean bool) {
	br := bufio.NewReader(bytes.NewReader(in))
	for {
		for {
			b, err := br.Peek(2)
			if len(b) > 0 && b[0] == '\n' {
				br.Discard(1)
			} else if err == nil && b[0] == '\r' && b[1] == '\n' {
				br.Discard(2)
			} else {
				break
			}
		}
		if _, err := br.Peek(1); err != nil {
			return reqs, true
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return reqs, false
		}
		if len(req.TransferEncoding) > 0 {
			return reqs, false // hello refuses these outright
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return reqs, false
		}
		reqs = append(reqs, req)
	}
}
