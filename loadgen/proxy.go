package loadgen

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
)

// proxyV2Sig opens every PROXY protocol version 2 header.
const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// AppendProxyHeader appends the PROXY protocol header of version "v1" or
// "v2" that announces a TCP connection from src to dst, as a balancer
// sends it before the client's first byte. Addresses that are not both
// IPv4 or both IPv6 TCP (a Unix socket, say) are announced as unknown:
// "PROXY UNKNOWN" in v1, the LOCAL command in v2, which a server takes as
// "use the connection's own addresses".
func AppendProxyHeader(b []byte, version string, src, dst net.Addr) ([]byte, error) {
	s, _ := src.(*net.TCPAddr)
	d, _ := dst.(*net.TCPAddr)
	var sip, dip net.IP
	if s != nil && d != nil {
		sip, dip = s.IP, d.IP
		if s4, d4 := sip.To4(), dip.To4(); s4 != nil && d4 != nil {
			sip, dip = s4, d4
		} else if s4 != nil || d4 != nil {
			sip, dip = nil, nil // one of each family: nothing to announce
		}
	}
	switch version {
	case "v1":
		if sip == nil {
			return append(b, "PROXY UNKNOWN\r\n"...), nil
		}
		fam := "TCP4"
		if len(sip) == net.IPv6len {
			fam = "TCP6"
		}
		b = append(b, "PROXY "+fam+" "+sip.String()+" "+dip.String()+" "...)
		b = strconv.AppendInt(b, int64(s.Port), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(d.Port), 10)
		return append(b, "\r\n"...), nil
	case "v2":
		b = append(b, proxyV2Sig...)
		if sip == nil {
			// Version 2, LOCAL; family UNSPEC; no addresses.
			return append(b, 0x20, 0x00, 0, 0), nil
		}
		fam, n := byte(0x11), 12 // TCP over IPv4: two addresses, two ports
		if len(sip) == net.IPv6len {
			fam, n = 0x21, 36
		}
		b = append(b, 0x21, fam) // version 2, PROXY
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = append(b, sip...)
		b = append(b, dip...)
		b = binary.BigEndian.AppendUint16(b, uint16(s.Port))
		return binary.BigEndian.AppendUint16(b, uint16(d.Port)), nil
	}
	return b, fmt.Errorf("PROXY header version must be v1 or v2, not %q", version)
}
