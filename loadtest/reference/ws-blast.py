#!/usr/bin/env python3
"""A stand-in server that pushes `state_update`s as fast as a socket takes them,
to measure the ceiling of flux-loadtest's subscriber reader (the real server
cannot fan out faster than one shard renders).

    ws-blast.py PORT            (then: flux-loadtest --url http://127.0.0.1:PORT
                                 --rate 1 -c 1 --subscribers N ...)

Every WebSocket connection gets, after its first frame (the subscribe), an
endless stream of Flux-shaped updates of `_lt_sent_us`, 256 KiB per write, all
stamped with the time the chunk was made. Any other request is answered 200 `{}`.
The reader's ceiling is the `ws .../s` rate of the progress line while its core
is saturated (pin this script to another core, e.g. `taskset -c 0`).
"""
import base64
import hashlib
import socket
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHUNK_BYTES = 256 * 1024
STAMP = b"1111111111111111"  # 16 digits, like a Unix-microseconds time


def frame(payload):
    n = len(payload)
    head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
    return head + payload


def template():
    frames = []
    for i in range(4096):
        msg = (b'{"type":"state_update","entity_id":"lt-%06d","property":"_lt_sent_us","value":'
               % (i % 10000) + STAMP + b',"timestamp":"2026-11-29T00:00:00.000Z"}')
        frames.append(frame(msg))
    chunk, out = b"", []
    for f in frames:
        if len(chunk) + len(f) > CHUNK_BYTES:
            break
        out.append(f)
        chunk += f
    return chunk, len(out)


CHUNK, FRAMES_PER_CHUNK = template()


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return None, b""
        data += more
    head, rest = data.split(b"\r\n\r\n", 1)
    return head, rest


def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head, rest = read_head(conn)
    if head is None:
        return
    key = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if key is None:
        # Plain HTTP (a publisher): answer every request 200 until it closes.
        while True:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            while b"\r\n\r\n" not in rest:
                more = conn.recv(65536)
                if not more:
                    return
                rest += more
            head, rest = rest.split(b"\r\n\r\n", 1)
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
                    while len(rest) < n:
                        rest += conn.recv(65536)
                    rest = rest[n:]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while len(rest) < 2:  # the subscribe frame
        rest += conn.recv(65536)
    try:
        while True:
            stamp = b"%016d" % int(time.time() * 1e6)
            conn.sendall(CHUNK.replace(STAMP, stamp))
    except OSError:
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3990
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1024)
    print(f"listening on 127.0.0.1:{port}, {FRAMES_PER_CHUNK} updates per {len(CHUNK)} B write",
          flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=lambda c=conn: (serve(c), c.close()), daemon=True).start()


if __name__ == "__main__":
    main()
