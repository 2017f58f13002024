package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"switchboard"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startRedis serves the example on 127.0.0.1:0 with model until the test
// ends and returns the port.
func startRedis(t *testing.T, model string) string {
	t.Helper()
	return startRedisDelay(t, model, 0)
}

func startRedisDelay(t *testing.T, model string, delay time.Duration) string {
	t.Helper()
	srv, err := newRedisServer(model, 2, delay)
	if err != nil {
		t.Fatal(err)
	}
	lns, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lns...) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
	})
	_, port, _ := net.SplitHostPort(lns[0].Addr().String())
	return port
}

// TestRedisProtocol drives the example over plain sockets on every model,
// so it is tested where redis-tools are not installed too.
func TestRedisProtocol(t *testing.T) {
	for _, model := range switchboard.Models() {
		t.Run(model, func(t *testing.T) {
			port := startRedis(t, model)
			c := dialRedis(t, port)
			r := bufio.NewReader(c)
			// Pipelined, RESP and inline mixed, in one write.
			c.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nGET k\r\n" +
				"SET gone x PX 100\r\nDEL k nothing\r\nGET k\r\nPING\r\nNOPE\r\nSET k v EX 0\r\n"))
			for _, want := range []string{"+OK", "$5", "hello", "+OK", ":1", "$-1", "+PONG",
				"-ERR unknown command or wrong number of arguments for 'NOPE'",
				"-ERR invalid expire time in 'set' command"} {
				expectLine(t, r, want)
			}
			// The key with a time to live goes without being asked for:
			// the tick's active expiry, seen in DBSIZE.
			deadline := time.Now().Add(5 * time.Second)
			for {
				c.Write([]byte("DBSIZE\r\n"))
				line := readLine(t, r)
				if line == ":0" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("DBSIZE still %s 5s after the key expired", line)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if model == switchboard.ModelBlocking {
				return // pub/sub needs two connections at once
			}
			sub := dialRedis(t, port)
			sr := bufio.NewReader(sub)
			sub.Write([]byte("SUBSCRIBE news\r\n"))
			for _, want := range []string{"*3", "$9", "subscribe", "$4", "news", ":1"} {
				expectLine(t, sr, want)
			}
			c.Write([]byte("PUBLISH news hi\r\nPUBLISH nobody x\r\n"))
			expectLine(t, r, ":1")
			expectLine(t, r, ":0")
			for _, want := range []string{"*3", "$7", "message", "$4", "news", "$2", "hi"} {
				expectLine(t, sr, want)
			}
			// A subscriber that leaves is forgotten.
			sub.Close()
			deadline = time.Now().Add(5 * time.Second)
			for {
				c.Write([]byte("PUBLISH news again\r\n"))
				if readLine(t, r) == ":0" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("a closed subscriber still counted")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestRedisHalfClose: commands piped in with the write half shut
// straight after (`printf ... | nc -N`) get every reply, then EOF, both
// when the replies are written in the callbacks and when a worker
// goroutine writes them after the FIN (a backend delay).
func TestRedisHalfClose(t *testing.T) {
	for _, model := range switchboard.Models() {
		for _, delay := range []time.Duration{0, 30 * time.Millisecond} {
			t.Run(model+"/delay="+delay.String(), func(t *testing.T) {
				port := startRedisDelay(t, model, delay)
				c := dialRedis(t, port)
				c.Write([]byte("SET k v\r\nGET k\r\n"))
				c.(*net.TCPConn).CloseWrite()
				got, err := io.ReadAll(c)
				if err != nil || string(got) != "+OK\r\n$1\r\nv\r\n" {
					t.Fatalf("got %q, %v", got, err)
				}
			})
		}
	}
}

// TestRedisTools drives the example with the real redis-cli and
// redis-benchmark, on every model.
func TestRedisTools(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not installed (apt-get install redis-tools)")
	}
	bench, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skip("redis-benchmark not installed (apt-get install redis-tools)")
	}
	for _, model := range switchboard.Models() {
		t.Run(model, func(t *testing.T) {
			port := startRedis(t, model)
			run := func(name string, args ...string) string {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, name, append([]string{"-h", "127.0.0.1", "-p", port}, args...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("%s %v: %v\n%s", name, args, err, out)
				}
				return string(out)
			}
			if out := run(cli, "SET", "greeting", "hello world", "EX", "60"); out != "OK\n" {
				t.Fatalf("SET: %q", out)
			}
			if out := run(cli, "GET", "greeting"); out != "hello world\n" {
				t.Fatalf("GET: %q", out)
			}
			if out := run(cli, "DEL", "greeting"); out != "1\n" {
				t.Fatalf("DEL: %q", out)
			}
			if model != switchboard.ModelBlocking {
				testCLISubscribe(t, cli, port)
			}
			// redis-benchmark keeps all its connections open to the end;
			// the blocking model serves one at a time, so it gets one.
			conns := "20"
			if model == switchboard.ModelBlocking {
				conns = "1"
			}
			out := run(bench, "-t", "ping,set,get", "-n", "2000", "-c", conns, "-q")
			for _, test := range []string{"PING_INLINE", "PING_MBULK", "SET", "GET"} {
				if !strings.Contains(out, test+": ") || !strings.Contains(out, "requests per second") {
					t.Fatalf("redis-benchmark did not finish %s:\n%s", test, out)
				}
			}
			if strings.Contains(out, "Error") {
				t.Fatalf("redis-benchmark reported an error:\n%s", out)
			}
		})
	}
}

// testCLISubscribe runs `redis-cli SUBSCRIBE` as a child, publishes with
// another redis-cli, and reads the message from the first; the child is
// ended by its PID.
func testCLISubscribe(t *testing.T, cli, port string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, cli, "-h", "127.0.0.1", "-p", port, "SUBSCRIBE", "chan")
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sub.Process.Kill()
		sub.Wait()
	}()
	r := bufio.NewReader(out)
	for _, want := range []string{"subscribe", "chan", "1"} {
		expectLine(t, r, want)
	}
	pub, err := exec.CommandContext(ctx, cli, "-h", "127.0.0.1", "-p", port, "PUBLISH", "chan", "fan-out").CombinedOutput()
	if err != nil || string(pub) != "1\n" {
		t.Fatalf("PUBLISH: %q, %v", pub, err)
	}
	for _, want := range []string{"message", "chan", "fan-out"} {
		expectLine(t, r, want)
	}
}

func dialRedis(t *testing.T, port string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

func expectLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	if got := readLine(t, r); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
