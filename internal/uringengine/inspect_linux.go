package uringengine

import (
	"switchboard/internal/engine"
	"switchboard/internal/loopconn"
)

// LoopOf returns the index of the loop serving c, or -1 if c is not one
// of this engine's connections; for tests and diagnostics that check
// how connections spread over loops.
func LoopOf(c engine.Conn) int {
	if uc, ok := c.(*conn); ok {
		return uc.L.ID
	}
	return -1
}

// Pending returns the output queued on c and not yet sent (its bytes in
// flight included), or -1 if c is not one of this engine's connections.
func Pending(c engine.Conn) int {
	uc, ok := c.(*conn)
	if !ok {
		return -1
	}
	uc.Mu.Lock()
	defer uc.Mu.Unlock()
	return uc.Out.Len()
}

// Serving reports whether e, one of this engine's, has every loop's ring
// set up and its accepts armed (Serve sets them up on the loops' own
// threads, after it is called), for tests that must not race that set-up.
func Serving(e engine.Engine) bool {
	s, ok := e.(*server)
	if !ok {
		return false
	}
	s.Mu.Lock()
	loops := s.loops
	s.Mu.Unlock()
	if loops == nil {
		return false
	}
	for _, l := range loops {
		if !l.Started() {
			return false
		}
	}
	return true
}

// DrainLoop starts a drain on loop i of e alone, as Shutdown does on
// every loop, and reports whether e is one of this engine's with such a
// loop; LoopStopped reports whether that loop has ended since. Tests use
// them to stop one loop while another still accepts, the moment an
// upgrade's Shutdown catches a multi-loop server in.
func DrainLoop(e engine.Engine, i int) bool {
	l := loopOfServer(e, i)
	return l != nil && l.Post(loopconn.Task[connIO]{Kind: loopconn.TaskDrain})
}

// LoopStopped: see DrainLoop.
func LoopStopped(e engine.Engine, i int) bool {
	l := loopOfServer(e, i)
	return l != nil && l.Stopped()
}

func loopOfServer(e engine.Engine, i int) *loop {
	s, ok := e.(*server)
	if !ok {
		return nil
	}
	s.Mu.Lock()
	defer s.Mu.Unlock()
	if i < 0 || i >= len(s.loops) {
		return nil
	}
	return s.loops[i]
}
