#!/usr/bin/env bash
# A download is reported and acknowledged only once it is durable in place
# (issue 9 items 6 and 26, R-RECV-4): traced with strace, every part file
# renamed into place was fdatasync'd (or covered by a syncfs) after its last
# write, and its folder was fsync'd after the rename and before the client
# wrote anything more to the connection (its TransferComplete). Checked for
# a single small file, a large one, a tree of small files (made durable in
# batches) and a file fetched by chunks; tests/e2e/check_durable.py reads
# the traces.
source "$(dirname "$0")/lib.sh"

command -v strace >/dev/null || fail "strace is required (scripts/install-deps.sh installs it)"
command -v python3 >/dev/null || fail "python3 is required"

start_server --signup open
new_client alice
signup alice 'durable get password'
L=$WORK/local
mkdir -p "$L/tree"
printf 'one small file\n' >"$L/small.txt"
head -c $((3 << 20)) /dev/urandom >"$L/large.bin"
for d in a b c; do
    mkdir -p "$L/tree/$d"
    for i in $(seq 1 20); do head -c $((i * 100)) /dev/urandom >"$L/tree/$d/f$i"; done
done
fy_ok put -q "$L/small.txt" "$L/large.bin" /
fy_ok put -q -r "$L/tree" /tree

# traced_get NAME ARGS...: `ferry get ARGS` under strace; the order is checked.
traced_get() {
    local name=$1 trace=$WORK/$1.strace
    shift
    CMD_N=$((CMD_N + 1))
    LAST_CMD="strace ferry get $*"
    RC=0
    # LeakSanitizer cannot run under ptrace; the other tests look for leaks.
    ASAN_OPTIONS=detect_leaks=0 timeout -k 5 300 strace -f -yy -qq -o "$trace" \
        -e trace=write,writev,pwrite64,sendto,sendmsg,fsync,fdatasync,syncfs,renameat,renameat2 \
        "$FERRY_BIN" get "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || RC=$?
    OUT=$(<"$WORK/$name.out") ERR=$(<"$WORK/$name.err")
    assert_sanitizer_clean "$WORK/$name.err" "$LAST_CMD"
    assert_rc 0
    python3 "$FERRY_TESTS/e2e/check_durable.py" "$trace" >"$WORK/$name.check" 2>&1 ||
        fail "$name: $(tail -n 3 "$WORK/$name.check")"
    log "$name: $(tail -n 1 "$WORK/$name.check")"
}

mkdir -p "$WORK/dl"
traced_get small -q /small.txt "$WORK/dl/small.txt"
check assert_same_file "$L/small.txt" "$WORK/dl/small.txt"
traced_get large -q /large.bin "$WORK/dl/large.bin"
check assert_same_file "$L/large.bin" "$WORK/dl/large.bin"
# 60 files in 3 folders: several batches, each made durable with one syncfs.
traced_get tree -q -r /tree "$WORK/dl/tree"
diff -r "$L/tree" "$WORK/dl/tree" >/dev/null || fail "the tree differs after get -r"
grep -q '^ok: ' "$WORK/tree.check" || fail "no rename checked in the tree's trace"
[[ "$(grep -c '^ok: ' "$WORK/tree.check")" == 60 ]] ||
    fail "expected 60 renames in the tree's trace: $(tail -n 1 "$WORK/tree.check")"
grep -q '^[0-9]* *syncfs(' "$WORK/tree.strace" || fail "the tree's files were not made durable by syncfs"
# A file fetched by chunks over its old version (R-CHUNK-16).
head -c $((1 << 20)) /dev/urandom | dd of="$L/large.bin" bs=1M seek=1 conv=notrunc status=none
fy_ok put -q "$L/large.bin" /large.bin
traced_get chunks -q /large.bin "$WORK/dl/large.bin"
check assert_same_file "$L/large.bin" "$WORK/dl/large.bin"
stop_server
