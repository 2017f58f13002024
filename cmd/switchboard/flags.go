package main

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Size units: powers of 1024, as the SPEC's KiB/MiB/GiB suffixes.
var sizeUnits = []struct {
	names []string // lower case
	n     int64
}{
	{[]string{"", "b"}, 1},
	{[]string{"kib", "k"}, 1 << 10},
	{[]string{"mib", "m"}, 1 << 20},
	{[]string{"gib", "g"}, 1 << 30},
	{[]string{"tib", "t"}, 1 << 40},
}

// parseSize parses a byte size: a non-negative decimal number, with an
// optional fraction, then an optional unit: B, KiB, MiB, GiB or TiB (or K,
// M, G, T for short), case-insensitive, powers of 1024. Spaces around the
// number and the unit are allowed. "64KiB", "1MiB", "1.5 GiB", "4096" are
// sizes; "KB" and "MB" are refused as ambiguous (1000 or 1024?), and so is
// a fraction that does not come out as whole bytes.
func parseSize(s string) (int64, error) {
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	num, unit := in[:i], strings.ToLower(strings.TrimSpace(in[i:]))
	if num == "" || num == "." || strings.Count(num, ".") > 1 {
		return 0, fmt.Errorf("bad size %q: want a number with an optional unit, e.g. 64KiB, 1MiB, 1GiB", s)
	}
	mult := int64(0)
	for _, u := range sizeUnits {
		for _, name := range u.names {
			if unit == name {
				mult = u.n
			}
		}
	}
	if mult == 0 {
		switch unit {
		case "kb", "mb", "gb", "tb":
			return 0, fmt.Errorf("bad size %q: say %s (sizes are powers of 1024)", s, strings.ToUpper(unit[:1])+"iB")
		}
		return 0, fmt.Errorf("bad size %q: unknown unit %q (want B, KiB, MiB, GiB or TiB)", s, in[i:])
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("bad size %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Errorf("bad size %q: not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() || r.Num().Int64() > math.MaxInt {
		return 0, fmt.Errorf("bad size %q: too large", s)
	}
	return r.Num().Int64(), nil
}

// formatSize writes n in the largest unit that divides it exactly, so
// that parseSize(formatSize(n)) == n: "1MiB", "1536KiB", "100".
func formatSize(n int64) string {
	if n == 0 {
		return "0"
	}
	for i := len(sizeUnits) - 1; i > 0; i-- {
		u := sizeUnits[i]
		if n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + strings.ToUpper(u.names[0][:1]) + u.names[0][1:2] + "B"
		}
	}
	return strconv.FormatInt(n, 10)
}

// sizeFlag is a pflag.Value for a byte size in parseSize's syntax:
//
//	maxFrame := sizeFlag(1 << 20)
//	cmd.Flags().Var(&maxFrame, "max-frame", "largest frame")
//	... maxFrame.Int()
//
// The default shows in --help as formatSize writes it ("1MiB"). A bad
// value is a flag error, hence a usage error (exit 2).
type sizeFlag int64

// String returns the size in its shortest exact form.
func (s *sizeFlag) String() string { return formatSize(int64(*s)) }

// Set parses v with parseSize.
func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// Type names the value in --help.
func (s *sizeFlag) Type() string { return "size" }

// Int returns the size as an int.
func (s sizeFlag) Int() int { return int(s) }
