#!/usr/bin/env bash
# The client is killed with SIGKILL in the middle of a chunked upload: the
# server notices the dead connection, makes nothing visible (R-STORE-6),
# keeps the chunks it acknowledged (R-CHUNK-7) and keeps serving; running
# the task is left for `ferry resume`, which finishes it (R-CHUNK-12) without
# resending what was stored, and the file arrives byte for byte.
source "$(dirname "$0")/lib.sh"

start_server --signup open
new_client alice
signup alice 'client kill password'
L=$WORK/local
mkdir -p "$L"
head -c $((200 << 20)) /dev/urandom >"$L/big.bin"

"$FERRY_BIN" put -q --stats "$L/big.bin" /big.bin >"$WORK/bgput.out" 2>"$WORK/bgput.err" &
PUT_PID=$!
ALL_PIDS+=("$PUT_PID")
some_chunks() { [[ "$(chunk_count)" -ge 40 ]]; }
wait_until 60 "40 stored chunks" some_chunks
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

# The killed put is still on the task list; resuming it finishes the upload
# without resending what was stored.
fy_ok resume --list
assert_out_contains "put -q --stats $L/big.bin /big.bin"
fy_ok resume
sent=$(stats_sent)
total=$((200 << 20))
[[ -n "$sent" && "$sent" -le $((total - stored + total / 50)) ]] ||
    fail "resumed put sent $sent bytes with $stored of $total already stored"
fy_ok get -q /big.bin "$WORK/back.bin"
check assert_same_file "$L/big.bin" "$WORK/back.bin"
# Done tasks are forgotten.
fy_ok resume --list
assert_eq "$OUT" "nothing to resume" "the task list after the resume"

# ---------------------------------------------------------------- a download killed
# R-CHUNK-14, R-CHUNK-16: once 32 MiB are durable the part file is recorded; after the
# kill the same get continues from there and the file arrives whole.
mkdir -p "$WORK/dl"
"$FERRY_BIN" get -q "/big.bin" "$WORK/dl/big.bin" >"$WORK/bgget.out" 2>"$WORK/bgget.err" &
GET_PID=$!
ALL_PIDS+=("$GET_PID")
recorded() {
    [[ "$(sqlite3 "$XDG_STATE_HOME/ferry/state.db" \
        'SELECT COUNT(*) FROM partials WHERE durable > 0' 2>/dev/null)" == 1 ]]
}
wait_until 60 "a durable part file recorded in the state database" recorded
kill -STOP "$GET_PID"
exec 3>&2 2>/dev/null
kill -9 "$GET_PID"
wait "$GET_PID" || true
exec 2>&3 3>&-
assert_no_file "$WORK/dl/big.bin"
parts=$(find "$WORK/dl" -name '.ferry-*.part' | wc -l)
assert_eq "$parts" 1 "part files after the killed get"
fy_ok get -q --stats /big.bin "$WORK/dl/big.bin"
kept=$(sed -n 's/.* received, \([0-9]*\) kept from partial files$/\1/p' <<<"$OUT")
log "resumed download: $kept bytes kept from the part file"
# The rerun asks for the list (R-CHUNK-15) and keeps every chunk wholly
# inside the durable prefix that hashes right: 32 MiB less at most one chunk.
[[ -n "$kept" && "$kept" -ge $(((32 << 20) - (1 << 20))) ]] || fail "the download did not resume: $OUT"
check assert_same_file "$L/big.bin" "$WORK/dl/big.bin"
assert_eq "$(find "$WORK/dl" -name '.ferry-*.part' | wc -l)" 0 "part files after the resumed get"
stop_server
