//go:build linux || darwin || freebsd || netbsd || openbsd

package reactor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"switchboard/framing"
	"switchboard/internal/engine"
	"switchboard/internal/poller"
)

// TestManyConns holds 5,000 connections open at once on each scalable
// backend and checks every one echoes its own message.
func TestManyConns(t *testing.T) {
	for _, backend := range backends(t, "epoll", "poll", "kqueue", "uring") {
		t.Run(backend, func(t *testing.T) {
			const conns, workers = 5000, 50
			ts := startServer(t, backend, engine.Config{Loops: 2}, echoHandler{})
			var connected, failed sync.WaitGroup
			connected.Add(workers)
			errs := make(chan error, workers)
			start := make(chan struct{})
			for w := range workers {
				failed.Go(func() {
					// Spread the clients over 127.0.0.x source addresses so
					// the ephemeral port range is never the limit.
					d := net.Dialer{
						Timeout:   10 * time.Second,
						LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+w))},
					}
					cs := make([]net.Conn, 0, conns/workers)
					defer func() {
						for _, c := range cs {
							c.Close()
						}
					}()
					var err error
					for range conns / workers {
						var c net.Conn
						if c, err = d.Dial("tcp", ts.addr); err != nil {
							break
						}
						c.SetDeadline(time.Now().Add(60 * time.Second))
						cs = append(cs, c)
					}
					connected.Done()
					if err != nil {
						errs <- err
						return
					}
					<-start
					for i, c := range cs {
						msg := fmt.Appendf(nil, "worker %d conn %d", w, i)
						if _, err := c.Write(msg); err != nil {
							errs <- err
							return
						}
					}
					for i, c := range cs {
						want := fmt.Appendf(nil, "worker %d conn %d", w, i)
						got := make([]byte, len(want))
						if _, err := io.ReadFull(c, got); err != nil {
							errs <- fmt.Errorf("conn %d/%d: %w", w, i, err)
							return
						}
						if !bytes.Equal(got, want) {
							errs <- fmt.Errorf("conn %d/%d: got %q want %q", w, i, got, want)
							return
						}
					}
				})
			}
			connected.Wait()
			waitFor(t, 20*time.Second, "5000 active connections", func() bool {
				return ts.stats.Active.Load() == conns || len(errs) > 0
			})
			close(start)
			failed.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "every connection closed", func() bool { return ts.stats.Active.Load() == 0 })
			if got := ts.stats.Accepted.Load(); got != conns {
				t.Fatalf("Accepted = %d, want %d", got, conns)
			}
		})
	}
}

// TestSelectFdSetSize drives select past FD_SETSIZE: connections whose
// descriptor does not fit an fd_set are closed at accept and counted, the
// others are served, and once the crowd leaves new connections are served
// again.
func TestSelectFdSetSize(t *testing.T) {
	backends(t, "select")
	const attempts = 1500
	ts := startServer(t, "select", engine.Config{Loops: 1}, echoHandler{})
	cs := make([]net.Conn, 0, attempts)
	resetAtDial := 0
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for i := range attempts {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%200))}}
		c, err := d.Dial("tcp", ts.addr)
		if errors.Is(err, syscall.ECONNRESET) {
			// Refused so fast the reset beat the handshake's end.
			resetAtDial++
			continue
		}
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		cs = append(cs, c)
	}
	waitFor(t, 10*time.Second, "every connection accepted or refused", func() bool {
		return ts.stats.Accepted.Load()+ts.stats.Rejected.Load() == attempts
	})
	served, refused := 0, resetAtDial
	for i, c := range cs {
		msg := fmt.Appendf(nil, "select %d", i)
		got := make([]byte, len(msg))
		_, werr := c.Write(msg)
		_, rerr := io.ReadFull(c, got)
		switch {
		case werr == nil && rerr == nil && bytes.Equal(got, msg):
			served++
		case errors.Is(werr, syscall.ECONNRESET) || errors.Is(rerr, syscall.ECONNRESET) || errors.Is(rerr, io.EOF):
			refused++
		default:
			t.Fatalf("conn %d: write %v, read %v (%q)", i, werr, rerr, got)
		}
	}
	t.Logf("served %d, refused %d (FD_SETSIZE %d)", served, refused, poller.FdSetSize)
	if refused == 0 || served == 0 {
		t.Fatalf("served %d refused %d: want both", served, refused)
	}
	if int64(served) != ts.stats.Accepted.Load() || int64(refused) != ts.stats.Rejected.Load() {
		t.Fatalf("served %d refused %d, stats say accepted %d rejected %d",
			served, refused, ts.stats.Accepted.Load(), ts.stats.Rejected.Load())
	}
	for _, c := range cs {
		c.Close()
	}
	cs = cs[:0]
	waitFor(t, 10*time.Second, "the crowd to leave", func() bool { return ts.stats.Active.Load() == 0 })
	for i := range 20 {
		c := dial(t, ts.addr)
		msg := fmt.Appendf(nil, "after %d", i)
		c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("after the crowd left, conn %d: %v %q", i, err, got)
		}
	}
}

// TestSplitEveryByte sends two len:4 frames split at every byte boundary,
// so each piece arrives in a read of its own, and byte by byte.
func TestSplitEveryByte(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			codec := mustCodec(t, "len:4", 0)
			ts := startServer(t, backend, engine.Config{Codec: codec}, echoHandler{})
			c := dial(t, ts.addr)
			c.(*net.TCPConn).SetNoDelay(true)
			wire, _ := codec.Append(nil, []byte("first frame"))
			wire, _ = codec.Append(wire, []byte("second"))
			check := func(what string) {
				for _, want := range []string{"first frame", "second"} {
					got, err := readFrame(c)
					if err != nil || string(got) != want {
						t.Fatalf("%s: got %q, %v; want %q", what, got, err, want)
					}
				}
			}
			for i := 1; i < len(wire); i++ {
				c.Write(wire[:i])
				time.Sleep(time.Millisecond)
				c.Write(wire[i:])
				check(fmt.Sprintf("split at %d", i))
			}
			for i := range wire {
				c.Write(wire[i : i+1])
				time.Sleep(200 * time.Microsecond)
			}
			check("byte by byte")
		})
	}
}

// TestCrossLoopWrites writes from goroutines outside the loops to
// connections spread over two loops, while the loops themselves echo on
// the same connections. Every frame must arrive intact, each source's in
// order.
func TestCrossLoopWrites(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			const conns, writers, perWriter = 16, 4, 200
			codec := mustCodec(t, "len:4", 0)
			var reg registry
			h := &funcs{open: reg.add, msg: func(c engine.Conn, m []byte) { c.Write(m) }}
			ts := startServer(t, backend, engine.Config{Codec: codec, Loops: 2}, h)
			cs := make([]net.Conn, conns)
			for i := range cs {
				cs[i] = dial(t, ts.addr)
			}
			waitFor(t, 5*time.Second, "all open", func() bool { return reg.len() == conns })
			loops := map[int]int{}
			for _, c := range reg.snapshot() {
				loops[loopOf(c)]++
			}
			if len(loops) != 2 {
				t.Fatalf("connections per loop %v: want both loops used", loops)
			}

			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for seq := range perWriter {
						msg := fmt.Appendf(nil, "w%d:%d", w, seq)
						for _, c := range reg.snapshot() {
							if err := c.Write(msg); err != nil {
								t.Errorf("Write from outside: %v", err)
								return
							}
						}
					}
				})
			}
			for i, c := range cs {
				wg.Go(func() {
					for seq := range perWriter {
						frame, _ := codec.Append(nil, fmt.Appendf(nil, "e%d:%d", i, seq))
						if _, err := c.Write(frame); err != nil {
							t.Error(err)
							return
						}
					}
				})
				wg.Go(func() {
					next := map[string]int{}
					for range (writers + 1) * perWriter {
						f, err := readFrame(c)
						if err != nil {
							t.Errorf("conn %d: %v", i, err)
							return
						}
						var src string
						var seq int
						if _, err := fmt.Sscanf(string(bytes.Replace(f, []byte(":"), []byte(" "), 1)), "%s %d", &src, &seq); err != nil {
							t.Errorf("conn %d: bad frame %q", i, f)
							return
						}
						if seq != next[src] {
							t.Errorf("conn %d: %s frame %d, want %d", i, src, seq, next[src])
							return
						}
						next[src]++
					}
				})
			}
			wg.Wait()
			// A Conn for a closed connection refuses writes.
			victim := reg.snapshot()[0]
			victim.Close()
			waitFor(t, 5*time.Second, "close", func() bool { return ts.stats.Active.Load() == conns-1 })
			if err := victim.Write([]byte("late")); !errors.Is(err, engine.ErrConnClosed) {
				t.Fatalf("Write after close = %v, want ErrConnClosed", err)
			}
		})
	}
}

// TestBackpressure: a client that does not read. The server must stop
// reading it with at most WriteLimit queued, and resume when it reads.
func TestBackpressure(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			const maxPending = 256 << 10
			var reg registry
			h := &funcs{open: reg.add, msg: func(c engine.Conn, m []byte) { c.Write(m) }}
			cfg := engine.Config{MaxPending: maxPending}
			ts := startServer(t, backend, cfg, h)
			cfg.Normalize()
			limit := cfg.WriteLimit()

			c := dial(t, ts.addr)
			wire := make([]byte, 24<<20)
			for i := range wire {
				wire[i] = byte(i % 251)
			}
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(wire)
				werr <- err
			}()
			waitFor(t, 5*time.Second, "open", func() bool { return reg.len() == 1 })
			sc := reg.snapshot()[0]
			peak := 0
			var last int64 = -1
			for range 500 {
				time.Sleep(10 * time.Millisecond)
				peak = max(peak, pendingBytes(sc))
				in := ts.stats.BytesIn.Load()
				if in == last {
					break
				}
				last = in
			}
			if last >= int64(len(wire)) {
				t.Fatal("server read everything from a client that does not read")
			}
			if peak > limit {
				t.Fatalf("pending output peaked at %d, WriteLimit %d", peak, limit)
			}
			t.Logf("paused after reading %d bytes; pending %d (high water %d, limit %d)", last, pendingBytes(sc), maxPending, limit)
			got := make([]byte, len(wire))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wire) {
				t.Fatal("echo differs after the reader caught up")
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if n := ts.stats.SlowConsumers.Load(); n != 0 {
				t.Fatalf("SlowConsumers = %d: an echo must never pass WriteLimit", n)
			}
		})
	}
}

// TestSlowConsumer: output the handler produces unprompted for a client
// that never reads hits WriteLimit, and the connection is closed with
// ErrSlowConsumer while pending stays bounded.
func TestSlowConsumer(t *testing.T) {
	for _, backend := range backends(t, Backends()[0], "uring") {
		t.Run(backend, func(t *testing.T) { testSlowConsumer(t, backend) })
	}
}

func testSlowConsumer(t *testing.T, backend string) {
	cl := newCloses()
	var wg sync.WaitGroup
	werr := make(chan error, 1)
	var reg registry
	h := &funcs{
		open: func(c engine.Conn) {
			reg.add(c)
			wg.Go(func() {
				msg := make([]byte, 1024)
				for {
					if err := c.Write(msg); err != nil {
						werr <- err
						return
					}
				}
			})
		},
		close: func(_ engine.Conn, err error) { cl <- err },
	}
	cfg := engine.Config{MaxPending: 64 << 10}
	ts := startServer(t, backend, cfg, h)
	defer wg.Wait()
	dial(t, ts.addr)
	if err := <-werr; !errors.Is(err, engine.ErrSlowConsumer) {
		t.Fatalf("Write = %v, want ErrSlowConsumer", err)
	}
	if err := cl.wait(t, 5*time.Second); !errors.Is(err, engine.ErrSlowConsumer) {
		t.Fatalf("OnClose(%v), want ErrSlowConsumer", err)
	}
	if n := ts.stats.SlowConsumers.Load(); n != 1 {
		t.Fatalf("SlowConsumers = %d", n)
	}
}

// TestIdleTimeout: the timer heap closes a silent connection after the
// idle timeout, and leaves a chatty one alone.
func TestIdleTimeout(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			// The chatty connection writes every idle/6: room for a loaded
			// machine to delay it by most of the timeout and still prove
			// that activity keeps a connection open beside a silent one.
			const idle = 600 * time.Millisecond
			cl := newCloses()
			h := &funcs{msg: func(c engine.Conn, m []byte) { c.Write(m) }, close: func(_ engine.Conn, err error) { cl <- err }}
			ts := startServer(t, backend, engine.Config{IdleTimeout: idle}, h)
			chatty := dial(t, ts.addr)
			began := time.Now()
			silent := dial(t, ts.addr)
			stop := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				b := []byte("x")
				for {
					select {
					case <-stop:
						done <- nil
						return
					case <-time.After(idle / 6):
					}
					chatty.Write(b)
					if _, err := io.ReadFull(chatty, b); err != nil {
						done <- err
						return
					}
				}
			}()
			if _, err := silent.Read(make([]byte, 1)); err == nil {
				t.Fatal("silent connection got data")
			}
			waited := time.Since(began)
			if err := cl.wait(t, 5*time.Second); !errors.Is(err, engine.ErrIdleTimeout) {
				t.Fatalf("OnClose(%v), want ErrIdleTimeout", err)
			}
			if waited < idle-10*time.Millisecond || waited > idle+time.Second {
				t.Fatalf("closed after %v, idle timeout %v", waited, idle)
			}
			time.Sleep(2 * idle)
			close(stop)
			if err := <-done; err != nil {
				t.Fatalf("chatty connection: %v", err)
			}
			if n := ts.stats.Timeouts.Load(); n != 1 {
				t.Fatalf("Timeouts = %d, want 1", n)
			}
		})
	}
}

// TestWriteTimeout: output that makes no progress for the write timeout
// closes the connection, from the timer heap.
func TestWriteTimeout(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			const wt = 200 * time.Millisecond
			cl := newCloses()
			var stuckAt atomic.Int64
			h := &funcs{
				msg: func(c engine.Conn, m []byte) {
					chunk := make([]byte, 64<<10)
					for range 12 << 20 / len(chunk) {
						c.Write(chunk)
					}
					stuckAt.Store(time.Now().UnixNano())
				},
				close: func(_ engine.Conn, err error) { cl <- err },
			}
			ts := startServer(t, backend, engine.Config{MaxPending: 8 << 20, WriteTimeout: wt}, h)
			c := dial(t, ts.addr)
			c.Write([]byte("go"))
			err := cl.wait(t, 10*time.Second)
			if !errors.Is(err, engine.ErrWriteTimeout) {
				t.Fatalf("OnClose(%v), want ErrWriteTimeout", err)
			}
			if after := time.Since(time.Unix(0, stuckAt.Load())); after < wt-10*time.Millisecond {
				t.Fatalf("write timeout fired %v after the output got stuck, want >= %v", after, wt)
			}
			if n := ts.stats.Timeouts.Load(); n != 1 {
				t.Fatalf("Timeouts = %d, want 1", n)
			}
		})
	}
}

// TestHalfClose: the client sends, shuts down its write half, and gets the
// full echo and then EOF; with the eof codec the whole upload is one
// message.
func TestHalfClose(t *testing.T) {
	for _, backend := range models() {
		for _, spec := range []string{"raw", "eof", "len:4"} {
			t.Run(backend+"/"+spec, func(t *testing.T) {
				codec := mustCodec(t, spec, 4<<20)
				cl := newCloses()
				var msgs atomic.Int64
				h := &funcs{
					msg:   func(c engine.Conn, m []byte) { msgs.Add(1); c.Write(m) },
					close: func(_ engine.Conn, err error) { cl <- err },
				}
				ts := startServer(t, backend, engine.Config{Codec: codec}, h)
				c := dial(t, ts.addr)
				payload := bytes.Repeat([]byte("half-close "), 100_000)
				wire, err := codec.Append(nil, payload)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					c.Write(wire)
					c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, wire) {
					t.Fatalf("got %d bytes back, want %d", len(got), len(wire))
				}
				if err := cl.wait(t, 5*time.Second); err != nil {
					t.Fatalf("OnClose(%v), want nil", err)
				}
				if spec == "eof" && msgs.Load() != 1 {
					t.Fatalf("eof codec delivered %d messages", msgs.Load())
				}
			})
		}
	}
}

// TestServerCloseWrite: the handler replies and calls CloseWrite; the
// client reads the reply and EOF, can still send, and its close ends the
// connection with a nil error.
func TestServerCloseWrite(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			cl := newCloses()
			got := make(chan string, 10)
			h := &funcs{
				msg: func(c engine.Conn, m []byte) {
					got <- string(m)
					if string(m) == "bye" {
						c.Write([]byte("see you"))
						c.CloseWrite()
						if err := c.Write([]byte("more")); !errors.Is(err, engine.ErrConnClosed) {
							t.Errorf("Write after CloseWrite = %v", err)
						}
					}
				},
				close: func(_ engine.Conn, err error) { cl <- err },
			}
			ts := startServer(t, backend, engine.Config{}, h)
			c := dial(t, ts.addr)
			c.Write([]byte("bye"))
			reply, err := io.ReadAll(c)
			if err != nil || string(reply) != "see you" {
				t.Fatalf("reply %q, %v", reply, err)
			}
			<-got
			c.Write([]byte("still here"))
			if m := <-got; m != "still here" {
				t.Fatalf("server got %q after its CloseWrite", m)
			}
			c.Close()
			if err := cl.wait(t, 5*time.Second); err != nil {
				t.Fatalf("OnClose(%v)", err)
			}
		})
	}
}

// TestShutdownDrains: replies queued before Shutdown reach the client in
// full, followed by EOF rather than a reset.
func TestShutdownDrains(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			big := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
			received := make(chan struct{})
			h := &funcs{msg: func(c engine.Conn, m []byte) {
				c.Write(big)
				close(received)
			}}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			eng, err := newEngine(backend, engine.Config{Loops: 2}, h)
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- eng.Serve(ln) }()
			c := dial(t, ln.Addr().String())
			c.Write([]byte("go"))
			<-received
			shut := make(chan error, 1)
			go func() {
				ctx, cancel := contextWithTimeout(5 * time.Second)
				defer cancel()
				shut <- eng.Shutdown(ctx)
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read after Shutdown: %v (a reset instead of EOF?)", err)
			}
			if !bytes.Equal(got, big) {
				t.Fatalf("got %d bytes, want %d", len(got), len(big))
			}
			c.Close()
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := <-served; !errors.Is(err, engine.ErrServerClosed) {
				t.Fatalf("Serve: %v", err)
			}
			if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
				t.Fatal("still accepting after Shutdown")
			}
		})
	}
}

// TestShutdownDeadline: a peer that never closes is cut off at Shutdown's
// deadline, with ErrShutdown, and Shutdown returns the context's error.
func TestShutdownDeadline(t *testing.T) {
	backend := Backends()[0]
	cl := newCloses()
	eng, addr, served := serveOwn(t, backend, engine.Config{WriteTimeout: time.Minute}, &funcs{
		msg:   func(c engine.Conn, m []byte) { c.Write(make([]byte, 8<<20)) },
		close: func(_ engine.Conn, err error) { cl <- err },
	})
	c := dial(t, addr)
	c.Write([]byte("x")) // and never read the 8 MiB reply
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := contextWithTimeout(200 * time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := eng.Shutdown(ctx); !errors.Is(err, ctx.Err()) || err == nil {
		t.Fatalf("Shutdown = %v, want the context's error", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if err := cl.wait(t, time.Second); !errors.Is(err, engine.ErrShutdown) {
		t.Fatalf("OnClose(%v), want ErrShutdown", err)
	}
	if err := <-served; !errors.Is(err, engine.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

// TestShutdownLingersAfterCloseWrite: a connection whose write half the
// handler shut before Shutdown, with a peer that never closes, is held
// only for the linger wait, not until a deadline Shutdown may not have.
func TestShutdownLingersAfterCloseWrite(t *testing.T) {
	backend := Backends()[0]
	cl := newCloses()
	eng, addr, served := serveOwn(t, backend, engine.Config{}, &funcs{
		open:  func(c engine.Conn) { c.CloseWrite() },
		close: func(_ engine.Conn, err error) { cl <- err },
	})
	c := dial(t, addr)
	if _, err := io.ReadAll(c); err != nil { // our FIN, before Shutdown
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	began := time.Now()
	go func() { shut <- eng.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(engine.LingerWait + 5*time.Second):
		eng.Close()
		<-shut
		t.Fatalf("Shutdown still waiting after %v for a peer that ignores our FIN", time.Since(began))
	}
	if d := time.Since(began); d < engine.LingerWait-100*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before the linger wait of %v", d, engine.LingerWait)
	}
	if err := cl.wait(t, time.Second); !errors.Is(err, engine.ErrShutdown) {
		t.Fatalf("OnClose(%v), want ErrShutdown", err)
	}
	if err := <-served; !errors.Is(err, engine.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

// TestProtocolError: a codec error closes only that connection, with the
// wrapped framing error, and is counted.
func TestProtocolError(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			cl := newCloses()
			h := &funcs{msg: func(c engine.Conn, m []byte) { c.Write(m) }, close: func(_ engine.Conn, err error) { cl <- err }}
			ts := startServer(t, backend, engine.Config{Codec: mustCodec(t, "len:2", 100)}, h)
			good, bad := dial(t, ts.addr), dial(t, ts.addr)
			bad.Write([]byte{0xff, 0xff, 'x'})
			if _, err := io.ReadAll(bad); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatal(err)
			}
			if err := cl.wait(t, 5*time.Second); !errors.Is(err, framing.ErrFrameTooLarge) {
				t.Fatalf("OnClose(%v), want ErrFrameTooLarge", err)
			}
			good.Write([]byte{0, 2, 'o', 'k'})
			b := make([]byte, 4)
			if _, err := io.ReadFull(good, b); err != nil || string(b[2:]) != "ok" {
				t.Fatalf("the other connection: %q %v", b, err)
			}
			if n := ts.stats.ProtocolErrors.Load(); n != 1 {
				t.Fatalf("ProtocolErrors = %d", n)
			}
		})
	}
}

// TestProxyProtocol: the header is stripped, split at any byte, and its
// source address becomes RemoteAddr; a bad header closes the connection
// with ErrProxyHeader before OnOpen.
func TestProxyProtocol(t *testing.T) {
	backend := Backends()[0]
	addrs := make(chan string, 10)
	cl := newCloses()
	h := &funcs{
		open:  func(c engine.Conn) { addrs <- c.RemoteAddr().String() },
		msg:   func(c engine.Conn, m []byte) { c.Write(m) },
		close: func(_ engine.Conn, err error) { cl <- err },
	}
	ts := startServer(t, backend, engine.Config{ProxyProtocol: true, Codec: mustCodec(t, "line", 0)}, h)
	header := "PROXY TCP4 192.0.2.7 198.51.100.1 4242 80\r\n"
	for _, split := range []int{0, 1, 6, 20, len(header) - 1, len(header) + 2} {
		c := dial(t, ts.addr)
		c.(*net.TCPConn).SetNoDelay(true)
		wire := header + "hello\n"
		c.Write([]byte(wire[:split]))
		time.Sleep(2 * time.Millisecond)
		c.Write([]byte(wire[split:]))
		got := make([]byte, 6)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello\n" {
			t.Fatalf("split %d: %q %v", split, got, err)
		}
		if a := <-addrs; a != "192.0.2.7:4242" {
			t.Fatalf("RemoteAddr %s", a)
		}
		c.Close()
		if err := cl.wait(t, 5*time.Second); err != nil {
			t.Fatalf("OnClose(%v)", err)
		}
	}
	c := dial(t, ts.addr)
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the protocol error counted", func() bool { return ts.stats.ProtocolErrors.Load() == 1 })
	// It never reached the handler: no OnOpen, no OnClose.
	time.Sleep(20 * time.Millisecond)
	select {
	case a := <-addrs:
		t.Fatalf("OnOpen(%s) for a connection without a valid header", a)
	case err := <-cl:
		t.Fatalf("OnClose(%v) for a connection the handler never saw", err)
	default:
	}
}

// TestUnixSocket: a Unix listener works, and closing it on shutdown
// removes its file.
func TestUnixSocket(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			path := t.TempDir() + "/sb.sock"
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			eng, err := newEngine(backend, engine.Config{}, echoHandler{})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- eng.Serve(ln) }()
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("over unix"))
			got := make([]byte, 9)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "over unix" {
				t.Fatalf("%q %v", got, err)
			}
			c.Close()
			eng.Close()
			<-served
			if _, err := net.Dial("unix", path); err == nil {
				t.Fatal("socket still accepting after Close")
			}
		})
	}
}

func TestUnsupportedBackend(t *testing.T) {
	_, err := New("iocp", engine.Config{}, echoHandler{})
	if !errors.Is(err, engine.ErrUnsupported) {
		t.Fatalf("New(iocp) = %v, want ErrUnsupported", err)
	}
}

// TestLifecycle covers the engine's edges: stopping before Serve, a second
// Serve, Close after Shutdown, and Serve without listeners.
func TestLifecycle(t *testing.T) {
	backend := Backends()[0]
	eng, _ := New(backend, engine.Config{}, echoHandler{})
	if err := eng.Serve(); err == nil || errors.Is(err, engine.ErrServerClosed) {
		t.Fatalf("Serve() with no listener = %v", err)
	}

	eng, _ = New(backend, engine.Config{}, echoHandler{})
	ctx, cancel := contextWithTimeout(time.Second)
	defer cancel()
	if err := eng.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown before Serve: %v", err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := eng.Serve(ln); !errors.Is(err, engine.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown = %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("Serve after Shutdown left the listener open")
	}

	ts := startServer(t, backend, engine.Config{Loops: 3}, echoHandler{})
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln2.Close()
	if err := ts.eng.Serve(ln2); err == nil || errors.Is(err, engine.ErrServerClosed) {
		t.Fatalf("second Serve = %v", err)
	}
	c := dial(t, ts.addr)
	c.Write([]byte("hi"))
	io.ReadFull(c, make([]byte, 2))
	if err := ts.eng.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ts.eng.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection open after Close")
	}
}

// TestHandOverToStoppedLoop: the moment an upgrade's Shutdown catches a
// server with one listener and two loops in. Loop 1 has drained and ended
// (it had nothing to finish) while loop 0, not yet told, accepts a
// connection and picks loop 1 for it, the least loaded. The connection
// must still be served, not reset: its client may have sent its request
// already (TestServeUpgradeUnderLoad in cmd/switchboard saw the reset).
func TestHandOverToStoppedLoop(t *testing.T) {
	for _, backend := range models() {
		t.Run(backend, func(t *testing.T) {
			ts := startServer(t, backend, engine.Config{Loops: 2, Codec: mustCodec(t, "line", 64)}, echoHandler{})
			echo := func(c net.Conn, msg string) {
				t.Helper()
				c.Write([]byte(msg))
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					t.Fatalf("echo of %q: %q, %v", msg, got, err)
				}
			}
			// The first connection goes to the accepting loop (a tie), so
			// that loop 1 is the less loaded from here on.
			echo(dial(t, ts.addr), "first\n")
			drainLoop(t, ts.eng, backend, 1)
			c := dial(t, ts.addr)
			echo(c, "second\n")
			if got := ts.stats.Rejected.Load(); got != 0 {
				t.Fatalf("%d connections refused", got)
			}
		})
	}
}
