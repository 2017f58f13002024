package uringengine

import (
	"fmt"
	"net"
	"testing"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/uring"
)

// TestTrickle: bytes arriving one at a time, a few milliseconds apart, are
// each served as they come, with and without DEFER_TASKRUN. A missed
// wake-up shows as an echo that does not come back in time: nothing else
// wakes the loop soon (no timer with raw framing; with 2-byte frames the
// only timer is a frame timeout far beyond the read's deadline), so the
// read fails instead of a timer hiding the miss. Four connections over two
// loops, so hand-overs wake a ring from another goroutine too.
func TestTrickle(t *testing.T) {
	if _, err := uring.Available(); err != nil {
		t.Skip(err)
	}
	two, err := framing.Fixed(2, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []string{"", "no-defer-taskrun", "no-msg-ring", "no-buf-inc", "no-taskrun-flag"} {
		for _, v := range []struct {
			name  string
			frame int
			cfg   engine.Config
		}{
			{"raw", 1, engine.Config{Codec: framing.Raw(0), Loops: 2}},
			{"fixed2", 2, engine.Config{Codec: two, FrameTimeout: time.Minute, Loops: 2}},
		} {
			t.Run(opts+"/"+v.name, func(t *testing.T) {
				t.Setenv(OptionsEnv, opts)
				trickleOnce(t, v.cfg, v.frame)
			})
		}
	}
}

func trickleOnce(t *testing.T, cfg engine.Config, frame int) {
	addr := serveTest(t, cfg)
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() { errs <- trickleConn(t, addr, frame) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// trickleConn sends a line a byte at a time and checks each frame's echo.
func trickleConn(t *testing.T, addr string, frame int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := []byte("slow but in time, a byte every few milliseconds\n")
	one := make([]byte, frame)
	var worst time.Duration
	for i := range msg {
		if _, err := c.Write(msg[i : i+1]); err != nil {
			return err
		}
		if (i+1)%frame != 0 {
			time.Sleep(6 * time.Millisecond)
			continue
		}
		sent := time.Now()
		c.SetReadDeadline(sent.Add(3 * time.Second))
		for n := 0; n < frame; {
			m, err := c.Read(one[n:])
			if err != nil {
				return fmt.Errorf("frame ending at byte %d of %d not echoed: %w", i, len(msg), err)
			}
			n += m
		}
		if string(one) != string(msg[i+1-frame:i+1]) {
			return fmt.Errorf("echoed %q, want %q", one, msg[i+1-frame:i+1])
		}
		worst = max(worst, time.Since(sent))
		time.Sleep(6 * time.Millisecond)
	}
	t.Logf("slowest echo %v", worst)
	return nil
}
