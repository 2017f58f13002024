#!/usr/bin/env bash
# Closed-loop A/B of server variants in one cell: the variants alternate,
# ROUNDS rounds, so a disturbance of the shared machine falls on all of
# them; compare runs one uring configuration per run, which cannot tell
# two option sets apart on a noisy machine. Server pinned to CPU 0 with
# one loop, load on CPU 1.
#
#   bench/uring/variants.sh [SB_BINARY] [CELL] [ROUNDS] [DURATION] [SERVERS...]
#
# CELL is CONNSxSIZExPIPELINE; SERVERS as in syscalls.sh (epoll, uring,
# uring:OPTS with OPTS for SWITCHBOARD_URING_OPTS). Prints one line per
# run and the median server µs/msg of each variant, with its ratio to the
# first. Run it under the benchmark lock:
#   flock /tmp/switchboard-bench.lock bench/uring/variants.sh
set -euo pipefail
sb=${1:-/tmp/sb-uring}
cell=${2:-100x4096x4}
rounds=${3:-5}
duration=${4:-3s}
shift $(( $# < 4 ? $# : 4 ))
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(uring epoll)
IFS=x read -r conns size pipeline <<<"$cell"
. "$(dirname "$0")/serve.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for round in $(seq "$rounds"); do
	for i in "${!servers[@]}"; do
		s=${servers[$i]}
		port=$(free_port)
		rm -f "$tmp/r.json"
		start_server "$sb" "$s" "$port" "$tmp/err"
		taskset -c 1 "$sb" bench --connect "127.0.0.1:$port" --conns "$conns" --size "$size" --pipeline "$pipeline" \
			--duration "$duration" --warmup 1s --server-pid "$pid" --cpu-load none --json "$tmp/r.json" >/dev/null 2>"$tmp/bench.err" || true
		if ! kill "$pid" 2>/dev/null; then
			echo "$s round $round: the server exited during the run:" >&2
			tail -5 "$tmp/err" >&2
		fi
		wait "$pid" 2>/dev/null || true
		python3 - "$s" "$round" "$tmp/r.json" "$tmp/v$i" <<'PY'
import json, sys
s, rnd, path, keep = sys.argv[1:]
try:
    d = json.load(open(path))
except Exception as e:
    print(f"{s:44s} round {rnd}: no result ({e})"); sys.exit()
srv = d.get("server") or {}
us = srv.get("cpu_us_per_msg", 0)
open(keep, "a").write(f"{us}\n")
print(f"{s:44s} round {rnd}: {d.get('msgs_per_sec', 0):9.0f} msgs/s server {us:6.3f} µs/msg "
      f"runq-wait {srv.get('run_queue_wait_ns', 0)/1e6:7.1f} ms")
PY
	done
done
python3 - "$tmp" "${servers[@]}" <<'PY'
import statistics, sys
tmp, servers = sys.argv[1], sys.argv[2:]
meds = []
for i, s in enumerate(servers):
    try:
        v = [float(x) for x in open(f"{tmp}/v{i}") if float(x) > 0]
    except OSError:
        v = []
    meds.append(statistics.median(v) if v else 0)
for s, m in zip(servers, meds):
    r = m / meds[0] if meds[0] else 0
    print(f"median {s:44s} {m:6.3f} µs/msg  x{r:5.2f} of {servers[0]}")
PY
