#!/usr/bin/env python3
"""Measures the server's resident memory per entity.

Starts nothing: point it at a running server and give it the server's PID.
    rss-per-entity.py PID [URL] [ENTITIES] [PROPS]
Writes ENTITIES new entities with PROPS small properties each (batches of 1000) and
prints anonymous RSS (RssAnon) before, after and the difference per entity.
"""
import http.client
import sys
import time
import urllib.parse


def rss_kib(pid):
    """Anonymous resident memory: the state. File-backed pages (the mapped log
    segments, which the kernel can drop and re-read) are not counted."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon")


def main():
    pid = int(sys.argv[1])
    url = urllib.parse.urlparse(sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:3000")
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    nprops = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
    before = rss_kib(pid)
    t0 = time.time()
    props_tmpl = ",".join(f'"p{j}":{{v}}' for j in range(nprops))
    for start in range(0, n, 1000):
        events = []
        for i in range(start, min(n, start + 1000)):
            props = props_tmpl.replace("{v}", str(i % 1000))
            events.append(
                '{"stream":"mem","source":"rss","payload":{"entity_id":"sensor-%07d","properties":{%s}}}'
                % (i, props)
            )
        body = '{"events":[' + ",".join(events) + "]}"
        conn.request("POST", "/api/events/batch", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"batch failed: {r.status}")
    time.sleep(0.5)
    after = rss_kib(pid)
    print(f"entities={n} props={nprops} id_len=14 write_s={time.time()-t0:.1f}")
    print(f"rss_before_kib={before} rss_after_kib={after}")
    print(f"bytes_per_entity={(after - before) * 1024 / n:.1f}")


if __name__ == "__main__":
    main()
