// Package rawio is the system-call layer the event loops share: read,
// write and writev on non-blocking sockets without the Go scheduler's
// bookkeeping where the platform allows it, and the rounding of a wait
// timeout to the milliseconds poll(2) and epoll_wait(2) take. It imports
// nothing of switchboard, so the poller backends below the engines and the
// load generator beside them can both use it.
package rawio

import "time"

// Millis converts a wait timeout to milliseconds, negative meaning no
// limit. It rounds up: rounding a 300 µs timer down to 0 would turn the
// wait into a busy loop until the timer is due.
func Millis(d time.Duration) int {
	if d < 0 {
		return -1
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > 1<<30 {
		ms = 1 << 30
	}
	return int(ms)
}
