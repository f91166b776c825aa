#!/usr/bin/env python3
"""Compares a recursive `ferry ls -R --json REMOTE` listing (stdin) with a local tree.

usage: check_tree.py LOCAL_ROOT

Checks, for every entry below LOCAL_ROOT (symlinks and special files are not
uploaded and must not be listed):
  - the listing holds exactly the local names (docs/protocol.md 6.3 DirPage),
  - in depth-first pre-order by name bytes (6.3 "Order"),
  - type, size, exec bit and mtime in nanoseconds match the local file,
  - a file's hash is sha256:<64 lower-case hex> of its bytes (R-STORE-7),
  - ids are unique, dir_id names the parent directory's id.
Prints one line per problem and exits 1 if there is any.
"""
import hashlib
import json
import os
import re
import stat
import sys


def local_entries(root):
    out = []

    def walk(d, rel):
        names = sorted(os.listdir(d), key=lambda n: os.fsencode(n))
        for n in names:
            p = os.path.join(d, n)
            r = n if not rel else rel + "/" + n
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode):
                out.append((r, "dir", 0, st.st_mtime_ns, False, None))
                walk(p, r)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out.append((r, "file", st.st_size, st.st_mtime_ns,
                            bool(st.st_mode & stat.S_IXUSR), "sha256:" + h.hexdigest()))

    walk(root, "")
    return out


def main():
    root = sys.argv[1]
    listing = json.load(sys.stdin)
    want = local_entries(root)
    problems = []
    got_names = [e.get("name") for e in listing]
    want_names = [w[0] for w in want]
    if sorted(got_names) != sorted(want_names):
        missing = sorted(set(want_names) - set(got_names))
        extra = sorted(set(got_names) - set(want_names))
        problems.append("names differ: missing %r, unexpected %r" % (missing[:20], extra[:20]))
    elif got_names != want_names:
        problems.append("order is not depth-first pre-order by name bytes: %r" % got_names[:30])
    by_name = {e.get("name"): e for e in listing}
    ids = [e.get("id") for e in listing]
    if len(set(ids)) != len(ids):
        problems.append("duplicate ids in listing")
    for name, typ, size, mtime, exe, cid in want:
        e = by_name.get(name)
        if e is None:
            continue
        if e.get("type") != typ:
            problems.append("%s: type %r, expected %r" % (name, e.get("type"), typ))
        if e.get("size") != size:
            problems.append("%s: size %r, expected %r" % (name, e.get("size"), size))
        if e.get("mtime") != mtime:
            problems.append("%s: mtime %r ns, expected %r" % (name, e.get("mtime"), mtime))
        if typ == "file":
            if e.get("exec") is not exe:
                problems.append("%s: exec %r, expected %r" % (name, e.get("exec"), exe))
            h = e.get("hash")
            if not isinstance(h, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", h):
                problems.append("%s: malformed hash %r" % (name, h))
            elif h != cid:
                problems.append("%s: hash %s, expected %s" % (name, h, cid))
        elif e.get("exec") is not False:
            problems.append("%s: a directory with exec %r" % (name, e.get("exec")))
        for k in ("id", "dir_id", "smtime"):
            if not isinstance(e.get(k), int):
                problems.append("%s: %s is not an int: %r" % (name, k, e.get(k)))
        parent = name.rsplit("/", 1)[0] if "/" in name else None
        if parent is not None and parent in by_name and e.get("dir_id") != by_name[parent].get("id"):
            problems.append("%s: dir_id %r is not its parent's id %r"
                            % (name, e.get("dir_id"), by_name[parent].get("id")))
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
