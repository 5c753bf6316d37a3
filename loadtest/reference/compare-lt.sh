#!/usr/bin/env bash
# The sharded core's throughput figures measured with flux-loadtest: Flux against
# nginx `return 200` with the same tool settings, alternating rounds, medians.
#   usage: compare-lt.sh MODE WORKLOAD [DURATION_S] [ROUNDS]
#   MODE: shared (2 shards / 2 nginx workers, tool --threads 2 unpinned on both cores)
#         split  (1 shard / 1 worker on CPU 0, tool --threads 1 on CPU 1)
#   WORKLOAD: event (single-event POST, 64 connections, unpipelined)
#             event-p4 (the same with 4 requests in flight per connection)
#             get (GET by id of existing entities, 64 connections, unpipelined)
#             batch (batches of 1000 events, 8 connections)
set -euo pipefail
MODE=${1:-shared}; WL=${2:-event}; DUR=${3:-5}; ROUNDS=${4:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
FPORT=${FPORT:-3903}
case $MODE in
  shared) SHARDS=2; CPUS=0,1; WORKERS=2; AFF="worker_cpu_affinity auto;"; TOOL=(--threads 2) ;;
  split)  SHARDS=1; CPUS=0;   WORKERS=1; AFF="worker_cpu_affinity 01;";  TOOL=(--threads 1 --cpus 1) ;;
  *) echo "bad mode" >&2; exit 2 ;;
esac
case $WL in
  event)    ARGS=(-c 64 --pipeline 1 --entities 100000) ; KEY=requests_per_s ;;
  event-p4) ARGS=(-c 64 --pipeline 4 --entities 100000) ; KEY=requests_per_s ;;
  get)      ARGS=(-c 64 --pipeline 1 --mix get=1 --entities 100000) ; KEY=requests_per_s ;;
  batch)    ARGS=(-c 8 --batch 1000 --entities 100000) ; KEY=events_per_s ;;
  *) echo "bad workload" >&2; exit 2 ;;
esac
OUT=$(mktemp -d)
field() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'j': j}))" "$@"; }
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { "$LT" --url "$1" -d "${DUR}s" --quiet "${TOOL[@]}" "${ARGS[@]}" --json "$OUT/r.json" >/dev/null || true; }

NG=(); FL=(); FP99=()
mkdir -p /tmp/nginx-ref
for r in $(seq 1 "$ROUNDS"); do
  nginx -p /tmp/nginx-ref -c "$HERE/nginx-return200.conf" -g "worker_processes $WORKERS; $AFF" &
  NPID=$!; sleep 0.5
  run http://127.0.0.1:8088; NG+=("$(field "$OUT/r.json" "round(j['$KEY'])")")
  kill "$NPID"; wait "$NPID" 2>/dev/null || true

  DATA=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$FPORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=$SHARDS FLUX_CPUS=$CPUS "$FLUX" >/dev/null 2>&1 &
  FPID=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$FPORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
  if [ "$WL" = get ]; then  # create every entity the GETs read
    "$LT" --url "http://127.0.0.1:$FPORT" -d 3s --quiet "${TOOL[@]}" -c 8 --batch 1000 --entities 100000 >/dev/null || true
  fi
  run "http://127.0.0.1:$FPORT"
  FL+=("$(field "$OUT/r.json" "round(j['$KEY'])")")
  FP99+=("$(field "$OUT/r.json" "round(j['latency'].get('p99_us', 0)/1000, 2)")")
  ERR=$(field "$OUT/r.json" "j['errors']['total']")
  kill "$FPID"; wait "$FPID" 2>/dev/null || true; rm -rf "$DATA"
  echo "round $r: nginx ${NG[-1]}, flux ${FL[-1]} (p99 ${FP99[-1]} ms, errors $ERR)"
done
MN=$(median "${NG[@]}"); MF=$(median "${FL[@]}")
echo "mode=$MODE workload=$WL ($KEY) dur=${DUR}s rounds=$ROUNDS: nginx $MN, flux $MF (p99 median $(median "${FP99[@]}") ms), ratio $(python3 -c "print(round($MF/$MN, 3))")"
rm -rf "$OUT"
