package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/goleak"

	"switchboard"
	"switchboard/internal/testserver"
	"switchboard/service"
)

func TestMain(m *testing.M) {
	// A test may re-run this binary as the switchboard command itself,
	// to see what a real process does with signals and exit codes.
	if args, ok := os.LookupEnv(cliChildEnv); ok {
		os.Exit(run(strings.Split(args, "\x1f")))
	}
	goleak.VerifyTestMain(m)
}

// runCLI runs the command line in-process with stdin and returns the exit
// status and what went to stdout and stderr. Usage errors are printed by
// run on the process's stderr, so for them only the status is checked.
// Flags are reset afterwards: cobra keeps their values between runs.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	rootCmd.SetIn(strings.NewReader(stdin))
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&errOut)
	defer func() {
		rootCmd.SetIn(nil)
		rootCmd.SetOut(nil)
		rootCmd.SetErr(nil)
		resetFlags(sendCmd(t))
	}()
	code := run(args)
	return code, out.String(), errOut.String()
}

// resetFlags puts the flags a run changed back to their defaults. Only
// the send command's are touched: its values all parse their DefValue back.
func resetFlags(cmd *cobra.Command) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			f.Value.Set(f.DefValue)
			f.Changed = false
		}
	})
}

func sendCmd(t *testing.T) *cobra.Command {
	t.Helper()
	cmd, _, err := rootCmd.Find([]string{"send"})
	if err != nil || cmd.Name() != "send" {
		t.Fatalf("no send command: %v", err)
	}
	return cmd
}

// serve runs h on addr (port 0, or a unix path) until the test ends.
func serve(t *testing.T, addr string, h switchboard.Handler, opts ...switchboard.Option) (string, *switchboard.Server) {
	t.Helper()
	return testserver.Start(t, addr, h, append([]switchboard.Option{switchboard.WithModel("goroutine")}, opts...)...)
}

func serveService(t *testing.T, name, spec string) (string, *switchboard.Server) {
	t.Helper()
	svc, err := service.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	spec, err = svc.ResolveFraming(spec)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, "127.0.0.1:0", svc.New(), switchboard.WithFraming(spec, 0))
}

func expect(t *testing.T, code int, out, errOut string, wantCode int, wantOut, wantErr string) {
	t.Helper()
	if code != wantCode || out != wantOut || errOut != wantErr {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, wantCode, wantOut, wantErr)
	}
}

func TestSendMessages(t *testing.T) {
	addr, _ := serveService(t, "echo", "")
	code, out, errOut := runCLI(t, "", "send", "--connect", addr, "hello", "world")
	expect(t, code, out, errOut, 0, "hello\nworld\n", "")

	lineAddr, _ := serveService(t, "echo", "line")
	code, out, errOut = runCLI(t, "", "send", "--connect", lineAddr, "--framing", "line", "a b", "", "c")
	expect(t, code, out, errOut, 0, "a b\n\nc\n", "")

	for _, spec := range []string{"len:4", "len:2le", "digits:5", "delim:00", "typed:a=2,b=0"} {
		addr, _ := serveService(t, "echo", spec)
		code, out, errOut := runCLI(t, "", "send", "--connect", addr, "--framing", spec, "a12", "b")
		expect(t, code, out, errOut, 0, "a12\nb\n", "")
	}
}

func TestSendStdin(t *testing.T) {
	lineAddr, _ := serveService(t, "echo", "line")
	code, out, errOut := runCLI(t, "one\r\ntwo\n\nlast without newline", "send", "--connect", lineAddr, "--framing", "line")
	expect(t, code, out, errOut, 0, "one\ntwo\n\nlast without newline\n", "")

	// Raw: all of stdin is one message; a reply ending in a newline gets
	// no second one.
	rawAddr, _ := serveService(t, "echo", "raw")
	code, out, errOut = runCLI(t, "hi there\n", "send", "--connect", rawAddr)
	expect(t, code, out, errOut, 0, "hi there\n", "")
	code, out, errOut = runCLI(t, "", "send", "--connect", rawAddr)
	expect(t, code, out, errOut, 0, "", "")

	// Other framings: stdin is exactly one message, newlines and all.
	lenAddr, _ := serveService(t, "echo", "len:4")
	code, out, errOut = runCLI(t, "two\nlines", "send", "--connect", lenAddr, "--framing", "len:4")
	expect(t, code, out, errOut, 0, "two\nlines\n", "")
}

func TestSendUnixSocket(t *testing.T) {
	addr, _ := serve(t, "unix:"+filepath.Join(t.TempDir(), "sb.sock"), service.Echo(), switchboard.WithFraming("line", 0))
	code, out, errOut := runCLI(t, "", "send", "--connect", addr, "--framing", "line", "over unix")
	expect(t, code, out, errOut, 0, "over unix\n", "")
}

func TestSendHalfClose(t *testing.T) {
	helloAddr, _ := serveService(t, "hello", "")
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	code, out, errOut := runCLI(t, req, "send", "--connect", helloAddr, "--half-close")
	if code != 0 || errOut != "" || strings.Count(out, "HTTP/1.1 200 OK\r\n") != 2 ||
		!strings.HasSuffix(out, "Connection: close\r\n\r\n") || strings.Count(out, "Hello, world!") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// A service that never answers: --half-close ends cleanly at EOF.
	discardAddr, srv := serveService(t, "discard", "")
	code, out, errOut = runCLI(t, strings.Repeat("x", 300<<10), "send", "--connect", discardAddr, "--half-close")
	expect(t, code, out, errOut, 0, "", "")
	if in := srv.Stats().BytesIn; in != 300<<10 {
		t.Errorf("server got %d bytes, want %d", in, 300<<10)
	}

	// Raw stdin is streamed, and replies read meanwhile: an echo of more
	// than the socket buffers hold does not stall.
	echoAddr, _ := serveService(t, "echo", "")
	big := strings.Repeat("0123456789abcdef", 1<<18) // 4 MiB, over --max-frame
	code, out, errOut = runCLI(t, big, "send", "--connect", echoAddr, "--half-close")
	if code != 0 || errOut != "" || out != big {
		t.Fatalf("exit %d, %d bytes out (equal %v), stderr %q", code, len(out), out == big, errOut)
	}

	// Framed replies are printed one per line.
	lineAddr, _ := serveService(t, "echo", "line")
	code, out, errOut = runCLI(t, "", "send", "--connect", lineAddr, "--framing", "line", "--half-close", "a", "b")
	expect(t, code, out, errOut, 0, "a\nb\n", "")
	lenAddr, _ := serveService(t, "echo", "len:2")
	code, out, errOut = runCLI(t, "", "send", "--connect", lenAddr, "--framing", "len:2", "--half-close", "x", "yz")
	expect(t, code, out, errOut, 0, "x\nyz\n", "")
}

func TestSendEOFFraming(t *testing.T) {
	addr, _ := serveService(t, "echo", "eof")
	code, out, errOut := runCLI(t, "", "send", "--connect", addr, "--framing", "eof", "the whole message")
	expect(t, code, out, errOut, 0, "the whole message\n", "")
	code, out, errOut = runCLI(t, "from\nstdin\n", "send", "--connect", addr, "--framing", "eof")
	expect(t, code, out, errOut, 0, "from\nstdin\n", "")
}

func TestSendFailures(t *testing.T) {
	addr := testserver.FreeAddr(t)
	code, out, errOut := runCLI(t, "", "send", "--connect", addr, "x")
	expect(t, code, out, errOut, 1, "", "switchboard: connect "+addr+": connection refused\n")

	missing := "unix:" + filepath.Join(t.TempDir(), "nobody.sock")
	code, out, errOut = runCLI(t, "", "send", "--connect", missing, "x")
	expect(t, code, out, errOut, 1, "", "switchboard: connect "+missing+": no such file or directory\n")

	silent, _ := serveService(t, "discard", "")
	code, out, errOut = runCLI(t, "", "send", "--connect", silent, "--timeout", "200ms", "anyone?")
	expect(t, code, out, errOut, 1, "", "switchboard: receive "+silent+": timed out after 200ms\n")

	// The server hangs up instead of replying to the second message; the
	// first reply is still printed.
	hangup := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) {
		if string(msg) == "bye" {
			c.Close()
			return
		}
		c.Write(msg)
	})
	hAddr, _ := serve(t, "127.0.0.1:0", hangup, switchboard.WithFraming("line", 0))
	code, out, errOut = runCLI(t, "", "send", "--connect", hAddr, "--framing", "line", "hi", "bye", "never sent")
	expect(t, code, out, errOut, 1, "hi\n",
		"switchboard: receive "+hAddr+": connection closed by the server before replying to message 2\n")

	// A reply that breaks the framing.
	long := switchboard.HandlerFunc(func(c switchboard.Conn, msg []byte) { c.Write([]byte("a reply far too long")) })
	lAddr, _ := serve(t, "127.0.0.1:0", long, switchboard.WithFraming("line", 0))
	code, out, errOut = runCLI(t, "", "send", "--connect", lAddr, "--framing", "line", "--max-frame", "8", "q")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "switchboard: receive "+lAddr+": framing: frame exceeds maximum size") ||
		strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Input over --max-frame is refused before anything is sent.
	lenAddr, srv := serveService(t, "echo", "len:4")
	code, out, errOut = runCLI(t, strings.Repeat("z", 20), "send", "--connect", lenAddr, "--framing", "len:4", "--max-frame", "16")
	expect(t, code, out, errOut, 1, "", "switchboard: stdin holds more than --max-frame (16)\n")
	lineAddr, _ := serveService(t, "echo", "line")
	code, out, errOut = runCLI(t, "ok\n"+strings.Repeat("z", 100)+"\nnot sent\n", "send", "--connect", lineAddr, "--framing", "line", "--max-frame", "64")
	expect(t, code, out, errOut, 1, "ok\n", "switchboard: stdin line 2: longer than --max-frame (64)\n")
	if in := srv.Stats().BytesIn; in != 0 {
		t.Errorf("server got %d bytes of refused input", in)
	}
}

func TestSendUsageErrors(t *testing.T) {
	addr, srv := serveService(t, "echo", "line")
	for _, args := range [][]string{
		{"send", "--bogus"},
		{"send", "--connect", addr, "--framing", "nope", "x"},
		{"send", "--connect", addr, "--framing", "len:3", "x"},
		{"send", "--connect", addr, "--max-frame", "1MB", "x"},
		{"send", "--connect", addr, "--max-frame", "lots", "x"},
		{"send", "--connect", addr, "--max-frame", "0", "x"},
		{"send", "--connect", addr, "--timeout", "5", "x"},
		{"send", "--connect", addr, "--timeout", "-1s", "x"},
		{"send", "--connect", "localhost", "x"},
		{"send", "--connect", "unix:", "x"},
		{"send", "--connect", addr, "--framing", "eof", "one", "two"},
		{"send", "--connect", addr, "--framing", "line", "fine", "not\nfine"},
		{"send", "--connect", addr, "--framing", "fixed:3", "abcd"},
		{"send", "--connect", addr, "--framing", "line", "--max-frame", "4", "12345"},
	} {
		code, out, _ := runCLI(t, "", args...)
		if code != 2 || out != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2", args, code, out)
		}
	}
	if n := srv.Stats().Accepted; n != 0 {
		t.Errorf("usage errors made %d connections", n)
	}
}

func TestSendHelp(t *testing.T) {
	code, out, _ := runCLI(t, "", "send", "--help")
	for _, want := range []string{"--half-close", "--max-frame size", "each line of input is a message", "default 1MiB", "default 5s", "127.0.0.1:8888"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "4096": 4096, "64KiB": 64 << 10, "1MiB": 1 << 20, "1mib": 1 << 20, "2GiB": 2 << 30,
		"1.5MiB": 3 << 19, " 8 KiB ": 8 << 10, "1K": 1024, "3m": 3 << 20, "1G": 1 << 30, "10B": 10,
		"1TiB": 1 << 40, ".5KiB": 512,
	}
	for in, want := range good {
		if got, err := parseSize(in); got != want || err != nil {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1MB", "1kb", "1.2.3", "0.3B", "1.0001KiB", "1 XB", "99999999999GiB", "1e3", "0x10", "1/2"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
	if _, err := parseSize("1MB"); err == nil || !strings.Contains(err.Error(), "MiB") {
		t.Errorf("1MB error %v should suggest MiB", err)
	}
	for _, n := range []int64{0, 1, 1000, 1024, 1536, 1 << 20, 3 << 19, 5 << 30, 1<<40 + 1} {
		s := formatSize(n)
		if back, err := parseSize(s); back != n || err != nil {
			t.Errorf("formatSize(%d) = %q, parsed back as %d, %v", n, s, back, err)
		}
	}
	if s := formatSize(1 << 20); s != "1MiB" {
		t.Errorf("formatSize(1MiB) = %q", s)
	}
	if s := formatSize(4 << 20); s != "4MiB" {
		t.Errorf("formatSize(4MiB) = %q", s)
	}
	f := sizeFlag(0)
	var v pflag.Value = &f
	if err := v.Set("2KiB"); err != nil || f.Int() != 2048 || v.String() != "2KiB" || v.Type() != "size" {
		t.Errorf("sizeFlag: %v %d %q %q", err, f.Int(), v.String(), v.Type())
	}
	if err := v.Set("2KB"); err == nil || f.Int() != 2048 {
		t.Errorf("sizeFlag accepted 2KB or lost its value: %v %d", err, f.Int())
	}
}
