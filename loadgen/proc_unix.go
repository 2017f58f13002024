//go:build unix && !linux

package loadgen

import (
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// procSample is what the system says about a process at one moment.
type procSample struct {
	cpu  time.Duration
	rss  int64
	cpus int
	wait time.Duration
}

// sampleProc needs Linux's /proc; other systems do not offer another
// process's CPU time without privileges.
func sampleProc(pid int) (procSample, error) {
	return procSample{}, fmt.Errorf("reading process %d needs /proc (Linux); not on %s", pid, runtime.GOOS)
}

// selfCPU is this process's user + system CPU time so far.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func allowedCPUs() int { return max(1, runtimeNumCPU()) }

// selfWait is not measured on this platform.
func selfWait() time.Duration { return 0 }
