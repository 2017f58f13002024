package main

// The formatting bench and compare share: figures in tables and one-line
// summaries, written the same way by every subcommand.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// fmtDur formats a latency with three significant figures and its unit.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/1e3) + "µs"
	case d < time.Second:
		return sig3(float64(d)/1e6) + "ms"
	}
	return sig3(d.Seconds()) + "s"
}

func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// fmtCount formats a count with thousands separators.
func fmtCount(v float64) string {
	n := int64(math.Round(v)) // half away from zero, negatives too
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtBytes formats a size with a binary unit.
func fmtBytes(v float64) string {
	switch {
	case v >= 1<<30:
		return sig3(v/(1<<30)) + " GiB"
	case v >= 1<<20:
		return sig3(v/(1<<20)) + " MiB"
	case v >= 1<<10:
		return sig3(v/(1<<10)) + " KiB"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " B"
}

// fmtUs formats a latency given in microseconds, as the JSON reports
// store them, the way fmtDur does.
func fmtUs(us float64) string { return fmtDur(time.Duration(us * 1e3)) }

// fmtRatio formats a ratio to a reference; 0 means there was none.
func fmtRatio(r float64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

// unpinned is what fmtCPUs writes for an empty CPU list: no affinity set.
// Reports store it, so fmtPlacement recognises it in replayed ones too.
const unpinned = "any CPU"

// fmtCPUs formats a CPU list compactly: "0", "1-3", "0,2".
func fmtCPUs(cpus []int) string {
	if len(cpus) == 0 {
		return unpinned
	}
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// fmtPlacement says where the server and the load ran, given fmtCPUs's
// text for each, plainly when either was not pinned.
func fmtPlacement(server, load string) string {
	free := func(s string) bool { return s == "" || s == unpinned }
	switch {
	case free(server) && free(load):
		return "server and load not pinned (they share every CPU)"
	case free(server):
		return "server not pinned, load on CPU " + load
	case free(load):
		return "server on CPU " + server + ", load not pinned"
	}
	return "server on CPU " + server + ", load on CPU " + load
}

// plural writes n and noun, with an s unless n is 1: "1 server loop",
// "2 server loops".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
