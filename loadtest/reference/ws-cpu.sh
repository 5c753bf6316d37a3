#!/usr/bin/env bash
# Where the CPU goes when one shard fans out to N subscribers: runs the server (1 shard
# on CPU 0) and flux-loadtest (publishers and subscribers, one thread on CPU 1) once
# without subscribers and once with N, and prints each process's user and system time
# with the cost per delivered update (the extra CPU over the no-subscriber run, scaled
# to the same number of events).
#   usage: ws-cpu.sh [SUBS] [DURATION_S] [extra flux-loadtest args, e.g. --rate 17000]
set -euo pipefail
SUBS=${1:-100}; DUR=${2:-5}; shift $(( $# > 2 ? 2 : $# ))
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FLUX=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
PORT=${FPORT:-3904}
OUT=$(mktemp -d)
run() { # $1 = subscribers, then extra tool args; prints "events updates srv_user srv_sys tool_user tool_sys"
  local n=$1; shift
  DATA=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$DATA FLUX_SHARDS=1 FLUX_CPUS=0 "$FLUX" >"$OUT/server.log" 2>&1 &
  SPID=$!
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.05; done
  read -r u0 s0 < <(awk '{print $14, $15}' /proc/$SPID/stat)
  /usr/bin/time -o "$OUT/time" -f "%U %S" "$LT" --url "http://127.0.0.1:$PORT" -d "${DUR}s" -c 32 --pipeline 4 \
    --threads 1 --cpus 1 --props 0 --quiet --ws-grace 2s --subscribers "$n" --json "$OUT/r.json" "$@" >/dev/null || true
  read -r u1 s1 < <(awk '{print $14, $15}' /proc/$SPID/stat)
  kill "$SPID"; wait "$SPID" 2>/dev/null || true; rm -rf "$DATA"
  python3 - "$OUT/r.json" "$OUT/time" "$u0" "$s0" "$u1" "$s1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); tu, ts = open(sys.argv[2]).read().split()
u0, s0, u1, s1 = (int(x) for x in sys.argv[3:7])
ev = j["events"]
upd = j.get("subscribers", {}).get("state_updates", 0)
print(ev, upd, (u1 - u0) / 100, (s1 - s0) / 100, float(tu), float(ts))
PY
}
read -r e0 _ su0 ss0 tu0 ts0 < <(run 0 "$@")
read -r e1 n1 su1 ss1 tu1 ts1 < <(run "$SUBS" "$@")
python3 - "$e0" "$su0" "$ss0" "$tu0" "$ts0" "$e1" "$n1" "$su1" "$ss1" "$tu1" "$ts1" "$SUBS" "$DUR" <<'PY'
import sys
e0, su0, ss0, tu0, ts0, e1, n1, su1, ss1, tu1, ts1 = (float(x) for x in sys.argv[1:12])
subs, dur = sys.argv[12], float(sys.argv[13])
print(f"no subscribers : {e0/dur:,.0f} events/s; server user {su0:.2f} s sys {ss0:.2f} s; tool user {tu0:.2f} s sys {ts0:.2f} s")
print(f"{subs} subscribers: {e1/dur:,.0f} events/s, {n1/dur/1e6:.2f} M updates/s; server user {su1:.2f} s sys {ss1:.2f} s; tool user {tu1:.2f} s sys {ts1:.2f} s")
if n1:
    k = e1 / e0  # scale the no-subscriber run to the same number of events
    for who, (u0, s0, u1, s1) in {"server": (su0, ss0, su1, ss1), "tool": (tu0, ts0, tu1, ts1)}.items():
        du, ds = u1 - u0 * k, s1 - s0 * k
        print(f"  {who}: {1e9*du/n1:.0f} ns user + {1e9*ds/n1:.0f} ns system per update delivered")
PY
rm -rf "$OUT"
