package reactor

import (
	"switchboard/internal/uring"
	"switchboard/internal/uringengine"
)

// The io_uring engine runs the same engine-level cases as the reactor's
// backends, where the kernel allows io_uring at all.
func init() {
	if _, err := uring.Available(); err != nil {
		return
	}
	otherEngines["uring"] = otherEngine{
		new:     uringengine.New,
		loopOf:  uringengine.LoopOf,
		pending: uringengine.Pending,
		serving: uringengine.Serving,
		drain:   uringengine.DrainLoop,
		stopped: uringengine.LoopStopped,
	}
}
