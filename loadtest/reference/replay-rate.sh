#!/usr/bin/env bash
# Replay rate from the log alone: one shard (CPU 0) is filled with the load tester's
# default events in batches of 1000 for FILL_S seconds with snapshots off, killed with
# -9, and restarted; the server's "recovered N records ... in T ms" line gives the rate.
# Alternates the binaries given, ROUNDS times.
#   usage: replay-rate.sh FILL_S ROUNDS FLUX_BIN...
set -euo pipefail
FILL=${1:?}; ROUNDS=${2:?}; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
LT=${LT_BIN:-$HERE/../../target/release/flux-loadtest}
PORT=${PORT:-3953}
export FLUX_SHARDS=1 FLUX_CPUS=0 FLUX_SNAPSHOT_INTERVAL_S=1000000 FLUX_SNAPSHOT_LOG_BYTES=1000000000000 FLUX_RETENTION=1000GiB
one() {
  local bin=$1 data; data=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$data/d "$bin" >"$data/log1" 2>&1 &
  local pid=$!
  until curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$data/log1" >&2; exit 1; }
    sleep 0.05
  done
  "$LT" --url "http://127.0.0.1:$PORT" -d "${FILL}s" --quiet --threads 1 --cpus 1 -c 8 --batch 1000 --entities 100000 >/dev/null
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  # A new port: the killed process's listener may linger a moment.
  FLUX_LISTEN=127.0.0.1:$((PORT + 1)) FLUX_DATA_DIR=$data/d "$bin" >"$data/log2" 2>&1 &
  pid=$!
  until curl -fs "http://127.0.0.1:$((PORT + 1))/health" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$data/log2" >&2; exit 1; }
    sleep 0.05
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local line; line=$(grep -o "recovered [0-9]* records, [0-9]* entities in [0-9]* ms" "$data/log2")
  python3 - "$line" "$(du -sb "$data/d" | cut -f1)" <<'PY'
import re, sys
n, e, ms = map(int, re.findall(r"\d+", sys.argv[1]))
print(f"{n} records in {ms} ms: {n / ms * 1000 / 1e6:.2f} M records/s")
PY
  rm -rf "$data"
}
for r in $(seq 1 "$ROUNDS"); do
  for b in "$@"; do echo "round $r $b: $(one "$b")"; done
done
