#!/usr/bin/env bash
# The client is killed with SIGKILL in the middle of a chunked upload: the
# server notices the dead connection, makes nothing visible (R-STORE-6),
# keeps the chunks it acknowledged (R-CHUNK-7) and keeps serving; running
# the same put again resumes (R-CHUNK-12) and the file arrives byte for byte.
source "$(dirname "$0")/lib.sh"

start_server --signup open
new_client alice
signup alice 'client kill password'
L=$WORK/local
mkdir -p "$L"
head -c $((200 << 20)) /dev/urandom >"$L/big.bin"

"$FERRY_BIN" put -q "$L/big.bin" /big.bin >"$WORK/bgput.out" 2>"$WORK/bgput.err" &
PUT_PID=$!
ALL_PIDS+=("$PUT_PID")
some_chunks() { [[ "$(chunk_files)" -ge 40 ]]; }
wait_until 60 "40 stored chunks in $DATA/chunks" some_chunks
# Freeze, then kill: the upload is certainly unfinished.
kill -STOP "$PUT_PID"
exec 3>&2 2>/dev/null
kill -9 "$PUT_PID"
wait "$PUT_PID" || true
exec 2>&3 3>&-

fy_ok ls /
assert_out_no_line 'big.bin'
assert_chunks_sound "after the client was killed"
stored=$(chunk_bytes)

# The same put again goes through, byte for byte, without resending what was stored.
fy_ok put -q --stats "$L/big.bin" /big.bin
sent=$(stats_sent)
total=$((200 << 20))
[[ -n "$sent" && "$sent" -le $((total - stored + total / 50)) ]] ||
    fail "resumed put sent $sent bytes with $stored of $total already stored"
fy_ok get -q /big.bin "$WORK/back.bin"
check assert_same_file "$L/big.bin" "$WORK/back.bin"
stop_server
