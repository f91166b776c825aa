#!/usr/bin/env bash
# Issue 9, item 23: administration without restarting with open sign-up.
# `ferry serve user|device` act on the data directory while the server runs
# (R-ADMIN-4..6); the client has `ferry whoami` and `ferry devices`
# (protocol 1.2, R-ADMIN-7..10).
source "$(dirname "$0")/lib.sh"

PW1='alice password 1'
PW2='alice password 2'
PW3='alice password 3'
L=$WORK/local
mkdir -p "$L"
printf 'hello\n' >"$L/a.txt"

# Sign-up closed: accounts come from the operator. Many logins from one address.
start_server --login-rate 1000
adm() { fy serve "$@" --data "$DATA"; }

# ---------------------------------------------------------------- user add, while the server runs
adm user add alice --password-stdin <<<"$PW1"
assert_rc 0 "user add alice"
assert_out_contains "user alice added"
new_client lap
login alice "$PW1"
fy_ok put "$L/a.txt" /a.txt

# R-ADMIN-7: whoami shows the server, the user, this device and the session's age.
fy_ok whoami
assert_out_line "server   $ADDR"
assert_out_line "id       $SID"
assert_out_line "user     alice"
assert_out_contains "(lap)"
assert_out_contains "session  "
assert_out_contains " old, since "
LAP_ID=$(sed -n 's/^device   \([A-Z2-7]\{52\}\) (lap)$/\1/p' <<<"$OUT")
[[ -n "$LAP_ID" ]] || fail "no device ID in: $OUT"

# ---------------------------------------------------------------- devices, as the user sees them
new_client desk
login alice "$PW1"
fy_ok devices
assert_out_contains "$LAP_ID  yes"
assert_out_contains "* this device"
[[ "$(grep -c '^\* [A-Z2-7]\{52\}  yes .*  desk$' <<<"$OUT")" == 1 ]] ||
    fail "this device is not marked in: $OUT"
[[ "$(grep -c '^  [A-Z2-7]\{52\}  yes .*  lap$' <<<"$OUT")" == 1 ]] || fail "lap not listed: $OUT"
DESK_ID=$(sed -n 's/^\* \([A-Z2-7]\{52\}\) .*/\1/p' <<<"$OUT")
# The operator sees the same two.
adm device list alice
assert_rc 0 "device list alice"
assert_out_contains "$LAP_ID  lap"
assert_out_contains "$DESK_ID  desk"

# R-ADMIN-9: this device logs out with logout, not revoke.
fy devices revoke "$DESK_ID"
assert_rc 1 "revoking this device"
assert_err_contains "this device"
fy devices revoke no-such-device
assert_rc 1 "revoking an unknown device"
assert_err_contains "no device 'no-such-device'"
fy devices revoke
assert_rc 2 "devices revoke without a device"
# Revoked by name: the laptop's session ends, its next command says so.
fy_ok devices revoke lap
assert_out_contains "device $LAP_ID revoked"
fy_ok devices
assert_out_lacks "$LAP_ID"
use_client lap
fy ls /
assert_rc 1 "ls on a revoked device"
assert_err_contains "has ended"
# It may log in again with the password; by ID (lower case too) it is revoked again.
login alice "$PW1"
use_client desk
fy_ok devices revoke "${LAP_ID,,}"
use_client lap
fy whoami
assert_rc 1 "whoami on a revoked device"
assert_err_contains "has ended"
login alice "$PW1"

# ---------------------------------------------------------------- device revoke by the operator
adm device revoke alice lap
assert_rc 0 "device revoke alice lap"
assert_out_contains "device $LAP_ID of alice revoked"
fy ls /
assert_rc 1 "ls after the operator revoked the device"
assert_err_contains "has ended"
adm device revoke alice lap
assert_rc 1 "revoking a device that is gone"
assert_err_contains "alice has no device 'lap'"
login alice "$PW1"

# Two devices with one name: the name is ambiguous, the ID is not.
new_client lap2
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin --device lap <<<"$PW1"
assert_rc 0 "a second device named lap"
adm device revoke alice lap
assert_rc 2 "revoking an ambiguous name"
assert_err_contains "2 devices named 'lap'"
adm device revoke alice "$LAP_ID"
assert_rc 0 "revoking by ID"
use_client lap2
fy_ok ls /

# ---------------------------------------------------------------- R-ADMIN-5: disable and enable
use_client lap
login alice "$PW1"
adm user disable alice
assert_rc 0 "user disable alice"
assert_out_contains "user alice disabled"
fy ls /
assert_rc 1 "ls of a disabled user"
assert_err_contains "has ended"
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin --device lap <<<"$PW1"
assert_rc 1 "login of a disabled user"
disabled_err=$ERR
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin --device lap \
    <<<'not the password'
assert_eq "$disabled_err" "$ERR" "R-ADMIN-5: a disabled user's login looks like a wrong password"
adm user list
assert_out_contains "alice                disabled"
adm user disable alice
assert_rc 0 "disabling twice"
assert_out_contains "was disabled already"
adm user enable alice
assert_rc 0 "user enable alice"
login alice "$PW1"
fy_ok get /a.txt "$WORK/a-copy.txt"
assert_same_file "$L/a.txt" "$WORK/a-copy.txt"
adm user enable alice
assert_out_contains "was not disabled"

# ---------------------------------------------------------------- passwd
adm user passwd alice --password-stdin <<<"$PW2"
assert_rc 0 "user passwd alice"
fy ls /
assert_rc 1 "ls after the operator set a new password"
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin --device lap <<<"$PW1"
assert_rc 1 "login with the old password"
login alice "$PW2"
# While disabled, passwd sets the password enable brings back.
adm user disable alice
adm user passwd alice --password-stdin <<<"$PW3"
assert_out_contains "stays disabled"
fy login --server "$ADDR" --server-id "$SID" --user alice --password-stdin --device lap <<<"$PW3"
assert_rc 1 "login with the new password of a disabled user"
adm user enable alice
login alice "$PW3"

# ---------------------------------------------------------------- mistakes
adm user add alice --password-stdin <<<"$PW1"
assert_rc 1 "adding an existing user"
assert_err_contains "user alice exists already"
adm user add 'Bad!' --password-stdin <<<"$PW1"
assert_rc 2 "adding an invalid name"
assert_err_contains "is not a user name"
adm user add bob --password-stdin <<<'short'
assert_rc 2 "a short password"
assert_err_contains "8 to 1024 bytes"
adm user disable nobody
assert_rc 1 "disabling an unknown user"
assert_err_contains "no user nobody"
adm user frobnicate alice
assert_rc 2 "an unknown verb"
adm user add
assert_rc 2 "user add without a name"
fy serve user list --data "$WORK/nowhere"
assert_rc 1 "a missing data directory"
assert_err_contains "no data directory"
mkdir -m 700 "$WORK/empty"
fy serve user list --data "$WORK/empty"
assert_rc 1 "a directory without a database"
assert_err_contains "no ferry database"
fy_ok serve user --help
assert_out_contains "ferry serve user add NAME"
fy_ok serve device --help
assert_out_contains "ferry serve device revoke USER DEVICE"
# --config gives the data directory.
printf 'data = %s\n' "$DATA" >"$WORK/serve.conf"
fy_ok serve user list --config "$WORK/serve.conf"
assert_out_contains "alice "

# ---------------------------------------------------------------- safe while the server writes
# Uploads commit while the operator adds users: both land, the database is whole.
mkdir -p "$L/many"
for i in $(seq 1 300); do printf 'file %d\n' "$i" >"$L/many/f$i.txt"; done
use_client lap
fy put -r "$L/many" /many &
put_pid=$!
for u in u1 u2 u3 u4 u5; do
    adm user add "$u" --password-stdin <<<"$u password"
    assert_rc 0 "user add $u during uploads"
done
wait "$put_pid" || fail "put -r during user adds failed"
fy_ok ls /many
assert_eq "$(grep -c '^f' <<<"$OUT")" 300 "files uploaded during user adds"
adm user list
for u in u1 u2 u3 u4 u5; do
    assert_out_contains "$u "
done
[[ "$(sqlite3 "$DATA/ferry.db" 'PRAGMA integrity_check')" == ok ]] || fail "integrity_check"
new_client u3dev
login u3 'u3 password'
fy_ok whoami
assert_out_line "user     u3"
stop_server
