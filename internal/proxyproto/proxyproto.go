// Package proxyproto parses the header of the HAProxy PROXY protocol,
// versions 1 (text) and 2 (binary), that a load balancer sends first on a
// connection to pass on the client's real address.
//
// It is a pure parser over a byte slice: no I/O. The caller reads into a
// buffer and calls Parse until it returns a header (n > 0) or an error,
// then treats buf[n:] as the start of the application data. A header is at
// most MaxHeaderLen bytes, and anything that cannot become a valid header
// is rejected as soon as enough bytes are in to tell.
//
// Reference: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// ErrBadHeader is wrapped by every error Parse returns: the connection
// does not begin with a valid PROXY protocol header.
var ErrBadHeader = errors.New("switchboard: bad PROXY protocol header")

const (
	// MaxV1Len is the longest version 1 header, "\r\n" included, as the
	// protocol defines it.
	MaxV1Len = 107
	// MaxV2DataLen is the largest address-and-TLV block accepted in a
	// version 2 header. The protocol allows 65535 bytes; real senders use
	// a few hundred at most (TLVs for TLS details, cloud link IDs...), so
	// a larger length is rejected before its bytes are waited for.
	MaxV2DataLen = 4096
	// MaxHeaderLen is the longest header Parse accepts: a version 2
	// header with MaxV2DataLen bytes of addresses and TLVs.
	MaxHeaderLen = v2HeaderLen + MaxV2DataLen
)

// Header is a parsed PROXY protocol header.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Local is true when the header carries no client address: a version
	// 2 LOCAL command (a health check from the proxy itself), or a version
	// 1 "UNKNOWN" or version 2 AF_UNSPEC connection. The connection's own
	// socket addresses then stay in force, and Src and Dst are nil.
	Local bool
	// Src and Dst are the client's address and the address it connected
	// to. They are *net.TCPAddr for TCP over IPv4 or IPv6 and, in version
	// 2 only, *net.UnixAddr (Net "unix") for a stream Unix socket; an
	// abstract socket name is given with a leading '@'.
	Src, Dst net.Addr
}

const (
	v1Prefix    = "PROXY "
	v2Sig       = "\r\n\r\n\x00\r\nQUIT\n"
	v2HeaderLen = 16

	v2CmdLocal = 0x0
	v2CmdProxy = 0x1

	famUnspec = 0x00
	famTCP4   = 0x11
	famTCP6   = 0x21
	famUnix   = 0x31

	unixPathLen = 108
)

// Parse parses the PROXY protocol header at the start of buf. It returns
// the header and its length n. When buf is a valid but incomplete start of
// a header it returns n == 0 and a nil error: the caller reads more and
// calls again with the longer buffer. Anything that cannot become a valid
// header returns an error wrapping ErrBadHeader, as early as possible: at
// the first byte that is neither "PROXY " nor the version 2 signature, a
// version 1 line with no "\r\n" in MaxV1Len bytes, a version 2 length
// above MaxV2DataLen, a bad version, command or address family, or
// malformed addresses, ports or TLVs.
//
// Version 2 TLVs are checked for length and skipped. UDP (AF_INET and
// AF_INET6 datagram) and Unix datagram families are rejected, since the
// proxied connection is a stream; a LOCAL command is accepted whatever its
// family and its address block is skipped unread.
//
// Parse does not allocate except for the returned addresses.
func Parse(buf []byte) (h Header, n int, err error) {
	if len(buf) == 0 {
		return Header{}, 0, nil
	}
	switch buf[0] {
	case v1Prefix[0]:
		return parseV1(buf)
	case v2Sig[0]:
		return parseV2(buf)
	}
	return Header{}, 0, badf("starts with %q, neither PROXY nor the version 2 signature", buf[0])
}

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadHeader, fmt.Sprintf(format, args...))
}

// hasPrefixPart reports whether b and prefix agree on their common length.
func hasPrefixPart(b []byte, prefix string) bool {
	k := min(len(b), len(prefix))
	return string(b[:k]) == prefix[:k]
}

// ---------------------------------------------------------------- v1

// parseV1 parses "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" and friends.
func parseV1(buf []byte) (Header, int, error) {
	if !hasPrefixPart(buf, v1Prefix) {
		return Header{}, 0, badf("version 1 header does not start with %q", v1Prefix)
	}
	scan := buf[:min(len(buf), MaxV1Len)]
	end := bytes.IndexByte(scan, '\n')
	if end < 0 {
		if len(scan) == MaxV1Len {
			return Header{}, 0, badf("version 1 header has no \\r\\n in %d bytes", MaxV1Len)
		}
		// Reject what cannot become a valid line before it is complete.
		if len(buf) > len(v1Prefix) {
			rest := buf[len(v1Prefix):]
			switch {
			case hasPrefixPart(rest, "UNKNOWN"):
				// Anything may follow "UNKNOWN ".
				if len(rest) > len("UNKNOWN") && rest[7] != ' ' && rest[7] != '\r' {
					return Header{}, 0, badf("version 1 protocol is not TCP4, TCP6 or UNKNOWN")
				}
			case hasPrefixPart(rest, "TCP4 "), hasPrefixPart(rest, "TCP6 "):
				for i, b := range rest[min(len(rest), len("TCP4 ")):] {
					if !isAddrByte(b) && !(b == '\r' && i == len(rest)-len("TCP4 ")-1) {
						return Header{}, 0, badf("version 1 header has byte %q", b)
					}
				}
			default:
				return Header{}, 0, badf("version 1 protocol is not TCP4, TCP6 or UNKNOWN")
			}
		}
		return Header{}, 0, nil
	}
	if end == 0 || buf[end-1] != '\r' {
		return Header{}, 0, badf("version 1 header ends in \\n without \\r")
	}
	line := buf[len(v1Prefix) : end-1]
	n := end + 1

	proto, line := cut(line)
	switch string(proto) {
	case "UNKNOWN":
		// Whatever follows is to be ignored.
		return Header{Version: 1, Local: true}, n, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, 0, badf("version 1 protocol %q is not TCP4, TCP6 or UNKNOWN", proto)
	}
	var src, dst, sport, dport []byte
	src, line = cut(line)
	dst, line = cut(line)
	sport, line = cut(line)
	dport, line = cut(line)
	if line != nil {
		return Header{}, 0, badf("version 1 header has fields after the ports")
	}
	a := new(addrPair)
	var ok1, ok2 bool
	if proto[3] == '4' {
		ok1, ok2 = parseIPv4(src, a.ip[0:4]), parseIPv4(dst, a.ip[16:20])
		a.src.IP, a.dst.IP = a.ip[0:4:4], a.ip[16:20:20]
	} else {
		ok1, ok2 = parseIPv6(src, a.ip[0:16]), parseIPv6(dst, a.ip[16:32])
		a.src.IP, a.dst.IP = a.ip[0:16:16], a.ip[16:32:32]
	}
	if !ok1 || !ok2 {
		return Header{}, 0, badf("version 1 %s addresses %q %q are malformed", proto, src, dst)
	}
	var ok bool
	if a.src.Port, ok = parsePort(sport); !ok {
		return Header{}, 0, badf("version 1 source port %q is malformed", sport)
	}
	if a.dst.Port, ok = parsePort(dport); !ok {
		return Header{}, 0, badf("version 1 destination port %q is malformed", dport)
	}
	return Header{Version: 1, Src: &a.src, Dst: &a.dst}, n, nil
}

// isAddrByte reports whether b may appear in the addresses and ports of a
// version 1 TCP4 or TCP6 line.
func isAddrByte(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' ||
		b == '.' || b == ':' || b == ' '
}

// addrPair holds both addresses of a header in one allocation.
type addrPair struct {
	src, dst net.TCPAddr
	ip       [32]byte
}

// cut splits the field before the first space off line. rest is nil when
// there was no space.
func cut(line []byte) (field, rest []byte) {
	for i, b := range line {
		if b == ' ' {
			return line[:i], line[i+1:]
		}
	}
	return line, nil
}

// parsePort parses a decimal port without sign or leading zeros.
func parsePort(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	p := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		p = p*10 + int(c-'0')
	}
	return p, p <= 65535
}

// parseIPv4 parses dotted-decimal b into out[:4]: four decimal numbers up
// to 255 without leading zeros.
func parseIPv4(b []byte, out []byte) bool {
	fields := 0
	for len(b) > 0 {
		if fields == 4 {
			return false
		}
		v, digits := 0, 0
		for digits < len(b) && b[digits] >= '0' && b[digits] <= '9' {
			v = v*10 + int(b[digits]-'0')
			digits++
			if digits > 3 {
				return false
			}
		}
		if digits == 0 || v > 255 || (digits > 1 && b[0] == '0') {
			return false
		}
		out[fields] = byte(v)
		fields++
		b = b[digits:]
		if len(b) > 0 {
			if b[0] != '.' || len(b) == 1 {
				return false
			}
			b = b[1:]
		}
	}
	return fields == 4
}

// parseIPv6 parses b, in any RFC 4291 text form ("::" compression and a
// dotted IPv4 tail included, no zone), into out[:16].
func parseIPv6(b []byte, out []byte) bool {
	ellipsis := -1 // index in out where "::" stands
	i := 0         // bytes of out filled
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		ellipsis = 0
		b = b[2:]
		if len(b) == 0 {
			clear(out[:16])
			return true
		}
	}
	for i < 16 {
		// One group: up to 4 hex digits, or a dotted IPv4 tail.
		v, digits := 0, 0
		for digits < len(b) && digits < 5 {
			h := hexVal(b[digits])
			if h < 0 {
				break
			}
			v = v<<4 | h
			digits++
		}
		if digits < len(b) && b[digits] == '.' {
			if i > 12 || !parseIPv4(b, out[i:i+4]) {
				return false
			}
			i += 4
			b = nil
			break
		}
		if digits == 0 || digits > 4 {
			return false
		}
		out[i], out[i+1] = byte(v>>8), byte(v)
		i += 2
		b = b[digits:]
		if len(b) == 0 {
			break
		}
		if b[0] != ':' {
			return false
		}
		b = b[1:]
		switch {
		case len(b) > 0 && b[0] == ':':
			if ellipsis >= 0 {
				return false // a second "::"
			}
			ellipsis = i
			b = b[1:]
		case len(b) == 0:
			return false // a trailing single ':'
		}
		if len(b) == 0 {
			break
		}
	}
	if len(b) != 0 {
		return false
	}
	if i < 16 {
		if ellipsis < 0 {
			return false
		}
		// Move what followed "::" to the end and zero the gap.
		gap := 16 - i
		copy(out[ellipsis+gap:16], out[ellipsis:i])
		clear(out[ellipsis : ellipsis+gap])
	} else if ellipsis >= 0 {
		return false // "::" must stand for at least one group
	}
	return true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// ---------------------------------------------------------------- v2

// parseV2 parses the binary header: the 12-byte signature, version and
// command, family and protocol, a 2-byte length, then the addresses and
// TLVs.
func parseV2(buf []byte) (Header, int, error) {
	if !hasPrefixPart(buf, v2Sig) {
		return Header{}, 0, badf("bad version 2 signature")
	}
	if len(buf) <= len(v2Sig) {
		return Header{}, 0, nil
	}
	verCmd := buf[12]
	if verCmd>>4 != 2 {
		return Header{}, 0, badf("version 2 header has version %d", verCmd>>4)
	}
	cmd := verCmd & 0xf
	if cmd != v2CmdLocal && cmd != v2CmdProxy {
		return Header{}, 0, badf("version 2 header has command %d", cmd)
	}
	if len(buf) < 14 {
		return Header{}, 0, nil
	}
	fam := buf[13]
	var addrLen int
	if cmd == v2CmdProxy {
		switch fam {
		case famUnspec:
		case famTCP4:
			addrLen = 12
		case famTCP6:
			addrLen = 36
		case famUnix:
			addrLen = 2 * unixPathLen
		default:
			return Header{}, 0, badf("version 2 address family and protocol 0x%02x not supported", fam)
		}
	}
	if len(buf) < v2HeaderLen {
		return Header{}, 0, nil
	}
	dataLen := int(binary.BigEndian.Uint16(buf[14:16]))
	if dataLen > MaxV2DataLen {
		return Header{}, 0, badf("version 2 header length %d > %d", dataLen, MaxV2DataLen)
	}
	if dataLen < addrLen {
		return Header{}, 0, badf("version 2 header length %d too short for family 0x%02x", dataLen, fam)
	}
	n := v2HeaderLen + dataLen
	if len(buf) < n {
		return Header{}, 0, nil
	}
	if cmd == v2CmdLocal || fam == famUnspec {
		return Header{Version: 2, Local: true}, n, nil
	}
	data := buf[v2HeaderLen:n]
	if err := checkTLVs(data[addrLen:]); err != nil {
		return Header{}, 0, err
	}
	h := Header{Version: 2}
	switch fam {
	case famTCP4:
		a := new(addrPair)
		copy(a.ip[:], data[0:4])
		copy(a.ip[16:], data[4:8])
		a.src = net.TCPAddr{IP: a.ip[0:4:4], Port: int(binary.BigEndian.Uint16(data[8:10]))}
		a.dst = net.TCPAddr{IP: a.ip[16:20:20], Port: int(binary.BigEndian.Uint16(data[10:12]))}
		h.Src, h.Dst = &a.src, &a.dst
	case famTCP6:
		a := new(addrPair)
		copy(a.ip[:], data[0:32])
		a.src = net.TCPAddr{IP: a.ip[0:16:16], Port: int(binary.BigEndian.Uint16(data[32:34]))}
		a.dst = net.TCPAddr{IP: a.ip[16:32:32], Port: int(binary.BigEndian.Uint16(data[34:36]))}
		h.Src, h.Dst = &a.src, &a.dst
	case famUnix:
		h.Src = &net.UnixAddr{Name: unixName(data[:unixPathLen]), Net: "unix"}
		h.Dst = &net.UnixAddr{Name: unixName(data[unixPathLen : 2*unixPathLen]), Net: "unix"}
	}
	return h, n, nil
}

// checkTLVs checks that b is a sequence of whole TLVs (type, 2-byte
// length, value).
func checkTLVs(b []byte) error {
	for len(b) > 0 {
		if len(b) < 3 {
			return badf("version 2 TLV header cut short")
		}
		l := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b)-3 < l {
			return badf("version 2 TLV 0x%02x of %d bytes overruns the header", b[0], l)
		}
		b = b[3+l:]
	}
	return nil
}

// unixName turns a sun_path field into a name: the bytes before the first
// NUL, or for a Linux abstract socket (a leading NUL) "@" and the name
// with its trailing NULs removed.
func unixName(p []byte) string {
	if p[0] == 0 {
		end := len(p)
		for end > 1 && p[end-1] == 0 {
			end--
		}
		if end == 1 {
			return ""
		}
		return "@" + string(p[1:end])
	}
	for i, c := range p {
		if c == 0 {
			return string(p[:i])
		}
	}
	return string(p)
}
