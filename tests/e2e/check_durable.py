#!/usr/bin/env python3
"""Checks an strace log of `ferry get` for the order R-RECV-4 requires.

The log comes from `strace -f -yy -o LOG -e trace=%file,%desc,%network,syncfs`
or any subset holding write*, send*, fsync, fdatasync, syncfs and rename*.
For every part file renamed into place (".ferry-*.part" -> NAME):

  1. its bytes were made durable after its last write and before the rename:
     an fdatasync or fsync of the part file, or a syncfs;
  2. its folder was fsync'd after the rename, before anything more was
     written to the connection (the acknowledgement, R-RECV-4), and before
     the process ended.

Prints one line per rename checked and exits 1 on the first breach.
usage: check_durable.py LOG
"""
import re
import sys

CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
UNFINISHED = re.compile(r"^(\d+)\s+(.*)\s+<unfinished \.\.\.>$")
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
FD = re.compile(r"^\d+<([^>]*)>")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def calls(path):
    """(index, name, args, result) of every finished call, unfinished ones joined."""
    pending = {}
    n = 0
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = UNFINISHED.match(line)
        if m:
            pending[m.group(1)] = m.group(2)
            continue
        m = RESUMED.match(line)
        if m and m.group(1) in pending:
            line = "%s %s%s" % (m.group(1), pending.pop(m.group(1)), m.group(3))
        m = CALL.match(line)
        if m:
            n += 1
            yield n, m.group(2), m.group(3), int(m.group(4))


def fd_path(args):
    m = FD.match(args)
    return m.group(1) if m else None


def is_socket(path):
    return path is not None and (path.startswith("TCP") or path.startswith("socket:"))


def main():
    last_write = {}  # part file path -> index of its last write
    durable = {}  # part file path -> index of its last fdatasync/fsync
    last_syncfs = -1
    awaiting = {}  # folder -> (index of the rename, name) awaiting its fsync
    checked = 0
    for i, name, args, res in calls(sys.argv[1]):
        if res < 0:
            continue
        path = fd_path(args)
        if name in ("write", "writev", "pwrite64", "pwritev", "pwritev2") and path is not None:
            if is_socket(path):
                if awaiting:
                    folder, (j, fname) = next(iter(awaiting.items()))
                    sys.exit("FAIL: %s renamed into %s (call %d) and the connection written "
                             "to (call %d) before that folder was fsync'd" % (fname, folder, j, i))
            elif ".ferry-" in path:
                last_write[path] = i
        elif name in ("sendto", "sendmsg") and awaiting:
            folder, (j, fname) = next(iter(awaiting.items()))
            sys.exit("FAIL: %s renamed into %s (call %d) and the connection written to (call %d) "
                     "before that folder was fsync'd" % (fname, folder, j, i))
        elif name in ("fdatasync", "fsync") and path is not None:
            durable[path] = i
            awaiting.pop(path, None)
        elif name == "syncfs":
            last_syncfs = i
        elif name in ("renameat", "renameat2"):
            names = QUOTED.findall(args)
            folder = fd_path(args)
            if len(names) < 2 or folder is None or not names[0].startswith(".ferry-"):
                continue
            part = folder + "/" + names[0]
            lw = last_write.get(part, -1)
            synced = max(durable.get(part, -1), last_syncfs)
            if synced < lw or synced < 0:
                sys.exit("FAIL: %s renamed to %s (call %d) without an fdatasync or syncfs after "
                         "its last write (call %d)" % (part, names[1], i, lw))
            awaiting[folder] = (i, names[1])
            checked += 1
            print("ok: %s -> %s durable at call %d, renamed at call %d" % (names[0], names[1],
                                                                          synced, i))
    if awaiting:
        folder, (j, fname) = next(iter(awaiting.items()))
        sys.exit("FAIL: %s renamed into %s (call %d) and that folder never fsync'd" %
                 (fname, folder, j))
    if checked == 0:
        sys.exit("FAIL: no rename of a part file in the log")
    print("%d renames checked" % checked)


main()
