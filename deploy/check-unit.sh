#!/usr/bin/env bash
# Checks deploy/flux.service against a built binary:
#  1. `systemd-analyze verify` of a copy whose ExecStart names that binary (verify
#     needs the path to exist); any warning fails too (a misspelt value is only a
#     warning to systemd).
#  2. Every system call flux makes (a short workload under strace: start-up, events,
#     a batch, a listing, a WebSocket session, SIGTERM with the final snapshot) is
#     allowed by the unit's SystemCallFilter=@system-service, so the filter never
#     refuses one of them (with SystemCallErrorNumber=EPERM it would fail the call).
# Usage: deploy/check-unit.sh path/to/flux
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:?usage: deploy/check-unit.sh path/to/flux}")
WORK=$(mktemp -d)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

sed "s#^ExecStart=/usr/bin/flux\$#ExecStart=$BIN#" deploy/flux.service >"$WORK/flux.service"
grep -q "^ExecStart=$BIN\$" "$WORK/flux.service" || { echo "ExecStart=/usr/bin/flux not found in the unit" >&2; exit 1; }
if ! systemd-analyze verify --man=no "$WORK/flux.service" >"$WORK/verify" 2>&1 || [ -s "$WORK/verify" ]; then
  echo "systemd-analyze verify deploy/flux.service:" >&2
  cat "$WORK/verify" >&2
  exit 1
fi
echo "systemd-analyze verify: clean"

command -v strace >/dev/null || { echo "strace is needed for the system call check (apt-get install strace)" >&2; exit 1; }
FILTER=$(sed -n 's/^SystemCallFilter=//p' deploy/flux.service)
[ "$FILTER" = "@system-service" ] || { echo "this check knows SystemCallFilter=@system-service, the unit says $FILTER" >&2; exit 1; }
# The filter's system calls: expand groups recursively.
expand() {
  systemd-analyze syscall-filter "$1" </dev/null 2>/dev/null | sed -n 's/^    \([@a-z_0-9-]*\)$/\1/p' | while read -r s; do
    case $s in @*) expand "$s" ;; *) echo "$s" ;; esac
  done
}
expand @system-service | sort -u >"$WORK/allowed"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
FLUX_LISTEN=127.0.0.1:$PORT FLUX_DATA_DIR=$WORK/data FLUX_SHARDS=2 FLUX_SNAPSHOT_INTERVAL_S=1 \
  strace -f -qq -o "$WORK/trace" "$BIN" >"$WORK/log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null || { cat "$WORK/log"; exit 1; }
for i in $(seq 1 50); do
  curl -fsS -XPOST "http://127.0.0.1:$PORT/api/events" \
    -d "{\"stream\":\"s\",\"source\":\"a\",\"payload\":{\"entity_id\":\"e-$i\",\"properties\":{\"v\":$i}}}" >/dev/null
done
curl -fsS -XPOST "http://127.0.0.1:$PORT/api/events/batch" \
  -d '{"events":[{"stream":"s","source":"a","payload":{"entity_id":"b-1","properties":{"v":1}}},{"stream":"s","source":"a","payload":{"entity_id":"b-2","properties":{"v":2}}}]}' >/dev/null
curl -fsS "http://127.0.0.1:$PORT/api/state/entities?prefix=e-" >/dev/null
curl -fsS "http://127.0.0.1:$PORT/api/events?entity=e-1" >/dev/null
curl -fsS "http://127.0.0.1:$PORT/metrics" >/dev/null
curl -fsS "http://127.0.0.1:$PORT/" >/dev/null
python3 - "$PORT" <<'EOF'
import base64, os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
assert s.recv(4096).startswith(b"HTTP/1.1 101")
payload = b'{"type":"subscribe","entity_id":"*"}'
mask = os.urandom(4)
s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
s.recv(4096)
s.close()
EOF
sleep 1.5  # a snapshot by interval
# SIGTERM to flux itself (strace's child), as systemd would send it.
FLUX_PID=$(ps --ppid "$SERVER" -o pid= | tr -d ' ')
kill -TERM "$FLUX_PID"
wait "$SERVER" || { echo "flux did not exit cleanly under strace:" >&2; cat "$WORK/log" >&2; exit 1; }
SERVER=
# strace lines: "PID name(args) = ..." (also "<... name resumed>").
sed -n 's/^[0-9]\+ \+\([a-z_0-9]\+\)(.*/\1/p; s/^[0-9]\+ \+<\.\.\. \([a-z_0-9]\+\) resumed>.*/\1/p' "$WORK/trace" | sort -u >"$WORK/used"
[ -s "$WORK/used" ] || { echo "strace recorded no system calls" >&2; exit 1; }
MISSING=$(comm -23 "$WORK/used" "$WORK/allowed")
if [ -n "$MISSING" ]; then
  echo "system calls flux made that SystemCallFilter=@system-service refuses:" $MISSING >&2
  exit 1
fi
echo "system calls: all $(wc -l <"$WORK/used") that flux made are in @system-service"
