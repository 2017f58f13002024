//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinSupported says whether this platform can pin processes to CPUs.
const pinSupported = true

// allowedCPUs lists the CPUs this process may run on.
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var out []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out
}

func cpuSet(cpus []int) *unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return &set
}

// startPinned starts cmd already bound to cpus. The fork happens on a
// thread locked to a goroutine of its own whose affinity is first set to
// cpus, and a child inherits the affinity of the thread that forked it, so
// the child runs on cpus from its first instruction: a Go child sizes
// GOMAXPROCS from it, and no thread of the child ever runs elsewhere (which
// setting the affinity after the start, thread by thread, cannot promise).
func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		// The thread keeps its changed affinity, so it must not go back
		// to the scheduler's pool: a goroutine that ends locked takes its
		// thread with it.
		runtime.LockOSThread()
		if err := unix.SchedSetaffinity(0, cpuSet(cpus)); err != nil {
			errc <- fmt.Errorf("sched_setaffinity: %w", err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// pinSelf binds every thread of this process to cpus. Threads started
// later inherit the affinity of the thread that creates them, which is one
// of these.
func pinSelf(cpus []int) error {
	set := cpuSet(cpus)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may exit between the listing and the call.
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("sched_setaffinity: %w", err)
		}
	}
	return nil
}
