#!/usr/bin/env bash
# Read once (R-CHUNK-5, protocol 1.5): a chunked upload keeps the chunks it
# has cut and hashed until the server answers, and sends the needed ones
# from memory, so a new file's bytes are read from disk once, not twice.
# The scan keeps at most 16 MiB and waits for answers; it never stalls on
# a file of largest-size chunks, whose groups end by bytes, not entries; a
# file the server already holds stops the keeping and is read once.
source "$(dirname "$0")/lib.sh"

start_server --signup open
new_client alice
signup alice 'read once password'
L=$WORK/local
mkdir -p "$L"
read_bytes() { sed -n 's/^read: \([0-9]*\) bytes.*/\1/p' <<<"$OUT"; }

# ---------------------------------------------------------------- new content, several steps of the scan
SIZE=$((48 << 20))
head -c "$SIZE" /dev/urandom >"$L/new.bin"
fy_ok put -q --stats "$L/new.bin" /new.bin
assert_out_contains "bytes: $SIZE in all, $SIZE sent, 0 already"
got=$(read_bytes)
log "48 MiB new file: $got bytes read from disk"
# Its first two steps (16 MiB) are kept whatever the timing; the rest is
# kept unless an answer was not due when the scan was ahead by 16 MiB.
[[ "$got" -ge "$SIZE" && "$got" -le $((2 * SIZE - (16 << 20))) ]] ||
    fail "a 48 MiB new file was read as $got bytes"
fy_ok get -q /new.bin "$WORK/new.back"
assert_same_file "$L/new.bin" "$WORK/new.back"

# ---------------------------------------------------------------- chunks of the largest size
# Zeros never match the cut rule: every chunk is 1 MiB, and a group of the
# server's answers (R-CHUNK-5) ends at 8 entries. Compressed-looking data
# of large chunks that repeat a pattern behave the same way.
head -c $((40 << 20)) /dev/zero >"$L/zeros.bin"
fy_ok put -q --stats "$L/zeros.bin" /zeros.bin
assert_out_contains "bytes: $((40 << 20)) in all"
fy_ok get -q /zeros.bin "$WORK/zeros.back"
assert_same_file "$L/zeros.bin" "$WORK/zeros.back"

# ---------------------------------------------------------------- content the server holds
# A copy is a new inode, so the local index misses and the file is chunked
# again; the server lacks none of its chunks, the keeping stops at its
# first answer, and nothing is read twice.
cp "$L/new.bin" "$L/copy.bin"
fy_ok put -q --stats "$L/copy.bin" /copy.bin
assert_out_contains "bytes: $SIZE in all, 0 sent, $SIZE already"
assert_out_contains "read: $SIZE bytes"

# ---------------------------------------------------------------- an edit in the middle of a big file
printf 'EDITED' | dd of="$L/new.bin" bs=1 seek=$((SIZE / 2)) conv=notrunc status=none
fy_ok put -q --stats "$L/new.bin" /new.bin
sent=$(stats_sent)
got=$(read_bytes)
log "6 bytes edited in 48 MiB: $sent bytes sent, $got read"
[[ "$sent" -gt 0 && "$sent" -le $((2 << 20)) ]] || fail "a 6-byte edit sent $sent bytes"
[[ "$got" -ge "$SIZE" && "$got" -le $((SIZE + sent)) ]] || fail "the edited file was read as $got bytes"
fy_ok get -q /new.bin "$WORK/new.back2"
assert_same_file "$L/new.bin" "$WORK/new.back2"
stop_server
