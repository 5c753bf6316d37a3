#!/bin/sh
# The backup figures of tuning.md ("Measured: backup of 1,000,000 entities"). Run from
# the repository root after `cargo build --release -p flux -p flux-loadtest`:
#   sh loadtest/reference/backup-measure.sh
# 1,000,000 entities (3 properties), snapshot by a clean restart. Backups of the idle
# server (without and with history), then an 8 s closed-loop batch load with a backup
# started at 2 s, then the same load without a backup.
set -e
R=${FLUX_RELEASE:-target/release}
W=${WORK:-/tmp/flux-backup-measure}; rm -rf $W; mkdir -p $W
PORT=39505
start() { FLUX_DATA_DIR=$W/data FLUX_SHARDS=2 FLUX_LISTEN=127.0.0.1:$PORT $R/flux >> $W/server.log 2>&1 & SPID=$!;
  until curl -sf http://127.0.0.1:$PORT/health >/dev/null; do sleep 0.1; done; }
start
python3 loadtest/reference/rss-per-entity.py $SPID http://127.0.0.1:$PORT 1000000 3 | head -1
kill -TERM $SPID; wait $SPID || true
start
echo "idle, --no-history:"; $R/flux backup --url http://127.0.0.1:$PORT --to $W/idle-lean --no-history 2>/dev/null; du -sh $W/idle-lean
echo "idle, full:"; $R/flux backup --url http://127.0.0.1:$PORT --to $W/idle-full 2>/dev/null; du -sh $W/idle-full
LOAD="--url http://127.0.0.1:$PORT -d 8s --threads 1 --entities 10000 -c 8 --pipeline 2 --batch 100"
$R/flux-loadtest $LOAD --json $W/with.json > /dev/null 2>$W/with.err & LPID=$!
sleep 2
echo "under load, --no-history:"; $R/flux backup --url http://127.0.0.1:$PORT --to $W/load-lean --no-history 2>/dev/null
wait $LPID || true
du -sh $W/load-lean
$R/flux-loadtest $LOAD --json $W/base.json > /dev/null 2>$W/base.err
echo "restore:"; /usr/bin/time -f "  wall %e s" $R/flux restore --from $W/load-lean --data-dir $W/restored 2>&1
kill $SPID; wait $SPID || true
WORK=$W python3 - <<'P'
import json, os
for n in ["with","base"]:
    j=json.load(open(f"{os.environ['WORK']}/{n}.json"))
    print(n, "ev/s", j["events_per_s"], "status", j["errors"]["status"])
P
for n in with base; do echo $n; tr '\r' '\n' < $W/$n.err | grep "s\]"; done
