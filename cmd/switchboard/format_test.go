package main

import (
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for got, want := range map[string]string{
		fmtDur(850 * time.Nanosecond):          "850ns",
		fmtDur(1234 * time.Microsecond):        "1.23ms",
		fmtDur(15700 * time.Microsecond):       "15.7ms",
		fmtDur(810 * time.Microsecond):         "810µs",
		fmtDur(2500 * time.Millisecond):        "2.50s",
		fmtUs(1213.439):                        "1.21ms",
		fmtCount(3109460.4):                    "3,109,460",
		fmtCount(-1234):                        "-1,234",
		fmtCount(999):                          "999",
		fmtBytes(64):                           "64 B",
		fmtBytes(4096):                         "4.00 KiB",
		fmtBytes(1.5 * (1 << 20)):              "1.50 MiB",
		fmtRatio(0):                            "-",
		fmtRatio(1.2549):                       "1.25",
		fmtCPUs([]int{0, 1, 2, 5, 7, 8}):       "0-2,5,7-8",
		fmtCPUs(nil):                           unpinned,
		fmtPlacement(fmtCPUs(nil), "1"):        "server not pinned, load on CPU 1",
		fmtPlacement(fmtCPUs([]int{0}), "1-3"): "server on CPU 0, load on CPU 1-3",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
