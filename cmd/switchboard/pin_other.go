//go:build !linux

package main

import (
	"errors"
	"os/exec"
)

// pinSupported says whether this platform can pin processes to CPUs:
// sched_setaffinity is Linux's; macOS has only affinity hints and FreeBSD
// cpuset(2), which switchboard does not use.
const pinSupported = false

// allowedCPUs is unknown here.
func allowedCPUs() []int { return nil }

// startPinned starts cmd unpinned.
func startPinned(cmd *exec.Cmd, _ []int) error { return cmd.Start() }

// pinSelf is not supported here.
func pinSelf([]int) error { return errors.New("CPU pinning needs Linux") }
