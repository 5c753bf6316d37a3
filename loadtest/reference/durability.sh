#!/usr/bin/env bash
# Issue-4 figures: batch-of-1000 events/s in each FLUX_SYNC mode as a ratio to `none`,
# and single-event POST p99 in `always` mode with 64 connections, measured with
# flux-loadtest in one run. Cores: the server runs 1 shard pinned to CPU 0, the tool
# 1 thread pinned to CPU 1 (so neither starves the other on a 2-core machine).
#   usage: durability.sh [DURATION]     (default 10s)
set -euo pipefail
DUR=${1:-10s}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
PORT=${PORT:-3950}
run() { # mode, loadtest args...
  local mode=$1; shift
  local data; data=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$data FLUX_SHARDS=1 FLUX_CPUS=0 FLUX_SYNC=$mode "$FLUX" >/dev/null 2>&1 &
  local pid=$!
  until curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do sleep 0.05; done
  "$LT" --url "http://127.0.0.1:$PORT" --threads 1 --cpus 1 --quiet --json "$data/r.json" -d "$DUR" "$@" >/dev/null
  python3 - "$data/r.json" "$mode" "$*" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency"]
print(f"sync={sys.argv[2]:<13} [{sys.argv[3]}] events/s={r['events_per_s']:.0f} req/s={r['requests_per_s']:.0f} "
      f"p50={lat['p50_us']/1000:.2f}ms p99={lat['p99_us']/1000:.2f}ms errors={r['errors']['total']}")
PY
  du -sb --apparent-size "$data" | awk '{print "  log bytes on disk (apparent):", $1}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
for mode in none interval:100 always; do
  run "$mode" --batch 1000 -c 8 --entities 100000
done
run always -c 64 --entities 100000
run none -c 64 --entities 100000
