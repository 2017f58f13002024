#!/usr/bin/env bash
# System calls per message, counted by the kernel's syscall tracepoints
# (perf stat -e raw_syscalls:sys_enter, every thread of the server), over a
# fixed number of echoed messages. The server runs pinned to CPU 0 with
# one loop, the load on CPU 1; the count covers the whole bench run
# (connection set-up included, a few hundred calls against hundreds of
# thousands of messages).
#
#   bench/uring/syscalls.sh [SB_BINARY] [CONNS] [SIZE] [PIPELINE] [MESSAGES] [SERVERS...]
#
# SERVERS are switchboard models (epoll, uring), "uring:OPTS" for the uring
# model with SWITCHBOARD_URING_OPTS=OPTS, or c-epoll / c-uring (built here
# from bench/peers with cc; c-uring needs liburing-dev). Run it under the
# benchmark lock: flock /tmp/switchboard-bench.lock bench/uring/syscalls.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/serve.sh"
sb=${1:-/tmp/sb-uring}
conns=${2:-100}
size=${3:-64}
pipeline=${4:-1}
msgs=${5:-200000}
shift $(( $# < 5 ? $# : 5 ))
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(epoll uring c-epoll c-uring)
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for s in "${servers[@]}"; do
	port=$(free_port)
	env=()
	case $s in
	c-epoll|c-uring)
		lib=""; [ "$s" = c-uring ] && lib="-luring"
		cc -O2 -o "$tmp/$s" "$here/../peers/$s/echo.c" $lib
		taskset -c 0 "$tmp/$s" "$port" 2>"$tmp/err" & ;;
	*)
		start_server "$sb" "$s" "$port" "$tmp/err" ;;
	esac
	[ "${s#c-}" = "$s" ] || { pid=$!; wait_port "$port"; }
	perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$tmp/perf" &
	perfpid=$!
	sleep 0.2
	out=$(taskset -c 1 "$sb" bench --connect "127.0.0.1:$port" --conns "$conns" --size "$size" --pipeline "$pipeline" \
		--requests "$msgs" --warmup 0 --cpu-load none --json "$tmp/bench.json" 2>&1) || { echo "$out" >&2; }
	sleep 0.2
	kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true
	kill "$pid"; wait "$pid" 2>/dev/null || true
	calls=$(awk -F, '/raw_syscalls/ {print $1}' "$tmp/perf")
	case $calls in ''|*[!0-9]*) echo "$s: perf counted nothing ($calls)" >&2; continue ;; esac
	sent=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d["runs"][0] if "runs" in d else d; print(r.get("messages") or r.get("Messages") or "")' "$tmp/bench.json" 2>/dev/null || true)
	[ -n "$sent" ] || sent=$msgs
	printf '%-28s %dx%dx%d  %10s calls  %10s msgs  %.3f calls/msg\n' "$s" "$conns" "$size" "$pipeline" "$calls" "$sent" "$(python3 -c "print($calls/$sent)")"
done
