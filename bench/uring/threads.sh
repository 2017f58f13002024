#!/usr/bin/env bash
# Where a uring server's CPU goes at 100x64x1: per-thread CPU time,
# run-queue wait and context switches (from /proc/PID/task/*) over 3 s
# of load, and a perf profile of the same 3 s (perf record -g). The
# server is pinned to CPU 0 with one loop, the load to CPU 1.
#
#   bench/uring/threads.sh [SB_BINARY] [OPTS] [NAME] [OUTDIR]
#
# OPTS is SWITCHBOARD_URING_OPTS for the server; the profile is
# OUTDIR/NAME.perf.data (read it with perf report -i ... --tid TID).
# Run it under the benchmark lock:
#   flock /tmp/switchboard-bench.lock bench/uring/threads.sh
set -euo pipefail
sb=${1:-/tmp/sb-uring}
opts=${2:-}
name=${3:-uring}
out=${4:-/tmp}
. "$(dirname "$0")/serve.sh"
port=$(free_port)
start_server "$sb" "uring:$opts" "$port" "$out/$name.serve.err"
spid=$pid
taskset -c 1 "$sb" bench --connect "127.0.0.1:$port" --conns 100 --size 64 --pipeline 1 --cpu-load none \
	--duration 8s --warmup 1s --server-pid "$spid" >"$out/$name.bench.txt" 2>&1 &
bpid=$!
sleep 3
snap() {
	for t in /proc/"$spid"/task/*; do
		echo "$(basename "$t") $(cat "$t/comm") $(cat "$t/schedstat") $(awk '/ctxt/ {printf "%s ", $2}' "$t/status")"
	done | sort
}
snap >"$out/$name.t0"
perf record -F 1999 -g -p "$spid" -o "$out/$name.perf.data" -- sleep 3 >/dev/null 2>&1
snap >"$out/$name.t1"
wait "$bpid" || true
kill "$spid"; wait "$spid" 2>/dev/null || true
join "$out/$name.t0" "$out/$name.t1" | awk '{printf "tid %s %s: cpu %.0f ms, run-queue wait %.0f ms, voluntary cs %d, involuntary cs %d\n", $1, $2, ($9-$3)/1e6, ($10-$4)/1e6, $12-$6, $13-$7}'
grep -E "server CPU|bottleneck" "$out/$name.bench.txt" || true
