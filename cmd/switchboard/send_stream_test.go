package main

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"switchboard"
)

// syncBuffer is a bytes.Buffer safe to read while a session writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// streamSession runs one send session outside cobra's shared root
// command, so that two can run at once.
func streamSession(f sendFlags, in io.Reader, out, errOut io.Writer) error {
	cmd := &cobra.Command{}
	cmd.Flags().Bool("stream", false, "")
	if f.stream {
		cmd.Flags().Set("stream", "true")
	}
	cmd.SetIn(in)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	if f.maxFrame == 0 {
		f.maxFrame = 1 << 20
	}
	if f.quiet == 0 {
		f.quiet = 200 * time.Millisecond
	}
	return runSend(cmd, &f, nil)
}

// waitFor polls s until it contains want, for up to 5 s.
func waitFor(t *testing.T, what string, s interface{ String() string }, want string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if strings.Contains(s.String(), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never showed %q; got %q", what, want, s.String())
}

// Two streaming sessions chat: what one types reaches the other while
// both are still open, without anything being sent back to the reader.
func TestSendStreamChat(t *testing.T) {
	addr, _ := serveService(t, "chat", "")
	flags := sendFlags{connect: addr, framing: "line", timeout: 300 * time.Millisecond, stream: true}

	aIn, aInW := io.Pipe()
	var aOut, aErr syncBuffer
	aDone := make(chan error, 1)
	go func() { aDone <- streamSession(flags, aIn, &aOut, &aErr) }()
	bIn, bInW := io.Pipe()
	var bOut, bErr syncBuffer
	bDone := make(chan error, 1)
	go func() { bDone <- streamSession(flags, bIn, &bOut, &bErr) }()

	// The chat room announces nothing, so keep saying hello until the
	// other session is surely in the room.
	for i := 0; i < 100 && !strings.Contains(aOut.String(), "hello from b"); i++ {
		io.WriteString(bInW, "hello from b\n")
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "session a", &aOut, "hello from b\n")
	io.WriteString(aInW, "hi from a\n")
	waitFor(t, "session b", &bOut, "hi from a\n")

	aInW.Close()
	bInW.Close()
	for name, done := range map[string]chan error{"a": aDone, "b": bDone} {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("session %s: %v (stderr %q)", name, err, aErr.String()+bErr.String())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("session %s did not end after its input did", name)
		}
	}
}

// Streaming through a pipe, by flag: input framed as it comes, replies
// printed as they arrive.
func TestSendStreamPipe(t *testing.T) {
	lineAddr, _ := serveService(t, "echo", "line")
	code, out, errOut := runCLI(t, "a\nb\n", "send", "--connect", lineAddr, "--framing", "line", "--stream", "--timeout", "2s")
	expect(t, code, out, errOut, 0, "a\nb\n", "")
	rawAddr, _ := serveService(t, "echo", "")
	big := strings.Repeat("0123456789", 30000)
	code, out, errOut = runCLI(t, big, "send", "--connect", rawAddr, "--stream", "--timeout", "2s")
	if code != 0 || out != big || errOut != "" {
		t.Fatalf("exit %d, %d bytes out, stderr %q", code, len(out), errOut)
	}
}

// A raw reply is read until the server goes quiet, not one read: a
// 200 KB echo prints all of it.
func TestSendRawWholeReply(t *testing.T) {
	addr, _ := serveService(t, "echo", "")
	big := strings.Repeat("abcdefghij", 20000)
	code, out, errOut := runCLI(t, big, "send", "--connect", addr)
	expect(t, code, out, errOut, 0, big+"\n", "")
	code, out, errOut = runCLI(t, "", "send", "--connect", addr, "one", "two")
	expect(t, code, out, errOut, 0, "one\ntwo\n", "")
}

func TestSendProxyHeader(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		h := &proxySeen{}
		addr, _ := serve(t, "127.0.0.1:0", h, switchboard.WithProxyProtocol(true))
		code, out, errOut := runCLI(t, "", "send", "--connect", addr, "--proxy-header", v, "hello")
		expect(t, code, out, errOut, 0, "hello\n", "")
		code, out, errOut = runCLI(t, "", "send", "--connect", addr, "--proxy-header", v, "--proxy-source", "198.51.100.7:7", "hi")
		expect(t, code, out, errOut, 0, "hi\n", "")
		h.mu.Lock()
		if len(h.addrs) != 2 || !strings.HasPrefix(h.addrs[0], "127.0.0.1:") || h.addrs[1] != "198.51.100.7:7" {
			t.Errorf("%s: the server saw %v", v, h.addrs)
		}
		h.mu.Unlock()
	}
}

func TestSendStreamUsage(t *testing.T) {
	for _, args := range [][]string{
		{"send", "--proxy-header", "v3", "x"},
		{"send", "--proxy-source", "10.0.0.1:1", "x"},
		{"send", "--proxy-header", "v1", "--proxy-source", "nowhere", "x"},
		{"send", "--stream", "--half-close"},
		{"send", "--stream", "x"},
		{"send", "--stream", "--framing", "eof"},
		{"send", "--quiet", "0", "x"},
	} {
		if code, _, _ := runCLI(t, "", args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}
