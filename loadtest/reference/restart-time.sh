#!/usr/bin/env bash
# Restart time: starts the release server on DATA_DIR and prints the time from process
# start to the first `/health` 200 (polled every 20 ms), then stops it (SIGTERM, which
# writes a final snapshot: run it twice to see the log-only and the snapshot figure,
# or kill -9 a loaded server first for the log-only case).
#   usage: restart-time.sh DATA_DIR [SHARDS]     (FLUX_BIN overrides the binary)
set -euo pipefail
DATA=${1:?usage: restart-time.sh DATA_DIR [SHARDS]}
SHARDS=${2:-2}
HERE=$(cd "$(dirname "$0")" && pwd)
FLUX=${FLUX_BIN:-$HERE/../../target/release/flux}
PORT=${PORT:-3952}
start=$(date +%s.%N)
FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=$SHARDS "$FLUX" >"$DATA.restart.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 30000); do
  if curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
    end=$(date +%s.%N)
    python3 -c "print(f'ready after {($end - $start):.2f} s')"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    trap - EXIT
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$DATA.restart.log"; exit 1; }
  sleep 0.02
done
echo "not ready after 600 s" >&2
exit 1
