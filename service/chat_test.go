package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard"
	"switchboard/client"
)

// observed wraps a handler and reports opens and closes.
type observed struct {
	switchboard.Handler
	opened chan struct{}
	closed chan error
}

func observe(h switchboard.Handler) *observed {
	return &observed{Handler: h, opened: make(chan struct{}, 64), closed: make(chan error, 64)}
}

func (o *observed) OnOpen(c switchboard.Conn) {
	o.Handler.OnOpen(c)
	o.opened <- struct{}{}
}

func (o *observed) OnClose(c switchboard.Conn, err error) {
	o.Handler.OnClose(c, err)
	o.closed <- err
}

func (o *observed) waitOpened(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-o.opened:
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for connections to open")
		}
	}
}

func (o *observed) waitClosed(t *testing.T) error {
	t.Helper()
	select {
	case err := <-o.closed:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a connection to close")
		return nil
	}
}

func receive(t *testing.T, c *client.Conn, want string) {
	t.Helper()
	got, err := c.Receive(context.Background())
	if err != nil || string(got) != want {
		t.Fatalf("Receive = %.40q, %v; want %.40q", got, err, want)
	}
}

func TestChatBroadcast(t *testing.T) {
	forModels(t, true, func(t *testing.T, model string) {
		h := observe(Chat())
		addr, _ := startServer(t, model, h, switchboard.WithFraming("line", 0))
		a := dial(t, addr, client.WithFraming("line", 0))
		b := dial(t, addr, client.WithFraming("line", 0))
		c := dial(t, addr, client.WithFraming("line", 0))
		h.waitOpened(t, 3)

		if err := a.Send([]byte("hi from a")); err != nil {
			t.Fatal(err)
		}
		receive(t, b, "hi from a")
		receive(t, c, "hi from a")
		if err := b.Send([]byte("yo")); err != nil {
			t.Fatal(err)
		}
		// Had a got its own line back, it would come before b's.
		receive(t, a, "yo")
		receive(t, c, "yo")

		c.Close()
		if err := h.waitClosed(t); err != nil {
			t.Fatalf("close reason %v", err)
		}
		if err := a.Send([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		receive(t, b, "bye")
		if err := b.Send([]byte("")); err != nil { // an empty line is a message too
			t.Fatal(err)
		}
		receive(t, a, "")
	})
}

// TestChatSlowConsumer has two members chat while a third never reads. The
// engine must disconnect the third for its pending output, the other two
// must get every line, and memory must stay bounded.
func TestChatSlowConsumer(t *testing.T) {
	forModels(t, true, func(t *testing.T, model string) {
		h := observe(Chat())
		addr, srv := startServer(t, model, h,
			switchboard.WithFraming("line", 1024),
			switchboard.WithMaxPending(16<<10))

		slow, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		a := dial(t, addr, client.WithFraming("line", 1024))
		b := dial(t, addr, client.WithFraming("line", 1024))
		h.waitOpened(t, 3)

		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)

		const batch = 32
		line := func(who string, round, i int) []byte {
			s := fmt.Sprintf("%s-%d-%d-", who, round, i)
			return []byte(s + strings.Repeat("x", 1000-len(s)))
		}
		talk := func(from, to *client.Conn, who string, round int) {
			t.Helper()
			msgs := make([][]byte, batch)
			for i := range msgs {
				msgs[i] = line(who, round, i)
			}
			if err := from.SendBatch(msgs...); err != nil {
				t.Fatalf("round %d: send: %v", round, err)
			}
			for i := range msgs {
				receive(t, to, string(msgs[i]))
			}
		}

		deadline := time.Now().Add(60 * time.Second)
		dropped, extra := false, 0
		for round := 0; extra < 20; round++ {
			if round > 5000 || time.Now().After(deadline) {
				t.Fatalf("slow consumer still connected after %d rounds (%d KiB sent to it)", round, round*2*batch)
			}
			talk(a, b, "a", round)
			talk(b, a, "b", round)
			if !dropped {
				select {
				case err := <-h.closed:
					if !errors.Is(err, switchboard.ErrSlowConsumer) {
						t.Fatalf("a connection closed with %v, want ErrSlowConsumer", err)
					}
					dropped = true
				default:
				}
			} else {
				extra++ // the others keep going without it
			}
		}
		if n := srv.Stats().SlowConsumers; n != 1 {
			t.Errorf("SlowConsumers = %d, want 1", n)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
			t.Errorf("heap grew by %d MiB", grew>>20)
		}
		// The slow member sees its stream end.
		slow.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64<<10)
		total := 0
		for range 100000 {
			n, err := slow.Read(buf)
			total += n
			if err != nil {
				if isTimeout(err) {
					t.Fatalf("the slow consumer's connection was not closed (read %d bytes)", total)
				}
				break
			}
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// inlineConn is a fake connection whose Write can close it on the spot and
// run the handler's OnClose on the caller's goroutine, as a reactor engine
// closing a slow consumer may.
type inlineConn struct {
	fakeConn
	h    switchboard.Handler
	fail bool
}

func (c *inlineConn) Write(msg []byte) error {
	if c.fail {
		c.fail = false
		c.h.OnClose(c, switchboard.ErrSlowConsumer)
		return switchboard.ErrSlowConsumer
	}
	return c.fakeConn.Write(msg)
}

func TestChatCloseInsideWrite(t *testing.T) {
	h := Chat()
	var conns []*inlineConn
	for i := range 4 {
		c := &inlineConn{h: h, fail: i == 1 || i == 2}
		conns = append(conns, c)
		h.OnOpen(c)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.OnMessage(conns[0], []byte("m1"))
		h.OnMessage(conns[3], []byte("m2"))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("deadlock: OnClose inside Write blocked")
	}
	if got := string(conns[3].out); got != "m1" {
		t.Errorf("member 3 got %q", got)
	}
	if got := string(conns[0].out); got != "m2" {
		t.Errorf("member 0 got %q", got)
	}
	if n := len(*h.(*chatRoom).members.Load()); n != 2 {
		t.Errorf("%d members left, want 2", n)
	}
}

func TestChatConcurrentJoinLeave(t *testing.T) {
	h := Chat()
	stable := &fakeConn{}
	h.OnOpen(stable)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				c := &fakeConn{}
				h.OnOpen(c)
				h.OnMessage(c, []byte(fmt.Sprintf("%d-%d", g, i)))
				h.OnClose(c, nil)
			}
		}()
	}
	wg.Wait()
	stable.mu.Lock()
	got := string(stable.out)
	stable.mu.Unlock()
	if n := strings.Count(got, "-"); n != 800 {
		t.Errorf("stable member got %d messages, want 800", n)
	}
	if n := len(*h.(*chatRoom).members.Load()); n != 1 {
		t.Errorf("%d members left, want 1", n)
	}
}
