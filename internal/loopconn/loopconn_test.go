//go:build linux || darwin || freebsd || netbsd || openbsd

package loopconn

import (
	"errors"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"switchboard/framing"
	"switchboard/internal/connstate"
	"switchboard/internal/engine"
	"switchboard/internal/sockfd"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeIO is a test engine's per-connection state: what it was asked.
type fakeIO struct {
	flushed int   // Flush calls
	msgs    int64 // messages Flush was told of
	closed  bool  // CloseIO ran
}

// fake is an Engine that records what the core asks and flushes by
// dropping the outbox, as if the socket took everything.
type fake struct {
	l       *Loop[fakeIO]
	adopted []*Conn[fakeIO]
	drained int
}

func (f *fake) Flush(c *Conn[fakeIO], msgs int64) {
	if !f.l.BeginFlush(c, msgs) {
		return
	}
	c.IO.flushed++
	c.IO.msgs += msgs
	c.Out.Consume(c.Out.Len())
	c.Mu.Unlock()
	if c.State.Flushed() == connstate.CloseNow {
		f.l.Close(c, nil)
	}
}
func (f *fake) Adopt(c *Conn[fakeIO]) {
	f.adopted = append(f.adopted, c)
	f.l.Conns = append(f.l.Conns, c)
	f.l.Adopted(c)
	f.l.Start(c)
}
func (f *fake) Task(Task[fakeIO])             {}
func (f *fake) CloseListeners()               {}
func (f *fake) DrainConn(*Conn[fakeIO]) bool  { f.drained++; return true }
func (f *fake) ReleaseLocked(c *Conn[fakeIO]) { c.Out.Release() }
func (f *fake) CloseIO(c *Conn[fakeIO])       { c.IO.closed = true }
func (f *fake) Wake() error                   { return nil }

// recorder is a Handler that echoes and records OnClose.
type recorder struct {
	opened int
	msgs   [][]byte
	closed []error
}

func (h *recorder) OnOpen(engine.Conn) { h.opened++ }
func (h *recorder) OnMessage(c engine.Conn, m []byte) {
	h.msgs = append(h.msgs, append([]byte(nil), m...))
	c.Write(m)
}
func (h *recorder) OnClose(_ engine.Conn, err error) { h.closed = append(h.closed, err) }

// rig is one loop of a server on a fake engine, with one connection
// open on it.
func rig(t *testing.T, cfg engine.Config) (*Loop[fakeIO], *fake, *recorder, *Conn[fakeIO]) {
	t.Helper()
	h := &recorder{}
	s := &Server[fakeIO]{}
	s.Init("fake", cfg, h)
	l := &Loop[fakeIO]{}
	f := &fake{l: l}
	l.Init(s, f, 0, 0)
	l.SetWaker(f)
	s.SetLoops([]*Loop[fakeIO]{l}, true)
	l.Now = s.Clock()
	ln, _ := s.AddListener(&sockfd.Listener{Unix: true})
	c := l.Admit(-1, ln, nil)
	if c == nil {
		t.Fatal("Admit refused the first connection")
	}
	l.Place(c)
	if h.opened != 1 || c.State != connstate.Open {
		t.Fatalf("after Place: opened %d, state %v", h.opened, c.State)
	}
	return l, f, h, c
}

// TestDeliverEchoes: a batch of input is decoded, handed over, counted,
// and the engine is told how many messages to flush.
func TestDeliverEchoes(t *testing.T) {
	l, _, h, c := rig(t, engine.Config{Codec: framing.Line(64)})
	l.In(c).Feed(l.SplitOf(c), []byte("one\ntwo\nthr"))
	msgs, ok := l.Deliver(c, 11)
	if !ok || msgs != 2 {
		t.Fatalf("Deliver = %d, %v; want 2, true", msgs, ok)
	}
	if len(h.msgs) != 2 || string(h.msgs[1]) != "two" {
		t.Fatalf("handler got %q", h.msgs)
	}
	if c.In.Buffered() != 3 {
		t.Fatalf("partial frame: %d bytes held, want 3", c.In.Buffered())
	}
	l.Eng.Flush(c, msgs)
	if st := c.Stats(); st.BytesIn != 11 || st.MessagesIn != 2 || st.MessagesOut != 2 {
		t.Fatalf("stats %+v", st)
	}
	// The rest of the frame completes it: nothing is held, and the
	// connection gives its frame-loop state back to the loop.
	l.In(c).Feed(l.SplitOf(c), []byte("ee\n"))
	if msgs, ok := l.Deliver(c, 3); !ok || msgs != 1 || string(h.msgs[2]) != "three" {
		t.Fatalf("Deliver = %d, %v; handler got %q", msgs, ok, h.msgs)
	}
	if c.In != nil || len(l.accs) != 1 {
		t.Fatalf("nothing held, yet the connection keeps its accumulator (%p, %d free)", c.In, len(l.accs))
	}
}

// TestWriteLimit: a Write past the limit fails with ErrSlowConsumer,
// later ones with ErrConnClosed, and the connection closes with the
// reason at the batch's end.
func TestWriteLimit(t *testing.T) {
	l, _, h, c := rig(t, engine.Config{MaxPending: 1 << 10})
	c.BeginCallbacks()
	big := make([]byte, l.S.WriteLimit+1)
	if err := c.Write(big); !errors.Is(err, engine.ErrSlowConsumer) {
		t.Fatalf("Write past the limit: %v", err)
	}
	if err := c.Write([]byte("x")); !errors.Is(err, engine.ErrConnClosed) {
		t.Fatalf("Write after: %v", err)
	}
	l.Eng.Flush(c, 0)
	if c.State != connstate.Closed || !c.IO.closed {
		t.Fatalf("state %v, CloseIO %v", c.State, c.IO.closed)
	}
	if len(h.closed) != 1 || !errors.Is(h.closed[0], engine.ErrSlowConsumer) {
		t.Fatalf("OnClose: %v", h.closed)
	}
	if a := l.S.Stats.Active.Load(); a != 0 {
		t.Fatalf("Active %d after close", a)
	}
}

// TestCloseFromElsewhere: Close on another goroutine posts a kick; the
// loop applies it when it runs its queue, once.
func TestCloseFromElsewhere(t *testing.T) {
	l, _, h, c := rig(t, engine.Config{})
	done := make(chan error)
	go func() { done <- c.Close() }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !l.Notified() {
		t.Fatal("Close posted nothing")
	}
	l.RunQueue()
	if c.State != connstate.Closed || len(h.closed) != 1 || h.closed[0] != nil {
		t.Fatalf("state %v, OnClose %v", c.State, h.closed)
	}
	if err := c.Close(); !errors.Is(err, engine.ErrConnClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// TestIdleTimerIsLazy: reading moves the idle deadline without touching
// the heap; the entry is pushed down when it comes up, and closes the
// connection only once the real deadline passes.
func TestIdleTimerIsLazy(t *testing.T) {
	l, _, h, c := rig(t, engine.Config{IdleTimeout: time.Second})
	start := l.Now
	c.LastRead = start + int64(500*time.Millisecond)
	l.Now = start + int64(time.Second)
	l.RunTimers()
	if c.State == connstate.Closed {
		t.Fatal("closed at the first deadline although it read since")
	}
	if got := l.Timers.Next(); got != c.LastRead+int64(time.Second) {
		t.Fatalf("idle entry at %d, want %d", got, c.LastRead+int64(time.Second))
	}
	l.Now = c.LastRead + int64(time.Second)
	l.RunTimers()
	if len(h.closed) != 1 || !errors.Is(h.closed[0], engine.ErrIdleTimeout) {
		t.Fatalf("OnClose: %v", h.closed)
	}
}

// TestAfterFunc: an AfterFunc runs on the loop when due and the batch is
// flushed; one armed on a connection that closes never runs.
func TestAfterFunc(t *testing.T) {
	l, _, _, c := rig(t, engine.Config{})
	ran := 0
	c.AfterFunc(time.Millisecond, func() { ran++; c.Write([]byte("tick")) })
	c.AfterFunc(time.Hour, func() { t.Error("AfterFunc ran after its connection closed") })
	l.RunQueue()
	l.Now = l.S.Clock() + int64(time.Second)
	flushed := c.IO.flushed
	l.RunTimers()
	if ran != 1 || c.IO.flushed != flushed+1 {
		t.Fatalf("ran %d, flushed %d -> %d", ran, flushed, c.IO.flushed)
	}
	l.Close(c, nil)
	if len(l.afters) != 0 {
		t.Fatalf("%d handler timers left after the close", len(l.afters))
	}
}

// TestDrainThenPeerFIN: a drain refuses further writes and sends the
// FIN at the flush; the peer's FIN then closes the connection cleanly.
func TestDrainThenPeerFIN(t *testing.T) {
	l, f, h, c := rig(t, engine.Config{})
	l.Drain()
	if f.drained != 1 || c.State != connstate.WriteShut {
		t.Fatalf("drained %d, state %v", f.drained, c.State)
	}
	if err := c.Write([]byte("late")); !errors.Is(err, engine.ErrConnClosed) {
		t.Fatalf("Write while draining: %v", err)
	}
	if l.EOF(c) {
		t.Fatal("EOF while draining asked for PeerEOF")
	}
	if c.State != connstate.Closed || len(h.closed) != 1 || h.closed[0] != nil || !l.Done() {
		t.Fatalf("state %v, OnClose %v, done %v", c.State, h.closed, l.Done())
	}
}

// TestMaxConns: a connection over the limit is refused at Admit and
// counted, and nothing of it stays counted as open.
func TestMaxConns(t *testing.T) {
	l, _, _, _ := rig(t, engine.Config{MaxConns: 1})
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Skip(err)
	}
	if c := l.Admit(fd, 0, nil); c != nil {
		t.Fatal("Admit let a connection past MaxConns")
	}
	if r, n := l.S.Stats.Rejected.Load(), l.S.NConns.Load(); r != 1 || n != 1 {
		t.Fatalf("rejected %d, open %d", r, n)
	}
}

// TestConnSize: a connection is what an idle connection costs, so it
// stays in the 176-byte size class with an engine's IO of up to four
// bytes (the reactor has none, the completion engine a slot number).
func TestConnSize(t *testing.T) {
	for name, size := range map[string]uintptr{
		"no IO":        unsafe.Sizeof(Conn[struct{}]{}),
		"four-byte IO": unsafe.Sizeof(Conn[struct{ slot uint32 }]{}),
	} {
		if size > 176 {
			t.Errorf("Conn with %s is %d bytes, want at most 176", name, size)
		}
	}
}

// TestMessagesOutBatched: Writes count on the connection at once and into
// Stats.MessagesOut only when the loop adds its iteration's counts, each
// exactly once however many flushes see it; a connection closed with
// Writes not yet flushed has them counted before its close is.
func TestMessagesOutBatched(t *testing.T) {
	l, _, _, c := rig(t, engine.Config{Codec: framing.Line(64)})
	st := l.S.Stats
	c.Write([]byte("a")) // from outside a callback: a kick would follow
	c.Write([]byte("b"))
	if got := c.Stats().MessagesOut; got != 2 {
		t.Fatalf("connection counted %d Writes, want 2", got)
	}
	if got := st.MessagesOut.Load(); got != 0 {
		t.Fatalf("Stats counted %d Writes before the loop flushed", got)
	}
	l.Eng.Flush(c, 0)
	l.Eng.Flush(c, 0) // nothing new
	l.AddStats()
	if got := st.MessagesOut.Load(); got != 2 {
		t.Fatalf("after the iteration: Stats.MessagesOut %d, want 2", got)
	}
	c.Write([]byte("c"))
	l.Close(c, nil)
	if got, active := st.MessagesOut.Load(), st.Active.Load(); got != 3 || active != 0 {
		t.Fatalf("after the close: Stats.MessagesOut %d, Active %d; want 3, 0", got, active)
	}
	l.AddStats()
	if got := st.MessagesOut.Load(); got != 3 {
		t.Fatalf("counted twice: Stats.MessagesOut %d, want 3", got)
	}
}
