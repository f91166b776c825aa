#!/usr/bin/env python3
"""Checks a ferry server's chunk store against its rows (R-CHUNK-7, R-CHUNK-11).

usage: check_chunks.py DATADIR [--seen FILE]

Every row of the chunks table must have its bytes: in its pack
(packs/<uid>/<pack>.pack, at off, inside the pack's recorded end and its
file) or, for a row of the old layout (pack 0), in its own file
chunks/<uid>/<hh>/<64 hex>; those bytes must have the row's SHA-256 (so its
size). Each pack row's live count must be the number of chunk rows in it.
PRAGMA integrity_check must say ok. With --seen, rows listed in FILE (by
user, hash, pack and offset: a row's bytes never move) are not hashed again
and the newly hashed ones are appended to it.
Prints one summary line; exit status 1 when anything is wrong.
"""
import hashlib
import os
import sqlite3
import sys


def main():
    data = sys.argv[1]
    vpath = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--seen" else None
    seen = set()
    if vpath and os.path.exists(vpath):
        with open(vpath) as f:
            seen = set(line.strip() for line in f)
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "ferry.db"), uri=True, timeout=30)
    bad = []
    ic = [r[0] for r in con.execute("PRAGMA integrity_check")]
    if ic != ["ok"]:
        bad.append("integrity_check: %s" % "; ".join(ic[:5]))
    packs = {(u, p): [size, live, 0] for u, p, size, live in
             con.execute("SELECT user_id, id, size, live FROM packs")}
    rows = con.execute(
        "SELECT user_id, lower(hex(hash)), size, pack, off FROM chunks ORDER BY user_id, pack, off"
    ).fetchall()
    new = []
    fds = {}
    for uid, hx, size, pack, off in rows:
        key = "%d/%s/%d/%d" % (uid, hx, pack, off)
        if pack == 0:
            path = os.path.join(data, "chunks", str(uid), hx[:2], hx)
            off = 0
        else:
            path = os.path.join(data, "packs", str(uid), "%d.pack" % pack)
            p = packs.get((uid, pack))
            if p is None:
                bad.append("chunk %s in pack %d, which has no row" % (hx, pack))
                continue
            p[2] += 1
            if off % 4096 != 0 or off + size > p[0]:
                bad.append("chunk %s at %d+%d: not aligned or past the pack's end %d"
                           % (hx, off, size, p[0]))
                continue
        if key in seen:
            continue
        try:
            if path not in fds:
                fds[path] = open(path, "rb")
            f = fds[path]
            f.seek(off)
            b = f.read(size)
        except OSError as e:
            bad.append("chunk %s: %s: %s" % (hx, path, e.strerror))
            continue
        d = hashlib.sha256(b).hexdigest()
        if len(b) != size or d != hx:
            bad.append("chunk %s at %s+%d: %d bytes with SHA-256 %s" % (hx, path, off, len(b), d))
        else:
            new.append(key)
    for f in fds.values():
        f.close()
    for (uid, pack), (size, live, n) in packs.items():
        if live != n:
            bad.append("pack %d/%d: live %d, %d rows" % (uid, pack, live, n))
    if vpath:
        with open(vpath, "a") as f:
            f.writelines(k + "\n" for k in new)
    for b in bad[:5]:
        print(b)
    print("rows=%d packs=%d hashed=%d bad=%d" % (len(rows), len(packs), len(new), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
