//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import "switchboard/internal/loopconn"

// A connection is a loopconn.Conn: the handler's view of it, its state
// machine, timers and the request bits other goroutines set are the
// shared core's (internal/loopconn documents them). What is the reactor's
// own is which interest is registered with the poller (two flags) and
// the TLS layer, kept by the core with what else few connections use
// (tlsOf).
type conn = loopconn.Conn[connIO]

// connIO is the reactor's part of a connection (conn.IO): nothing beyond
// its flags, so a connection is the core's 176 bytes.
type connIO struct{}

// The reactor's own flags (conn.Flags), beside the core's
// (loopconn.FlagPaused, FlagOpened, FlagFrame).
const (
	connReadOn  = loopconn.EngineFlag << iota // read interest registered
	connWriteOn                               // write interest registered
	connTLS                                   // the connection has a TLS layer (tlsOf)
)
