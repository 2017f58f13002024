//go:build !unix

package main

// kernelRelease is unknown off Unix.
func kernelRelease() string { return "" }
