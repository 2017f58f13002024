//go:build race

package reactor

// raceEnabled: under the race detector crypto/tls allocates more per
// record (its instrumented paths), so allocation counts over TLS mean
// nothing there.
const raceEnabled = true
