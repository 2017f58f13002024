#!/usr/bin/env bash
# The cost of the operator features, as server CPU per message: one
# `serve` per variant and round (plain, --metrics scraped every second,
# --conn-log), pinned to CPU 0, under the same fixed-rate echo load from
# `bench --server-pid` pinned to CPU 1. Each round runs the three in a
# rotated order, so drift on a shared machine falls on all of them alike;
# the medians per variant and their ratios to plain come last.
#
#   go build -o /tmp/switchboard ./cmd/switchboard
#   SWITCHBOARD=/tmp/switchboard flock /tmp/switchboard-bench.lock bench/ops-cost.sh 6
#
# Arguments: the number of rounds (default 6), then extra bench flags
# (they override the defaults below). MODEL (default epoll) picks the
# model. bench's connections live for the whole run, so --conn-log writes
# its lines only as they close: its price per connection is
# BenchmarkShortConns in the root package. Every process is stopped by its
# pid at the end.
set -euo pipefail
SB=${SWITCHBOARD:-switchboard}
MODEL=${MODEL:-epoll}
rounds=${1:-6}
shift || true
port=28911
mport=28912
dir=$(mktemp -d)
pid=
scraper=
cleanup() {
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null || true
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
echo "logs in $dir"

variants=(plain metrics connlog)
for r in $(seq 0 $((rounds - 1))); do
  for k in 0 1 2; do
    v=${variants[$(((r + k) % 3))]}
    args=(serve --model "$MODEL" --loops 1 --listen "127.0.0.1:$port")
    case $v in
      metrics) args+=(--metrics "127.0.0.1:$mport") ;;
      connlog) args+=(--conn-log) ;;
    esac
    taskset -c 0 "$SB" "${args[@]}" 2>"$dir/$v.$r.log" &
    pid=$!
    for _ in $(seq 100); do
      grep -q 'msg="switchboard serving"' "$dir/$v.$r.log" && break
      sleep 0.05
    done
    if [ "$v" = metrics ]; then
      (while kill -0 "$pid" 2>/dev/null; do
        curl -sf "http://127.0.0.1:$mport/metrics" >/dev/null || true
        sleep 1
      done) &
      scraper=$!
    fi
    # Exit 3 is a missed rate: the figure stands, marked; others stop.
    st=0
    out=$("$SB" bench --connect "127.0.0.1:$port" --server-pid "$pid" --cpu-load 1 \
      --conns 50 --rate 40000 --size 64 --warmup 1s --duration 3s "$@" 2>&1) || st=$?
    if [ "$st" -ne 0 ] && [ "$st" -ne 3 ]; then
      echo "bench failed (exit $st):"; echo "$out"; exit 1
    fi
    cpu=$(sed -n 's/.*server CPU *\([0-9.]*\) µs\/msg.*/\1/p' <<<"$out")
    missed=$([ "$st" -eq 3 ] && echo " (rate missed: $(grep -o 'achieved [0-9,]* of [0-9,]* msgs/s ([^)]*)' <<<"$out" | head -1))" || true)
    echo "round $r $v ${cpu:-?} µs/msg$missed"
    [ -n "$cpu" ] && echo "$v $cpu" >>"$dir/figures"
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
    if [ -n "$scraper" ]; then
      wait "$scraper" 2>/dev/null || true
      scraper=
    fi
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
base=$(awk '$1=="plain"{print $2}' "$dir/figures" | median)
for v in "${variants[@]}"; do
  m=$(awk -v v="$v" '$1==v{print $2}' "$dir/figures" | median)
  all=$(awk -v v="$v" '$1==v{printf "%s ", $2}' "$dir/figures")
  awk -v v="$v" -v m="$m" -v b="$base" -v all="$all" \
    'BEGIN {printf "%-8s median %.2f µs/msg (%.3f of plain)  runs: %s\n", v, m, m/b, all}'
done
