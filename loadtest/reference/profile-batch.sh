#!/usr/bin/env bash
# Where the time of a batched event goes in the real server (issue #13): one shard on
# CPU 0, flux-loadtest on CPU 1 posting batches of 1000 default events (8 connections),
# `perf stat` (instructions, cycles, page faults per event) and `perf record` (flat
# profile by symbol) of the whole server process (the shard thread, its blocking pool
# and the main thread) for DURATION seconds after a warm-up.
#   usage: profile-batch.sh [DURATION_S] [FLUX_SYNC]   (FLUX_SYNC: interval:100, the default, or always)
# Prints events/s, per-event counters and the top symbols; perf.data stays in $OUT.
# Needs perf with access to the process (kernel.perf_event_paranoid <= 1, or root).
set -euo pipefail
DUR=${1:-5}; SYNC=${2:-interval:100}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
PORT=${FPORT:-3904}
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
DATA=$(mktemp -d)
FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=1 FLUX_CPUS=0 FLUX_SYNC=$SYNC \
  "$FLUX" >"$OUT/server.log" 2>&1 &
FPID=$!
cleanup() { kill "$FPID" 2>/dev/null || true; wait "$FPID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done

# Load for warm-up + measurement; the counters cover the measurement window only.
"$LT" --url "http://127.0.0.1:$PORT" -d "$((DUR + 3))s" --quiet --threads 1 --cpus 1 \
  -c 8 --batch 1000 --entities 100000 --json "$OUT/lt.json" >/dev/null &
LTPID=$!
sleep 2
before=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^flux_events_total/ {s+=$2} END {print s}')
perf stat -x, -e instructions,cycles,page-faults,context-switches -p "$FPID" -o "$OUT/stat.csv" \
  -- sleep "$DUR" &
STATPID=$!
perf record -q -F 999 ${CALLGRAPH:+--call-graph dwarf,16384} -p "$FPID" -o "$OUT/perf.data" -- sleep "$DUR" >/dev/null 2>&1 &
RECPID=$!
wait "$STATPID" "$RECPID" || true
after=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '/^flux_events_total/ {s+=$2} END {print s}')
wait "$LTPID" || true
EVENTS=$((after - before))
echo "events in ${DUR} s: $EVENTS ($((EVENTS / DUR)) events/s, FLUX_SYNC=$SYNC)"
awk -F, -v n="$EVENTS" '$1 ~ /^[0-9]/ {printf "  %-18s %14d  %10.1f per event\n", $3, $1, $1 / n}' "$OUT/stat.csv"
echo "top symbols (self time, all threads of the server):"
perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | head -"${TOP:-40}"
echo "perf.data: $OUT/perf.data"
