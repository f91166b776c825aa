#!/usr/bin/env bash
# Issue 9, item 5 (R-ADMIN-1): whoever made the data directory, and whatever
# the umask, the server creates nothing that group or others can read; it
# warns about a data directory they can look into, tightens what an older
# version left readable, and `make run`'s script makes its directory 0700.
source "$(dirname "$0")/lib.sh"

L=$WORK/local
mkdir -p "$L"
printf 'small\n' >"$L/small.txt"
head -c $((200 * 1024)) /dev/urandom >"$L/blob.bin"   # a blob file (over 64 KiB)
head -c $((3 * 1024 * 1024)) /dev/urandom >"$L/big.bin" # chunks in a pack (1 MiB and more)

# Everything beneath DIR that group or others may read, write or search.
open_entries() { find "$1" -mindepth 1 -perm /077 -printf '%m %p\n'; }

# ---------------------------------------------------------------- a 0755 directory, umask 022
umask 022
mkdir -m 755 "$WORK/data"
SRV_DATA=$WORK/data start_server --signup open
new_client c1
signup ann 'ann password 1'
fy_ok put "$L/small.txt" "$L/blob.bin" "$L/big.bin" /
fy_ok ls /
stop_server
log "entries: $(find "$DATA" -mindepth 1 | wc -l)"
[[ -n "$(find "$DATA/packs" -type f)" && -n "$(find "$DATA/blobs" -type f)" ]] ||
    fail "the uploads left no pack and no blob to check"
bad=$(open_entries "$DATA")
[[ -z "$bad" ]] || fail "R-ADMIN-1: readable beyond the owner: $bad"
assert_mode "$DATA/ferry.db" 600
assert_mode "$DATA/identity/cert.pem" 600
# The directory itself is the operator's: left alone, and warned about.
assert_mode "$DATA" 755
assert_contains "$(cat "$SERVER_ERR")" "level=warn data directory $DATA has mode 0755" \
    "the warning about a 0755 data directory"

# ---------------------------------------------------------------- what an older version left
chmod 644 "$DATA/ferry.db" "$DATA/identity/cert.pem" "$DATA/lock"
chmod 755 "$DATA/blobs" "$DATA/packs" "$DATA/identity" "$DATA/tmp"
chmod 700 "$DATA"
SRV_DATA=$WORK/data start_server --signup open
login ann 'ann password 1'
fy_ok ls /
assert_out_line 'small.txt'
stop_server
bad=$(open_entries "$DATA")
[[ -z "$bad" ]] || fail "R-ADMIN-1: left readable at start: $bad"
err=$(cat "$SERVER_ERR")
assert_contains "$err" "mode of $DATA/ferry.db was 0644, readable beyond its owner: made it 0600" \
    "the warning about ferry.db"
assert_contains "$err" "mode of $DATA/blobs was 0755" "the warning about blobs"
assert_not_contains "$err" "data directory $DATA has mode" "a 0700 data directory"

# ---------------------------------------------------------------- a missing directory is made 0700
SRV_DATA=$WORK/new/deeper/data start_server
stop_server
assert_mode "$WORK/new/deeper/data" 700
bad=$(open_entries "$WORK/new/deeper/data")
[[ -z "$bad" ]] || fail "R-ADMIN-1: readable in a new data directory: $bad"

# ---------------------------------------------------------------- make run's script
# scripts/run.sh execs ferry serve: its PID is the server's.
RUN_DATA=$WORK/run-data
bash "$FERRY_TESTS/../scripts/run.sh" "$FERRY_BIN" "$RUN_DATA" 127.0.0.1:0 \
    >"$WORK/run.out" 2>"$WORK/run.err" &
SERVER_PID=$!
ALL_PIDS+=("$SERVER_PID")
SERVER_OUT=$WORK/run.out SERVER_ERR=$WORK/run.err
wait_until 20 "make run's server to listen" grep -qs '^listening on ' "$WORK/run.out"
stop_server
assert_mode "$RUN_DATA" 700
bad=$(open_entries "$RUN_DATA")
[[ -z "$bad" ]] || fail "R-ADMIN-1: make run's data readable: $bad"
assert_not_contains "$(cat "$WORK/run.err")" "level=warn" "make run's server"
