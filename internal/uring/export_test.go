//go:build linux

package uring

func init() { debugThreadCheck = true }
