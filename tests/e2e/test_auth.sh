#!/usr/bin/env bash
# Accounts, sessions and server pinning through the real CLI: wrong and
# unknown logins, sign-up rules, sessions across commands, passwd, logout,
# logout --all, stolen tokens, rate limits, and the identity pin (R-TLS-3/4).
source "$(dirname "$0")/lib.sh"

PW1='first password 1'
PW2='second password 2'
L=$WORK/local G=$WORK/got
mkdir -p "$L" "$G"
printf 'auth test file\n' >"$L/f.txt"

# A generous per-address login rate: this test makes many attempts from 127.0.0.1.
start_server --signup open --login-rate 1000
SID1=$SID ADDR1=$ADDR PORT1=$PORT DATA1=$DATA

new_client a1
signup alice "$PW1"

# R-AUTH-2: the password is never stored; the client's state is private.
grep -rqaF -- "$PW1" "$XDG_STATE_HOME" && fail "the password is stored in the client state"
assert_mode "$XDG_STATE_HOME/ferry" 700
assert_mode "$XDG_STATE_HOME/ferry/state.db" 600
assert_mode "$XDG_STATE_HOME/ferry/device/key.pem" 600
# R-STORE layout: the server's identity key is 0600 as well.
assert_mode "$DATA/identity/key.pem" 600

# A session works across commands with no password (stdin is /dev/null).
fy_ok put "$L/f.txt" /f.txt
fy_ok ls /
assert_out_line 'f.txt'
fy_ok get /f.txt "$G/f1.txt"
assert_same_file "$L/f.txt" "$G/f1.txt"
fy_ok mv /f.txt /g.txt
fy_ok rm /g.txt
fy_ok put "$L/f.txt" /f.txt

# ---------------------------------------------------------------- wrong logins (R-AUTH-5)
new_client a2
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin <<<'not the password'
assert_rc 1 "login with a wrong password"
assert_err_contains 'wrong user name or password'
wrong_pw_err=$ERR
fy ls /
assert_rc 1 "ls after a failed login"
assert_err_contains 'not logged in'
fy login --server "$ADDR" --server-id "$SID" --user nobody --password-stdin <<<'not the password'
assert_rc 1 "login of an unknown user"
assert_eq "$ERR" "$wrong_pw_err" "R-AUTH-5: unknown user and wrong password look the same"
# A name that breaks R-AUTH-1 is answered the same way (6.2 Login).
fy login --server "$ADDR" --server-id "$SID" --user 'Alice' --password-stdin <<<"$PW1"
assert_rc 1 "login with an upper-case name"
assert_eq "$ERR" "$wrong_pw_err" "login with an invalid name"
# An empty password is refused before anything is sent.
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin <<<''
assert_rc 2 "login with an empty password"

# The password never comes from argv (R-AUTH-2): there is no --password flag.
fy login --server "$ADDR" --server-id "$SID" --user alice --password "$PW1"
assert_rc 2 "login --password"
fy signup --server "$ADDR" --server-id "$SID" --user carol --password "$PW1"
assert_rc 2 "signup --password"
fy passwd --password "$PW1"
assert_rc 2 "passwd --password"

# ---------------------------------------------------------------- sign-up rules
new_client a3
fy signup --server "$ADDR" --server-id "$SID" --user alice --password-stdin <<<'another password'
assert_rc 1 "signup with a taken name"
assert_err_contains 'taken'
fy ls /
assert_rc 1 "ls after a refused signup"
fy signup --server "$ADDR" --server-id "$SID" --user 'Bad Name' --password-stdin <<<'long enough pw'
assert_rc 1 "signup with an invalid name (R-AUTH-1)"
fy signup --server "$ADDR" --server-id "$SID" --user shorty --password-stdin <<<'short'
assert_rc 1 "signup with a 5-byte password (R-AUTH-2)"
assert_err_contains 'too short'
# The refused sign-up did not touch alice: her password still works.
login alice "$PW1"
fy_ok logout

# ---------------------------------------------------------------- second device, passwd (R-AUTH-7)
use_client a2
login alice "$PW1"
fy_ok ls /
assert_out_line 'f.txt'

# A wrong old password changes nothing and revokes nothing.
use_client a1
fy passwd --password-stdin <<<$'not the old one\nwhatever password'
assert_rc 1 "passwd with a wrong old password"
assert_err_contains 'wrong user name or password'
use_client a2
fy_ok ls /

use_client a1
fy passwd --password-stdin <<<"$PW1"$'\n'"$PW2"
assert_rc 0 "passwd"
assert_out_contains 'password changed'
# This device stays logged in ...
fy_ok ls /
assert_out_line 'f.txt'
# ... the other device is refused and told to log in again.
use_client a2
fy ls /
assert_rc 1 "second device after passwd"
assert_err_contains 'session'
assert_err_contains 'ferry login'
fy put "$L/f.txt" /refused.txt
assert_rc 1 "put by the second device after passwd"
# The old password is gone, the new one works.
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin <<<"$PW1"
assert_rc 1 "login with the old password after passwd"
assert_err_contains 'wrong user name or password'
login alice "$PW2"
fy_ok ls /
assert_out_no_line 'refused.txt'

# ---------------------------------------------------------------- logout, logout --all
use_client a2
fy_ok logout
assert_out_contains 'logged out'
fy ls /
assert_rc 1 "ls after logout"
assert_err_contains 'not logged in'
fy logout
assert_rc 1 "logout when not logged in"
use_client a1
fy_ok ls / # the other device is unaffected by a plain logout

use_client a2
login alice "$PW2"
fy_ok logout --all
assert_out_contains 'logged out everywhere'
use_client a1
fy ls /
assert_rc 1 "a1 after logout --all on a2"
assert_err_contains 'session'
assert_err_contains 'ferry login'
login alice "$PW2"
fy_ok ls /

# ---------------------------------------------------------------- stolen token (R-SESS-6)
# The saved session, copied to another device (another key), is refused like
# an unknown token, and does not hurt the owner's session.
new_client thief
mkdir -p "$XDG_STATE_HOME/ferry"
cp "$WORK/clients/a1/state/ferry/state.db" "$XDG_STATE_HOME/ferry/state.db"
fy ls /
assert_rc 1 "ls with a session copied from another device"
assert_err_contains 'session'
assert_out_lacks 'f.txt'
use_client a1
fy_ok ls /
assert_out_line 'f.txt'

# ---------------------------------------------------------------- pinning (R-TLS-3, R-TLS-4)
wrong_id=$(printf 'A%.0s' {1..52})
new_client p1
fy login --server "$ADDR" --server-id "$wrong_id" --user alice --password-stdin <<<"$PW2"
assert_rc 1 "login with a wrong --server-id"
assert_err_contains 'IDENTITY MISMATCH'
assert_err_contains "expected: $wrong_id"
assert_err_contains "received: $SID"
fy ls /
assert_rc 1 "ls after a refused login"
# A malformed --server-id is a usage error.
fy login --server "$ADDR" --server-id TOOSHORT --user alice --password-stdin <<<"$PW2"
assert_rc 2 "login with a short --server-id"

# Not interactive and nothing pinned: refuse, and print the ID seen.
new_client p2
fy login --server "$ADDR" --user alice --password-stdin <<<"$PW2"
assert_rc 1 "login without a pin, not interactive"
assert_err_contains "$SID"
assert_err_contains '--server-id'
# ... and nothing was pinned silently: the second try refuses the same way.
fy login --server "$ADDR" --user alice --password-stdin <<<"$PW2"
assert_rc 1 "second login without a pin"
assert_err_contains "$SID"
fy ls /
assert_rc 1 "ls of a client that was never logged in"

# The ID@HOST:PORT form pins.
new_client p3
fy login --server "$SID@$ADDR" --user alice --password-stdin --device p3 <<<"$PW2"
assert_rc 0 "login with ID@HOST:PORT"
fy_ok ls /
assert_out_line 'f.txt'
# The known-server record is the pin next time (R-TLS-4): no --server-id needed.
fy_ok logout
fy login --server "$ADDR" --user alice --password-stdin --device p3 <<<"$PW2"
assert_rc 0 "login with the known-server pin"
# The wrong ID in the ID@ form is refused like --server-id.
fy login --server "$wrong_id@$ADDR" --user alice --password-stdin <<<"$PW2"
assert_rc 1 "login with a wrong ID@HOST:PORT"
assert_err_contains 'IDENTITY MISMATCH'

# ---------------------------------------------------------------- another server on the same port
stop_server
SRV_LISTEN=127.0.0.1:$PORT1 start_server --signup open --login-rate 1000
SID2=$SID
[[ "$SID2" != "$SID1" ]] || fail "a fresh data directory kept the server identity"
assert_eq "$ADDR" "$ADDR1" "restarted server address"
# a1 is logged in with the old pin: it refuses loudly and sends nothing.
use_client a1
fy ls /
assert_rc 1 "ls against a server with another identity"
assert_err_contains 'IDENTITY MISMATCH'
assert_err_contains "expected: $SID1"
assert_err_contains "received: $SID2"
fy put "$L/f.txt" /f2.txt
assert_rc 1 "put against a server with another identity"
assert_err_contains 'IDENTITY MISMATCH'
# The known-server pin of p3 refuses a login too: no silent re-pinning.
use_client p3
fy login --server "$ADDR" --user alice --password-stdin <<<"$PW2"
assert_rc 1 "login with a stale known-server pin"
assert_err_contains 'IDENTITY MISMATCH'
stop_server
# The mismatches changed neither pin nor session: with the real server back
# on that address, a1 works again without logging in, and p3's pin holds.
SRV_DATA=$DATA1 SRV_LISTEN=127.0.0.1:$PORT1 start_server --signup open --login-rate 1000
assert_eq "$SID" "$SID1" "identity of the original server after its restart"
use_client a1
fy_ok ls /
assert_out_line 'f.txt'
use_client p3
fy login --server "$ADDR" --user alice --password-stdin <<<"$PW2"
assert_rc 0 "login with the known-server pin, original server back"
stop_server

# ---------------------------------------------------------------- sign-up closed (R-AUTH-9), rate limit (R-AUTH-4)
start_server --signup closed --login-rate 2
new_client c1
fy signup --server "$ADDR" --server-id "$SID" --user carol --password-stdin <<<"$PW1"
assert_rc 1 "signup on a --signup closed server"
assert_err_contains 'closed'
fy ls /
assert_rc 1 "ls after a refused signup"
# Two attempts per minute per address: the third is refused before hashing.
for i in 1 2; do
    fy login --server "$ADDR" --server-id "$SID" --user carol --password-stdin <<<"$PW1"
    assert_rc 1 "login attempt $i of an unknown user"
    assert_err_contains 'wrong user name or password'
done
fy login --server "$ADDR" --server-id "$SID" --user carol --password-stdin <<<"$PW1"
assert_rc 1 "third login attempt with --login-rate 2"
assert_err_contains 'too many attempts'
stop_server

# The default is closed.
start_server
fy signup --server "$ADDR" --server-id "$SID" --user carol --password-stdin <<<"$PW1"
assert_rc 1 "signup on a server with the default --signup"
assert_err_contains 'closed'
stop_server
