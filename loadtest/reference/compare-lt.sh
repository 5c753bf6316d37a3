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
# With WORKLOAD batch in split mode, Redis runs in the same rounds when redis-server is
# installed (Debian's, no persistence, pinned to CPU 0; redis-benchmark on CPU 1, 16
# pipelined commands per connection, 100,000 keys): `HSET` of one field (the usual
# redis-benchmark figure) and `HSET` of the tool-default event's 4 properties (the
# same work as one Flux event, minus the log). Flux per event against Redis per command.
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

NG=(); FL=(); FP99=(); R1=(); R4=()
REDIS=0
if [ "$WL" = batch ] && [ "$MODE" = split ] && command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
  REDIS=1
fi
# redis-benchmark runs a request count, not a time: about DUR seconds at 1 M/s.
redis_run() {
  taskset -c 1 redis-benchmark -p 6390 -P 16 -r 100000 -n "$((DUR * 1000000))" --csv "$@" 2>/dev/null \
    | tail -1 | python3 -c 'import csv,sys; print(round(float(next(csv.reader(sys.stdin))[1])))'
}
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
  if [ "$REDIS" = 1 ]; then
    taskset -c 0 redis-server --bind 127.0.0.1 --port 6390 --save '' --appendonly no \
      --daemonize yes --pidfile "$OUT/redis.pid" --logfile "$OUT/redis.log"
    for _ in $(seq 1 50); do redis-cli -p 6390 ping >/dev/null 2>&1 && break; sleep 0.05; done
    R1+=("$(redis_run -t hset)")
    R4+=("$(redis_run HSET lt-__rand_int__ p0 0000000000012345 p1 __rand_int__ p2 0000000000007919 p3 42)")
    RPID=$(cat "$OUT/redis.pid"); kill "$RPID"
    while kill -0 "$RPID" 2>/dev/null; do sleep 0.05; done
    echo "round $r: redis hset(1 field) ${R1[-1]}/s, hset(4 fields) ${R4[-1]}/s"
  fi
done
MN=$(median "${NG[@]}"); MF=$(median "${FL[@]}")
echo "mode=$MODE workload=$WL ($KEY) dur=${DUR}s rounds=$ROUNDS: nginx $MN, flux $MF (p99 median $(median "${FP99[@]}") ms), ratio $(python3 -c "print(round($MF/$MN, 3))")"
if [ "$REDIS" = 1 ]; then
  M1=$(median "${R1[@]}"); M4=$(median "${R4[@]}")
  echo "redis (same rounds): hset 1 field $M1/s, hset 4 fields $M4/s; flux events/s over them: $(python3 -c "print(round($MF/$M1, 3), round($MF/$M4, 3))")"
fi
rm -rf "$OUT"
