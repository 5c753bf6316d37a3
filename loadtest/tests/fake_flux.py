#!/usr/bin/env python3
"""A tiny in-memory stand-in for the Flux server, for the load tester's tests.

Speaks enough of the API (HTTP/1.1 keep-alive, pipelining, chunked listings,
optionally the WebSocket subscriptions) for flux-loadtest to run against it
when the real server is not built. Not fast, not complete: a test double.

usage: fake_flux.py PORT [--ws]
Prints "listening on 127.0.0.1:PORT" once ready. Stops on SIGTERM/SIGKILL.
"""
import base64
import hashlib
import json
import struct
import sys
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {}
LOCK = threading.Lock()
SUBSCRIBERS = []  # (handler, patterns, send lock)
WS_ENABLED = "--ws" in sys.argv
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def matches(patterns, entity_id):
    for p in patterns:
        if p == "*" or p == entity_id or (p.endswith("*") and entity_id.startswith(p[:-1])):
            return True
    return False


def ws_frame(text):
    data = text.encode()
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + data


def apply(event):
    """Validates and applies one event; returns (eventId, stream) or raises ValueError."""
    if not isinstance(event, dict):
        raise ValueError("event must be an object")
    stream, source, payload = event.get("stream"), event.get("source"), event.get("payload")
    if not isinstance(stream, str) or not stream or not isinstance(source, str) or not source:
        raise ValueError("stream and source are required")
    if not isinstance(payload, dict) or not isinstance(payload.get("entity_id"), str) \
            or not isinstance(payload.get("properties"), dict):
        raise ValueError("payload.entity_id and payload.properties are required")
    eid = payload["entity_id"]
    with LOCK:
        ent = STATE.setdefault(eid, {"id": eid, "properties": {}, "lastUpdated": ""})
        ent["properties"].update(payload["properties"])
        ent["lastUpdated"] = "2026-02-14T12:00:00.000Z"
        subs = [s for s in SUBSCRIBERS if matches(s[1], eid)]
    for handler, _, send_lock in subs:
        for k, v in payload["properties"].items():
            msg = json.dumps({"type": "state_update", "entity_id": eid, "property": k,
                              "value": v, "timestamp": "2026-02-14T12:00:00.000Z"})
            try:
                with send_lock:
                    handler.wfile.write(ws_frame(msg))
            except OSError:
                pass
    return {"eventId": str(uuid.uuid4()), "stream": stream}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle plus
    # the client's delayed ACK add ~40 ms to every response.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def do_POST(self):
        body = self.read_body()
        try:
            data = json.loads(body)
        except ValueError:
            return self.send_json(400, {"error": "invalid JSON"})
        try:
            if self.path == "/api/events":
                return self.send_json(200, apply(data))
            if self.path == "/api/events/batch":
                results = [apply(e) for e in data.get("events", [])]
                return self.send_json(200, {"successful": len(results), "failed": 0, "results": results})
        except ValueError as e:
            return self.send_json(400, {"error": str(e)})
        self.send_json(404, {"error": "not found"})

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            return self.send_json(200, {"status": "ok"})
        if url.path == "/api/ws":
            return self.websocket()
        if url.path == "/api/state/entities":
            q = urllib.parse.parse_qs(url.query)
            prefix = q.get("prefix", [""])[0]
            limit = int(q.get("limit", ["1000000"])[0])
            with LOCK:
                ids = sorted(i for i in STATE if i.startswith(prefix))[:limit]
                items = [json.dumps(STATE[i]) for i in ids]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            parts = ["["] + [("," if n else "") + s for n, s in enumerate(items)] + ["]"]
            for p in parts:
                b = p.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path.startswith("/api/state/entities/"):
            eid = urllib.parse.unquote(url.path[len("/api/state/entities/"):])
            with LOCK:
                ent = STATE.get(eid)
                body = json.dumps(ent) if ent else None
            if body is None:
                return self.send_json(404, {"error": "entity not found"})
            return self.send_json(200, json.loads(body))
        self.send_json(404, {"error": "not found"})

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if not WS_ENABLED or not key:
            return self.send_json(404, {"error": "not found"})
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        entry = (self, [], threading.Lock())
        with LOCK:
            SUBSCRIBERS.append(entry)
        try:
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    break
                opcode, n = head[0] & 0x0F, head[1] & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self.rfile.read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self.rfile.read(8))[0]
                mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
                if opcode == 8:
                    with entry[2]:
                        self.wfile.write(b"\x88\x02\x03\xe8")
                    break
                if opcode == 1:
                    msg = json.loads(data)
                    if msg.get("type") == "subscribe":
                        with LOCK:
                            entry[1].append(msg["entity_id"])
        except (OSError, ValueError):
            pass
        finally:
            with LOCK:
                SUBSCRIBERS.remove(entry)
            self.close_connection = True


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
