#!/usr/bin/env bash
# Issue-11 figure: single-event latency under a steady open-loop load while the log
# rolls to a new segment every few hundred ms (FLUX_SEGMENT_BYTES at its minimum,
# 1 MiB, with both body limits lowered to 256 KiB so that the minimum applies) against
# the same load with segments that never roll during the run (1 GiB). Rounds alternate
# small/large; each line is one run. Cores: 1 shard pinned to CPU 0, the tool (1
# thread) pinned to CPU 1.
#   usage: rollover.sh [RATE] [DURATION] [ROUNDS]    (default 50000 20s 3)
#   FLUX_BIN=path/to/flux compares another build (e.g. one from before the change).
set -euo pipefail
RATE=${1:-50000}
DUR=${2:-20s}
ROUNDS=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
PORT=${PORT:-3951}
run() { # segment bytes
  local seg=$1
  local data; data=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$data/d FLUX_SHARDS=1 FLUX_CPUS=0 \
    FLUX_SEGMENT_BYTES=$seg FLUX_BODY_LIMIT_SINGLE_BYTES=262144 FLUX_BODY_LIMIT_BATCH_BYTES=262144 \
    FLUX_SNAPSHOT_INTERVAL_S=3600 "$FLUX" >"$data/server.log" 2>&1 &
  local pid=$!
  until curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do sleep 0.05; done
  "$LT" --url "http://127.0.0.1:$PORT" --threads 1 --cpus 1 --quiet --json "$data/r.json" \
    -d "$DUR" -c 32 --rate "$RATE" --entities 100000 >/dev/null
  local rolls
  rolls=$(curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^flux_log_rolls_total /{r=$2} /^flux_log_rolls_without_spare_total /{w=$2} END{if (r!="") print r" rolls, "w" without a spare"; else print "rolls: n/a"}')
  python3 - "$data/r.json" "$seg" "$rolls" "$(ls "$data/d/shard-0" | grep -c '\.seg$')" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency"]
print(f"segment={int(sys.argv[2])>>20:>5} MiB  events/s={r['events_per_s']:>8.0f}  "
      f"p50={lat['p50_us']/1000:6.2f} ms  p99={lat['p99_us']/1000:6.2f} ms  "
      f"p99.9={lat.get('p99_9_us', 0)/1000:6.2f} ms  max={lat.get('max_us', 0)/1000:7.2f} ms  "
      f"errors={r['errors']['total']}  segments={sys.argv[4]}  ({sys.argv[3]})")
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
for _ in $(seq 1 "$ROUNDS"); do
  run 1048576
  run 1073741824
done
