package switchboard_test

import (
	"bytes"
	"net"
	"syscall"
	"testing"
	"time"

	"switchboard"
)

// TestBackpressureGauges: a client that sends and never reads gets its
// connection paused: Stats.Paused is exactly 1 and PendingBytes holds its
// replies; once it hangs up both are exactly 0 again.
func TestBackpressureGauges(t *testing.T) {
	models := []string{switchboard.ModelGoroutine, mustResolveModel(t, "auto")}
	if switchboard.CheckModel(switchboard.ModelUring) == nil {
		models = append(models, switchboard.ModelUring)
	}
	for _, model := range models {
		t.Run(model, func(t *testing.T) {
			srv, addr := start(t, model, echo,
				switchboard.WithFraming("line", 2048),
				switchboard.WithMaxPending(8<<10),
				switchboard.WithWriteTimeout(0))
			d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
				// A small receive window, so the replies back up in the
				// server rather than in this socket.
				return rc.Control(func(fd uintptr) {
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
				})
			}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			line := append(bytes.Repeat([]byte("x"), 1023), '\n')
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 32 << 10 { // at most 32 MiB; blocks once the server pauses
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
			for i := 0; ; i++ {
				st := srv.Stats()
				if st.Paused == 1 && st.PendingBytes > 0 {
					break
				}
				if i == 1000 {
					t.Fatalf("the connection never paused: %+v", st)
				}
				time.Sleep(10 * time.Millisecond)
			}
			c.Close()
			<-done
			waitFor(t, "the gauges back at zero", func() bool {
				st := srv.Stats()
				return st.Active == 0 && st.Paused == 0 && st.PendingBytes == 0
			})
		})
	}
}

func mustResolveModel(t *testing.T, name string) string {
	m, err := switchboard.ResolveModel(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
