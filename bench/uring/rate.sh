#!/usr/bin/env bash
# Fixed-rate comparison: every server gets the same offered load (bench
# --rate, open loop) and the figure is the server's CPU time per message
# at that rate, which still separates servers when the load generator
# cannot saturate the fastest one. Servers alternate, REPEAT rounds; the
# server is pinned to CPU 0 with one loop, the load to CPU 1.
#
#   bench/uring/rate.sh [SB_BINARY] [RATE] [CONNS] [REPEAT] [DURATION] [SERVERS...]
#
# SERVERS as in syscalls.sh (epoll, uring, uring:OPTS). Prints one line per
# run: server, rate asked, rate achieved, server µs/msg, p99. Run it under
# the benchmark lock: flock /tmp/switchboard-bench.lock bench/uring/rate.sh
set -euo pipefail
sb=${1:-/tmp/sb-uring}
rate=${2:-100000}
conns=${3:-100}
repeat=${4:-3}
duration=${5:-5s}
shift $(( $# < 5 ? $# : 5 ))
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(epoll uring)
. "$(dirname "$0")/serve.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for round in $(seq "$repeat"); do
	for s in "${servers[@]}"; do
		port=$(free_port)
		start_server "$sb" "$s" "$port" "$tmp/err"
		taskset -c 1 "$sb" bench --connect "127.0.0.1:$port" --conns "$conns" --rate "$rate" --duration "$duration" --warmup 1s \
			--server-pid "$pid" --cpu-load none --json "$tmp/r.json" >/dev/null 2>"$tmp/bench.err" || true
		kill "$pid"; wait "$pid" 2>/dev/null || true
		python3 - "$s" "$round" "$tmp/r.json" <<'PY'
import json, sys
s, rnd, path = sys.argv[1:]
try:
    d = json.load(open(path))
except Exception as e:
    print(f"{s:28s} round {rnd}: no result ({e})"); sys.exit()
srv = d.get("server") or {}
p99 = (d.get("latency") or {}).get("p99_ns") or 0
print(f"{s:28s} round {rnd}: offered {d.get('offered_rate', 0):9.0f}/s achieved {d.get('achieved_rate', 0):9.0f}/s "
      f"server {srv.get('cpu_us_per_msg', 0):6.3f} µs/msg util {srv.get('utilization', 0):5.2f} "
      f"runq-wait {srv.get('run_queue_wait_ns', 0)/1e6:7.1f} ms p99 {p99/1e3:8.0f} µs")
PY
	done
done
