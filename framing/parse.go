package framing

import (
	"encoding/hex"
	"math"
	"strings"
)

// Parse returns the codec a spec names, with the maximum frame size
// maxFrame (<= 0: DefaultMaxFrame). The specs are:
//
//	raw             whatever is buffered (what one read returned); also ""
//	line            bytes up to "\n"; a '\r' before it is stripped
//	delim:HEX       bytes up to a delimiter given in hex, e.g. delim:0d0a0d0a
//	fixed:N         exactly N bytes
//	len:N[be|le]    an N-byte (1, 2, 4 or 8) unsigned length, big-endian
//	                unless "le", then that many bytes, e.g. len:4, len:2le
//	digits:N        N ASCII decimal digits, zero-padded, then that many bytes
//	typed:T=N,...   a type byte T, then exactly N bytes, e.g. typed:a=4,b=16;
//	                T is one character, or 0xNN for any byte
//	eof             everything until the peer shuts down its write half
//	resp            one value of Redis's protocol (RESP2 and RESP3), whole
//
// See Raw, Line, Delim, Fixed, Length, Digits, Typed, EOF and RESP for each
// codec's rules. An invalid spec returns an error wrapping ErrSpec that
// says what was expected. The codec's String method returns the spec in
// canonical form, which Parse accepts back.
func Parse(spec string, maxFrame int) (Codec, error) {
	name, arg, hasArg := strings.Cut(spec, ":")
	noArg := func(c Codec) (Codec, error) {
		if hasArg {
			return nil, specErr(spec, "%s takes no argument", name)
		}
		return c, nil
	}
	switch name {
	case "", "raw":
		if name == "" && hasArg {
			return nil, specErr(spec, "want NAME or NAME:ARG")
		}
		return noArg(Raw(maxFrame))
	case "line":
		return noArg(Line(maxFrame))
	case "eof":
		return noArg(EOF(maxFrame))
	case "resp":
		return noArg(RESP(maxFrame))
	case "delim":
		if len(arg) == 0 || len(arg)%2 != 0 {
			return nil, specErr(spec, "want an even number of hex digits after delim:, e.g. delim:0d0a")
		}
		d, err := hex.DecodeString(arg)
		if err != nil {
			return nil, specErr(spec, "delimiter is not valid hex: %v", err)
		}
		return newDelim(d, maxFrame, spec)
	case "fixed":
		n, ok := parseNum(arg)
		if !ok {
			return nil, specErr(spec, "want a decimal size after fixed:, e.g. fixed:16")
		}
		return newFixed(n, maxFrame, spec)
	case "len":
		if arg == "" {
			return nil, specErr(spec, "want a length size after len:, e.g. len:4 or len:2le")
		}
		i := 0
		for i < len(arg) && arg[i] >= '0' && arg[i] <= '9' {
			i++
		}
		num, order := arg[:i], arg[i:]
		size, ok := parseNum(num)
		if !ok || (size != 1 && size != 2 && size != 4 && size != 8) {
			return nil, specErr(spec, "length size must be 1, 2, 4 or 8")
		}
		var le bool
		switch order {
		case "", "be":
		case "le":
			le = true
		default:
			return nil, specErr(spec, "byte order must be be or le, got %q", order)
		}
		return newLength(size, le, maxFrame, spec)
	case "digits":
		n, ok := parseNum(arg)
		if !ok {
			return nil, specErr(spec, "want a number of digits after digits:, e.g. digits:5")
		}
		return newDigits(n, maxFrame, spec)
	case "typed":
		return parseTyped(spec, arg, maxFrame)
	}
	return nil, specErr(spec, "unknown framing %q: want raw, line, delim:HEX, fixed:N, len:N[be|le], digits:N, typed:T=N,..., eof or resp", name)
}

// parseTyped parses the T=N,... list of a typed spec.
func parseTyped(spec, arg string, maxFrame int) (Codec, error) {
	if arg == "" {
		return nil, specErr(spec, "want at least one TYPE=SIZE, e.g. typed:a=4,b=16")
	}
	sizes := make(map[byte]int)
	var ts []byte
	for entry := range strings.SplitSeq(arg, ",") {
		i := strings.LastIndexByte(entry, '=')
		if i < 0 {
			return nil, specErr(spec, "entry %q: want TYPE=SIZE", entry)
		}
		tok, num := entry[:i], entry[i+1:]
		var t byte
		switch {
		case len(tok) == 1:
			t = tok[0]
		case len(tok) == 4 && (tok[:2] == "0x" || tok[:2] == "0X"):
			b, err := hex.DecodeString(tok[2:])
			if err != nil {
				return nil, specErr(spec, "entry %q: type %q is not a byte in hex", entry, tok)
			}
			t = b[0]
		default:
			return nil, specErr(spec, "entry %q: type must be one character or 0xNN", entry)
		}
		n, ok := parseNum(num)
		if !ok {
			return nil, specErr(spec, "entry %q: size must be a decimal number", entry)
		}
		if _, dup := sizes[t]; dup {
			return nil, specErr(spec, "type %s given twice", typeToken(t))
		}
		sizes[t] = n
		ts = append(ts, t)
	}
	return newTyped(ts, sizes, maxFrame, spec)
}

// parseNum parses a plain decimal number of 1 to 18 digits (no sign, no
// spaces).
func parseNum(s string) (int, bool) {
	if len(s) == 0 || len(s) > 18 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, false
		}
		n = n*10 + uint64(d)
	}
	if n > math.MaxInt {
		return 0, false
	}
	return int(n), true
}
