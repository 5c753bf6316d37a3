#!/usr/bin/env bash
# Before/after: two Flux binaries under the same flux-loadtest workload, alternating
# rounds on fresh data directories, medians. Cores: shared (2 shards on CPUs 0,1, the
# tool's 2 threads unpinned) or split (1 shard on CPU 0, the tool's 1 thread on CPU 1).
#   usage: ab.sh OLD_BIN NEW_BIN MODE WORKLOAD [DURATION_S] [ROUNDS]
#   WORKLOAD: event | get | batch (as compare-lt.sh)
set -euo pipefail
A=$1; B=$2; MODE=${3:-shared}; WL=${4:-batch}; DUR=${5:-5}; ROUNDS=${6:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
LT=${LT_BIN:-$HERE/../../target/release/flux-loadtest}
PORT=${PORT:-3904}
case $MODE in
  shared) SHARDS=2; CPUS=0,1; TOOL=(--threads 2) ;;
  split)  SHARDS=1; CPUS=0;   TOOL=(--threads 1 --cpus 1) ;;
  *) echo "bad mode" >&2; exit 2 ;;
esac
case $WL in
  event) ARGS=(-c 64 --entities 100000); KEY=requests_per_s ;;
  get)   ARGS=(-c 64 --mix get=1 --entities 100000); KEY=requests_per_s ;;
  batch) ARGS=(-c 8 --batch 1000 --entities 100000); KEY=events_per_s ;;
  *) echo "bad workload" >&2; exit 2 ;;
esac
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
one() { # binary -> prints the key figure
  local data; data=$(mktemp -d)
  FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$data/d FLUX_SHARDS=$SHARDS FLUX_CPUS=$CPUS "$1" >"$data/log" 2>&1 &
  local pid=$!
  until curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do sleep 0.05; done
  "$LT" --url "http://127.0.0.1:$PORT" -d "${DUR}s" --quiet "${TOOL[@]}" "${ARGS[@]}" --json "$data/r.json" >/dev/null || true
  python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['$KEY']))" "$data/r.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
RA=(); RB=()
for r in $(seq 1 "$ROUNDS"); do
  RA+=("$(one "$A")"); RB+=("$(one "$B")")
  echo "round $r: A ${RA[-1]}  B ${RB[-1]}"
done
ma=$(median "${RA[@]}"); mb=$(median "${RB[@]}")
python3 -c "print(f'$MODE $WL: A median $ma, B median $mb, B/A = {$mb/$ma:.3f}')"
