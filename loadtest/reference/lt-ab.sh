#!/usr/bin/env bash
# A/B of two load-tester builds: OLD and NEW flux-loadtest, alternating rounds,
# against one release flux (1 shard on CPU 0); the tool on CPU 1, one thread. Prints
# req/s and the tool's CPU per request (GET pipelined 16, single events unpipelined).
#   usage: lt-ab.sh OLD_LOADTEST NEW_LOADTEST [FLUX_BIN]   (DUR, ROUNDS from the env)
# Used for the flux-devclient change (issue #15).
set -u
OLD=$1; NEW=$2; FLUX=${3:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/flux}
OUT=$(mktemp); PORT=3917; DUR=${DUR:-5}; ROUNDS=${ROUNDS:-5}
DATA=$(mktemp -d)
FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=1 FLUX_CPUS=0 taskset -c 0 $FLUX >/dev/null 2>&1 &
FPID=$!
trap 'kill $FPID; wait $FPID 2>/dev/null; rm -rf $DATA $OUT' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
taskset -c 1 $NEW --url http://127.0.0.1:$PORT -d 3s --quiet --threads 1 --cpus 1 -c 8 --batch 1000 --entities 100000 >/dev/null
run() { # BIN NAME ARGS
  local bin=$1 name=$2; shift 2
  local out; out=$( { /usr/bin/time -f "TIME %U %S" taskset -c 1 "$bin" --url http://127.0.0.1:$PORT -d ${DUR}s --quiet --threads 1 --cpus 1 --entities 100000 --json $OUT "$@" >/dev/null; } 2>&1 )
  python3 - "$name" "$out" "$DUR" "$OUT" <<'PY'
import json,sys
j=json.load(open(sys.argv[4]))
t=[l for l in sys.argv[2].splitlines() if l.startswith('TIME')][0].split()
cpu=float(t[1])+float(t[2]); n=j['responses'] if 'responses' in j else j.get('requests',0)
rps=j['requests_per_s']; reqs=rps*float(sys.argv[3])
print("%-12s %9.0f req/s  client cpu %6.3f us/req  errors %s" % (sys.argv[1], rps, cpu*1e6/max(reqs,1), j['errors']['total']))
PY
}
for r in $(seq 1 $ROUNDS); do
  for wl in "get-p16:--mix get=1 -c 64 --pipeline 16" "event-p1:-c 64 --pipeline 1"; do
    name=${wl%%:*}; args=${wl#*:}
    run $OLD "old $name" $args
    run $NEW "new $name" $args
  done
done
