#!/usr/bin/env bash
# Listing throughput (issue #13): GET /api/state/entities?prefix=lt-&limit=10000, each
# answer 10,000 entities of the load tester's default event (~1.2 MB), with
# `wrk -t2 -c16` against a 2-shard server; server and wrk share both cores. Fresh data
# per round, filled by flux-loadtest batches, medians.
#   usage: list-rate.sh [DURATION_S] [ROUNDS] [FLUX_BIN]
set -euo pipefail
DUR=${1:-5}; ROUNDS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${3:-${FLUX_BIN:-$ROOT/target/release/flux}}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
PORT=${PORT:-3906}
URL="http://127.0.0.1:$PORT/api/state/entities?prefix=lt-&limit=10000"
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
RATES=()
for r in $(seq 1 "$ROUNDS"); do
  DATA=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=2 "$FLUX" >"$DATA.log" 2>&1 &
  FPID=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
  "$LT" --url "http://127.0.0.1:$PORT" -d 2s --quiet -c 4 --batch 1000 --entities 10000 >/dev/null || true
  N=$(curl -fsS "$URL" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  BYTES=$(curl -fsS "$URL" | wc -c)
  RATE=$(wrk -t2 -c16 -d"${DUR}s" "$URL" | awk '/Requests\/sec/ {print $2}')
  RATES+=("$RATE")
  kill "$FPID"; wait "$FPID" 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"
  echo "round $r: $N entities, $BYTES bytes per answer, $RATE req/s"
done
echo "listing of 10,000 entities, wrk -t2 -c16, ${DUR}s x $ROUNDS: median $(median "${RATES[@]}") req/s"
