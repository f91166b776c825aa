#!/usr/bin/env bash
# The server is killed with SIGKILL in the middle of an upload: the client
# fails promptly and says the connection was lost; after a restart on the
# same data directory nothing partial is visible (R-STORE-6), what was
# committed before is intact (R-STORE-1), the database is sound, tmp/ was
# swept (R-STORE-8), and the same put then succeeds.
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
# A small file (may be kept inline in the database) and a larger one (a blob).
printf 'committed before the crash\n' >"$L/small.txt"
head -c 500000 /dev/urandom >"$L/committed.bin"
fy_ok put "$L/small.txt" "$L/committed.bin" /
head -c "$((BIG_MIB << 20))" /dev/urandom >"$L/big.bin"

# ---------------------------------------------------------------- upload, then SIGKILL
"$FERRY_BIN" put -q "$L/big.bin" /big.bin >"$WORK/bgput.out" 2>"$WORK/bgput.err" &
PUT_PID=$!
ALL_PIDS+=("$PUT_PID")

# The upload is under way once a temp file up-* in tmp/ exists and grows.
tmp_size() { # prints the size of the (single) up-* temp file, or nothing
    find "$DATA/tmp" -maxdepth 1 -name 'up-*' -type f -printf '%s\n' 2>/dev/null | head -n 1
}
first_size=''
tmp_growing() {
    local s
    s=$(tmp_size)
    [[ -n "$s" && "$s" -gt 0 ]] || return 1
    if [[ -z "$first_size" ]]; then
        first_size=$s
        return 1
    fi
    [[ "$s" -gt "$first_size" ]]
}
wait_until 60 "a growing up-* temp file in $DATA/tmp" tmp_growing
# Freeze the client so that the upload is certainly unfinished when the
# server dies (a fast machine could otherwise finish 300 MiB first); it is
# resumed right after the kill and must then notice the dead connection.
kill -STOP "$PUT_PID"
partial=$(tmp_size)
[[ -n "$partial" && "$partial" -lt $((BIG_MIB << 20)) ]] ||
    fail "the upload was not partial when the server was killed (temp file size: ${partial:-none})"
log "killing the server with SIGKILL at $partial of $((BIG_MIB << 20)) bytes"
kill9_server
kill -CONT "$PUT_PID"
t0=$EPOCHREALTIME
wait_exit "$PUT_PID" 30 "ferry put after the server was killed"
log "ferry put exited $WAIT_RC after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.2f", b-a}') s"
assert_sanitizer_clean "$WORK/bgput.err" "the interrupted ferry put"
bg_err=$(<"$WORK/bgput.err")
[[ "$WAIT_RC" == 1 ]] || fail "interrupted put exited $WAIT_RC, expected 1; stderr: $bg_err"
assert_contains "$bg_err" 'connection' "stderr of the interrupted put"
# The dead server left its partial temp file behind (it had no chance to clean).
[[ -n "$(tmp_size)" ]] || fail "expected the killed server's partial up-* file in tmp/"

# ---------------------------------------------------------------- restart on the same data
SRV_DATA=$DATA SRV_LISTEN=127.0.0.1:$PORT1 start_server --signup open
assert_eq "$SID" "$SID1" "server identity after a restart on the same data directory"
# R-STORE-8: the restart swept tmp/.
leftover=$(find "$DATA/tmp" -name 'up-*')
[[ -z "$leftover" ]] || fail "tmp/ still holds interrupted uploads after the restart: $leftover"
# R-STORE-6: nothing partial is visible; R-STORE-1: the committed file is intact.
fy_ok ls /
assert_eq "$OUT" "$(printf 'committed.bin\nsmall.txt')" "ls / after the crash"
fy ls /big.bin
assert_rc 1 "ls of the interrupted upload"
fy_ok get /small.txt /committed.bin "$G"
assert_same_file "$L/small.txt" "$G/small.txt"
assert_same_file "$L/committed.bin" "$G/committed.bin"
# No blob was made from the partial bytes: every blob is committed content.
committed=$(sha256sum "$L/small.txt" "$L/committed.bin" | cut -d' ' -f1)
while IFS= read -r -d '' b; do
    grep -qxF "${b##*/}" <<<"$committed" || fail "blob $b after the crash is not committed content"
done < <(find "$DATA/blobs" -type f -print0)
# The metadata database survived the SIGKILL.
integrity=$(sqlite3 "$DATA/ferry.db" 'PRAGMA integrity_check')
assert_eq "$integrity" ok "PRAGMA integrity_check of ferry.db"

# ---------------------------------------------------------------- the same put again
fy_ok put -q "$L/big.bin" /big.bin
fy_ok get -q /big.bin "$G/big.bin"
assert_same_file "$L/big.bin" "$G/big.bin"
assert_same_mtime "$L/big.bin" "$G/big.bin"
[[ -z "$(find "$DATA/tmp" -name 'up-*')" ]] || fail "a committed upload left its temp file in tmp/"

stop_server
