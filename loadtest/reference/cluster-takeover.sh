#!/usr/bin/env bash
# Takeover time in cluster mode: the local 3-node cluster (deploy/local-cluster.sh)
# holds about ENTITIES entities (written in batches of 1000 through every node); once every
# group's snapshot is stored, the node that owns groups 0.. is killed with SIGKILL and
# the time until the other two serve every group is measured, with each taken group's
# own rebuild time (snapshot load + stream replay) from the survivors' logs. Then the
# entity count of the survivors (flux_entities in /metrics) is compared with the count
# before the kill.
#   usage: cluster-takeover.sh [ENTITIES] [LEASE_MS]     (defaults 1000000 and 6000)
#   FLUX_BIN, LT_BIN (default target/release/...), NATS_SERVER as for local-cluster.sh.
set -euo pipefail
N=${1:-1000000}; LEASE=${2:-6000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export FLUX_BIN=${FLUX_BIN:-$ROOT/target/release/flux}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
DIR=$(mktemp -d)
trap '"$ROOT/deploy/local-cluster.sh" down "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
SNAP_MS=5000
FLUX_LEASE_MS=$LEASE FLUX_GROUP_SNAPSHOT_MS=$SNAP_MS "$ROOT/deploy/local-cluster.sh" up "$DIR" >"$DIR/nodes"
URLS=$(cut -d' ' -f1 "$DIR/nodes" | paste -sd,)
mapfile -t NODE_URLS < <(cut -d' ' -f1 "$DIR/nodes")

entities() { # URL... -> sum of flux_entities
  local sum=0 u n
  for u in "$@"; do
    n=$(curl -fsS "$u/metrics" | awk '$1 == "flux_entities" {s += $2} END {printf "%d", s}')
    sum=$((sum + n))
  done
  echo "$sum"
}

# Write 5 x ENTITIES events (the tool picks ids uniformly: about 99.3 % of the ids
# exist after that; the count is reported).
t0=$(date +%s.%N)
EVENTS=0
while [ "$EVENTS" -lt $((5 * N)) ]; do
  # A new seed per run: the same seed draws the same ids again.
  "$LT" --url "$URLS" -d 10s -c 8 --batch 1000 --entities "$N" --threads 1 --quiet --seed $((EVENTS + 1)) \
    --json "$DIR/load.json" >/dev/null 2>&1 || true
  EVENTS=$((EVENTS + $(python3 -c "import json; print(json.load(open('$DIR/load.json'))['events'])")))
done
echo "loaded: $(entities "${NODE_URLS[@]}") entities, $EVENTS events in $(python3 -c "import time; print(round(time.time() - $t0))") s"

# Every group's snapshot stored after the last write.
sleep $((SNAP_MS * 3 / 1000))
BEFORE=$(entities "${NODE_URLS[@]}")
JS=$(du -sb "$DIR"/nats-1/jetstream | cut -f1)
echo "one NATS server's JetStream store: $JS bytes ($(python3 -c "print(round($JS / $EVENTS, 1))") per event written, every stream and the snapshots)"

# The victim: the owner of group 0.
VICTIM_URL=$(curl -fsS "${NODE_URLS[0]}/api/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["groups"][0]["url"])')
VICTIM_PID=$(awk -v u="$VICTIM_URL" '$1 == u {print $2}' "$DIR/nodes")
mapfile -t SURVIVORS < <(cut -d' ' -f1 "$DIR/nodes" | grep -vx "$VICTIM_URL")
VICTIM_GROUPS=$(curl -fsS "${SURVIVORS[0]}/api/cluster" | python3 -c "import json,sys; print(sum(1 for g in json.load(sys.stdin)['groups'] if g['url'] == '$VICTIM_URL'))")
echo "killing $VICTIM_URL (pid $VICTIM_PID, $VICTIM_GROUPS of the groups, $BEFORE entities in the cluster)"
for f in "$DIR"/flux-*.log; do wc -l <"$f" >"$f.mark"; done
t0=$(date +%s.%N)
kill -9 "$VICTIM_PID"
served() {
  python3 - "$@" <<'PY'
import json, sys, urllib.request
served = set()
for u in sys.argv[1:]:
    try:
        d = json.load(urllib.request.urlopen(u + "/api/cluster", timeout=2))
    except Exception:
        continue
    served |= {g["group"] for g in d["groups"] if g["servedHere"]}
    total = len(d["groups"])
print("yes" if served and len(served) == total else "no")
PY
}
until [ "$(served "${SURVIVORS[@]}")" = yes ]; do sleep 0.05; done
t1=$(date +%s.%N)
echo "every group served again after $(python3 -c "print(round($t1 - $t0, 2))") s (lease ${LEASE} ms)"
for f in "$DIR"/flux-*.log; do
  tail -n +"$(($(cat "$f.mark") + 1))" "$f" | grep -E "snapshot loaded|serves group" || true
done
AFTER=$(entities "${SURVIVORS[@]}")
echo "entities before the kill: $BEFORE; on the survivors after: $AFTER"
[ "$AFTER" -eq "$BEFORE" ] || { echo "entity count differs" >&2; exit 1; }
