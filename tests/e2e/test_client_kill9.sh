#!/usr/bin/env bash
# The client is killed with SIGKILL in the middle of an upload: the server
# notices the dead connection, removes the upload's temp file, makes nothing
# of it visible (R-STORE-6) and keeps serving; running the same put again
# succeeds.
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
has_tmp() { [[ -n "$(find "$DATA/tmp" -maxdepth 1 -name 'up-*' -type f -size +0 2>/dev/null)" ]]; }
wait_until 60 "an up-* temp file in $DATA/tmp" has_tmp
# Freeze, then kill: the upload is certainly unfinished.
kill -STOP "$PUT_PID"
exec 3>&2 2>/dev/null
kill -9 "$PUT_PID"
wait "$PUT_PID" || true
exec 2>&3 3>&-

# The server sees the connection end and drops the partial upload.
no_tmp() { ! has_tmp; }
wait_until 30 "the server to remove the interrupted upload's temp file" no_tmp
fy_ok ls /
assert_out_no_line 'big.bin'
[[ "$(sqlite3 "$DATA/ferry.db" 'PRAGMA integrity_check')" == ok ]] || fail "integrity_check"

# The same put again goes through, byte for byte.
fy_ok put -q "$L/big.bin" /big.bin
fy_ok get -q /big.bin "$WORK/back.bin"
check assert_same_file "$L/big.bin" "$WORK/back.bin"
stop_server
