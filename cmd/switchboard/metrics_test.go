package main

import (
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestServePprof: --pprof serves the profiles on the metrics address, and
// only when asked.
func TestServePprof(t *testing.T) {
	for _, on := range []bool{true, false} {
		args := []string{"serve", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"}
		if on {
			args = append(args, "--pprof")
		}
		c := startChild(t, args...)
		url := c.await(t, regexp.MustCompile(`msg=metrics url=(\S+)/metrics`))
		code, body := httpGet(t, url+"/debug/pprof/")
		if on && (code != 200 || !strings.Contains(body, "goroutine")) {
			t.Errorf("--pprof: /debug/pprof/ answered %d:\n%.500s", code, body)
		}
		if !on && code != 404 {
			t.Errorf("without --pprof: /debug/pprof/ answered %d", code)
		}
		if on {
			if code, body := httpGet(t, url+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
				t.Errorf("goroutine profile: %d %.300s", code, body)
			}
		}
		if code, body := httpGet(t, url+"/metrics"); code != 200 || !strings.Contains(body, "switchboard_build_info") {
			t.Errorf("/metrics: %d %.300s", code, body)
		}
		c.cmd.Process.Signal(syscall.SIGTERM)
		if code := c.wait(t, 15*time.Second); code != 0 {
			t.Fatalf("exit %d; log:\n%s", code, c.log())
		}
	}
}

// TestServeMetricsMessagesAndCloses: the CLI's endpoint carries the
// library collector's counters.
func TestServeMetricsMessagesAndCloses(t *testing.T) {
	c := startChild(t, "serve", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--framing", "line")
	url := c.await(t, regexp.MustCompile(`msg=metrics url=(\S+)`))
	addr := c.await(t, servingRE)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("a\nb\nc\n"))
	io.ReadFull(conn, make([]byte, 6))
	conn.Close()
	model := mustResolve("auto")
	var body string
	for range 200 { // the close is counted just after the client sees it
		_, body = httpGet(t, url)
		if strings.Contains(body, `switchboard_connections_closed_total{model="`+model+`",reason="peer"} 1`) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{
		`switchboard_messages_received_total{model="` + model + `"} 3`,
		`switchboard_messages_sent_total{model="` + model + `"} 3`,
		`switchboard_connections_closed_total{model="` + model + `",reason="peer"} 1`,
		`switchboard_accept_errors_total{kind="emfile",model="` + model + `"} 0`,
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%.3000s", want, body)
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
