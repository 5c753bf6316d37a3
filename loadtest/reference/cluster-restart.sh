#!/usr/bin/env bash
# Restart time of one node in cluster mode: the local 3-node cluster
# (deploy/local-cluster.sh) holds about ENTITIES entities (5 x ENTITIES events in
# batches of 1000 through every node), then 5 s more writes follow the last group
# snapshot. The node that owns group 0 is killed with SIGKILL and started again at
# once with the same settings, twice:
#   A. as it is: it restores its groups from its own log (shard snapshot + the frames
#      after it, `cluster::chain`) and reads only the stream after that;
#   B. with its shard logs deleted (its group snapshot copies in <data>/cluster kept):
#      it loads each group's snapshot and reads the stream after it from JetStream.
# For each: the time from the start until it serves every group it had, and each
# group's rebuild time from its log. The lease outlasts the restart, so the node takes
# its own groups back.
#   usage: cluster-restart.sh [ENTITIES]     (default 1000000)
#   FLUX_BIN, LT_BIN (default target/release/...), NATS_SERVER as for local-cluster.sh.
set -euo pipefail
N=${1:-1000000}
LEASE=9000
SNAP_MS=10000
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export FLUX_BIN=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
DIR=$(mktemp -d)
trap '"$ROOT/deploy/local-cluster.sh" down "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
FLUX_LEASE_MS=$LEASE FLUX_GROUP_SNAPSHOT_MS=$SNAP_MS "$ROOT/deploy/local-cluster.sh" up "$DIR" >"$DIR/nodes"
URLS=$(cut -d' ' -f1 "$DIR/nodes" | paste -sd,)
mapfile -t NODE_URLS < <(cut -d' ' -f1 "$DIR/nodes")

load() { # SECONDS SEED -> events written
  "$LT" --url "$URLS" -d "${1}s" -c 8 --batch 1000 --entities "$N" --threads 1 --quiet --seed "$2" \
    --json "$DIR/load.json" >/dev/null 2>&1 || true
  python3 -c "import json; print(json.load(open('$DIR/load.json'))['events'])"
}
EVENTS=0
SEED=1
while [ "$EVENTS" -lt $((5 * N)) ]; do
  EVENTS=$((EVENTS + $(load 10 $SEED)))
  SEED=$((SEED + 1))
done
echo "loaded: $EVENTS events"

VICTIM_URL=$(curl -fsS "${NODE_URLS[0]}/api/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["groups"][0]["url"])')
VICTIM_I=$(grep -n "^$VICTIM_URL " "$DIR/nodes" | cut -d: -f1)
mine() { # URL -> the groups that URL serves, sorted, one line
  curl -fsS "$1/api/cluster" 2>/dev/null | python3 -c 'import json,sys; print(" ".join(str(g["group"]) for g in json.load(sys.stdin)["groups"] if g["servedHere"]))' 2>/dev/null || true
}

restart() { # LABEL [wipe]
  local pid env_file groups t0 t1 log
  pid=$(cat "$DIR/flux-$VICTIM_I.pid")
  groups=$(mine "$VICTIM_URL")
  env_file="$DIR/env-$VICTIM_I"
  tr '\0' '\n' <"/proc/$pid/environ" | grep -E '^(FLUX_|PATH=)' >"$env_file"
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
  if [ "${2:-}" = wipe ]; then rm -rf "$DIR/flux-$VICTIM_I"/shard-*; fi
  log="$DIR/flux-$VICTIM_I-$1.log"
  t0=$(date +%s.%N)
  env -i $(cat "$env_file") "$FLUX_BIN" >"$log" 2>&1 &
  echo $! >"$DIR/flux-$VICTIM_I.pid"
  until [ "$(mine "$VICTIM_URL")" = "$groups" ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  echo "$1: node $VICTIM_I serves its groups ($groups) again $(python3 -c "print(round($t1 - $t0, 2))") s after its start"
  grep -E "recovered|restored from|snapshot loaded|serves group" "$log" | sed 's/^/  /'
}

# Writes after the last group snapshot, then restart from the node's own log.
sleep $((SNAP_MS * 2 / 1000))
echo "tail: $(load 5 $SEED) events"; SEED=$((SEED + 1))
restart A
sleep $((SNAP_MS * 2 / 1000))
echo "tail: $(load 5 $SEED) events"
restart B wipe
