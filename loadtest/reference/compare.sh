#!/usr/bin/env bash
# Measures Flux against nginx `return 200` with the same wrk client, connections and
# duration, in one run, and prints requests/s, p99 and the ratio.
#   usage: compare.sh MODE WORKLOAD [DURATION_S] [CONNECTIONS]
#   MODE: shared (2 shards/2 nginx workers, wrk unpinned on both cores)
#         split  (1 shard/1 worker on CPU 0, wrk pinned to CPU 1)
#   WORKLOAD: event | batch | get
set -euo pipefail
MODE=${1:-shared}; WL=${2:-event}; DUR=${3:-10}; CONN=${4:-64}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
FPORT=${FPORT:-3900}
case $MODE in
  shared) SHARDS=2; CPUS=0,1; WORKERS=2; WRK_PIN=""; THREADS=2 ;;
  split)  SHARDS=1; CPUS=0;   WORKERS=1; WRK_PIN="taskset -c 1"; THREADS=1 ;;
  *) echo "bad mode" >&2; exit 2 ;;
esac
case $WL in
  event) SCRIPT=wrk-post-event.lua ;;
  batch) SCRIPT=wrk-post-batch.lua ;;
  get)   SCRIPT=wrk-get.lua ;;
  *) echo "bad workload" >&2; exit 2 ;;
esac
run_wrk() { $WRK_PIN wrk -t"$THREADS" -c"$CONN" -d"${DUR}s" --latency -s "$HERE/$SCRIPT" "$1" 2>&1; }
rps() { awk '/Requests\/sec/ {print $2}'; }
p99() { awk '$1=="99%" {print $2}'; }

mkdir -p /tmp/nginx-ref
if [ "$MODE" = split ]; then AFF="worker_cpu_affinity 01;"; else AFF="worker_cpu_affinity auto;"; fi
nginx -p /tmp/nginx-ref -c "$HERE/nginx-return200.conf" -g "worker_processes $WORKERS; $AFF" &
NGINX=$!
sleep 0.5
NOUT=$(run_wrk http://127.0.0.1:8088)
kill "$NGINX"; wait "$NGINX" 2>/dev/null || true

DATA=$(mktemp -d)
FLUX_LISTEN=127.0.0.1:$FPORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=$SHARDS FLUX_CPUS=$CPUS "$FLUX" >/dev/null 2>&1 &
FPID=$!
sleep 0.5
if [ "$WL" = get ]; then  # create every id that wrk-get.lua reads, so no GET is a 404
  python3 - "$FPORT" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
for start in range(0, 100000, 1000):
    evs = ",".join('{"stream":"bench","source":"fill","payload":{"entity_id":"wrk-0-%06d","properties":{"temp":22.5,"unit":"celsius","seq":%d}}}' % (i, i) for i in range(start, start + 1000))
    c.request("POST", "/api/events/batch", '{"events":[' + evs + ']}')
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
fi
FOUT=$(run_wrk "http://127.0.0.1:$FPORT")
kill "$FPID"; wait "$FPID" 2>/dev/null || true
rm -rf "$DATA"

N=$(echo "$NOUT" | rps); F=$(echo "$FOUT" | rps)
echo "$FOUT" | grep -E "Non-2xx|Socket errors" || true
printf "mode=%s workload=%s conns=%s dur=%ss\n" "$MODE" "$WL" "$CONN" "$DUR"
printf "nginx return-200: %12s req/s  p99 %s\n" "$N" "$(echo "$NOUT" | p99)"
printf "flux            : %12s req/s  p99 %s\n" "$F" "$(echo "$FOUT" | p99)"
python3 -c "print('ratio flux/nginx: %.2f' % ($F/$N))"
if [ "$WL" = batch ]; then python3 -c "print('flux events/s: %.0f' % ($F*${BATCH:-1000}))"; fi
