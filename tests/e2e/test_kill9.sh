#!/usr/bin/env bash
# The server is killed with SIGKILL in the middle of a chunked upload
# (R-CHUNK). With --retry-for run out, the client exits 4 ("interrupted,
# resumable"); after a restart nothing partial is visible (R-STORE-6), every
# acknowledged chunk is on disk and intact (R-CHUNK-7), the database is
# sound, tmp/ was swept (R-STORE-8), and the same put resumes: it sends at
# most what was not yet stored plus 2 % (R-CHUNK-12). Then a second crash
# with the default --retry-for: the client reconnects to the restarted
# server by itself and finishes.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 (the command-line shell) is required"

BIG_MIB=${FERRY_E2E_KILL_MIB:-300}
start_server --signup open
PORT1=$PORT SID1=$SID
new_client alice
signup alice 'kill nine password'

L=$WORK/local G=$WORK/got
mkdir -p "$L" "$G"
# Committed before the crash: durable before the client hears so (R-STORE-1).
printf 'committed before the crash\n' >"$L/small.txt"
head -c 500000 /dev/urandom >"$L/committed.bin"
fy_ok put "$L/small.txt" "$L/committed.bin" /
head -c "$((BIG_MIB << 20))" /dev/urandom >"$L/big.bin"

# ---------------------------------------------------------------- upload, then SIGKILL
"$FERRY_BIN" put -q --retry-for 2 "$L/big.bin" /big.bin >"$WORK/bgput.out" 2>"$WORK/bgput.err" &
PUT_PID=$!
ALL_PIDS+=("$PUT_PID")
some_chunks() { [[ "$(chunk_count)" -ge 40 ]]; }
wait_until 60 "40 stored chunks" some_chunks
# Freeze the client so the upload is certainly unfinished when the server dies.
kill -STOP "$PUT_PID"
log "killing the server with SIGKILL after $(chunk_count) chunks"
kill9_server
kill -CONT "$PUT_PID"
wait_exit "$PUT_PID" 30 "ferry put after the server was killed"
assert_sanitizer_clean "$WORK/bgput.err" "the interrupted ferry put"
bg_err=$(<"$WORK/bgput.err")
[[ "$WAIT_RC" == 4 ]] || fail "interrupted put exited $WAIT_RC, expected 4; stderr: $bg_err"
assert_contains "$bg_err" 'Run the same command again' "stderr of the interrupted put"

# ---------------------------------------------------------------- restart on the same data
SRV_DATA=$DATA SRV_LISTEN=127.0.0.1:$PORT1 start_server --signup open
assert_eq "$SID" "$SID1" "server identity after a restart on the same data directory"
leftover=$(find "$DATA/tmp" -type f)
[[ -z "$leftover" ]] || fail "tmp/ still holds interrupted writes after the restart: $leftover"
fy_ok ls /
assert_eq "$OUT" "$(printf 'committed.bin\nsmall.txt')" "ls / after the crash"
fy ls /big.bin
assert_rc 1 "ls of the interrupted upload"
fy_ok get /small.txt /committed.bin "$G"
assert_same_file "$L/small.txt" "$G/small.txt"
assert_same_file "$L/committed.bin" "$G/committed.bin"
assert_chunks_sound "after the crash"
stored=$(chunk_bytes)
total=$((BIG_MIB << 20))
[[ "$stored" -gt 0 && "$stored" -lt "$total" ]] || fail "stored chunk bytes $stored of $total"

# ---------------------------------------------------------------- the same put resumes
fy_ok put -q --stats "$L/big.bin" /big.bin
sent=$(stats_sent)
limit=$((total - stored + total / 50))
log "resume: $stored bytes were stored; the second run sent $sent (limit $limit)"
[[ -n "$sent" && "$sent" -le "$limit" ]] || fail "resumed put sent $sent bytes, more than $limit"
fy_ok get -q /big.bin "$G/big.bin"
assert_same_file "$L/big.bin" "$G/big.bin"
assert_same_mtime "$L/big.bin" "$G/big.bin"

# ---------------------------------------------------------------- crash, restart, carry on
head -c "$((BIG_MIB << 20))" /dev/urandom >"$L/big2.bin"
base=$(chunk_count)
"$FERRY_BIN" put -q "$L/big2.bin" /big2.bin >"$WORK/bgput2.out" 2>"$WORK/bgput2.err" &
PUT_PID=$!
ALL_PIDS+=("$PUT_PID")
more_chunks() { [[ "$(chunk_count)" -ge $((base + 40)) ]]; }
wait_until 60 "40 more stored chunks" more_chunks
kill -STOP "$PUT_PID"
kill9_server
kill -CONT "$PUT_PID"
SRV_DATA=$DATA SRV_LISTEN=127.0.0.1:$PORT1 start_server --signup open
wait_exit "$PUT_PID" 120 "ferry put across a server restart"
assert_sanitizer_clean "$WORK/bgput2.err" "the put that carried on"
[[ "$WAIT_RC" == 0 ]] || fail "put across a restart exited $WAIT_RC: $(<"$WORK/bgput2.err")"
assert_contains "$(<"$WORK/bgput2.err")" 'reconnecting' "stderr of the put that carried on"
fy_ok get -q /big2.bin "$G/big2.bin"
assert_same_file "$L/big2.bin" "$G/big2.bin"
assert_chunks_sound "after the second crash"
stop_server
