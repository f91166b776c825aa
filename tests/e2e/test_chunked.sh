#!/usr/bin/env bash
# Chunked uploads through the CLI (R-CHUNK): the local index means an
# unchanged file is not read again (git's racy rule respected), a copy costs
# nothing on the wire, a small edit costs a few chunks, dedup is per user,
# the quota is enforced (R-CHUNK-9) and --bwlimit paces the upload.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 (the command-line shell) is required"

start_server --signup open --quota 40M
new_client alice
signup alice 'chunked password'
L=$WORK/local
mkdir -p "$L"
MIB=8
SIZE=$((MIB << 20))

# ---------------------------------------------------------------- the local index
head -c "$SIZE" /dev/urandom >"$L/a.bin"
set_mtime "$L/a.bin" '2021-03-04 05:06:07.123456789'
fy_ok put -q --stats "$L/a.bin" /a.bin
# Read once (R-CHUNK-5, 1.5): chunked, hashed and kept until the server asks.
assert_out_contains "read: $SIZE bytes"
assert_out_contains "bytes: $SIZE in all, $SIZE sent, 0 already"
# Unchanged (same dev, inode, size, mtime, ctime): not read, nothing sent.
fy_ok put -q --stats "$L/a.bin" /a-again.bin
assert_out_contains "read: 0 bytes"
assert_out_contains "bytes: $SIZE in all, 0 sent, $SIZE already"
wire=$(sed -n 's/^wire: \([0-9]*\) sent, \([0-9]*\) received.*/\1 \2/p' <<<"$OUT")
read -r tx rx <<<"$wire"
log "unchanged $MIB MiB file: $tx bytes sent, $rx received on the wire"
[[ $((tx + rx)) -lt 65536 ]] || fail "an unchanged file cost $((tx + rx)) wire bytes"

# Content changed but mtime put back: ctime still tells (the index misses),
# and only the changed chunk travels.
printf 'CHANGED' | dd of="$L/a.bin" bs=1 seek=$((SIZE / 2)) conv=notrunc status=none
set_mtime "$L/a.bin" '2021-03-04 05:06:07.123456789'
fy_ok put -q --stats "$L/a.bin" /a.bin
# One step of the scan: the changed chunk was kept, not read again.
assert_out_contains "read: $SIZE bytes"
sent=$(stats_sent)
log "7 bytes changed in $MIB MiB: $sent bytes sent"
[[ "$sent" -gt 0 && "$sent" -le $((2 << 20)) ]] || fail "a 7-byte edit sent $sent bytes"
fy_ok get -q /a.bin "$WORK/a.back"
assert_same_file "$L/a.bin" "$WORK/a.back"

# Racy (git's rule): an mtime not safely older than the moment the file was
# indexed proves nothing, so the file is read again. An mtime ahead of the
# clock is the deterministic case of "modified in the same tick".
head -c "$SIZE" /dev/urandom >"$L/fresh.bin"
touch -d "@$(($(date +%s) + 3600))" "$L/fresh.bin"
fy_ok put -q --stats "$L/fresh.bin" /fresh.bin
fy_ok put -q --stats "$L/fresh.bin" /fresh2.bin
assert_out_contains "read: $SIZE bytes"
assert_out_contains "0 sent"

# ---------------------------------------------------------------- dedup is per user
new_client bob
signup bob 'another password'
fy_ok put -q --stats "$L/a.bin" /a.bin
assert_out_contains "bytes: $SIZE in all, $SIZE sent, 0 already"
use_client alice

# ---------------------------------------------------------------- quota
# alice holds a.bin, a-again.bin, fresh.bin, fresh2.bin: 32 MiB of 40.
head -c $((9 << 20)) /dev/urandom >"$L/big.bin"
fy put -q "$L/big.bin" /big.bin
assert_rc 1
assert_err_contains 'quota exceeded'
fy ls /big.bin
assert_rc 1
# Removing makes room again.
fy_ok rm /fresh2.bin
fy_ok put -q "$L/big.bin" /big.bin

# ---------------------------------------------------------------- --bwlimit
head -c $((3 << 20)) /dev/urandom >"$L/slow.bin"
fy_ok rm /a-again.bin /fresh.bin
t0=$EPOCHREALTIME
fy_ok put -q --bwlimit 1M "$L/slow.bin" /slow.bin
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}')
log "3 MiB at --bwlimit 1M took $secs s"
awk -v s="$secs" 'BEGIN{exit !(s >= 2.0)}' || fail "--bwlimit 1M sent 3 MiB in $secs s"
fy put --bwlimit 0 "$L/slow.bin" /x
assert_rc 2
stop_server
