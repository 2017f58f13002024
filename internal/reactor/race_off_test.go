//go:build !race

package reactor

// raceEnabled: see race_on_test.go.
const raceEnabled = false
