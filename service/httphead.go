package service

import (
	"bytes"
	"errors"
)

// head is what the responder needs to know of a request head.
type head struct {
	head           int   // 1 for a HEAD request (no body in the reply), else 0
	minor          int   // HTTP/1.minor: 0 or 1
	keepAlive      bool  // the connection persists after the reply
	expectContinue bool  // "Expect: 100-continue"
	contentLength  int64 // body bytes that follow the head
}

// Errors of parseHead. Every one gets a 400 reply.
var (
	errHeadTooLarge   = errors.New("http: request head too large")
	errRequestLine    = errors.New("http: malformed request line")
	errVersion        = errors.New("http: unsupported HTTP version")
	errHeaderLine     = errors.New("http: malformed header line")
	errBareCR         = errors.New("http: CR not followed by LF")
	errHost           = errors.New("http: HTTP/1.1 request without exactly one Host header")
	errContentLength  = errors.New("http: bad or conflicting Content-Length")
	errTransferCoding = errors.New("http: Transfer-Encoding is not supported")
)

// parseHead parses the request head at the start of buf. It returns the
// head and its length n, through the empty line that ends it; n == 0 with
// a nil error means the head is not complete yet and more bytes are
// needed. The function is pure and allocates nothing.
//
// Only complete lines are judged, so an error is reported as soon as the
// line that causes it is complete, and the result for a prefix of buf that
// already decides (n > 0 or an error) is the result for buf: splitting the
// stream differently never changes the outcome. A head that has not ended
// within its first maxHeadBytes bytes is errHeadTooLarge.
//
// The rules, from RFC 9112 with the choices left open made strict:
//   - lines end in CRLF or a bare LF; a CR anywhere else is an error;
//   - empty lines before the request line are skipped (they count toward
//     the size limit);
//   - request line: method (a token), one space, target (visible ASCII or
//     bytes >= 0x80, no spaces), one space, "HTTP/1.0" or "HTTP/1.1"
//     exactly; another well-formed version is errVersion;
//   - header line: name (a token, no space before the colon), colon,
//     value with optional spaces and tabs around it, no control bytes but
//     tab; a line starting with a space or tab (obs-fold) is an error;
//   - Connection is a comma-separated list; "close" and "keep-alive" are
//     recognised, case-insensitively;
//   - Content-Length is decimal digits only (at most 18); repeats must
//     agree;
//   - Transfer-Encoding in any form is errTransferCoding;
//   - "Expect: 100-continue" is recognised; other expectations are ignored;
//   - HTTP/1.1 needs exactly one Host header; HTTP/1.0 at most one.
func parseHead(buf []byte) (h head, n int, err error) {
	return parseHeadLimit(buf, maxHeadBytes)
}

// parseHeadLimit is parseHead with the size limit as a parameter, so the
// fuzz target can reach the limit with short inputs.
func parseHeadLimit(buf []byte, limit int) (h head, n int, err error) {
	scan := buf
	if len(scan) > limit {
		scan = scan[:limit]
	}
	pos := 0
	var line []byte
	// The request line, after any empty lines.
	for {
		var ok bool
		if line, pos, ok, err = nextLine(scan, pos); err != nil {
			return head{}, 0, err
		}
		if !ok {
			return head{}, 0, incomplete(buf, limit)
		}
		if len(line) > 0 {
			break
		}
	}
	if h, err = parseRequestLine(line); err != nil {
		return head{}, 0, err
	}
	var (
		hosts             int
		sawLength         bool
		closeTok, keepTok bool
	)
	for {
		var ok bool
		if line, pos, ok, err = nextLine(scan, pos); err != nil {
			return head{}, 0, err
		}
		if !ok {
			return head{}, 0, incomplete(buf, limit)
		}
		if len(line) == 0 {
			break
		}
		name, value, err := splitHeader(line)
		if err != nil {
			return head{}, 0, err
		}
		switch {
		case equalFold(name, "host"):
			hosts++
			if hosts > 1 {
				return head{}, 0, errHost
			}
		case equalFold(name, "connection"):
			c, k := connectionTokens(value)
			closeTok = closeTok || c
			keepTok = keepTok || k
		case equalFold(name, "content-length"):
			l, ok := parseLength(value)
			if !ok || (sawLength && l != h.contentLength) {
				return head{}, 0, errContentLength
			}
			sawLength = true
			h.contentLength = l
		case equalFold(name, "transfer-encoding"):
			return head{}, 0, errTransferCoding
		case equalFold(name, "expect"):
			h.expectContinue = h.expectContinue || equalFold(value, "100-continue")
		}
	}
	if h.minor == 1 && hosts != 1 {
		return head{}, 0, errHost
	}
	if h.minor == 1 {
		h.keepAlive = !closeTok
	} else {
		h.keepAlive = keepTok && !closeTok
	}
	return h, pos, nil
}

// incomplete is the verdict when the first limit bytes of buf hold no
// complete head: wait for more, unless the limit has been reached.
func incomplete(buf []byte, limit int) error {
	if len(buf) >= limit {
		return errHeadTooLarge
	}
	return nil
}

// nextLine returns the line starting at pos without its line end, and
// where the next line starts. ok is false when no line end follows yet.
func nextLine(buf []byte, pos int) (line []byte, next int, ok bool, err error) {
	rest := buf[pos:]
	lf := bytes.IndexByte(rest, '\n')
	search := rest
	if lf >= 0 {
		search = rest[:lf]
	}
	// A CR is allowed only right before the LF.
	if cr := bytes.IndexByte(search, '\r'); cr >= 0 {
		switch {
		case lf >= 0 && cr == lf-1:
			return rest[:cr], pos + lf + 1, true, nil
		case lf < 0 && cr == len(rest)-1:
			return nil, 0, false, nil // the LF may be next
		}
		return nil, 0, false, errBareCR
	}
	if lf < 0 {
		return nil, 0, false, nil
	}
	return rest[:lf], pos + lf + 1, true, nil
}

// parseRequestLine checks "METHOD SP TARGET SP HTTP/1.x".
func parseRequestLine(line []byte) (head, error) {
	i := 0
	for i < len(line) && isTchar(line[i]) {
		i++
	}
	if i == 0 || i == len(line) || line[i] != ' ' {
		return head{}, errRequestLine
	}
	method := line[:i]
	j := i + 1
	for j < len(line) && line[j] > ' ' && line[j] != 0x7f {
		j++
	}
	if j == i+1 || j == len(line) || line[j] != ' ' {
		return head{}, errRequestLine
	}
	var h head
	switch v := line[j+1:]; string(v) { // no allocation: compared in place
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
		h.minor = 0
	default:
		if len(v) == 8 && string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]) {
			return head{}, errVersion
		}
		return head{}, errRequestLine
	}
	if string(method) == "HEAD" {
		h.head = 1
	}
	return h, nil
}

// splitHeader splits "Name: value" and checks both parts.
func splitHeader(line []byte) (name, value []byte, err error) {
	i := 0
	for i < len(line) && isTchar(line[i]) {
		i++
	}
	if i == 0 || i == len(line) || line[i] != ':' {
		return nil, nil, errHeaderLine
	}
	name, value = line[:i], line[i+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	for _, b := range value {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return nil, nil, errHeaderLine
		}
	}
	return name, value, nil
}

// connectionTokens reports whether a Connection value lists "close" and
// "keep-alive".
func connectionTokens(v []byte) (closeTok, keepAlive bool) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		switch {
		case equalFold(tok, "close"):
			closeTok = true
		case equalFold(tok, "keep-alive"):
			keepAlive = true
		}
	}
	return closeTok, keepAlive
}

// parseLength parses a Content-Length value: 1 to 18 decimal digits.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, b := range v {
		if !isDigit(b) {
			return 0, false
		}
		n = n*10 + int64(b-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with lower, which is lower-case ASCII, ignoring
// ASCII case.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// isTchar reports whether b may appear in a token (RFC 9110 §5.6.2).
func isTchar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}
