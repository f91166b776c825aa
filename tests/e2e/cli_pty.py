#!/usr/bin/env python3
"""Runs a command on a pseudo-terminal, the way a person at a terminal would.

usage: cli_pty.py --out FILE [--timeout S] [--cols N] [STEP...] -- CMD ARG...

STEPs run in order, each waiting for the output to show something first:
  --expect RE      wait until RE (a Python regex over the output so far,
                   after the previous match) appears
  --send TEXT      then type TEXT (backslash escapes allowed: '\\n', '\\x03'
                   for Ctrl-C, which the terminal turns into SIGINT)
  --wait-file F    wait until the file F exists (a test's readiness signal)
  --shell CMD      run CMD with sh -c and wait for it (change the world mid-run)
Whatever the command prints goes to --out, byte for byte (the terminal's
"\\r\\n" included). The exit status is the command's, 128+N if a signal N
ended it, 124 if --timeout (a safety net, default 120 s) ran out first, or
125 if an --expect never matched before the command ended (the output shows
what came instead).
"""
import argparse
import codecs
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--expect", action="append", dest="steps", type=lambda v: ("expect", v))
    ap.add_argument("--send", action="append", dest="steps", type=lambda v: ("send", v))
    ap.add_argument("--wait-file", action="append", dest="steps", type=lambda v: ("file", v))
    ap.add_argument("--shell", action="append", dest="steps", type=lambda v: ("shell", v))
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    steps = list(args.steps or [])

    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, args.cols, 0, 0))
    out = b""
    seen = 0  # output before this offset was matched already
    deadline = time.monotonic() + args.timeout
    status = None
    missed = False
    while True:
        while steps and steps[0][0] != "expect":
            kind, val = steps.pop(0)
            if kind == "send":
                try:
                    os.write(fd, codecs.decode(val, "unicode_escape").encode("latin-1"))
                except OSError:
                    pass  # the command is gone already; its output says why
            elif kind == "shell":
                subprocess.run(["sh", "-c", val], check=False)
            else:
                while not os.path.exists(val) and time.monotonic() < deadline:
                    time.sleep(0.05)
        if steps:
            m = re.search(steps[0][1].encode(), out[seen:])
            if m:
                seen += m.end()
                steps.pop(0)
                continue
        left = deadline - time.monotonic()
        if left <= 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = 124
            break
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if data:
                out += data
                continue
            # The terminal closed: the command is done.
            _, st = os.waitpid(pid, 0)
            status = os.waitstatus_to_exitcode(st)
            status = 128 - status if status < 0 else status
            missed = bool(steps)
            break
    with open(args.out, "wb") as f:
        f.write(out)
    sys.exit(125 if missed and status != 124 else status)


if __name__ == "__main__":
    main()
