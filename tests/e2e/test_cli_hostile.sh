#!/usr/bin/env bash
# Issue 9, item 16 (the client's side): a server that sends one byte at a
# time and never finishes a frame must not hold the client forever. The
# client's idle timer counts whole frames, not bytes (R-CLI-2); the test
# shortens it with FERRY_IDLE_TIMEOUT_MS instead of waiting 90 s.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 (the command-line shell) is required"

# A real server lends its identity to the hostile one, so the pin holds.
start_server --signup open
new_client alice
signup alice 'hostile test password'
stop_server
STATE_DB=$XDG_STATE_HOME/ferry/state.db

H_OUT=$WORK/hostile.out H_ERR=$WORK/hostile.err
python3 "$FERRY_TESTS/e2e/cli_hostile.py" --cert "$DATA/identity/cert.pem" \
    --key "$DATA/identity/key.pem" --server-id "$SID" --interval-ms 100 >"$H_OUT" 2>"$H_ERR" &
ALL_PIDS+=($!)
wait_until 20 "the hostile server's 'ready PORT' line" grep -qs '^ready [0-9]*$' "$H_OUT"
HADDR=127.0.0.1:$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$H_OUT")
point_session_at "$HADDR"
log "hostile server on $HADDR"

# Before: every byte reset the client's silence timer, and a partial frame
# in the input stopped the check altogether: ls waited forever (here, until
# FY_TIMEOUT failed the test).
export FERRY_IDLE_TIMEOUT_MS=2000
FY_TIMEOUT=120 fy ls /
assert_rc 1 "ls against a server that never finishes a frame"
assert_err_contains 'timed out'
grep -q '^dripping$' "$H_OUT" || fail "the hostile server never started dripping"

# put and get treat it as a lost connection: with --retry-for 0, interrupted (4).
printf 'x\n' >"$WORK/x.txt"
FY_TIMEOUT=120 fy put --retry-for 0 "$WORK/x.txt" /x.txt
assert_rc 4 "put against a server that never finishes a frame"
assert_err_contains 'timed out'
FY_TIMEOUT=120 fy get --retry-for 0 /x.txt "$WORK/x-back.txt"
assert_rc 4 "get against a server that never finishes a frame"
assert_no_file "$WORK/x-back.txt"
