#!/usr/bin/env bash
# Instructions executed by the server per single-event POST, open vs auth mode, under
# callgrind (deterministic, unlike throughput on a noisy machine).
#   usage: cg-auth.sh open|auth [REQUESTS]; compare `api::dispatch` inclusive cost with
#   callgrind_annotate --inclusive=yes /tmp/cg-MODE.out | grep api::dispatch
set -euo pipefail
MODE=$1; N=${2:-20000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=3931
DATA=$(mktemp -d)
ADMIN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
ENV=(FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=1 FLUX_CPUS=0)
[ "$MODE" = auth ] && ENV+=(FLUX_AUTH_ENABLED=true FLUX_ADMIN_TOKEN=$ADMIN FLUX_RATE_LIMIT_PER_MINUTE=1000000000000)
env "${ENV[@]}" valgrind --tool=callgrind --callgrind-out-file=/tmp/cg-$MODE.out "$ROOT/target/release/flux" >/tmp/cg-$MODE.log 2>&1 &
PID=$!
for _ in $(seq 1 600); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
python3 - "$PORT" "$MODE" "$ADMIN" "$N" <<'PY'
import http.client, json, sys
port, mode, admin, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
headers = {"Content-Type": "application/json"}
prefix = ""
if mode == "auth":
    c.request("POST", "/api/namespaces", json.dumps({"name": "bench"}), {"Authorization": "Bearer " + admin})
    r = c.getresponse(); tok = json.loads(r.read())["token"]
    headers["Authorization"] = "Bearer " + tok
    prefix = "bench/"
for i in range(n):
    body = '{"stream":"bench","source":"cg","payload":{"entity_id":"%swrk-0-%06d","properties":{"temp":22.5,"unit":"celsius","seq":%d}}}' % (prefix, i % 100000, i)
    c.request("POST", "/api/events", body, headers)
    r = c.getresponse(); r.read()
    assert r.status == 200, (r.status)
PY
kill -INT $PID; wait $PID 2>/dev/null || true
rm -rf "$DATA"
callgrind_annotate /tmp/cg-$MODE.out 2>/dev/null | grep -m1 "PROGRAM TOTALS"
