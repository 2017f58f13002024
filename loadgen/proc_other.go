//go:build !unix

package loadgen

import (
	"fmt"
	"runtime"
	"time"
)

// procSample is what the system says about a process at one moment.
type procSample struct {
	cpu  time.Duration
	rss  int64
	cpus int
	wait time.Duration
}

// sampleProc needs Linux's /proc.
func sampleProc(pid int) (procSample, error) {
	return procSample{}, fmt.Errorf("reading process %d needs /proc (Linux); not on %s", pid, runtime.GOOS)
}

// selfCPU is not measured on this platform.
func selfCPU() time.Duration { return 0 }

func allowedCPUs() int { return max(1, runtimeNumCPU()) }

// selfWait is not measured on this platform.
func selfWait() time.Duration { return 0 }
