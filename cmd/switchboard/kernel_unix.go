//go:build unix

package main

import "golang.org/x/sys/unix"

// kernelRelease is the running kernel's name and release ("Linux
// 6.8.0-45-generic"), or "" when uname fails.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
}
