//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"net"
	"net/netip"

	"switchboard/framing"
	"switchboard/internal/engine"
)

// rare is the part of a connection that most connections never use,
// made on first use, so an idle connection carries one nil pointer for
// all of it.
//
// Who may touch it: Conn.rare is set once, under Mu (or before the
// connection is shared, at accept), and never replaced. The fields
// marked "under Mu" are read and written only with it held. The loop's
// own fields (split, afters, eng) are written by the loop after it has
// taken Mu at least once since rare was made, which orders the making
// before them; the loop then reads them without a lock (SplitOf, on the
// hot path, reads split only when flagSplit says it is set).
type rare[IO any] struct {
	// Under Mu.
	value       any
	ctx         *engine.ConnContext // the lazily made context
	reply, next framing.Codec       // SetReplyCodec's and SetCodec's; next waits for the loop (reqCodec)
	idle        int64               // SetIdleTimeout's, ns (with reqOwnIdle)
	proxied     net.Addr            // the PROXY header's client address, if any
	laddr       netip.AddrPort      // a wildcard listener's connection's local address, once asked

	// Written once at accept, before the connection is shared.
	zoned netip.AddrPort // the peer's address, with an IPv6 zone

	// The loop's.
	split  *framing.Splitter // the frame loop after SetCodec
	afters *after[IO]        // armed AfterFuncs, linked through next
	eng    any               // the engine's own rarely needed state (its TLS layer, say)
}

// rareLocked returns c.rare, making it if need be. Under Mu.
func (c *Conn[IO]) rareLocked() *rare[IO] {
	if c.rare == nil {
		c.rare = new(rare[IO])
	}
	return c.rare
}

// loopRare returns c.rare for the loop's own fields, making it if need
// be; it takes Mu, which orders a making by another goroutine before
// the loop's use.
func (c *Conn[IO]) loopRare() *rare[IO] {
	c.Mu.Lock()
	r := c.rareLocked()
	c.Mu.Unlock()
	return r
}

// SetEngineState keeps v, the engine's rarely needed state for c (its
// TLS layer, say), with c, on the loop.
func (c *Conn[IO]) SetEngineState(v any) { c.loopRare().eng = v }

// EngineState is what SetEngineState kept, or nil: on the loop, or on
// another goroutine under Mu.
func (c *Conn[IO]) EngineState() any {
	if c.rare == nil {
		return nil
	}
	return c.rare.eng
}
