//go:build race

package switchboard_test

// raceEnabled: the race detector's own memory (shadow and per-goroutine
// state, never returned) is in RSS, so memory checks use the Go heap.
const raceEnabled = true
