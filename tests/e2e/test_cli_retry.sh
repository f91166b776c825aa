#!/usr/bin/env bash
# Issue 9, item 17: --retry-for is honoured. Before, put measured its
# window from each reconnect, so a link that let every connection through
# and then dropped it (here: a relay that cuts every connection after 64 KiB
# client->server, before any chunk is whole) kept put reconnecting forever.
# The window now runs from the start of the outage, and a reconnect counts
# as the end of it only once something was confirmed or received (R-CLI-3).
source "$(dirname "$0")/lib.sh"

need_cutrelay

start_server --signup open
new_client alice
signup alice 'retry test password'
STATE_DB=$XDG_STATE_HOME/ferry/state.db

start_relay --every --cut-c2s 65536

head -c $((3 << 20)) /dev/urandom >"$WORK/big.bin"
FY_TIMEOUT=90 fy put --retry-for 3 "$WORK/big.bin" /big.bin
assert_rc 4 "put through a link that drops every connection after 64 KiB"
n=$(grep -c 'reconnecting' <<<"$ERR" || true)
log "put reconnected $n times in its 3 s window"
((n >= 1 && n <= 6)) || fail "put reconnected $n times with --retry-for 3 (backoff 0.5 s doubling)"
assert_contains "$ERR" 'Run the same command again' "put's last words"

# With --retry-for 0 it gives up at the first loss.
FY_TIMEOUT=90 fy put --retry-for 0 "$WORK/big.bin" /big.bin
assert_rc 4 "put --retry-for 0"
assert_not_contains "$ERR" 'reconnecting' "stderr of put --retry-for 0"

# Through a sound link, the same command finishes.
point_session_at "$ADDR"
fy_ok put --retry-for 3 "$WORK/big.bin" /big.bin
fy_ok get /big.bin "$WORK/big.back"
assert_same_file "$WORK/big.bin" "$WORK/big.back"
kill -TERM "$RELAY_PID"
wait_exit "$RELAY_PID" 10 "cutrelay"
stop_server
