#!/usr/bin/env python3
"""The kernel's own cost of moving bytes over loopback TCP on this machine: a sender
pinned to CPU 0 writes CHUNK-byte buffers round robin to CONNS connections, a reader
pinned to CPU 1 drains them with epoll and 256 KiB reads. Prints each side's system time
per byte: the floor under any WebSocket fan-out (a `state_update` is ~136 bytes framed).
   usage: loopback-floor.py [CONNS] [CHUNK] [TOTAL_BYTES]"""
import os, select, socket, sys, time

conns = int(sys.argv[1]) if len(sys.argv) > 1 else 100
chunk = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
total = int(sys.argv[3]) if len(sys.argv) > 3 else 2_000_000_000
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1024)
port = ls.getsockname()[1]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.sched_setaffinity(0, {1})
    cs = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    by_fd = {c.fileno(): c for c in cs}
    ep = select.epoll()
    for c in cs:
        c.setblocking(False)
        ep.register(c.fileno(), select.EPOLLIN)
    buf = bytearray(262144)
    got = 0
    t0 = os.times()
    while got < total:
        for fd, _ in ep.poll():
            try:
                got += by_fd[fd].recv_into(buf)
            except BlockingIOError:
                pass
    t1 = os.times()
    os.write(w, f"{t1.user - t0.user} {t1.system - t0.system}".encode())
    os._exit(0)
os.sched_setaffinity(0, {0})
ss = [ls.accept()[0] for _ in range(conns)]
data = b"x" * chunk
t0, w0 = os.times(), time.time()
sent = i = 0
while sent < total:
    ss[i % conns].sendall(data)
    sent += chunk
    i += 1
t1, w1 = os.times(), time.time()
os.waitpid(pid, 0)
ru, rs = (float(x) for x in os.read(r, 100).split())
print(f"{conns} connections, {chunk}-byte writes: {sent / (w1 - w0) / 1e9:.2f} GB/s; "
      f"system time per byte: sender {1e9 * (t1.system - t0.system) / sent:.2f} ns, "
      f"reader {1e9 * rs / sent:.2f} ns")
