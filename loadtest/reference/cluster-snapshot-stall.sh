#!/usr/bin/env bash
# What group snapshots cost the requests around them: the local 3-node cluster
# (deploy/local-cluster.sh, group snapshots every 5 s) is loaded with 1,000,000
# entities (60 s of batches of 1000), then 20 s of single events on 32 connections run
# while every group is snapshotted four times; prints their rate and latency and the
# owners' "snapshot encoded" lines (how long each took and its longest slice).
#   usage: cluster-snapshot-stall.sh
#   FLUX_BIN (default target/release/flux), LT_BIN, NATS_SERVER as for local-cluster.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export FLUX_BIN=${FLUX_BIN:-$ROOT/target/release/flux}
export NATS_SERVER=${NATS_SERVER:-$ROOT/target/nats/nats-server}
LT=${LT_BIN:-$ROOT/target/release/flux-loadtest}
DIR=$(mktemp -d)
trap '"$ROOT/deploy/local-cluster.sh" down "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
FLUX_GROUP_SNAPSHOT_MS=5000 "$ROOT/deploy/local-cluster.sh" up "$DIR" >"$DIR/nodes"
URLS=$(cut -d' ' -f1 "$DIR/nodes" | paste -sd,)
for s in 1 2 3 4 5 6; do
  "$LT" --url "$URLS" -d 10s -c 8 --batch 1000 --entities 1000000 --threads 1 --quiet --seed $s >/dev/null 2>&1 || true
done
# single events while snapshots are taken: their latency
"$LT" --url "$URLS" -d 20s -c 32 --entities 1000000 --threads 1 --json "$DIR/single.json" >/dev/null 2>&1 || true
python3 - "$DIR/single.json" <<'PY'
import json,sys; r=json.load(open(sys.argv[1])); l=r['latency']
print('single events during snapshots: %.0f req/s' % r['requests_per_s'], {k: l[k] for k in l if k in ('p50_ms','p99_ms','p999_ms','max_ms','p50','p99','p999','max')} or l)
PY
grep -h "snapshot encoded" "$DIR"/flux-*.log | tail -12
