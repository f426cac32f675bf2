#!/usr/bin/env python3
"""Runs a command as a user at a terminal would: in a new session whose controlling terminal
is a fresh pseudo-terminal (the "caller's terminal"), then reports, as JSON, what the command
printed and how many bytes were left queued in that terminal's input (what a shell reading it
next would execute: keystrokes pushed with TIOCSTI land there).

  pty_caller.py [--rows R --cols C] [--send-after SECONDS BYTES] -- COMMAND ARG...
"""
import argparse
import fcntl
import json
import os
import select
import struct
import sys
import termios
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=24)
    p.add_argument("--cols", type=int, default=80)
    p.add_argument("--send-after", nargs=2, metavar=("SECONDS", "BYTES"))
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", a.rows, a.cols, 0, 0))
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.execvp(cmd[0], cmd)

    out = b""
    start = time.time()
    sent = False
    status = None
    while True:
        if a.send_after and not sent and time.time() - start >= float(a.send_after[0]):
            os.write(master, a.send_after[1].encode().decode("unicode_escape").encode("latin-1"))
            sent = True
        r, _, _ = select.select([master], [], [], 0.05)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            out += data
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        if time.time() - start > a.timeout:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = -1
            break
    # What is still buffered for the caller's side, then what is queued in its input.
    while True:
        r, _, _ = select.select([master], [], [], 0.2)
        if not r:
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    queued = struct.unpack("i", fcntl.ioctl(slave, termios.FIONREAD, b"\0\0\0\0"))[0]
    attrs = termios.tcgetattr(slave)
    print(json.dumps({
        "exit": os.waitstatus_to_exitcode(status) if status != -1 else "timeout",
        "output": out.decode("utf-8", "replace"),
        "queued_input": queued,
        "canonical_after": bool(attrs[3] & termios.ICANON),
    }))


if __name__ == "__main__":
    main()
