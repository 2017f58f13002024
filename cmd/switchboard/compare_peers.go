package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// addPeers builds what the peers need and adds those that can run; the
// others are skipped with the reason.
func (cmp *comparer) addPeers(ctx context.Context) {
	want := func(name string) bool {
		if cmp.f.peers == "all" {
			return true
		}
		for p := range strings.SplitSeq(cmp.f.peers, ",") {
			if strings.TrimSpace(p) == name {
				return true
			}
		}
		return false
	}
	dir, err := findPeersDir(cmp.f.peersDir)
	if err != nil {
		cmp.skip("peers: %v", err)
		return
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cache = filepath.Join(cache, "switchboard", "peers")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		cmp.skip("peers: cannot create the build directory: %v", err)
		return
	}
	switch {
	case !want("c-epoll"):
	case runtime.GOOS != "linux":
		cmp.skip("c-epoll: epoll is Linux's")
	default:
		cc, err := lookCC()
		if err != nil {
			cmp.skip("c-epoll: no C compiler: %v", err)
			break
		}
		bin := filepath.Join(cache, "c-epoll-echo")
		if out, err := exec.CommandContext(ctx, cc, "-O2", "-o", bin, filepath.Join(dir, "c-epoll", "echo.c")).CombinedOutput(); err != nil {
			cmp.skip("c-epoll: %s -O2 echo.c failed: %s", cc, firstLine(out, err))
		} else {
			cmp.addPeer("c-epoll", dir, func(port int) []string { return []string{bin, strconv.Itoa(port)} })
		}
	}
	if want("node") {
		if node, err := exec.LookPath("node"); err != nil {
			cmp.skip("node: Node.js is not installed (no node in PATH)")
		} else {
			js := filepath.Join(dir, "node", "echo.js")
			cmp.addPeer("node", dir, func(port int) []string { return []string{node, js, strconv.Itoa(port)} })
		}
	}
	if want("python-uvloop") {
		// Debian's python3-uvloop belongs to the system Python, which a
		// pyenv or virtualenv python3 earlier in PATH would not see.
		py := "/usr/bin/python3"
		if _, err := os.Stat(py); err != nil {
			py, _ = exec.LookPath("python3")
		}
		if py == "" {
			cmp.skip("python-uvloop: no python3")
		} else if out, err := exec.CommandContext(ctx, py, "-c", "import uvloop").CombinedOutput(); err != nil {
			cmp.skip("python-uvloop: %s cannot import uvloop (Debian: apt-get install python3-uvloop): %s", py, firstLine(out, err))
		} else {
			script := filepath.Join(dir, "python", "echo_uvloop.py")
			cmp.addPeer("python-uvloop", dir, func(port int) []string { return []string{py, script, strconv.Itoa(port)} })
		}
	}
	if want("netpoll") {
		if goBin, err := exec.LookPath("go"); err != nil {
			cmp.skip("netpoll: no go command to build it")
		} else {
			bin := filepath.Join(cache, "netpoll-echo")
			build := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
			build.Dir = filepath.Join(dir, "netpoll")
			if out, err := build.CombinedOutput(); err != nil {
				cmp.skip("netpoll: go build failed (module proxy or network?): %s", firstLine(out, err))
			} else {
				cmp.addPeer("netpoll", dir, func(port int) []string { return []string{bin, strconv.Itoa(port)} })
			}
		}
	}
}

// peerNames are the peers --peers knows, in the order they run.
var peerNames = []string{"c-epoll", "node", "python-uvloop", "netpoll"}

func (cmp *comparer) addPeer(name, dir string, argv func(int) []string) {
	cmp.targets = append(cmp.targets, target{Name: name, Peer: true, argv: argv, dir: dir})
}

// lookCC finds the system C compiler: $CC, cc, gcc or clang.
func lookCC() (string, error) {
	if cc := os.Getenv("CC"); cc != "" {
		return exec.LookPath(cc)
	}
	var firstErr error
	for _, name := range []string{"cc", "gcc", "clang"} {
		p, err := exec.LookPath(name)
		if err == nil {
			return p, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", firstErr
}

// findPeersDir locates bench/peers: the flag, or the first bench/peers in
// the current directory or its parents, or beside the executable.
func findPeersDir(flag string) (string, error) {
	ok := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "c-epoll", "echo.c"))
		return err == nil
	}
	if flag != "" {
		if !ok(flag) {
			return "", fmt.Errorf("--peers-dir %s holds no c-epoll/echo.c", flag)
		}
		return filepath.Abs(flag)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, d := range starts {
		for {
			if c := filepath.Join(d, "bench", "peers"); ok(c) {
				return c, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", fmt.Errorf("bench/peers not found around the current directory; run from the repository or give --peers-dir")
}

func firstLine(out []byte, err error) string {
	s := strings.TrimSpace(string(out))
	if s == "" {
		return err.Error()
	}
	line, _, _ := strings.Cut(s, "\n")
	return line
}
