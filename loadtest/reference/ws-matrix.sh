#!/usr/bin/env bash
# Publish -> subscriber latency at 10/50/90 % of the maximum ingest rate with 1, 100
# and 1000 WebSocket subscribers on `*`, and ingest throughput with 100 subscribers as
# a ratio to none. Every figure comes from flux-loadtest's JSON report.
#   usage: ws-matrix.sh [DURATION_S] [ROUNDS]
#   env:   SUBS="1 100 1000"  PCTS="10 50 90"  PROPS=0 (extra properties per event)
# Cores: one shard on CPU 0, flux-loadtest (publishers and subscribers, one thread)
# on CPU 1. Each event carries the tool's `_lt_sent_us` property (+ PROPS more), so a
# `*` subscriber receives PROPS+1 state_updates per event; latency is measured from
# each event's intended send time (open loop) to the arrival of its update.
set -euo pipefail
DUR=${1:-5}; ROUNDS=${2:-3}
SUBS=${SUBS:-"1 100 1000"}; PCTS=${PCTS:-"10 50 90"}; PROPS=${PROPS:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
PORT=${FPORT:-3902}
OUT=$(mktemp -d)
LTARGS=(--url "http://127.0.0.1:$PORT" -d "${DUR}s" -c 32 --pipeline 4 --threads 1 --cpus 1
        --props "$PROPS" --quiet --ws-grace 2s)

start() {
  DATA=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=1 FLUX_CPUS=0 "$FLUX" >"$OUT/server.log" 2>&1 &
  SPID=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
}
stop() { kill "$SPID"; wait "$SPID" 2>/dev/null || true; rm -rf "$DATA"; }
field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'j': j}))" "$@"; }
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# 1. Maximum ingest rate (closed loop, no subscribers), median of ROUNDS.
MAXES=()
for r in $(seq 1 "$ROUNDS"); do
  start; "$LT" "${LTARGS[@]}" --json "$OUT/max.json" >/dev/null || true; stop
  MAXES+=("$(field "$OUT/max.json" "round(j['events_per_s'])")")
done
MAX=$(median "${MAXES[@]}")
echo "max ingest (closed loop, no subscribers): ${MAXES[*]} events/s -> median $MAX"

# 2. The matrix (open loop at a fixed rate).
printf "\n| subscribers | load | rate (events/s) | acked events/s | updates/s delivered | publish→update p50 / p99 / max | missed | slow-consumer closes | publish p99 |\n|---|---|---|---|---|---|---|---|---|\n"
for n in $SUBS; do
  for p in $PCTS; do
    rate=$((MAX * p / 100))
    start
    "$LT" "${LTARGS[@]}" --rate "$rate" --subscribers "$n" --json "$OUT/m.json" >/dev/null || true
    stop
    field "$OUT/m.json" "'| %d | %d%% | %d | %d | %s | %s / %s / %s ms | %d | %d | %s ms |' % ($n, $p, $rate, j['events_per_s'], round(j['subscribers']['state_updates']/j['config']['duration_s']) if 'duration_s' in j['config'] else j['subscribers']['state_updates'], round(j['subscribers']['latency'].get('p50_us',0)/1000,2), round(j['subscribers']['latency'].get('p99_us',0)/1000,2), round(j['subscribers']['latency'].get('max_us',0)/1000,2), j['subscribers']['missed'], j['subscribers']['slow_consumer_closes'], round(j['latency'].get('p99_us',0)/1000,2))"
  done
done

# 3. Ingest with 100 subscribers as a ratio to none (closed loop, alternating rounds).
NONE=(); HUNDRED=()
for r in $(seq 1 "$ROUNDS"); do
  start; "$LT" "${LTARGS[@]}" --json "$OUT/a.json" >/dev/null || true; stop
  start; "$LT" "${LTARGS[@]}" --subscribers 100 --json "$OUT/b.json" >/dev/null || true; stop
  NONE+=("$(field "$OUT/a.json" "round(j['events_per_s'])")")
  HUNDRED+=("$(field "$OUT/b.json" "round(j['events_per_s'])")")
  echo "round $r: none ${NONE[-1]} events/s, 100 subscribers ${HUNDRED[-1]} events/s ($(field "$OUT/b.json" "j['subscribers']['missed']") missed, $(field "$OUT/b.json" "j['subscribers']['slow_consumer_closes']") slow closes)"
done
MN=$(median "${NONE[@]}"); MH=$(median "${HUNDRED[@]}")
echo "ingest, closed loop: none $MN events/s, 100 subscribers on * $MH events/s, ratio $(python3 -c "print(round($MH/$MN, 3))")"
rm -rf "$OUT"
