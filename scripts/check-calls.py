#!/usr/bin/env python3
"""Keeps the files of one program part from calling each other in a circle.

    python3 scripts/check-calls.py OBJDIR [--known FILE]

OBJDIR holds the object files of one part (e.g. the server's,
build/test/CMakeFiles/ferrysrv.dir/src/server). A file "calls" another
when its object file uses a symbol the other defines (nm). The calls must
form no cycle: then each file can be read, tested and replaced knowing only
the files below it (docs/architecture.md, "The server").

--known FILE lists calls ("a -> b", one per line, # comments) that are
tolerated for now; a cycle made only of known calls passes. A known call
that no longer exists is reported, so the list only shrinks. Prints one
line per cycle and exits 1 if there is any.

Why object files and not the sources: nm sees exactly the calls the
linker resolves, with no parsing of C.
"""

import glob
import os
import subprocess
import sys


def graph(objdir):
    defs, uses = {}, {}
    objs = sorted(glob.glob(os.path.join(objdir, "*.o")))
    if not objs:
        sys.exit("check-calls: no object files in %s (build first)" % objdir)
    for o in objs:
        name = os.path.basename(o).split(".")[0]
        out = subprocess.run(["nm", o], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            p = line.split()
            if len(p) == 3 and p[1] in "TDBR":
                defs[p[2]] = name
            elif len(p) == 2 and p[0] == "U":
                uses.setdefault(name, set()).add(p[1])
    g = {os.path.basename(o).split(".")[0]: set() for o in objs}
    for f, syms in uses.items():
        for s in syms:
            d = defs.get(s)
            if d is not None and d != f:
                g.setdefault(f, set()).add(d)
    return g


def cycles(g):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    args = sys.argv[1:]
    known = set()
    if "--known" in args:
        i = args.index("--known")
        with open(args[i + 1]) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    a, b = (x.strip() for x in line.split("->"))
                    known.add((a, b))
        del args[i : i + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    g = graph(args[0])
    for a, b in sorted(known):
        if b not in g.get(a, ()):
            print("check-calls: %s -> %s is gone: take it off the known list" % (a, b))
    strict = {a: {b for b in bs if (a, b) not in known} for a, bs in g.items()}
    bad = cycles(strict)
    for comp in bad:
        calls = ["%s -> %s" % (a, b) for a in comp for b in sorted(strict.get(a, ())) if b in comp]
        print("check-calls: files calling each other in a circle: %s (%s)" % (", ".join(comp), "; ".join(calls)))
    if bad:
        return 1
    print("check-calls: ok (%d files, %d calls, %d known)" % (len(g), sum(len(v) for v in g.values()), len(known)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
