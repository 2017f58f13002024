package switchboard_test

import (
	"bufio"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"switchboard"
	"switchboard/internal/testserver"
)

// BenchmarkShortConns measures a connection's whole life, one per
// iteration (dial, one echoed line, close), with the connection log off
// and on (text lines to a file, so each costs its write call too): the
// difference is the log's price per connection. cpu-ns/op is the
// process's CPU time (client and server) per connection, steadier than
// the wall time on a shared machine.
//
//	flock /tmp/switchboard-bench.lock go test -run '^$' -bench ShortConns -count 6 .
func BenchmarkShortConns(b *testing.B) {
	for _, model := range []string{switchboard.ModelGoroutine, "epoll"} {
		for _, logged := range []bool{false, true} {
			name := model + "/nolog"
			if logged {
				name = model + "/connlog"
			}
			b.Run(name, func(b *testing.B) {
				if _, err := switchboard.ResolveModel(model); err != nil {
					b.Skip(err)
				}
				opts := []switchboard.Option{switchboard.WithModel(model), switchboard.WithLoops(1), switchboard.WithFraming("line", 64)}
				if logged {
					f, err := os.Create(filepath.Join(b.TempDir(), "conn.log"))
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { f.Close() })
					opts = append(opts, switchboard.WithConnLog(slog.New(slog.NewTextHandler(f, nil))))
				}
				addr, srv := testserver.Start(b, "127.0.0.1:0", echo, opts...)
				msg := []byte("ping\n")
				buf := make([]byte, len(msg))
				cpu0 := processCPU()
				for b.Loop() {
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						b.Fatal(err)
					}
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.Write(msg)
					if _, err := bufio.NewReader(c).Read(buf); err != nil {
						b.Fatal(err)
					}
					c.Close()
				}
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
				// Every connection closed on the server's side, so each
				// was logged within the measurement or just after.
				for range 500 {
					if srv.Stats().Active == 0 {
						break
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
	}
}

// processCPU is the process's user and system CPU time so far, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
