#!/usr/bin/env bash
# By hand: two `serve --proxy-protocol` instances behind HAProxy (this
# directory's haproxy.cfg on ports 28888 -> 28901, 28902), bench through
# HAProxy, and a rolling SIGHUP upgrade of both instances during the run.
# Extra arguments go to bench. Needs haproxy and a built switchboard:
#
#   go build -o /tmp/switchboard ./cmd/switchboard
#   SWITCHBOARD=/tmp/switchboard deploy/haproxy-rolling.sh --conns 20 --duration 10s
#
# Every process is stopped by its pid at the end.
set -euo pipefail
SB=${SWITCHBOARD:-switchboard}
HAPROXY=${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
pids=()
cleanup() {
  for f in "$dir"/a.pid "$dir"/b.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
"$SB" serve --proxy-protocol --listen 127.0.0.1:28901 --pid-file "$dir/a.pid" 2>"$dir/a.log" &
"$SB" serve --proxy-protocol --listen 127.0.0.1:28902 --pid-file "$dir/b.pid" 2>"$dir/b.log" &
sed -e 's/bind 127.0.0.1:8888/bind 127.0.0.1:28888/' \
    -e 's/server a 127.0.0.1:8901/server a 127.0.0.1:28901/' \
    -e 's/server b 127.0.0.1:8902/server b 127.0.0.1:28902/' "$here/haproxy.cfg" >"$dir/haproxy.cfg"
sleep 0.5
"$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
pids+=($!)
sleep 0.5
( sleep 4; kill -HUP "$(cat "$dir/a.pid")"; sleep 3; kill -HUP "$(cat "$dir/b.pid")" ) &
pids+=($!)
status=0
"$SB" bench --connect 127.0.0.1:28888 "$@" || status=$?
echo "--- instance a"; cat "$dir/a.log"
echo "--- instance b"; cat "$dir/b.log"
exit $status
