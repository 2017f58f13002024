package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard"
	"switchboard/internal/testcert"
)

func TestServeTLSFlagErrors(t *testing.T) {
	files := testcert.New(t).WriteFiles(t)
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a certificate\n"), 0o600)
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--tls-cert", files.ServerCert}, 2, "--tls-cert needs --tls-key"},
		{[]string{"--tls-key", files.ServerKey}, 2, "--tls-key needs --tls-cert"},
		{[]string{"--tls-client-ca", files.CA}, 2, "--tls-client-ca needs"},
		{[]string{"--handshake-timeout", "soon"}, 2, "handshake-timeout"},
		{[]string{"--handshake-timeout", "0s"}, 2, "must be positive"},
		{[]string{"--tls-cert", filepath.Join(t.TempDir(), "missing.pem"), "--tls-key", files.ServerKey}, 1, "no such file"},
		{[]string{"--tls-cert", bad, "--tls-key", files.ServerKey}, 1, "--tls-cert/--tls-key"},
		{[]string{"--tls-cert", files.ServerCert, "--tls-key", files.ServerKey, "--tls-client-ca", bad}, 1, "holds no PEM certificate"},
	} {
		c := startChild(t, append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...)...)
		if code := c.wait(t, 20*time.Second); code != tc.code {
			t.Errorf("%v: exit %d, want %d; log:\n%s", tc.args, code, tc.code, c.log())
		}
		if log := c.log(); strings.Count(log, "\n") != 1 || !strings.Contains(log, tc.says) {
			t.Errorf("%v: want one line saying %q, got:\n%s", tc.args, tc.says, log)
		}
	}
}

// TestServeTLSOpenSSL: openssl s_client, a TLS stack other than Go's,
// talks to serve over TLS 1.2 and 1.3, with and without a client
// certificate required; send --tls speaks to it too. It runs on the
// event-loop engines' two record layers' hosts: epoll (the reactor) and
// uring, where io_uring is available.
func TestServeTLSOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	files := testcert.New(t).WriteFiles(t)
	for _, model := range []string{switchboard.ModelEpoll, switchboard.ModelUring} {
		t.Run(model, func(t *testing.T) {
			t.Parallel() // most of each run is s_client's 3 s of waiting
			if err := switchboard.CheckModel(model); err != nil {
				t.Skip(err)
			}
			testServeTLSOpenSSL(t, openssl, files, model)
		})
	}
}

func testServeTLSOpenSSL(t *testing.T, openssl string, files testcert.Files, model string) {
	c := startChild(t, "serve", "--listen", "127.0.0.1:0", "--framing", "line", "--model", model,
		"--tls-cert", files.ServerCert, "--tls-key", files.ServerKey)
	addr := c.await(t, servingRE)
	if !strings.Contains(c.log(), "tls=on") {
		t.Fatalf("the start-up line does not say TLS is on:\n%s", c.log())
	}
	// -quiet keeps s_client reading after its input ends; it is ended
	// (it alone, by the context) once the echo has had time to come.
	sclient := func(extra ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		args := append([]string{"s_client", "-connect", addr, "-CAfile", files.CA, "-verify_return_error",
			"-servername", "localhost", "-quiet"}, extra...)
		cmd := exec.CommandContext(ctx, openssl, args...)
		cmd.Stdin = strings.NewReader("hello from openssl\n")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String() + errb.String(), err
	}
	for _, v := range []string{"-tls1_2", "-tls1_3"} {
		out, _ := sclient(v)
		if !strings.Contains(out, "hello from openssl") {
			t.Errorf("openssl s_client %s: the echo is missing:\n%s", v, out)
		}
	}
	// send --tls against the same server.
	s := startChild(t, "send", "--connect", addr, "--tls", "--tls-ca", files.CA, "--tls-server-name", "localhost", "--framing", "line", "hello")
	if code := s.wait(t, 20*time.Second); code != 0 {
		t.Errorf("send --tls: exit %d: %s", code, s.log())
	}

	// Mutual TLS: without a client certificate openssl is refused.
	m := startChild(t, "serve", "--listen", "127.0.0.1:0", "--framing", "line", "--model", model,
		"--tls-cert", files.ServerCert, "--tls-key", files.ServerKey, "--tls-client-ca", files.CA)
	addr = m.await(t, servingRE)
	if out, _ := sclient("-cert", files.ClientCert, "-key", files.ClientKey); !strings.Contains(out, "hello from openssl") {
		t.Errorf("with a client certificate: the echo is missing:\n%s", out)
	}
	if out, _ := sclient(); strings.Contains(out, "hello from openssl") {
		t.Errorf("without a client certificate the server echoed:\n%s", out)
	}
}
