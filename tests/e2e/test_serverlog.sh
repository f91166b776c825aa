#!/usr/bin/env bash
# The server log (docs/serverlog.md, R-LOG): at the default level, one
# greppable key=value line for each sign-up, login (ok and failed, with user,
# address and device), password change, logout, refused connection and
# transfer; peer-chosen values escaped; never a password or a token; and
# refusals limited per second with a count of what was left out. Also what a
# client says when the server is full (R-SESS-9, R-SESS-11): "busy", not
# "connection reset by peer"; and the usage errors of the caps' flags.
source "$(dirname "$0")/lib.sh"

# The caps' flags: out of range, or a reserve that is all of --max-conns, is a
# usage error (exit 2) that starts nothing.
for bad in '--max-conns-per-user 0' '--max-conns-per-ip 0' '--max-conns-per-ip x' \
    '--reserve-conns -1' '--max-conns 10 --reserve-conns 10' '--reserve-conns 1024'; do
    # shellcheck disable=SC2086 # split the flags and their values
    FY_TIMEOUT=5 FY_ALLOW_TIMEOUT=1 fy serve --data "$WORK/never" --listen 127.0.0.1:0 $bad
    assert_rc 2 "ferry serve $bad"
done
assert_no_file "$WORK/never"

start_server --signup open --login-rate 1000
LOG=$SERVER_ERR
DEV='[A-Z2-7]{52}'
L=$WORK/local G=$WORK/got
mkdir -p "$L" "$G"
PW1='serverlog password one'
PW2='serverlog password two'

# The lines of the log matching an extended regex; at least one is required.
log_has() { # REGEX WHAT
    grep -qE -- "$1" "$LOG" || fail "$2: no log line matches /$1/ in: $(tail -n 20 "$LOG")"
}
# The device ID the log gave the current client's last line of an event.
log_device() { # EVENT
    grep -E "event=$1 " "$LOG" | tail -n 1 | sed -n 's/.* device=\([A-Z2-7]*\).*/\1/p'
}

# ---------------------------------------------------------------- accounts (R-LOG-4)
new_client alice
signup alice "$PW1"
log_has "^ferry serve: level=info event=signup result=ok user=alice ip=127\.0\.0\.1 device=$DEV device_name=alice$" \
    "sign-up"
ALICE_DEV=$(log_device signup)

new_client laptop
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin --device laptop <<<'not the password'
assert_rc 1 "login with a wrong password"
log_has "^ferry serve: level=notice event=login result=fail reason=bad-password user=alice ip=127\.0\.0\.1 device=$DEV device_name=laptop$" \
    "failed login"
LAPTOP_DEV=$(log_device login)
[[ "$LAPTOP_DEV" != "$ALICE_DEV" ]] || fail "two devices logged with the same device ID"
fy login --server "$ADDR" --server-id "$SID" --user nobody --password-stdin --device laptop <<<'whatever it is'
assert_rc 1 "login of an unknown user"
log_has "event=login result=fail reason=unknown-user user=nobody ip=127\.0\.0\.1 device=$LAPTOP_DEV " \
    "login of an unknown user"
# A name that breaks R-AUTH-1, with a quote, a space and a control byte: quoted and escaped.
fy login --server "$ADDR" --server-id "$SID" --user $'Ev"il\x01 name' --password-stdin --device laptop <<<'whatever it is'
assert_rc 1 "login with an invalid name"
log_has 'event=login result=fail reason=invalid-name user="Ev\\"il\\x01 name" ip=' "login with an invalid name"
login alice "$PW1"
log_has "^ferry serve: level=info event=login result=ok user=alice ip=127\.0\.0\.1 device=$LAPTOP_DEV device_name=laptop$" \
    "login"

# ---------------------------------------------------------------- transfers (R-LOG-5)
printf 'a small file\n' >"$L/notes.txt"
head -c $((3 << 20)) /dev/urandom >"$L/big file.bin"
fy_ok put "$L/notes.txt" /notes.txt
log_has "^ferry serve: level=info event=upload result=ok user=alice ip=127\.0\.0\.1 device=$LAPTOP_DEV path=/notes\.txt bytes=13 seconds=[0-9]+\.[0-9]{3}$" \
    "upload of a small file"
fy_ok put "$L/big file.bin" "/big file.bin"
log_has "event=upload result=ok user=alice ip=127\.0\.0\.1 device=$LAPTOP_DEV path=\"/big file\.bin\" bytes=3145728 seconds=" \
    "chunked upload, a name with a space"
fy_ok get /notes.txt "$G/notes.txt"
log_has "^ferry serve: level=info event=download result=ok user=alice ip=127\.0\.0\.1 device=$LAPTOP_DEV path=/notes\.txt bytes=13 seconds=[0-9]+\.[0-9]{3}$" \
    "download"
fy_ok get "/big file.bin" "$G/big.bin"
assert_same_file "$L/big file.bin" "$G/big.bin"
log_has "event=download result=ok user=alice .* path=\"/big file\.bin\" bytes=3145728 " "download of a chunked file"

# R-LOG-5 for many downloads served in one pass (the folder's path is kept
# within one read of the tree): each line names its own file in its own
# folder; after a move, the next get names the folder as it is now, not as
# it was when its path was kept. R-LOG-7: each line is in the log once the
# get has returned.
mkdir -p "$L/tree/a" "$L/tree/b/c"
for i in $(seq 1 30); do
    printf 'a%s' "$i" >"$L/tree/a/f$i"
    printf 'c%s' "$i" >"$L/tree/b/c/g$i"
done
printf 'top' >"$L/tree/top"
fy_ok put -q -r "$L/tree" /tree
dl_paths_since() { # LINE: the paths of the download lines after line LINE, sorted
    tail -n +"$(($1 + 1))" "$LOG" | sed -n 's/.* event=download result=ok .* path=\([^ ]*\) bytes=.*/\1/p' | sort
}
want_paths() { # A-FOLDER C-FOLDER
    { printf '/tree/top\n'; for i in $(seq 1 30); do printf '%s/f%s\n%s/g%s\n' "$1" "$i" "$2" "$i"; done; } | sort
}
before=$(wc -l <"$LOG")
fy_ok get -q -r /tree "$G/tree1"
[[ "$(dl_paths_since "$before")" == "$(want_paths /tree/a /tree/b/c)" ]] ||
    fail "download lines of a tree: $(dl_paths_since "$before" | head -n 5)"
# The last line of this get names a file of /tree/b/c, the first of the next
# one a file of the same folder, moved meanwhile.
fy_ok get -q -r /tree/b "$G/b1"
fy_ok mv /tree/b /tree/moved
before=$(wc -l <"$LOG")
fy_ok get -q -r /tree/moved "$G/b2"
[[ "$(dl_paths_since "$before")" == "$(want_paths /tree/a /tree/moved/c | grep /tree/moved/)" ]] ||
    fail "download lines after a move: $(dl_paths_since "$before" | head -n 5)"

# ---------------------------------------------------------------- passwd, logout, revocation
fy passwd --password-stdin <<<"$PW1"$'\n'"$PW2"
assert_rc 0 "passwd"
log_has "^ferry serve: level=info event=passwd result=ok user=alice ip=127\.0\.0\.1 device=$LAPTOP_DEV revoked=0$" \
    "password change"
fy passwd --password-stdin <<<"$PW1"$'\n'"$PW2"
assert_rc 1 "passwd with a wrong old password"
log_has "event=passwd result=fail reason=bad-password user=alice ip=127\.0\.0\.1 device=$LAPTOP_DEV$" \
    "failed password change"
TOKEN=$(sqlite3 "$XDG_STATE_HOME/ferry/state.db" 'SELECT token FROM session')
[[ ${#TOKEN} -eq 43 ]] || fail "no session token to look for in the log"
fy_ok logout --all
log_has "^ferry serve: level=info event=logout result=ok user=alice ip=127\.0\.0\.1 device=$LAPTOP_DEV scope=all revoked=0$" \
    "logout --all"

# R-LOG-1: no password and no token, in any form, ever reaches the log.
for secret in "$PW1" "$PW2" 'not the password' 'whatever it is' "$TOKEN"; do
    ! grep -qF -- "$secret" "$LOG" || fail "the server log holds a secret: $secret"
done
stop_server
LINES_FIRST=$(grep -c ' event=' "$LOG")
log "first server: $LINES_FIRST event lines"

# ---------------------------------------------------------------- refused connections (R-LOG-3)
# One place in all, held by a plain TCP connection that never starts TLS.
# The server accepts in arrival order, so it is taken before any later one.
start_server --signup open --max-conns 1 --auth-timeout 600 --idle-timeout 600
LOG=$SERVER_ERR
use_client alice
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
try_login() {
    fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin --device alice <<<"$PW1"
}

# R-SESS-9, R-SESS-11: the client is told the server is busy.
try_login
[[ "$RC" != 0 ]] || fail "login on a full server succeeded"
assert_err_contains "is busy"
assert_err_contains "try again later"
assert_not_contains "$ERR" "reset by peer" "stderr of login on a full server"
log_has "^ferry serve: level=notice event=refused reason=server-full ip=127\.0\.0\.1 user=- reply=error conns=1$" \
    "refused connection"

# A burst of refused connections: at most SRV_LOG_BURST (10) lines a second,
# the rest counted in "event=suppressed" lines; every refusal is accounted for.
BURST=400
before=$(grep -c 'event=refused' "$LOG")
for ((i = 0; i < BURST; i++)); do
    exec 4<>"/dev/tcp/127.0.0.1/$PORT" && exec 4>&-
done
# The held connection's once-a-second tick writes the count of its last second.
refusals_seen() {
    local lines suppressed
    lines=$(grep -c 'event=refused' "$LOG")
    suppressed=$(sed -n 's/.*event=suppressed what=refused count=\([0-9]*\).*/\1/p' "$LOG" | awk '{ n += $1 } END { print n + 0 }')
    ((lines + suppressed == before + BURST))
}
wait_until 30 "every refusal of the burst to be logged or counted" refusals_seen
lines=$(($(grep -c 'event=refused' "$LOG") - before))
log "burst of $BURST refused connections: $lines lines, the rest counted as suppressed"
((lines < BURST)) || fail "no refusal line was suppressed in a burst of $BURST"
grep -qE '^ferry serve: level=notice event=suppressed what=refused count=[0-9]+$' "$LOG" ||
    fail "no well-formed suppressed line"

# Past the refusal budget (4 per address waiting for their first frame) the
# socket is closed before TLS, and the client says so without blaming the peer.
exec 5<>"/dev/tcp/127.0.0.1/$PORT" 6<>"/dev/tcp/127.0.0.1/$PORT" 7<>"/dev/tcp/127.0.0.1/$PORT" \
    8<>"/dev/tcp/127.0.0.1/$PORT"
try_login
[[ "$RC" != 0 ]] || fail "login past the refusal budget succeeded"
assert_not_contains "$ERR" "reset by peer" "stderr of login past the refusal budget"
# The held four may have been dropped already on a slow machine: the server's
# line for this login says which answer the client got.
last=$(grep 'event=refused' "$LOG" | tail -n 1)
case "$last" in
*reply=close*) assert_err_contains "the server closed the connection (it may be busy)" ;;
*reply=error*) assert_err_contains "is busy" ;;
*) fail "unexpected last refusal line: $last" ;;
esac
exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&-
stop_server
