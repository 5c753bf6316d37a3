#!/usr/bin/env bash
# Does an open console slow ingestion? Alternating rounds against one release flux
# (1 shard on CPU 0): flux-loadtest on CPU 1 (one thread), without and with a headless
# chromium (also on CPU 1) showing the console's live tail of `*`
# (tests/browser/console.mjs hold), and with a plain `*` WebSocket subscriber instead
# (flux-loadtest --subscribers 1, in the tool's own thread): the fan-out any `*`
# subscriber costs. Single events (-c 64) and batches of 1000 (-c 8).
#   usage: loadtest/reference/console-ab.sh   (DUR=5 ROUNDS=3 from the env)
# Needs: cargo build --release; npm ci --prefix tests/browser; chromium.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FLUX=$ROOT/target/release/flux; LT=$ROOT/target/release/flux-loadtest
PORT=${PORT:-$(python3 -c "import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])")}; DUR=${DUR:-5}; ROUNDS=${ROUNDS:-3}
DATA=$(mktemp -d); OUT=$(mktemp)
FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=1 FLUX_CPUS=0 taskset -c 0 "$FLUX" >"$DATA.log" 2>&1 &
FPID=$!
BPID=
trap '[ -n "$BPID" ] && kill $BPID 2>/dev/null; kill $FPID 2>/dev/null || { echo "flux had exited; its log:"; tail -40 $DATA.log; }; wait $FPID 2>/dev/null; rm -rf $DATA $DATA.log $OUT' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || { echo "flux did not start:"; cat "$DATA.log"; exit 1; }
run() { # NAME ARGS
  local name=$1; shift
  taskset -c 1 "$LT" --url http://127.0.0.1:$PORT -d ${DUR}s --quiet --threads 1 --cpus 1 \
    --entities 100000 --json "$OUT" "$@" >/dev/null
  python3 -c "import json,sys; j=json.load(open('$OUT')); print('%-22s %10.0f events/s  p99 %6.2f ms  errors %s' % (sys.argv[1], j['events_per_s'], j['latency']['p99_us']/1000, j['errors']['total']))" "$name"
}
console_open() {
  taskset -c 1 node "$ROOT/tests/browser/console.mjs" hold "http://127.0.0.1:$PORT" $((DUR + 2)) >"$DATA/browser.log" 2>&1 &
  BPID=$!
  for _ in $(seq 1 100); do grep -q ready "$DATA/browser.log" && return; sleep 0.1; done
  echo "the console did not open:"; cat "$DATA/browser.log"; exit 1
}
console_close() { wait $BPID; BPID=; sed -n 's/^tail:/    console tail:/p' "$DATA/browser.log"; }
run warmup -c 8 --batch 1000 >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  for wl in "event:-c 64" "batch:-c 8 --batch 1000"; do
    name=${wl%%:*}; args=${wl#*:}
    run "$name without" $args
    console_open; run "$name with console" $args; console_close
    run "$name with ws *" $args --subscribers 1 --subscribe '*'
  done
done
