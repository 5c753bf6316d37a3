#!/usr/bin/env bash
# Unpipelined single-event POSTs against one Flux shard (CPU 0), client on CPU 1,
# a fresh server per run, 64 connections: flux-loadtest (and LT_OLD, if set) and
# wrk with wrk-post-event.lua, alternating. Prints requests per second, the
# client's CPU time per request and its CPU share (near 100 %: the client was the
# limit).
#   usage: flux-single.sh [ROUNDS] [DURATION_S]        (defaults 3 and 3)
#   LT (default target/release/flux-loadtest), LT_OLD, FLUX_BIN (default
#   target/release/flux).
set -euo pipefail
ROUNDS=${1:-3}; DUR=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LT=${LT:-$ROOT/target/release/flux-loadtest}
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
PORT=${PORT:-3977}
one() { # NAME CMD...
  local name=$1; shift
  local data; data=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$data FLUX_SHARDS=1 FLUX_CPUS=0 "$FLUX" >/dev/null 2>&1 &
  local srv=$!
  sleep 1
  local out; out=$( { /usr/bin/time -f "TIME %U %S %P" "$@" 2>&1 || true; } 2>&1 )
  kill $srv; wait $srv 2>/dev/null || true; rm -rf "$data"
  local n
  case $name in
    wrk*) n=$(echo "$out" | awk '/^Requests\/sec/ {print $2 * '"$DUR"'}') ;;
    *) n=$(echo "$out" | awk '$1=="responses" {print $2}') ;;
  esac
  local t; t=$(echo "$out" | awk '/^TIME/ {print $2 + $3, $4}')
  set -- $t
  python3 -c "print('%-10s %8.0f /s %7.2f us/req  client cpu %s' % ('$name', $n / $DUR, $1 * 1e6 / max($n, 1), '$2'))"
}
for r in $(seq "$ROUNDS"); do
  echo "# round $r"
  for bin in ${LT_OLD:+"$LT_OLD"} "$LT"; do
    tag=$([ "$bin" = "${LT_OLD:-}" ] && echo old || echo new)
    one "$tag" "$bin" --url http://127.0.0.1:$PORT -d "${DUR}s" --threads 1 --cpus 1 -c 64 --pipeline 1 --quiet
  done
  one wrk taskset -c 1 wrk -t1 -c64 -d"${DUR}s" -s "$HERE/wrk-post-event.lua" http://127.0.0.1:$PORT
done
