#!/usr/bin/env bash
# What the CLI makes of a server's Errors (R-ERR-2, R-ERR-3), against
# tests/e2e/error_server.py presenting a real server's identity: an Error
# code the client does not know is taken as 10 (internal), whatever its
# JSON form, and the Error's message reaches the terminal only escaped.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 (the command-line shell) is required"

# A real server lends its identity, so the client's pin holds.
start_server --signup open
new_client alice
signup alice 'error test password'
stop_server

# start_errors MODE CODE: error_server.py in MODE answering with CODE (JSON
# text); the session pointed at it. Sets EPID, EOUT.
E_N=0 EPID='' EOUT=''
start_errors() {
    E_N=$((E_N + 1))
    EOUT=$WORK/errors$E_N.out
    python3 "$FERRY_TESTS/e2e/error_server.py" --cert "$DATA/identity/cert.pem" \
        --key "$DATA/identity/key.pem" --server-id "$SID" --mode "$1" --code "$2" \
        >"$EOUT" 2>"$WORK/errors$E_N.err" &
    EPID=$!
    ALL_PIDS+=("$EPID")
    wait_until 20 "error_server.py to listen" grep -qs '^ready [0-9]*$' "$EOUT"
    point_session_at "127.0.0.1:$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$EOUT")"
}
stop_errors() {
    kill "$EPID" 2>/dev/null || true
    wait "$EPID" 2>/dev/null || true
    [[ ! -s $WORK/errors$E_N.err ]] || fail "error_server.py failed: $(cat "$WORK/errors$E_N.err")"
}

# The message error_server.py sends, as the CLI must show it (R-CLI-1 escaping).
SHOWN='\x1b[31mred\x1b[0m \x1b[2J\x1b]0;title\x07 csi\xc2\x9b1m end\x0asecond line'
assert_no_raw_controls() { # WHAT
    [[ "$ERR" != *$'\x1b'* && "$ERR" != *$'\x07'* && "$ERR" != *$'\xc2\x9b'* ]] ||
        fail "$1 printed raw control bytes: $(od -c <<<"$ERR" | head)"
}

# ---------------------------------------------------------------- R-ERR-3
# Connect refused with a known code: 9 is "busy" (R-SESS-11)...
start_errors connect 9
fy ls /
assert_rc 1 "ls against a server that answers Connect with Error 9"
assert_err_contains "is busy"
stop_errors
# ...and with codes no version defines, whatever their JSON form, "internal".
for code in 4242 -3 0 4294967305 '"9"' 9.0 null; do
    start_errors connect "$code"
    fy ls /
    assert_rc 1 "ls against a server that answers Connect with Error code $code"
    assert_err_contains "refused the connection: internal server error"
    assert_not_contains "$ERR" "busy" "stderr of ls against Error code $code"
    assert_no_raw_controls "ls against Error code $code"
    grep -q '^request 1$' "$EOUT" || fail "error_server.py never got the Connect"
    stop_errors
done

# ---------------------------------------------------------------- R-ERR-2
# An Error answering a request: its message is shown, escaped.
start_errors reply 4242
fy ls /
assert_rc 1 "ls answered with an Error"
assert_err_contains "$SHOWN"
assert_no_raw_controls "ls answered with an Error"
fy rm /somewhere
assert_rc 1 "rm answered with an Error"
assert_err_contains "$SHOWN"
assert_no_raw_controls "rm answered with an Error"
fy whoami
assert_rc 1 "whoami answered with an Error"
assert_err_contains "$SHOWN"
assert_no_raw_controls "whoami answered with an Error"
stop_errors
