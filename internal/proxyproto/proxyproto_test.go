package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a version 2 header.
func v2(verCmd, fam byte, data []byte) []byte {
	b := append([]byte(v2Sig), verCmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

func v2tcp4(src, dst string, sport, dport uint16, tlvs []byte) []byte {
	var d []byte
	d = append(d, netip.MustParseAddr(src).AsSlice()...)
	d = append(d, netip.MustParseAddr(dst).AsSlice()...)
	d = binary.BigEndian.AppendUint16(d, sport)
	d = binary.BigEndian.AppendUint16(d, dport)
	return v2(0x21, famTCP4, append(d, tlvs...))
}

func v2tcp6(src, dst string, sport, dport uint16, tlvs []byte) []byte {
	var d []byte
	d = append(d, netip.MustParseAddr(src).AsSlice()...)
	d = append(d, netip.MustParseAddr(dst).AsSlice()...)
	d = binary.BigEndian.AppendUint16(d, sport)
	d = binary.BigEndian.AppendUint16(d, dport)
	return v2(0x21, famTCP6, append(d, tlvs...))
}

func v2unix(src, dst string) []byte {
	d := make([]byte, 2*unixPathLen)
	copy(d, src)
	copy(d[unixPathLen:], dst)
	return v2(0x21, famUnix, d)
}

func tlv(typ byte, val string) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint16(b, uint16(len(val)))
	return append(b, val...)
}

func tcp(addr string) net.Addr {
	ap := netip.MustParseAddrPort(addr)
	return &net.TCPAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
}

func sameAddr(a, b net.Addr) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Network() == b.Network() && a.String() == b.String()
}

var longV6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

var valid = []struct {
	name string
	hdr  string
	want Header
}{
	{"v1 tcp4", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
		Header{Version: 1, Src: tcp("192.168.0.1:56324"), Dst: tcp("192.168.0.11:443")}},
	{"v1 tcp4 zeros", "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
		Header{Version: 1, Src: tcp("0.0.0.0:0"), Dst: tcp("255.255.255.255:65535")}},
	{"v1 tcp6", "PROXY TCP6 2001:db8::1 ::1 1234 80\r\n",
		Header{Version: 1, Src: tcp("[2001:db8::1]:1234"), Dst: tcp("[::1]:80")}},
	{"v1 tcp6 mapped", "PROXY TCP6 ::ffff:10.0.0.1 FE80:0:0:0:0:0:0:1 1 2\r\n",
		Header{Version: 1, Src: tcp("[::ffff:10.0.0.1]:1"), Dst: tcp("[fe80::1]:2")}},
	{"v1 tcp6 longest", "PROXY TCP6 " + longV6 + " " + longV6 + " 65535 65535\r\n",
		Header{Version: 1, Src: tcp("[" + longV6 + "]:65535"), Dst: tcp("[" + longV6 + "]:65535")}},
	{"v1 unknown", "PROXY UNKNOWN\r\n", Header{Version: 1, Local: true}},
	{"v1 unknown addrs", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Header{Version: 1, Local: true}},
	{"v1 unknown junk", "PROXY UNKNOWN \x00\xff\r junk\r\n", Header{Version: 1, Local: true}},
	{"v1 unknown 107", "PROXY UNKNOWN " + strings.Repeat("x", 107-16) + "\r\n", Header{Version: 1, Local: true}},
	{"v2 tcp4", string(v2tcp4("10.1.2.3", "10.9.8.7", 40000, 8888, nil)),
		Header{Version: 2, Src: tcp("10.1.2.3:40000"), Dst: tcp("10.9.8.7:8888")}},
	{"v2 tcp6", string(v2tcp6("2001:db8::7", "::1", 1, 65535, nil)),
		Header{Version: 2, Src: tcp("[2001:db8::7]:1"), Dst: tcp("[::1]:65535")}},
	{"v2 tcp4 tlvs", string(v2tcp4("1.2.3.4", "5.6.7.8", 1, 2, append(tlv(0x01, "h2"), tlv(0x04, "")...))),
		Header{Version: 2, Src: tcp("1.2.3.4:1"), Dst: tcp("5.6.7.8:2")}},
	{"v2 tcp6 tlvs", string(v2tcp6("::2", "::3", 1, 2, tlv(0xea, strings.Repeat("v", 300)))),
		Header{Version: 2, Src: tcp("[::2]:1"), Dst: tcp("[::3]:2")}},
	{"v2 local", string(v2(0x20, 0x00, nil)), Header{Version: 2, Local: true}},
	{"v2 local with data", string(v2(0x20, 0x11, []byte("anything at all"))), Header{Version: 2, Local: true}},
	{"v2 local bad family", string(v2(0x20, 0xff, nil)), Header{Version: 2, Local: true}},
	{"v2 unspec", string(v2(0x21, 0x00, tlv(1, "x"))), Header{Version: 2, Local: true}},
	{"v2 unix", string(v2unix("/run/a.sock", "/run/b.sock")),
		Header{Version: 2, Src: &net.UnixAddr{Name: "/run/a.sock", Net: "unix"}, Dst: &net.UnixAddr{Name: "/run/b.sock", Net: "unix"}}},
	{"v2 unix abstract", string(v2unix("\x00abs", "")),
		Header{Version: 2, Src: &net.UnixAddr{Name: "@abs", Net: "unix"}, Dst: &net.UnixAddr{Name: "", Net: "unix"}}},
	{"v2 unix full path", string(v2unix(strings.Repeat("p", unixPathLen), "/x")),
		Header{Version: 2, Src: &net.UnixAddr{Name: strings.Repeat("p", unixPathLen), Net: "unix"}, Dst: &net.UnixAddr{Name: "/x", Net: "unix"}}},
	{"v2 max length", string(v2(0x21, famTCP4, append(make([]byte, 12), tlv(0x20, strings.Repeat("z", MaxV2DataLen-15))...))),
		Header{Version: 2, Src: tcp("0.0.0.0:0"), Dst: tcp("0.0.0.0:0")}},
}

func checkHeader(t *testing.T, name string, got, want Header) {
	t.Helper()
	if got.Version != want.Version || got.Local != want.Local || !sameAddr(got.Src, want.Src) || !sameAddr(got.Dst, want.Dst) {
		t.Errorf("%s: got %+v (src %v dst %v), want %+v (src %v dst %v)", name, got, got.Src, got.Dst, want, want.Src, want.Dst)
	}
}

func TestParseValid(t *testing.T) {
	for _, tt := range valid {
		hdr := []byte(tt.hdr)
		if len(hdr) > MaxHeaderLen {
			t.Fatalf("%s: test header of %d bytes", tt.name, len(hdr))
		}
		// With application data after it, and alone.
		for _, buf := range [][]byte{append(bytes.Clone(hdr), "GET / HTTP/1.1\r\n"...), hdr} {
			h, n, err := Parse(buf)
			if err != nil || n != len(hdr) {
				t.Errorf("%s: n = %d, err = %v; want n = %d", tt.name, n, err, len(hdr))
				continue
			}
			checkHeader(t, tt.name, h, tt.want)
		}
		// Every proper prefix asks for more.
		for k := range len(hdr) {
			h, n, err := Parse(hdr[:k])
			if n != 0 || err != nil || h != (Header{}) {
				t.Fatalf("%s: prefix of %d bytes: %+v, n = %d, err = %v", tt.name, k, h, n, err)
			}
		}
	}
}

func TestParseTCPAddrTypes(t *testing.T) {
	h, _, err := Parse([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	src, ok := h.Src.(*net.TCPAddr)
	if !ok || len(src.IP) != net.IPv4len || src.String() != "1.2.3.4:1" {
		t.Errorf("Src = %#v", h.Src)
	}
	h, _, _ = Parse(v2tcp6("::1", "::2", 1, 2, nil))
	if src, ok := h.Src.(*net.TCPAddr); !ok || len(src.IP) != net.IPv6len {
		t.Errorf("Src = %#v", h.Src)
	}
}

func TestParseBad(t *testing.T) {
	good4 := v2tcp4("1.2.3.4", "5.6.7.8", 1, 2, nil)
	tests := []struct {
		name string
		buf  string
	}{
		{"http", "GET / HTTP/1.1\r\n"},
		{"ssh", "SSH-2.0-OpenSSH\r\n"},
		{"lowercase", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
		{"early P", "PX"},
		{"bad proto", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"},
		{"bad proto early", "PROXY UDP"},
		{"unknown glued early", "PROXY UNKNOWNX"},
		{"unknown glued", "PROXY UNKNOWNX\r\n"},
		{"no proto", "PROXY \r\n"},
		{"lf only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"},
		{"lf only unknown", "PROXY UNKNOWN\n"},
		{"stray cr", "PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n"},
		{"stray cr early", "PROXY TCP4 1.2.3.4\r5"},
		{"letter early", "PROXY TCP4 1.2.3.x"},
		{"too long", "PROXY UNKNOWN " + strings.Repeat("x", 107-15) + "\r\n"},
		{"too long early", "PROXY UNKNOWN " + strings.Repeat("x", 107)},
		{"double space", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"},
		{"missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"},
		{"extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"},
		{"trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"},
		{"port too big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"},
		{"port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"},
		{"port sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"},
		{"port empty", "PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n"},
		{"octet too big", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"},
		{"octet leading zero", "PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n"},
		{"three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"},
		{"five octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"},
		{"v6 in tcp4", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n"},
		{"v4 in tcp6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n"},
		{"zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"},
		{"two ellipses", "PROXY TCP6 1::2::3 ::1 1 2\r\n"},
		{"v2 bad sig", "\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c"},
		{"v2 bad sig early", "\r\n\r\n\x01"},
		{"v2 version 1", string(append(bytes.Clone(good4[:12]), 0x11))},
		{"v2 version 3", string(append(bytes.Clone(good4[:12]), 0x31))},
		{"v2 command 2", string(append(bytes.Clone(good4[:12]), 0x22))},
		{"v2 udp4", string(v2(0x21, 0x12, make([]byte, 12)))},
		{"v2 udp6 early", string(append(bytes.Clone(good4[:12]), 0x21, 0x22))},
		{"v2 unix dgram", string(v2(0x21, 0x32, make([]byte, 216)))},
		{"v2 family 0x41", string(v2(0x21, 0x41, make([]byte, 12)))},
		{"v2 too long early", string(append(bytes.Clone(good4[:14]), 0x10, 0x01))},
		{"v2 max length", string(append(bytes.Clone(good4[:14]), 0xff, 0xff))},
		{"v2 short tcp4", string(v2(0x21, famTCP4, make([]byte, 11)))},
		{"v2 short tcp6", string(v2(0x21, famTCP6, make([]byte, 35)))},
		{"v2 short unix", string(v2(0x21, famUnix, make([]byte, 215)))},
		{"v2 tlv cut", string(v2(0x21, famTCP4, append(make([]byte, 12), 0x01, 0x00)))},
		{"v2 tlv overrun", string(v2(0x21, famTCP4, append(make([]byte, 12), 0x01, 0x00, 0x02, 'x')))},
	}
	for _, tt := range tests {
		h, n, err := Parse([]byte(tt.buf))
		if !errors.Is(err, ErrBadHeader) || n != 0 || h != (Header{}) {
			t.Errorf("%s: Parse(%q) = %+v, %d, %v; want ErrBadHeader", tt.name, tt.buf, h, n, err)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	if h, n, err := Parse(nil); n != 0 || err != nil || h != (Header{}) {
		t.Errorf("Parse(nil) = %+v, %d, %v", h, n, err)
	}
}

func TestErrorText(t *testing.T) {
	if ErrBadHeader.Error() != "switchboard: bad PROXY protocol header" {
		t.Errorf("ErrBadHeader = %q", ErrBadHeader)
	}
	_, _, err := Parse([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "switchboard: bad PROXY protocol header: ") || !strings.Contains(err.Error(), "99999") {
		t.Errorf("error %q lacks detail", err)
	}
}

func TestIPParsers(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "1::2", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
		"1:2:3:4:5:6::8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1::2:3:4:5:6:7:8", "::ffff:1.2.3.4",
		"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4", "1.2.3.4", "0.0.0.0", "255.255.255.255",
		"01.2.3.4", "1.2.3.4.", ".1.2.3", "1..2.3", "256.1.1.1", "1.2.3", "12345::", "abcd::ef01", "ABCD::EF01",
		":", ":::", "1:", ":1", "1:::2", "1::2::3", "g::", "::ffff:1.2.3", "::1.2.3.4:5", "1:2:3:4:5:6:7:8::",
		"::0:0:0:0:0:0:0:0", "::0:0:0:0:0:0:0", "fe80::1%eth0", "", "1.2.3.04", "::ffff:01.2.3.4", "00000::",
		"0000::", "1:2:3:4:5:6:7:8:", "1::2:", "1.2.3.4::",
	} {
		checkIP(t, s)
	}
}

// checkIP compares the parsers with net/netip on s.
func checkIP(t *testing.T, s string) {
	t.Helper()
	want, err := netip.ParseAddr(s)
	var out [16]byte
	got4 := parseIPv4([]byte(s), out[:4])
	if ok := err == nil && want.Is4(); got4 != ok || ok && netip.AddrFrom4([4]byte(out[:4])) != want {
		t.Errorf("parseIPv4(%q) = %v %v; netip: %v %v", s, got4, out[:4], want, err)
	}
	got6 := parseIPv6([]byte(s), out[:])
	if ok := err == nil && want.Is6() && want.Zone() == ""; got6 != ok || ok && netip.AddrFrom16(out) != want {
		t.Errorf("parseIPv6(%q) = %v %v; netip: %v %v", s, got6, out, want, err)
	}
}

func TestAllocs(t *testing.T) {
	tests := []struct {
		buf  []byte
		want float64
	}{
		{[]byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), 1},
		{[]byte("PROXY TCP6 2001:db8::1 ::1 1234 80\r\n"), 1},
		{[]byte("PROXY UNKNOWN\r\n"), 0},
		{[]byte("PROXY TCP4 192.168.0.1 192."), 0},
		{v2tcp4("1.2.3.4", "5.6.7.8", 1, 2, tlv(1, "h2")), 1},
		{v2tcp6("::1", "::2", 1, 2, nil), 1},
		{v2(0x20, 0, nil), 0},
		{v2(0x20, 0, nil)[:15], 0},
	}
	for _, tt := range tests {
		allocs := testing.AllocsPerRun(100, func() {
			if _, _, err := Parse(tt.buf); err != nil {
				panic(err)
			}
		})
		if allocs != tt.want {
			t.Errorf("Parse(%q): %v allocations, want %v", tt.buf, allocs, tt.want)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bb := range []struct {
		name string
		buf  []byte
	}{
		{"v1", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")},
		{"v2", v2tcp4("1.2.3.4", "5.6.7.8", 1, 2, nil)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, n, err := Parse(bb.buf); n == 0 || err != nil {
					b.Fatal(n, err)
				}
			}
		})
	}
}
