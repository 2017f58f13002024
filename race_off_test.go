//go:build !race

package switchboard_test

// raceEnabled: see race_on_test.go.
const raceEnabled = false
