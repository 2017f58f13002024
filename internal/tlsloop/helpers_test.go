package tlsloop_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard/internal/testcert"
	"switchboard/internal/tlsloop"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Certificates are made once per key type and shared by the tests.
var (
	certMu   sync.Mutex
	certSets = map[testcert.KeyType]*testcert.Set{}
)

func certs(tb testing.TB, k testcert.KeyType) *testcert.Set {
	tb.Helper()
	certMu.Lock()
	defer certMu.Unlock()
	if s := certSets[k]; s != nil {
		return s
	}
	s := testcert.NewWith(tb, k)
	certSets[k] = s
	return s
}

// queue is a task queue that never blocks its posters, like an engine's:
// Events methods post to it from the handshake goroutine.
type queue struct {
	mu    sync.Mutex
	tasks []func()
	wake  chan struct{}
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

func (q *queue) post(f func()) {
	q.mu.Lock()
	q.tasks = append(q.tasks, f)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) take() []func() {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := q.tasks
	q.tasks = nil
	return t
}

// loopEvents posts a Conn's events to its loop's queue.
type loopEvents struct{ l *loop }

func (e loopEvents) Output()                 { e.l.q.post(e.l.flush) }
func (e loopEvents) HandshakeDone(err error) { e.l.q.post(func() { e.l.handshakeDone(err) }) }

// loop is a tiny single-goroutine event loop owning one server Conn over
// one end of a net.Pipe. A reader goroutine stands in for readiness (it
// posts what it reads) and a writer goroutine for the socket's send
// buffer; everything that touches the Conn runs on the loop goroutine.
type loop struct {
	t     *testing.T
	q     *queue
	c     *tlsloop.Conn
	sock  net.Conn
	split int // feed this many bytes at a time (0: as read)

	// onData handles decrypted bytes (echo by default); onEOF the peer's
	// close_notify (a reply and CloseWrite by default).
	onData func(p []byte)
	onEOF  func()

	outbox  []byte
	sendq   chan []byte
	stopped chan struct{}
	wg      sync.WaitGroup

	// Results, read by the test after stop or through the channels.
	done       chan error // the handshake's result
	readErr    chan error // Read's first final error
	state      chan tls.ConnectionState
	wouldBlock int // Reads that returned ErrWouldBlock after the handshake
	reading    bool
}

type loopOpt func(*loop)

func withSplit(n int) loopOpt { return func(l *loop) { l.split = n } }

// startLoop starts a loop serving cfg on one end of a pipe and returns the
// other end, for a client.
func startLoop(t *testing.T, cfg *tlsloop.Config, opts ...loopOpt) (*loop, net.Conn) {
	t.Helper()
	srvEnd, cliEnd := net.Pipe()
	l := &loop{
		t: t, q: newQueue(), sock: srvEnd,
		sendq: make(chan []byte, 1024), stopped: make(chan struct{}),
		done: make(chan error, 1), readErr: make(chan error, 1), state: make(chan tls.ConnectionState, 1),
	}
	l.onData = func(p []byte) { l.write(p) }
	l.onEOF = func() {
		l.write([]byte("bye"))
		if err := l.c.CloseWrite(); err != nil {
			t.Errorf("CloseWrite: %v", err)
		}
		l.flush()
	}
	for _, o := range opts {
		o(l)
	}
	l.c = tlsloop.Server(cfg, loopEvents{l})
	l.wg.Add(3)
	go l.run()
	go l.reader()
	go l.writer()
	l.q.post(l.c.Start)
	t.Cleanup(func() {
		cliEnd.Close()
		l.stop()
	})
	return l, cliEnd
}

func (l *loop) run() {
	defer l.wg.Done()
	for {
		select {
		case <-l.q.wake:
			for _, f := range l.q.take() {
				f()
			}
		case <-l.stopped:
			l.c.Close()
			l.flush()
			return
		}
	}
}

func (l *loop) reader() {
	defer l.wg.Done()
	buf := make([]byte, 8192)
	for {
		n, err := l.sock.Read(buf)
		if n > 0 {
			p := append([]byte(nil), buf[:n]...)
			l.q.post(func() { l.feed(p) })
		}
		if err != nil {
			l.q.post(func() { l.c.FeedEOF(); l.pump() })
			return
		}
	}
}

func (l *loop) writer() {
	defer l.wg.Done()
	for {
		select {
		case p := <-l.sendq:
			if _, err := l.sock.Write(p); err != nil {
				return
			}
		case <-l.stopped:
			return
		}
	}
}

func (l *loop) stop() {
	close(l.stopped)
	l.sock.Close()
	l.wg.Wait()
}

func (l *loop) feed(p []byte) {
	step := len(p)
	if l.split > 0 {
		step = l.split
	}
	for len(p) > 0 {
		n := min(step, len(p))
		l.c.Feed(p[:n])
		p = p[n:]
		l.pump()
	}
}

// pump reads what the fed bytes decrypt to, as an engine does after
// every read event and after the handshake.
func (l *loop) pump() {
	if !l.reading {
		return
	}
	buf := make([]byte, 1500)
	for {
		n, err := l.c.Read(buf)
		if n > 0 {
			l.onData(buf[:n])
		}
		if errors.Is(err, tlsloop.ErrWouldBlock) {
			l.wouldBlock++
			break
		}
		if err != nil {
			l.reading = false
			l.readErr <- err
			if err == io.EOF {
				l.onEOF()
				break
			}
			// A final error: close, as an engine would, so the peer
			// is not left waiting.
			l.c.Close()
			l.flush()
			l.sock.Close()
			return
		}
	}
	l.flush()
}

func (l *loop) write(p []byte) {
	var err error
	if l.outbox, err = l.c.Seal(l.outbox, p); err != nil {
		l.t.Errorf("Seal: %v", err)
	}
}

func (l *loop) flush() {
	l.outbox = l.c.Output(l.outbox)
	if len(l.outbox) == 0 {
		return
	}
	select {
	case l.sendq <- append([]byte(nil), l.outbox...):
	case <-l.stopped:
	}
	l.outbox = l.outbox[:0]
}

func (l *loop) handshakeDone(err error) {
	l.flush()
	if err == nil {
		if cs, ok := l.c.ConnectionState(); ok {
			l.state <- cs
		}
		l.reading = true
		l.pump()
	} else {
		l.c.Close()
		l.flush()
		l.sock.Close()
	}
	l.done <- err
}

func waitErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		return nil
	}
}

// chanEvents records a Conn's events on channels, for tests that drive
// Conns by hand.
type chanEvents struct {
	out  chan struct{}
	done chan error
}

func newChanEvents() *chanEvents {
	return &chanEvents{out: make(chan struct{}, 1), done: make(chan error, 1)}
}

func (e *chanEvents) Output() {
	select {
	case e.out <- struct{}{}:
	default:
	}
}

func (e *chanEvents) HandshakeDone(err error) { e.done <- err }

// pair handshakes a server and a client Conn with each other, moving
// bytes between them on the calling goroutine, and returns both ready.
func pair(tb testing.TB, scfg, ccfg *tls.Config) (srv, cli *tlsloop.Conn) {
	tb.Helper()
	srv, cli, serr, cerr := tryPair(tb, scfg, ccfg)
	if serr != nil || cerr != nil {
		tb.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	return srv, cli
}

func tryPair(tb testing.TB, scfg, ccfg *tls.Config) (srv, cli *tlsloop.Conn, serr, cerr error) {
	tb.Helper()
	se, ce := newChanEvents(), newChanEvents()
	srv = tlsloop.Server(&tlsloop.Config{TLS: scfg}, se)
	cli = tlsloop.Client(&tlsloop.Config{TLS: ccfg}, ce)
	srv.Start()
	cli.Start()
	var sdone, cdone bool
	deadline := time.After(10 * time.Second)
	for !sdone || !cdone {
		moved := shuttle(srv, cli)
		if moved {
			continue
		}
		select {
		case <-se.out:
		case <-ce.out:
		case serr = <-se.done:
			sdone = true
		case cerr = <-ce.done:
			cdone = true
		case <-deadline:
			tb.Fatal("handshake did not finish within 10s")
		}
	}
	shuttle(srv, cli)
	return srv, cli, serr, cerr
}

// shuttle moves pending output each way, reporting whether it moved any.
func shuttle(a, b *tlsloop.Conn) bool {
	ab := a.Output(nil)
	b.Feed(ab)
	ba := b.Output(nil)
	a.Feed(ba)
	return len(ab) > 0 || len(ba) > 0
}

// readAll reads c until ErrWouldBlock or an error.
func readAll(c *tlsloop.Conn) ([]byte, error) {
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
}
