#!/usr/bin/env python3
"""Bytes of log actually written (not the preallocated size) under a data directory.

    log-bytes.py DATA_DIR [EVENTS]   -> written bytes, and bytes per event if EVENTS given
"""
import os
import sys

HEADER = 64
total = 0
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith(".seg"):
            with open(os.path.join(root, f), "rb") as fh:
                data = fh.read()
            total += max(0, len(data.rstrip(b"\0")) - HEADER)
print(f"log_bytes_written={total}")
if len(sys.argv) > 2:
    print(f"bytes_per_event={total / int(sys.argv[2]):.1f}")
