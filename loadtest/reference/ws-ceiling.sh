#!/usr/bin/env bash
# The subscriber reader's ceiling and publish -> update latency, tool on CPU 1.
#   usage: ws-ceiling.sh blast [ROUNDS] [DURATION_S]    reader alone against ws-blast.py
#          ws-ceiling.sh flux  [ROUNDS] [DURATION_S]    against Flux (1 shard on CPU 0)
# blast: ws-blast.py (pinned to CPU 0) pushes Flux-shaped updates of _lt_sent_us as
#   fast as it can to 10 and to 100 subscribers; prints updates/s (received /
#   DURATION, the 1 s grace included, so a little high) and the tool's CPU time per
#   update (1 s / that = the reader's ceiling on one core, whether or not the
#   blaster kept it busy).
# flux: 100 subscribers on `*`, --props 0 (one update per event per subscriber),
#   open loop at 10k, 30k and 50k events/s; prints events/s, updates/s, the
#   publish -> update latency and both processes' CPU (over the tool's whole run:
#   connecting, the load, and the 1 s --ws-grace).
# LT (default target/release/flux-loadtest), LT_OLD to compare two builds in the same
# rounds, FLUX_BIN (default target/release/flux).
set -euo pipefail
MODE=${1:-blast}; ROUNDS=${2:-3}; DUR=${3:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LT=${LT:-$ROOT/target/release/flux-loadtest}
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
PORT=${PORT:-3990}
DATA=$(mktemp -d)
if [ "$MODE" = blast ]; then
  taskset -c 0 python3 "$HERE/ws-blast.py" "$PORT" >/dev/null &
else
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=1 FLUX_CPUS=0 "$FLUX" >/dev/null 2>&1 &
fi
SERVER=$!
trap 'kill $SERVER; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
sleep 1
# The whole process, threads that have exited included.
server_ticks() { awk '{print $14 + $15}' /proc/$SERVER/stat; }

run() { # NAME BINARY ARGS...
  local name=$1 bin=$2; shift 2
  local t0; t0=$(server_ticks)
  rm -f "$DATA/r.json"
  local out; out=$( { /usr/bin/time -f "TIME %U %S %P %e" "$bin" --url "http://127.0.0.1:$PORT" \
    -d "${DUR}s" --threads 1 --cpus 1 --quiet --ws-grace 1s --json "$DATA/r.json" "$@" >/dev/null || true; } 2>&1 )
  local srv_s; srv_s=$(python3 -c "print(($(server_ticks) - $t0) / $(getconf CLK_TCK))")
  [ -s "$DATA/r.json" ] || { echo "$name: no report (the tool did not finish)"; return; }
  python3 - "$DATA/r.json" "$name" "$out" "$srv_s" "$DUR" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); name, out, srv_s, dur = sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
t = next(l.split() for l in out.splitlines() if l.startswith("TIME"))
cpu_s, wall_s = float(t[1]) + float(t[2]), float(t[4])
ws = r["subscribers"]; n = ws["state_updates"]; lat = ws["latency"]
print(f"{name:<26} {r['events_per_s']:>9.0f} ev/s {n / dur:>11.0f} upd/s  tool {t[3]:>4} cpu "
      f"{cpu_s * 1e9 / max(n, 1):6.0f} ns/upd  update p50 {lat.get('p50_us', 0) / 1000:7.2f} ms "
      f"p99 {lat.get('p99_us', 0) / 1000:7.2f} ms  missed {ws['missed']}  server cpu {srv_s / wall_s * 100:3.0f}%")
PY
}

for r in $(seq "$ROUNDS"); do
  echo "# round $r"
  for bin in ${LT_OLD:+"$LT_OLD"} "$LT"; do
    tag=$([ "$bin" = "${LT_OLD:-}" ] && echo old || echo new)
    if [ "$MODE" = blast ]; then
      for subs in 10 100; do
        run "$tag blast subs=$subs" "$bin" --rate 1 -c 1 --subscribers "$subs"
      done
    else
      for rate in 10000 30000 50000; do
        run "$tag flux rate=$rate" "$bin" --rate "$rate" -c 32 --pipeline 8 --props 0 \
          --subscribers 100 --subscribe '*'
      done
    fi
  done
done
