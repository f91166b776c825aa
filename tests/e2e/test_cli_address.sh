#!/usr/bin/env bash
# Issue 9, items 18 and 20: ports and server identities as people type them.
# A port out of range is a usage error wherever one is parsed (R-CLI-4): it
# never wraps to another port. A client address without a port means 7070.
# IPv6 in brackets keeps working. A server ID is base32, which is
# case-insensitive: a lower-case ID is the same ID (R-CLI-5), not an
# interception alarm.
source "$(dirname "$0")/lib.sh"

assert_err_lacks() { assert_not_contains "$ERR" "$1" "stderr of $LAST_CMD"; }

# ---------------------------------------------------------------- ferry serve --listen
# Before: --listen 127.0.0.1:70700 listened on 5164 (70700 mod 65536).
for bad in 127.0.0.1:70700 127.0.0.1:65536 127.0.0.1:99999 127.0.0.1:-1 127.0.0.1:+80 \
    '127.0.0.1: 80' 127.0.0.1: :7070 127.0.0.1 '[::1]:65536'; do
    FY_TIMEOUT=30 fy serve --data "$WORK/never" --listen "$bad"
    assert_rc 2 "ferry serve --listen '$bad'"
    assert_out_lacks 'listening on'
done
[[ ! -e "$WORK/never/ferry.db" ]] || fail "a refused --listen still opened a database"

start_server --signup open
new_client alice

# ---------------------------------------------------------------- client addresses
# Before: ID@127.0.0.1:72606 connected to port 7070 while printing 72606.
for bad in "$SID@127.0.0.1:72606" "$SID@127.0.0.1:65536" "$SID@127.0.0.1:0" \
    "$SID@127.0.0.1:-7070" "$SID@127.0.0.1:" "$SID@[::1]:70000"; do
    fy login --server "$bad" --user alice --password-stdin <<<'whatever password'
    assert_rc 2 "login --server $bad"
    assert_err_contains 'port from 1 to 65535'
    assert_err_lacks 'cannot connect'
done

# 65535 is a port like any other (nothing listens there: a connection error, not a usage one).
fy login --server "$SID@127.0.0.1:65535" --user alice --password-stdin <<<'whatever password'
assert_rc 1 "login to 127.0.0.1:65535 (nothing listening)"
assert_err_contains 'cannot connect to 127.0.0.1:65535'

# Without a port the client uses 7070 (whatever answers there, the message names it).
fy login --server "$SID@127.0.0.1" --user alice --password-stdin <<<'whatever password'
assert_rc 1 "login to 127.0.0.1 without a port"
assert_err_contains '127.0.0.1:7070'

# ---------------------------------------------------------------- lower-case identities
lower=${SID,,}
[[ "$lower" != "$SID" ]] || fail "the server ID has no letters to lower"
fy signup --server "$lower@$ADDR" --user alice --password-stdin <<<'correct horse battery'
assert_rc 0 "signup with a lower-case ID@HOST:PORT"
assert_err_lacks 'MISMATCH'
assert_out_contains "(server $SID)"
fy_ok ls /
fy_ok logout
fy login --server "$ADDR" --server-id "$lower" --user alice --password-stdin \
    <<<'correct horse battery'
assert_rc 0 "login with a lower-case --server-id"
# A wrong ID is still refused loudly, whatever its case.
wrong=${lower:0:51}$([[ ${lower:51:1} == a ]] && echo b || echo a)
fy login --server "$wrong@$ADDR" --user alice --password-stdin <<<'correct horse battery'
assert_rc 1 "login with a wrong ID"
assert_err_contains 'SERVER IDENTITY MISMATCH'
# Not base32 at all: a usage error before any connection.
fy login --server "${SID:0:51}1@$ADDR" --user alice --password-stdin <<<'correct horse battery'
assert_rc 2 "login with an ID that is not base32"

# ---------------------------------------------------------------- IPv6
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    V6_OUT=$WORK/v6.out V6_ERR=$WORK/v6.err
    "$FERRY_BIN" serve --data "$WORK/v6data" --listen '[::1]:0' --signup open >"$V6_OUT" \
        2>"$V6_ERR" &
    V6_PID=$!
    ALL_PIDS+=("$V6_PID")
    wait_until 20 "the IPv6 server's 'listening on' line" grep -qs '^listening on ' "$V6_OUT"
    line=$(head -n 1 "$V6_OUT")
    [[ "$line" =~ ^listening\ on\ \[::1\]:([0-9]+)\ id\ ([A-Z2-7]{52})$ ]] ||
        fail "unexpected IPv6 readiness line: '$line'"
    v6port=${BASH_REMATCH[1]} v6id=${BASH_REMATCH[2]}
    new_client bob
    fy signup --server "$v6id@[::1]:$v6port" --user bob --password-stdin <<<'ipv6 password here'
    assert_rc 0 "signup over [::1]:$v6port"
    assert_out_contains "on [::1]:$v6port"
    fy_ok ls /
    kill -TERM "$V6_PID"
    wait_exit "$V6_PID" 30 "the IPv6 server"
    assert_sanitizer_clean "$V6_ERR" "the IPv6 server"
else
    fail "no IPv6 loopback on this machine: the [::1] case cannot run"
fi

stop_server
