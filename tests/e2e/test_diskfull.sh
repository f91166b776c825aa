#!/usr/bin/env bash
# A full disk (R-STORE-5): the server's data directory sits on a 48 MiB tmpfs.
# An upload that cannot fit fails with a clear "no space" error, nothing of it
# becomes visible, the database stays intact and the server keeps serving.
# Both paths are covered: the up-front free-space check (--min-free) and a
# write that runs out of space half way (--min-free 0).
source "$(dirname "$0")/lib.sh"

# A missing privilege fails the test: a skip would pass unseen (CI runs as root).
[[ "$(id -u)" == 0 ]] && command -v mount >/dev/null || fail "mounting a small tmpfs needs root and mount(8)"
MNT=$WORK/small-disk
mkdir -p "$MNT"
mount -t tmpfs -o size=48m tmpfs "$MNT" || fail "cannot mount a tmpfs on $MNT"
unmount() { umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true; }
trap 'rc_=$?; unmount; (exit $rc_); cleanup' EXIT

L=$WORK/local
mkdir -p "$L"
head -c $((40 << 20)) /dev/urandom >"$L/forty.bin"
head -c $((60 << 20)) /dev/urandom >"$L/sixty.bin"
printf 'still fine\n' >"$L/small.txt"

# Up-front refusal: 40 MiB + the default 64 MiB reserve does not fit in 48 MiB.
SRV_DATA=$MNT/data start_server --signup open
new_client alice
signup alice 'disk full password'
fy put "$L/forty.bin"
assert_rc 1 "put that cannot fit"
assert_err_contains 'no space'
fy_ok ls /
assert_out_no_line 'forty.bin'
stop_server

# Half way: with no reserve, the 60 MiB write runs out of space mid-file.
SRV_DATA=$MNT/data SRV_LISTEN=127.0.0.1:$PORT start_server --signup open --min-free 0
fy put "$L/sixty.bin"
assert_rc 1 "put that runs out of space half way"
assert_err_contains 'no space'
fy_ok ls /
assert_out_no_line 'sixty.bin'
# Nothing partial is left in tmp/ or as a blob, and the database is intact.
[[ -z "$(find "$MNT/data/tmp" -type f)" ]] || fail "temp files left behind: $(ls -la "$MNT/data/tmp")"
[[ -z "$(find "$MNT/data/blobs" -type f)" ]] || fail "a blob of a failed upload exists"
[[ "$(sqlite3 "$MNT/data/ferry.db" 'PRAGMA integrity_check')" == ok ]] || fail "integrity_check"
# The server still serves: a small file goes through.
fy_ok put "$L/small.txt"
fy_ok get /small.txt "$WORK/small-back.txt"
check assert_same_file "$L/small.txt" "$WORK/small-back.txt"
stop_server
