#!/usr/bin/env python3
"""Keeps ferry's layering rules (docs/architecture.md, "Layers").

    python3 scripts/check-layers.py [ROOT]

ROOT is a checkout (default: the one this script is in). Prints one line per
violation, as FILE:LINE: what, and exits 1 if there is any, 0 otherwise.

Rules:
  1. A file includes headers of its own layer or of layers below it, never
     above: core < crypto, wire < net < store < transfer < server, cli.
     Layers of equal rank (crypto and wire; server and cli) do not include
     each other. src/cli/main.c is the program and may include the server's
     entry point.
  2. wire/ allocates nothing the caller did not pass in: no allocator calls
     in src/lib/wire/*.c beyond the ones listed in WIRE_ALLOCS with why.
  3. The library installs no signal handlers (signal, sigaction): ignoring
     SIGPIPE or anything else is the program's choice, made where it shows.
  4. No file under src/ or tests/ includes a .c file: tests link libraries.

Why a script over #include lines: the compiler would accept all of these,
and each one is cheap to add and dear to take out later.
"""

import os
import re
import sys

# Layers by rank; equal ranks are siblings that must not include each other.
RANK = {
    "core": 0,
    "crypto": 1,
    "wire": 1,
    "net": 2,
    "store": 3,
    "transfer": 4,
    "server": 5,
    "cli": 5,
}

# Public headers (include/ferry/) and the layer each belongs to.
PUBLIC = {
    "core.h": "core",
    "err.h": "core",
    "crypto.h": "crypto",
    "wire.h": "wire",
    "net.h": "net",
    "pool.h": "net",
    "session.h": "net",
    "path.h": "store",
    "store.h": "store",
    "blob.h": "store",
    "state.h": "store",
    "index.h": "store",
    "chunker.h": "transfer",
    "manifest.h": "transfer",
    "reader.h": "transfer",
    "writer.h": "transfer",
    "part.h": "transfer",
    "piece.h": "transfer",
    "hub.h": "transfer",
    "batch.h": "transfer",
    "job.h": "transfer",
    "download.h": "transfer",
    "upload.h": "transfer",
}

# The program's entry: it dispatches to both programs, so it may know both.
PROGRAM = {"src/cli/main.c": {"server"}}

# Allocations wire/ makes today, each with its reason; anything else fails.
# The JSON codec hands out jansson trees (jansson allocates them), and the
# Download ranges reader returns a caller-freed array of at most 1024 pairs.
WIRE_ALLOCS = {
    ("src/lib/wire/msg.c", "json_loadb"): 1,
    ("src/lib/wire/msg.c", "ferry_calloc"): 1,
}
ALLOC_CALL = re.compile(
    r"\b(malloc|calloc|realloc|reallocarray|strdup|strndup|posix_memalign|aligned_alloc|"
    r"ferry_malloc|ferry_malloc_aligned|ferry_calloc|ferry_realloc|ferry_strdup|"
    r"json_loadb|json_loads|json_loadf|json_load_file|json_object|json_array|json_string|"
    r"json_stringn|json_integer|json_real|json_true|json_false|json_null|json_pack|"
    r"json_pack_ex|json_copy|json_deep_copy|json_dumps)\s*\("
)
SIGNAL_CALL = re.compile(r"\b(signal|sigaction|bsd_signal|sigset)\s*\(")
INCLUDE = re.compile(r'^\s*#\s*include\s*(["<])([^">]+)[">]')


def strip_code(text):
    """Blanks comments and string literals, keeping line breaks."""

    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))

    pat = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
    return pat.sub(blank, text)


def layer_of(rel):
    """The layer of a file by its path relative to ROOT, or None."""
    parts = rel.split("/")
    if parts[:2] == ["include", "ferry"] and len(parts) == 3:
        return PUBLIC.get(parts[2])
    if parts[:2] == ["src", "lib"] and len(parts) >= 4:
        return parts[2] if parts[2] in RANK else None
    if parts[0] == "src" and len(parts) >= 3 and parts[1] in ("server", "cli"):
        return parts[1]
    return None


def resolve(root, rel, name):
    """The included file relative to ROOT, as the build's include paths find it."""
    if name.startswith("ferry/"):
        return "include/" + name
    here = os.path.dirname(rel)
    for base in (here, "src", "src/lib", "include"):
        cand = os.path.normpath(os.path.join(base, name))
        if os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def sources(root, top, exts):
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
        dirnames.sort()
        for f in sorted(filenames):
            if f.endswith(exts):
                yield os.path.relpath(os.path.join(dirpath, f), root)


def check(root):
    errors = []
    wire_allocs = {}

    for rel in list(sources(root, "src", (".c", ".h"))) + list(
        sources(root, "include/ferry", (".h",))
    ):
        mine = layer_of(rel)
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        if mine is None:
            errors.append(f"{rel}:1: no layer for this file (add its folder to RANK or PUBLIC)")
            continue
        for no, line in enumerate(text.split("\n"), 1):
            m = INCLUDE.match(line)
            if m is None:
                continue
            kind, name = m.groups()
            if kind == "<" and not name.startswith("ferry/"):
                continue  # system and third-party headers
            if name.endswith(".c"):
                errors.append(f"{rel}:{no}: includes a .c file ({name}); link it instead")
                continue
            target = resolve(root, rel, name)
            if target is None:
                errors.append(f"{rel}:{no}: cannot find {name} to place it in a layer")
                continue
            theirs = layer_of(target)
            if theirs is None:
                errors.append(f"{rel}:{no}: {name} belongs to no layer (add it to PUBLIC)")
                continue
            if theirs == mine or RANK[theirs] < RANK[mine]:
                continue
            if theirs in PROGRAM.get(rel, ()):
                continue
            how = "beside it" if RANK[theirs] == RANK[mine] else "above it"
            errors.append(
                f"{rel}:{no}: {mine} includes {name}, of {theirs}, a layer {how}"
            )

        if not rel.endswith(".c") or not rel.startswith("src/lib/"):
            continue
        code = strip_code(text)
        for no, line in enumerate(code.split("\n"), 1):
            if rel.startswith("src/lib/wire/"):
                for m in ALLOC_CALL.finditer(line):
                    key = (rel, m.group(1))
                    wire_allocs[key] = wire_allocs.get(key, 0) + 1
                    if wire_allocs[key] > WIRE_ALLOCS.get(key, 0):
                        errors.append(
                            f"{rel}:{no}: wire/ allocates ({m.group(1)}); "
                            "decode into the caller's memory instead"
                        )
            for m in SIGNAL_CALL.finditer(line):
                errors.append(
                    f"{rel}:{no}: the library calls {m.group(1)}(); signal dispositions "
                    "(SIGPIPE too) are the program's to set"
                )

    for rel in sources(root, "tests", (".c", ".h")):
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            for no, line in enumerate(f, 1):
                m = INCLUDE.match(line)
                if m is not None and m.group(2).endswith(".c"):
                    errors.append(
                        f"{rel}:{no}: includes a .c file ({m.group(2)}); link its library"
                    )
    return errors


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(__file__))
    root = os.path.abspath(root)
    if not os.path.isdir(os.path.join(root, "src")):
        print(f"check-layers: no src/ in {root}", file=sys.stderr)
        return 2
    errors = check(root)
    for e in errors:
        print(e)
    if errors:
        print(f"check-layers: {len(errors)} violation(s) of the layering rules", file=sys.stderr)
        return 1
    print("check-layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
