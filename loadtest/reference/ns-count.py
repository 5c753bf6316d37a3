#!/usr/bin/env python3
"""Times GET /api/namespaces/:name (its entityCount) for a namespace of N entities.

Against a server started in auth mode, e.g.
  FLUX_LISTEN=127.0.0.1:3978 FLUX_DATA_DIR=$(mktemp -d) FLUX_SHARDS=2 \
    FLUX_AUTH_ENABLED=true FLUX_ADMIN_TOKEN=$ADMIN target/release/flux &
  python3 loadtest/reference/ns-count.py http://127.0.0.1:3978 $ADMIN 1000000
It turns the rate limit off, registers namespace `big`, writes N entities in batches
of 20,000 and prints five timed lookups.
"""
import json
import sys
import time
import urllib.request

base, admin, n = sys.argv[1], sys.argv[2], int(sys.argv[3])


def req(method, path, body=None):
    r = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + admin, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(r, timeout=120) as resp:
        return resp.status, resp.read()


req("PUT", "/api/admin/config", {"rate_limit_enabled": False})
req("POST", "/api/namespaces", {"name": "big"})
B = 20000
for s in range(0, n, B):
    evs = [
        {"stream": "s", "source": "x", "payload": {"entity_id": f"big/e-{i:08d}", "properties": {"v": 1}}}
        for i in range(s, min(n, s + B))
    ]
    assert req("POST", "/api/events/batch", {"events": evs})[0] == 200
for _ in range(5):
    t = time.perf_counter()
    _, body = req("GET", "/api/namespaces/big")
    print(f"GET /api/namespaces/big: {(time.perf_counter() - t) * 1000:.1f} ms {body.decode()}")
