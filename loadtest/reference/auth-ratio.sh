#!/usr/bin/env bash
# Ingest throughput in auth mode as a ratio to open mode, same binary, same wrk
# client, alternating rounds (open, auth, open, auth, ...), medians printed.
#   usage: auth-ratio.sh WORKLOAD [DURATION_S] [CONNECTIONS] [ROUNDS]
#   WORKLOAD: event | batch
# Cores: one shard on CPU 0, wrk pinned to CPU 1 (the server is the bottleneck).
# Auth mode runs with the rate limit ON at a limit no test reaches
# (FLUX_RATE_LIMIT_PER_MINUTE, default 10^12), so token checks, namespace checks and
# rate-limit accounting are all on the measured path.
set -euo pipefail
WL=${1:-event}; DUR=${2:-8}; CONN=${3:-64}; ROUNDS=${4:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
PORT=${FPORT:-3901}
LIMIT=${FLUX_RATE_LIMIT_PER_MINUTE:-1000000000000}
ADMIN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
case $WL in
  event) SCRIPT=wrk-post-event.lua; UNIT=1 ;;
  batch) SCRIPT=wrk-post-batch.lua; UNIT=${BATCH:-1000} ;;
  *) echo "bad workload" >&2; exit 2 ;;
esac

run() {  # $1 = open | auth ; prints requests/s
  local DATA; DATA=$(mktemp -d)
  local ENV=(FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=1 FLUX_CPUS=0)
  if [ "$1" = auth ]; then
    ENV+=(FLUX_AUTH_ENABLED=true FLUX_ADMIN_TOKEN=$ADMIN FLUX_RATE_LIMIT_PER_MINUTE=$LIMIT)
  fi
  env "${ENV[@]}" "$FLUX" >/dev/null 2>&1 &
  local PID=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
  local WENV=()
  if [ "$1" = auth ]; then
    local TOKEN
    TOKEN=$(curl -fsS -X POST "http://127.0.0.1:$PORT/api/namespaces" -H "Authorization: Bearer $ADMIN" \
      -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    WENV=(FLUX_NS=bench FLUX_TOKEN=$TOKEN)
  fi
  local OUT
  OUT=$(env "${WENV[@]}" taskset -c 1 wrk -t1 -c"$CONN" -d"${DUR}s" -s "$HERE/$SCRIPT" "http://127.0.0.1:$PORT" 2>&1)
  kill "$PID"; wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
  if echo "$OUT" | grep -q "Non-2xx"; then echo "$1: non-2xx answers: $(echo "$OUT" | grep Non-2xx)" >&2; fi
  echo "$OUT" | awk '/Requests\/sec/ {print $2}'
}

OPEN=(); AUTH=()
for r in $(seq 1 "$ROUNDS"); do
  o=$(run open); a=$(run auth)
  OPEN+=("$o"); AUTH+=("$a")
  printf "round %d: open %s req/s, auth %s req/s\n" "$r" "$o" "$a"
done
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
MO=$(median "${OPEN[@]}"); MA=$(median "${AUTH[@]}")
printf "workload=%s conns=%s dur=%ss rounds=%s (1 shard CPU 0, wrk CPU 1)\n" "$WL" "$CONN" "$DUR" "$ROUNDS"
printf "open: median %s req/s = %s events/s\n" "$MO" "$(python3 -c "print(round($MO*$UNIT))")"
printf "auth: median %s req/s = %s events/s\n" "$MA" "$(python3 -c "print(round($MA*$UNIT))")"
printf "ratio auth/open: %s\n" "$(python3 -c "print(round($MA/$MO, 3))")"
