//go:build linux

package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// procSample is what /proc says about a process at one moment.
type procSample struct {
	cpu  time.Duration // user + system time, all threads
	rss  int64         // resident bytes
	cpus int           // CPUs in its affinity mask
	wait time.Duration // time its threads spent runnable, waiting for a CPU
}

// userHZ is the unit of the times in /proc/PID/stat. The kernel exports
// them in USER_HZ, which is 100 on every Linux architecture Go supports.
const userHZ = 100

// sampleProc reads the CPU time (utime + stime of /proc/PID/stat, which sum
// every thread) and resident memory (/proc/PID/statm) of process pid.
func sampleProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name, in parentheses, may contain spaces: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	s.cpu = time.Duration(ut+st) * time.Second / userHZ
	m, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return s, err
	}
	mf := bytes.Fields(m)
	if len(mf) < 2 {
		return s, fmt.Errorf("/proc/%d/statm: unexpected format", pid)
	}
	pages, err := strconv.ParseInt(string(mf[1]), 10, 64)
	if err != nil {
		return s, fmt.Errorf("/proc/%d/statm: unexpected format", pid)
	}
	s.rss = pages * int64(os.Getpagesize())
	var set unix.CPUSet
	if unix.SchedGetaffinity(pid, &set) == nil {
		s.cpus = set.Count()
	}
	s.wait = runQueueWait(strconv.Itoa(pid))
	return s, nil
}

// runQueueWait sums, over the threads of process pid ("self" for this
// one), the time they spent runnable but waiting for a CPU: the second
// field of /proc/PID/task/TID/schedstat, in nanoseconds. On a machine shared
// with other work this says how much a run was disturbed. Threads that
// exited are no longer counted, so it is a lower bound; 0 when the kernel
// keeps no schedstat.
func runQueueWait(pid string) time.Duration {
	dir := "/proc/" + pid + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := bytes.Fields(b)
		if len(f) < 2 {
			continue
		}
		if n, err := strconv.ParseInt(string(f[1]), 10, 64); err == nil {
			sum += n
		}
	}
	return time.Duration(sum)
}

// selfWait is runQueueWait of this process.
func selfWait() time.Duration { return runQueueWait("self") }

// selfCPU is this process's user + system CPU time so far.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// allowedCPUs is the number of CPUs this process may run on now: its
// affinity mask, which a caller may have narrowed after start-up (so not
// runtime.NumCPU, which is read once).
func allowedCPUs() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil && set.Count() > 0 {
		return set.Count()
	}
	return max(1, runtimeNumCPU())
}
