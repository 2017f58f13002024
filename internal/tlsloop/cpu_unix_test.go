//go:build unix

package tlsloop_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) the process has
// used: benchmarks report it per operation, a figure that stays put when
// other work on a busy machine stretches wall-clock time.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
