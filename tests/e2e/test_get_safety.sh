#!/usr/bin/env bash
# What `ferry get` does with the local disk when things go wrong (issue 9):
#   item 1  (R-RECV-2, R-RECV-3): a chunk bitmap whose part file was deleted
#           or replaced between two runs is not trusted; the file placed is
#           the content, never the zeros of a re-created part file.
#   item 2: a folder in the way of the destination: a clean error, exit 1,
#           no part file left, no crash.
#   item 20: a destination folder without write permission: the real error
#           (Permission denied); a planted part file keeps its own message.
#   item 16 (R-RECV-6): a file larger than the destination's free space is
#           refused before anything is written (on a small tmpfs, as root);
#           a tree of small files larger than it fills it only up to the
#           margin, though the free space is read only every 8 MiB.
#   item 26 (R-RECV-1): a small file's part file is made once it is
#           verified, with its final mode; one left at its name by an
#           earlier run is emptied and used, and never left behind.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 (the command-line shell) is required"

start_server --signup open
new_client alice
signup alice 'get safety password'
L=$WORK/local
mkdir -p "$L"
STATE_DB=$XDG_STATE_HOME/ferry/state.db
parts_in() { find "$1" -name '.ferry-*' | wc -l; }

# ---------------------------------------------------------------- item 2: a folder in the way
printf 'small file\n' >"$L/small.txt"
fy_ok put -q "$L/small.txt" /small.txt
mkdir -p "$WORK/dl/small.txt"
fy get -q /small.txt "$WORK/dl/"
assert_rc 1 "get onto a folder of the same name"
assert_err_contains "cannot put it in place: Is a directory"
assert_eq "$(parts_in "$WORK/dl")" 0 "part files left beside the folder"
[[ -d "$WORK/dl/small.txt" ]] || fail "the folder in the way was replaced"
# The same inside get -r: the other files still arrive (exit 3).
mkdir -p "$L/tree"
printf 'one\n' >"$L/tree/a.txt"
printf 'two\n' >"$L/tree/b.txt"
fy_ok put -q -r "$L/tree" /tree
mkdir -p "$WORK/dl2/tree/a.txt"
fy get -q -r /tree "$WORK/dl2"
assert_rc 3 "get -r with a folder in the way of one file"
assert_err_contains "a.txt: cannot put it in place: Is a directory"
check assert_same_file "$L/tree/b.txt" "$WORK/dl2/tree/b.txt"
assert_eq "$(parts_in "$WORK/dl2")" 0 "part files left by get -r"

# ---------------------------------------------------------------- item 20: a folder we may not write
mkdir -p "$WORK/ro"
chmod 0555 "$WORK/ro"
if [[ "$(id -u)" == 0 ]]; then
    # root writes anywhere: drop the capabilities that let it, for this command only.
    command -v setpriv >/dev/null || fail "setpriv (util-linux) is required to test as root"
    setpriv --bounding-set -dac_override,-dac_read_search true ||
        fail "cannot drop CAP_DAC_OVERRIDE here (setpriv --bounding-set)"
    RO_WRAP=(setpriv --bounding-set -dac_override,-dac_read_search)
else
    RO_WRAP=()
fi
CMD_N=$((CMD_N + 1))
LAST_CMD="ferry get -q /small.txt $WORK/ro/ (without write permission)"
RC=0
timeout -k 5 120 "${RO_WRAP[@]}" "$FERRY_BIN" get -q /small.txt "$WORK/ro/" \
    >"$WORK/ro.out" 2>"$WORK/ro.err" || RC=$?
ERR=$(<"$WORK/ro.err") OUT=''
assert_sanitizer_clean "$WORK/ro.err" "get into a read-only folder"
assert_rc 1
assert_err_contains "cannot create its temporary file: Permission denied"
assert_not_contains "$ERR" "foreign file" "stderr of a get into a read-only folder"
assert_eq "$(ls -A "$WORK/ro")" "" "files in the read-only folder"
# A planted part file (a symlink at the part file's name) keeps its own message.
cid=$(sha256sum "$L/small.txt" | cut -c1-64)
part=$(python3 -c 'import hashlib, sys
h = hashlib.sha256(b"sha256:" + sys.argv[1].encode() + b"\0" + b"small.txt").hexdigest()
print(".ferry-%s.part" % h[:16])' "$cid")
mkdir -p "$WORK/planted"
ln -s "$WORK/victim" "$WORK/planted/$part"
fy get -q /small.txt "$WORK/planted/"
assert_rc 1 "get past a planted part file"
assert_err_contains "a foreign file in the way?"
[[ ! -e "$WORK/victim" ]] || fail "the planted symlink was written through"

# ---------------------------------------------------------------- item 26: small files' part files
# New part files get the final mode (umask 022): 644, and 755 when executable.
printf 'run me\n' >"$L/run.sh"
chmod 755 "$L/run.sh"
fy_ok put -q "$L/run.sh" /run.sh
mkdir -p "$WORK/modes"
fy_ok get -q /small.txt /run.sh "$WORK/modes/"
assert_mode "$WORK/modes/small.txt" 644
assert_mode "$WORK/modes/run.sh" 755
check assert_same_file "$L/run.sh" "$WORK/modes/run.sh"
# One left by an earlier run, private and longer than the file: emptied and used.
mkdir -p "$WORK/stale"
head -c 5000 /dev/urandom >"$WORK/stale/$part"
chmod 600 "$WORK/stale/$part"
fy_ok get -q /small.txt "$WORK/stale/"
check assert_same_file "$L/small.txt" "$WORK/stale/small.txt"
assert_mode "$WORK/stale/small.txt" 644
assert_eq "$(parts_in "$WORK/stale")" 0 "part files left after a stale one was used"

# ---------------------------------------------------------------- item 1: stale chunk bitmaps
BIG=$((160 << 20))
head -c "$BIG" /dev/urandom >"$L/big.bin"
fy_ok put -q "$L/big.bin" /big.bin
mkdir -p "$WORK/g"
bitmap_rows() { sqlite3 "$STATE_DB" 'SELECT COUNT(*) FROM partial_chunks' 2>/dev/null || echo 0; }
has_bitmap() { [[ "$(bitmap_rows)" == 1 ]]; }
# killed_get: an unrelated old file at the destination sends the get down the
# chunk path; it is killed once its bitmap is recorded. Sets PART.
killed_get() {
    head -c "$BIG" /dev/urandom >"$WORK/g/big.bin"
    "$FERRY_BIN" get -q /big.bin "$WORK/g/big.bin" >"$WORK/bg.out" 2>"$WORK/bg.err" &
    local pid=$!
    ALL_PIDS+=("$pid")
    wait_until 120 "a chunk bitmap recorded in the state database" has_bitmap
    kill -STOP "$pid"
    exec 3>&2 2>/dev/null
    kill -9 "$pid"
    wait "$pid" || true
    exec 2>&3 3>&-
    assert_sanitizer_clean "$WORK/bg.err" "the killed get"
    PART=$(find "$WORK/g" -name '.ferry-*.part')
    [[ -n "$PART" && -f "$PART" ]] || fail "the killed get left no part file"
}

# The part file deleted by the user: re-created empty, its old bitmap must not count.
killed_get
rm -f "$PART"
fy_ok get -q /big.bin "$WORK/g/big.bin"
check assert_same_file "$L/big.bin" "$WORK/g/big.bin"
assert_eq "$(bitmap_rows)" 0 "bitmaps left after the get"
assert_eq "$(parts_in "$WORK/g")" 0 "part files left after the get"

# The part file replaced by another file of the same size (a new inode).
killed_get
head -c "$BIG" /dev/urandom >"$WORK/other.bin"
mv "$WORK/other.bin" "$PART"
fy_ok get -q --stats /big.bin "$WORK/g/big.bin"
check assert_same_file "$L/big.bin" "$WORK/g/big.bin"
assert_contains "$OUT" " 0 kept from partial files" "bytes kept from a replaced part file"
assert_eq "$(bitmap_rows)" 0 "bitmaps left after the get"
# The local index now describes the file as it is: a get of the same content
# again is answered from it and reads nothing, and the bytes are still right.
fy_ok get -q --stats /big.bin "$WORK/g/big.bin"
assert_contains "$OUT" "bytes: $BIG in all, 0 received" "a get of a file already here"
check assert_same_file "$L/big.bin" "$WORK/g/big.bin"

# ---------------------------------------------------------------- item 16: no room for the file
if [[ "$(id -u)" == 0 ]] && command -v mount >/dev/null; then
    MNT=$WORK/small-disk
    mkdir -p "$MNT"
    mount -t tmpfs -o size=32m tmpfs "$MNT" || fail "cannot mount a tmpfs as root"
    # The ERR trap and set -e are off first: (exit N) must only hand N to cleanup,
    # which kills what the test started.
    trap 'rc_=$?; set +e; trap - ERR; umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
          (exit $rc_); cleanup' EXIT
    head -c $((40 << 20)) /dev/urandom >"$L/forty.bin"
    fy_ok put -q "$L/forty.bin" /forty.bin
    fy get -q /forty.bin "$MNT/"
    assert_rc 1 "get of 40 MiB onto a 32 MiB file system"
    assert_err_contains "not enough free space for it"
    assert_eq "$(ls -A "$MNT")" "" "files on the small file system"
    # A small file still fits (the margin is 1/32 of a small file system).
    fy_ok get -q /small.txt "$MNT/"
    check assert_same_file "$L/small.txt" "$MNT/small.txt"
    # The chunk path checks too: an old version there sends it that way.
    head -c $((2 << 20)) /dev/urandom >"$MNT/forty.bin"
    fy get -q /forty.bin "$MNT/forty.bin"
    assert_rc 1 "get of 40 MiB over an old version on a 32 MiB file system"
    assert_err_contains "not enough free space for it"
    assert_eq "$(parts_in "$MNT")" 0 "part files on the small file system"
    # 40 small files of 900 KiB (36 MB) onto the same 32 MiB: those that fit
    # with the margin (1 MiB here) arrive, the others are refused before any
    # byte of them is written, though the free space is read only once every
    # 8 MiB admitted (FERRY_PART_SPACE_RECHECK): the bytes admitted since count.
    rm -f "$MNT/small.txt" "$MNT/forty.bin"
    mkdir -p "$L/many"
    for i in $(seq 1 40); do head -c $((900 << 10)) /dev/urandom >"$L/many/m$i"; done
    fy_ok put -q -r "$L/many" /many
    fy get -q -r /many "$MNT/many"
    assert_rc 3 "get -r of 36 MB of small files onto 32 MiB"
    got=$(find "$MNT/many" -type f -name 'm*' | wc -l)
    refused=$(grep -c 'not enough free space for it' <<<"$ERR" || true)
    assert_eq "$((got + refused))" 40 "files placed plus files refused"
    ((got >= 20)) || fail "only $got of 40 small files fitted in 32 MiB"
    assert_not_contains "$ERR" "cannot write it" "stderr of get -r onto a small file system"
    free_kib=$(df -k --output=avail "$MNT" | tail -n 1 | tr -d ' ')
    ((free_kib >= 1024)) || fail "the margin was not kept: ${free_kib} KiB free of 32 MiB"
    for f in "$MNT"/many/m*; do cmp -s "$f" "$L/many/${f##*/}" || fail "$f differs"; done
    assert_eq "$(parts_in "$MNT")" 0 "part files on the small file system"
else
    log "not root: the full-disk case of R-RECV-6 is covered by test_get_hostile.sh only"
fi
stop_server
