package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// peer is a server other than switchboard's that compare runs the same
// way as the models: its own process, pinned, loaded over loopback. Every
// peer takes PORT [HOST] (bench/peers/README.md).
type peer struct {
	name string
	// src is the peer's source under bench/peers, a file or a directory.
	src string
	// prepare builds or finds what runs the peer and returns its command
	// line before the port, or an error saying why it cannot run here.
	prepare func(ctx context.Context, b peerBuild) ([]string, error)
}

// peerBuild is what a peer's prepare is given.
type peerBuild struct {
	name  string
	src   string // absolute path of the peer's src
	cache string // a directory for build products
}

// peerTable lists the peers --peers knows, in the order they run. Adding a
// peer is one entry here and its source in bench/peers.
var peerTable = []peer{
	{name: "c-epoll", src: "c-epoll/echo.c", prepare: cPeer{linux: true}.prepare},
	{name: "c-uring", src: "c-uring/echo.c", prepare: cPeer{linux: true, libs: []string{"-luring"},
		probe: liburingProbe, missing: "liburing is missing (Debian: apt-get install liburing-dev)",
		check: ioUringEnabled}.prepare},
	{name: "node", src: "node/echo.js", prepare: prepareNode},
	{name: "python-uvloop", src: "python/echo_uvloop.py", prepare: prepareUvloop},
	{name: "netpoll", src: "netpoll", prepare: prepareGoModule},
}

// peerNames are the names in peerTable.
func peerNames() []string {
	var out []string
	for _, p := range peerTable {
		out = append(out, p.name)
	}
	return out
}

// addPeers prepares the peers --peers asks for, among table, and adds
// those that can run; the others are skipped with the reason.
func (cmp *comparer) addPeers(ctx context.Context, table []peer) {
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
	for _, p := range table {
		if !want(p.name) || ctx.Err() != nil {
			continue
		}
		src := filepath.Join(dir, filepath.FromSlash(p.src))
		if _, err := os.Stat(src); err != nil {
			cmp.skip("%s: its source bench/peers/%s is not there", p.name, p.src)
			continue
		}
		argv, err := p.prepare(ctx, peerBuild{name: p.name, src: src, cache: cache})
		if err != nil {
			cmp.skip("%s: %v", p.name, err)
			continue
		}
		cmp.targets = append(cmp.targets, target{Name: p.name, Peer: true, dir: dir,
			argv: func(port int) []string { return append(slices.Clone(argv), strconv.Itoa(port)) }})
	}
}

// cPeer builds a C peer of one source file with the system C compiler.
type cPeer struct {
	linux bool     // Linux only (epoll, io_uring)
	libs  []string // linked after the source: -luring
	// probe, when set, is a C program that compiles and links with libs
	// only if the library is installed; missing is the reason given when
	// it does not.
	probe, missing string
	// check, when set, says why the kernel cannot run the peer, or nil.
	check func() error
}

func (c cPeer) prepare(ctx context.Context, b peerBuild) ([]string, error) {
	if c.linux && runtime.GOOS != "linux" {
		return nil, fmt.Errorf("needs Linux, not %s", runtime.GOOS)
	}
	cc, err := lookCC()
	if err != nil {
		return nil, fmt.Errorf("no C compiler: %v", err)
	}
	if c.probe != "" {
		probe := exec.CommandContext(ctx, cc, append([]string{"-x", "c", "-o", filepath.Join(b.cache, b.name+"-probe"), "-"}, c.libs...)...)
		probe.Stdin = strings.NewReader(c.probe)
		if out, err := probe.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %s", c.missing, firstLine(out, err))
		}
	}
	if c.check != nil {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	bin := filepath.Join(b.cache, b.name+"-echo")
	args := append([]string{"-O2", "-o", bin, b.src}, c.libs...)
	if out, err := exec.CommandContext(ctx, cc, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s %s failed: %s", cc, strings.Join(args, " "), firstLine(out, err))
	}
	return []string{bin}, nil
}

// liburingProbe links only where liburing's header and library are
// installed.
const liburingProbe = `#include <liburing.h>
int main(void) { struct io_uring r; return io_uring_queue_init(1, &r, 0); }
`

// ioUringEnabled reads the sysctl that can switch io_uring off (Linux
// 6.6 and later); 2 means off for every process.
func ioUringEnabled() error {
	b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled")
	if err == nil && strings.TrimSpace(string(b)) == "2" {
		return errors.New("io_uring is disabled on this kernel (sysctl kernel.io_uring_disabled=2)")
	}
	return nil
}

func prepareNode(_ context.Context, b peerBuild) ([]string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("no node in PATH (Node.js is not installed)")
	}
	return []string{node, b.src}, nil
}

func prepareUvloop(ctx context.Context, b peerBuild) ([]string, error) {
	// Debian's python3-uvloop belongs to the system Python, which a
	// pyenv or virtualenv python3 earlier in PATH would not see.
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py, _ = exec.LookPath("python3")
	}
	if py == "" {
		return nil, errors.New("no python3")
	}
	if out, err := exec.CommandContext(ctx, py, "-c", "import uvloop").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s cannot import uvloop (Debian: apt-get install python3-uvloop): %s", py, firstLine(out, err))
	}
	return []string{py, b.src}, nil
}

// prepareGoModule builds a peer that is a Go module of its own, so the
// switchboard module does not depend on what it imports.
func prepareGoModule(ctx context.Context, b peerBuild) ([]string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, errors.New("no go command to build it")
	}
	bin := filepath.Join(b.cache, b.name+"-echo")
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
	build.Dir = b.src
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build failed (module proxy or network?): %s", firstLine(out, err))
	}
	return []string{bin}, nil
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
