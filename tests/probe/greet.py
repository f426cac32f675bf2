#!/usr/bin/env python3
"""A TCP server writing NAME and a newline to every connection: greet.py ADDR PORT NAME.
Writes "listening" to stdout once bound (tests wait for it)."""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall((sys.argv[3] + "\n").encode())
    finally:
        c.close()
