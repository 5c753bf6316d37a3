#!/usr/bin/env bash
# The load tester's own ceiling: flux-loadtest and wrk against nginx `return 200`
# (nginx-return200.conf, one worker pinned to CPU 0), each client pinned to CPU 1,
# same connections, alternating runs. Prints requests (or events) per second and
# the client's CPU time per request, which is the figure that matters when nginx,
# not the client, is the limit: 1 s / (CPU time per request) is the client's
# ceiling on one core.
#   usage: ceiling.sh [ROUNDS] [DURATION_S]        (defaults 3 and 5)
#   LT=path/to/flux-loadtest (default target/release/flux-loadtest), LT_OLD=... to
#   compare two builds in the same rounds.
set -euo pipefail
ROUNDS=${1:-3}; DUR=${2:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LT=${LT:-$ROOT/target/release/flux-loadtest}
URL=http://127.0.0.1:8088
mkdir -p /tmp/nginx-ref
taskset -c 0 nginx -p /tmp/nginx-ref -c "$HERE/nginx-return200.conf" \
  -g "worker_processes 1; worker_cpu_affinity 01;" &
NGINX=$!
trap 'kill $NGINX; wait $NGINX 2>/dev/null || true' EXIT
sleep 0.5

WORKER=$(pgrep -P $NGINX)
ticks() { awk '{print $14 + $15}' /proc/$WORKER/stat; }

# One run: NAME, then the command. Prints NAME, rate, the client's CPU time per
# request (or event) and CPU share, and nginx's CPU share (near 100%: nginx was
# the limit, and only the client's CPU time per unit says what it could do).
measure() {
  local name=$1; shift
  local t0; t0=$(ticks)
  local out; out=$( { /usr/bin/time -f "TIME %U %S %P" "$@" 2>&1 || true; } 2>&1 )
  local nginx_pct; nginx_pct=$(( ($(ticks) - t0) * 100 / $(getconf CLK_TCK) / DUR ))
  local t; t=$(echo "$out" | awk '/^TIME/ {print $2 + $3, $4}')
  local n
  case $name in
    wrk*) n=$(echo "$out" | awk '/^Requests\/sec/ {print $2 * '"$DUR"'}') ;;
    *batch*) n=$(echo "$out" | awk '$1=="events" {print $2}') ;;
    *) n=$(echo "$out" | awk '$1=="responses" {print $2}') ;;
  esac
  set -- $t
  python3 -c "print('%-22s %10.0f /s %8.3f us/unit  client cpu %4s  nginx cpu %3s%%' % ('$name', $n / $DUR, $1 * 1e6 / max($n, 1), '$2', '$nginx_pct'))"
}

lt() { # NAME BINARY ARGS...
  local name=$1 bin=$2; shift 2
  measure "$name" "$bin" --url $URL -d "${DUR}s" --threads 1 --cpus 1 --quiet "$@"
}

for r in $(seq "$ROUNDS"); do
  echo "# round $r"
  for bin in ${LT_OLD:+"$LT_OLD"} "$LT"; do
    tag=$([ "$bin" = "${LT_OLD:-}" ] && echo old || echo new)
    lt "$tag get c32 p1" "$bin" -c 32 --pipeline 1 --mix get=1
    lt "$tag get c32 p4" "$bin" -c 32 --pipeline 4 --mix get=1
    lt "$tag get c32 p16" "$bin" -c 32 --pipeline 16 --mix get=1
    lt "$tag ingest c32 p1" "$bin" -c 32 --pipeline 1
    lt "$tag batch1000 c8" "$bin" -c 8 --batch 1000
  done
  measure "wrk c32" taskset -c 1 wrk -t1 -c32 -d"${DUR}s" $URL/api/state/entities/lt-000001
done
