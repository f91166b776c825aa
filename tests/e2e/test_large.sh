#!/usr/bin/env bash
# Volume: a 200 MiB file and a 2,000-file tree in ~40 folders round-trip
# byte-identical (sha256 manifests) with mtimes preserved.
source "$(dirname "$0")/lib.sh"

BIG_MIB=${FERRY_E2E_BIG_MIB:-200}
NFILES=2000
NDIRS=40

start_server --signup open
new_client alice
signup alice 'large-test-password'

L=$WORK/local
mkdir -p "$L"

# ---------------------------------------------------------------- one big file
head -c "$((BIG_MIB << 20))" /dev/urandom >"$L/big.bin"
set_mtime "$L/big.bin" '2022-02-22 22:22:22.222222222'
big_sum=$(sha256sum <"$L/big.bin" | cut -d' ' -f1)
t0=$EPOCHREALTIME
fy_ok put -q "$L/big.bin" /big/big.bin
t1=$EPOCHREALTIME
fy_ok ls -l /big
[[ "${OUT%%$'\n'*}" =~ ^--\ +$((BIG_MIB << 20))\ 2022-02-22\ 22:22\ big\.bin$ ]] || fail "ls -l /big: '$OUT'"
fy_ok ls --json /big/big.bin
# R-CHUNK-3: a file of 1 MiB or more is stored as chunks, under a chunks: id.
[[ "$OUT" =~ \"hash\":\"chunks:([0-9a-f]{64})\" ]] || fail "content id of big.bin (R-CHUNK-3): $OUT"
big_cid=${BASH_REMATCH[1]}
mkdir "$WORK/big-back"
t2=$EPOCHREALTIME
fy_ok get -q /big/big.bin "$WORK/big-back/"
t3=$EPOCHREALTIME
put_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
get_s=$(awk -v a="$t2" -v b="$t3" 'BEGIN{printf "%.1f", b-a}')
log "$BIG_MIB MiB: put $put_s s, get $get_s s"
# Times are logged, never asserted: this runs under `ctest -j8` on a loaded
# machine. Speed is measured against rsync by bench/compare.sh instead.
assert_eq "$(sha256sum <"$WORK/big-back/big.bin" | cut -d' ' -f1)" "$big_sum" "sha256 of the downloaded big.bin"
assert_same_mtime "$L/big.bin" "$WORK/big-back/big.bin"
# The stored chunks are the content, each under its hash (R-CHUNK-7), and the
# same bytes under another name give the same id and store nothing new.
assert_chunks_sound "after the big upload"
before=$(chunk_count)
packed=$(pack_bytes)
cp "$L/big.bin" "$L/big-copy.bin"
fy_ok put -q --stats "$L/big-copy.bin" /big/copy.bin
assert_eq "$(stats_sent)" 0 "bytes sent for a copy of a stored file"
fy_ok ls --json /big/copy.bin
assert_contains "$OUT" "\"hash\":\"chunks:$big_cid\"" "content id of the copy (R-CHUNK-3)"
assert_eq "$(chunk_count)" "$before" "stored chunks after uploading a copy"
assert_eq "$(pack_bytes)" "$packed" "pack bytes after uploading a copy"
rm "$L/big-copy.bin"
fy_ok rm /big/copy.bin
rm -f "$L/big.bin" "$WORK/big-back/big.bin"
fy_ok rm -r /big

# ---------------------------------------------------------------- many small files
# $NFILES files of 0..8 KiB in $NDIRS folders (some nested), random mtimes
# with nanoseconds, a few executables; then folder mtimes, deepest first.
python3 - "$L/tree" "$NFILES" "$NDIRS" <<'PY'
import os, random, sys
root, nfiles, ndirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(20240229)
dirs = []
for i in range(ndirs):
    parent = rnd.choice(dirs) if dirs and rnd.random() < 0.5 else ""
    d = os.path.join(parent, "d%02d" % i)
    dirs.append(d)
    os.makedirs(os.path.join(root, d))
for i in range(nfiles):
    d = dirs[i % ndirs]
    p = os.path.join(root, d, "f%04d.dat" % i)
    with open(p, "wb") as f:
        f.write(os.urandom(rnd.randint(0, 8192)))
    if i % 97 == 0:
        os.chmod(p, 0o755)
    t = rnd.randint(0, 1_700_000_000 * 10**9)
    os.utime(p, ns=(t, t))
for d in sorted(dirs, key=lambda d: -d.count("/")) + [""]:
    t = rnd.randint(0, 1_700_000_000 * 10**9)
    os.utime(os.path.join(root, d), ns=(t, t))
PY
[[ "$(find "$L/tree" -type f | wc -l)" == "$NFILES" ]] || fail "the generator made the wrong number of files"

# Manifest: path, size, mode, mtime (ns), sha256 of every file and folder.
manifest() { # DIR
    (
        cd "$1"
        find . -mindepth 1 -printf '%y %P %s %m %T@\n' | awk '$1 == "d" { $3 = 0 } { print }' | sort
        find . -type f -print0 | sort -z | xargs -0 sha256sum
    )
}
manifest "$L/tree" >"$WORK/manifest.local"

t0=$EPOCHREALTIME
fy_ok put -r -q "$L/tree" /tree
t1=$EPOCHREALTIME
fy_ok ls -R /tree
nls_files=$(grep -vc '/$' <<<"$OUT" || true)
nls_dirs=$(grep -c '/$' <<<"$OUT" || true)
assert_eq "$nls_files" "$NFILES" "files listed by ls -R /tree"
assert_eq "$nls_dirs" "$NDIRS" "folders listed by ls -R /tree"
# Every local path appears in the listing.
diff <(cd "$L/tree" && find . -mindepth 1 \( -type d -printf '%P/\n' -o -printf '%P\n' \) | sort) \
    <(sort <<<"$OUT") >"$WORK/ls.diff" || fail "ls -R /tree differs from the local tree: $(head -20 "$WORK/ls.diff")"
# The listing streams in pages of at most 50 (6.3) and agrees field by field.
fy_ok ls -R --json /tree
problems=$(python3 "$FERRY_TESTS/e2e/check_tree.py" "$L/tree" <<<"$OUT") ||
    fail "ls -R --json /tree disagrees with the local tree: $problems"

t2=$EPOCHREALTIME
fy_ok get -r -q /tree "$WORK/tree-back"
t3=$EPOCHREALTIME
log "$NFILES files: put $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s," \
    "get $(awk -v a="$t2" -v b="$t3" 'BEGIN{printf "%.1f", b-a}') s"
manifest "$WORK/tree-back" >"$WORK/manifest.back"
diff "$WORK/manifest.local" "$WORK/manifest.back" >"$WORK/manifest.diff" ||
    fail "the downloaded tree differs (path size mode mtime / sha256): $(head -20 "$WORK/manifest.diff")"

stop_server
