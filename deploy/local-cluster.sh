#!/bin/sh
# A local Flux cluster in one command: 3 NATS servers with JetStream (one cluster)
# and 3 Flux nodes with 2 shards each, on free loopback ports, everything under DIR.
#
#   deploy/local-cluster.sh up DIR     start; prints "URL PID" per Flux node once
#                                      every node is healthy, every group served and
#                                      every node knows every group's owner
#   deploy/local-cluster.sh down DIR   stop everything started by `up DIR`
#
# Installs nothing. Binaries: $FLUX_BIN (default target/release/flux) and
# $NATS_SERVER (default: target/nats/nats-server, else nats-server on PATH; see
# deploy/install-nats-server.sh). Extra Flux settings pass through the environment
# (e.g. FLUX_AUTH_ENABLED, FLUX_ADMIN_TOKEN, FLUX_LEASE_MS).
set -eu
cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: $0 up|down DIR" >&2
    exit 2
fi

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

stop_pidfile() {
    f=$1
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

case "$cmd" in
up)
    flux=${FLUX_BIN:-target/release/flux}
    if [ -z "${NATS_SERVER:-}" ]; then
        if [ -x target/nats/nats-server ]; then
            NATS_SERVER=target/nats/nats-server
        else
            NATS_SERVER=$(command -v nats-server || true)
        fi
    fi
    [ -x "$flux" ] || { echo "no Flux binary at $flux (cargo build --release, or set FLUX_BIN)" >&2; exit 1; }
    [ -n "$NATS_SERVER" ] && [ -x "$NATS_SERVER" ] || { echo "no nats-server (deploy/install-nats-server.sh, or set NATS_SERVER)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    set -- $(free_ports 9)
    c1=$1 c2=$2 c3=$3 n1=$4 n2=$5 n3=$6 h1=$7 h2=$8 h3=$9
    urls="nats://127.0.0.1:$c1,nats://127.0.0.1:$c2,nats://127.0.0.1:$c3"
    i=1
    for cp in $n1 $n2 $n3; do
        eval "cport=\$c$i"
        routes=""
        for other in $n1 $n2 $n3; do
            [ "$other" = "$cp" ] || routes="${routes:+$routes,}nats://127.0.0.1:$other"
        done
        mkdir -p "$dir/nats-$i"
        "$NATS_SERVER" -a 127.0.0.1 -p "$cport" -n "nats-$i" -js -sd "$dir/nats-$i" \
            --cluster_name flux --cluster "nats://127.0.0.1:$cp" --routes "$routes" \
            >"$dir/nats-$i.log" 2>&1 &
        echo $! >"$dir/nats-$i.pid"
        echo "$cport" >"$dir/nats-$i.port"
        i=$((i + 1))
    done
    echo "$urls" >"$dir/nats-urls"
    i=1
    for hp in $h1 $h2 $h3; do
        mkdir -p "$dir/flux-$i"
        FLUX_NATS_URL=$urls FLUX_NODE_ID="node-$i" FLUX_ADVERTISE_URL="http://127.0.0.1:$hp" \
            FLUX_SHARDS=2 FLUX_LISTEN="127.0.0.1:$hp" FLUX_DATA_DIR="$dir/flux-$i" \
            "$flux" >"$dir/flux-$i.log" 2>&1 &
        echo $! >"$dir/flux-$i.pid"
        echo "http://127.0.0.1:$hp" >"$dir/flux-$i.url"
        i=$((i + 1))
    done
    # Healthy: every node answers /health, and every group is served by some node.
    deadline=$(($(date +%s) + ${LOCAL_CLUSTER_WAIT_S:-90}))
    while :; do
        ok=1
        for i in 1 2 3; do
            url=$(cat "$dir/flux-$i.url")
            pid=$(cat "$dir/flux-$i.pid")
            kill -0 "$pid" 2>/dev/null || { echo "flux node $i exited; see $dir/flux-$i.log" >&2; exit 1; }
            curl -fsS -o /dev/null "$url/health" 2>/dev/null || ok=0
        done
        if [ $ok = 1 ]; then
            # Every group served by some node, and every node knows every owner at
            # its current URL (a node learns the others' leases within a lease/3;
            # after a restart on new ports, a lease still names the old URL until its
            # owner takes it back).
            served=0
            unknown=0
            for i in 1 2 3; do
                set -- $(curl -fsS "$(cat "$dir/flux-$i.url")/api/cluster" 2>/dev/null |
                    python3 -c 'import json,sys; g=json.load(sys.stdin)["groups"]; u=sys.argv[1].split(); print(sum(1 for x in g if x["servedHere"]), sum(1 for x in g if not x["node"] or x.get("url") not in u))' "$(cat "$dir"/flux-*.url)" 2>/dev/null || echo 0 1)
                served=$((served + $1))
                unknown=$((unknown + $2))
            done
            groups=$(curl -fsS "$(cat "$dir/flux-1.url")/api/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["groupCount"])')
            [ "$served" -ge "$groups" ] && [ "$unknown" -eq 0 ] && break
        fi
        if [ "$(date +%s)" -gt "$deadline" ]; then
            echo "the cluster did not become healthy in time; logs in $dir" >&2
            exit 1
        fi
        sleep 0.3
    done
    for i in 1 2 3; do
        echo "$(cat "$dir/flux-$i.url") $(cat "$dir/flux-$i.pid")"
    done
    ;;
down)
    [ -d "$dir" ] || exit 0
    for i in 1 2 3; do stop_pidfile "$dir/flux-$i.pid"; done
    for i in 1 2 3; do stop_pidfile "$dir/nats-$i.pid"; done
    ;;
*)
    echo "usage: $0 up|down DIR" >&2
    exit 2
    ;;
esac
