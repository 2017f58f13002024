//go:build !unix

package tlsloop_test

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
