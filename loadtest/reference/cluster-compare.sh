#!/usr/bin/env bash
# What cluster mode costs on one machine: one Flux node alone (2 shards) against the
# local 3-node cluster (deploy/local-cluster.sh: 3 nats-server with JetStream, R3
# streams, and 3 Flux nodes with 2 shards each), same load, alternating rounds,
# medians. Every process shares the machine's cores (this measures cost, not scale).
#   usage: cluster-compare.sh [DURATION_S] [ROUNDS]
#   workloads: event (single-event POST, 64 connections, unpipelined) and batch
#   (batches of 1000 events, 8 connections), 100,000 entities, tool --threads 1.
#   FLUX_BIN, LT_BIN (default target/release/...), NATS_SERVER as for local-cluster.sh.
set -euo pipefail
DUR=${1:-8}; ROUNDS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export FLUX_BIN=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
PORT=${PORT:-3911}
OUT=$(mktemp -d)
field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'j': j}))" "$@"; }
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # URLS WORKLOAD -> "events/s p99_ms errors"
  local args
  case $2 in
    event) args=(-c 64 --pipeline 1) ;;
    batch) args=(-c 8 --batch 1000) ;;
  esac
  "$LT" --url "$1" -d "${DUR}s" --warmup 1s --entities 100000 --threads 1 --quiet "${args[@]}" \
    --json "$OUT/r.json" >/dev/null 2>&1 || true
  echo "$(field "$OUT/r.json" "round(j['events_per_s'])") $(field "$OUT/r.json" "round(j['latency'].get('p99_us', 0)/1000, 1)") $(field "$OUT/r.json" "j['errors']['total'] if isinstance(j['errors'], dict) else j['errors']")"
}
declare -A EPS P99
for r in $(seq 1 "$ROUNDS"); do
  for wl in event batch; do
    DATA=$(mktemp -d)
    FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=2 "$FLUX_BIN" >"$OUT/single.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
    set -- $(run "http://127.0.0.1:$PORT" $wl)
    echo "round $r single  $wl: $1 events/s, p99 $2 ms, errors $3"
    EPS[single-$wl]+="$1 "; P99[single-$wl]+="$2 "
    kill "$PID"; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"

    CDIR=$(mktemp -d)
    "$ROOT/deploy/local-cluster.sh" up "$CDIR" >"$OUT/nodes"
    URLS=$(cut -d' ' -f1 "$OUT/nodes" | paste -sd,)
    set -- $(run "$URLS" $wl)
    echo "round $r cluster $wl: $1 events/s, p99 $2 ms, errors $3"
    EPS[cluster-$wl]+="$1 "; P99[cluster-$wl]+="$2 "
    "$ROOT/deploy/local-cluster.sh" down "$CDIR" >/dev/null; rm -rf "$CDIR"
  done
done
echo
echo "| workload | one node: events/s | p99 ms | 3 nodes on NATS: events/s | p99 ms | ratio |"
echo "|---|---|---|---|---|---|"
for wl in event batch; do
  # shellcheck disable=SC2086
  s=$(median ${EPS[single-$wl]}); c=$(median ${EPS[cluster-$wl]})
  # shellcheck disable=SC2086
  sp=$(median ${P99[single-$wl]}); cp=$(median ${P99[cluster-$wl]})
  echo "| $wl | $s | $sp | $c | $cp | $(python3 -c "print(round($c / max($s, 1), 3))") |"
done
rm -rf "$OUT"
