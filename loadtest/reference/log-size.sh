#!/usr/bin/env bash
# Log bytes per event of the load tester's default event (4 properties, two 16-byte
# strings), written through batches of 1000 and through single events, on a fresh data
# directory per run. Counts written bytes (log-bytes.py), not preallocated segments.
#   usage: log-size.sh FLUX_BIN [SHARDS] [DURATION_S]
set -euo pipefail
BIN=$1; SHARDS=${2:-1}; DUR=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
LT=${LT_BIN:-$HERE/../../target/release/flux-loadtest}
PORT=${PORT:-3907}
for wl in batch single; do
  data=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$data/d FLUX_SHARDS=$SHARDS "$BIN" >"$data/log" 2>&1 &
  pid=$!
  until curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do sleep 0.05; done
  case $wl in
    batch) args=(-c 8 --batch 1000) ;;
    single) args=(-c 32) ;;
  esac
  "$LT" --url "http://127.0.0.1:$PORT" -d "${DUR}s" --quiet "${args[@]}" --json "$data/r.json" >/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
  events=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['events'])" "$data/r.json")
  echo "$wl shards=$SHARDS events=$events $(python3 "$HERE/log-bytes.py" "$data/d" "$events" | tr '\n' ' ')"
  rm -rf "$data"
done
