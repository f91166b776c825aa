#!/usr/bin/env bash
# Issue 9, items 21 and 25: what a person at a terminal sees, on a real
# pseudo-terminal (tests/e2e/cli_pty.py types the answers).
# - The server's identity is confirmed before any password is asked for, as
#   ssh does (R-CLI-6); passwd checks the current password, and the new
#   one's length, before asking for the repeat (R-CLI-7).
# - ls -l shows sizes for people and a total line (R-CLI-14); the progress
#   line names the current file and shows "verifying"; a message never lands
#   on the progress line; Ctrl-C of a put, and of a get waiting to redial,
#   says how to go on, exits 4 and leaves the task (and a get's part file)
#   for `ferry resume` (R-CLI-13); `ferry help CMD` and -V.
source "$(dirname "$0")/lib.sh"

PTY=$FERRY_TESTS/e2e/cli_pty.py
TTY_N=0 TTY=''
# tty_run [STEP...] -- FERRY-ARGS...: ferry on a terminal; sets RC and TTY (what it showed).
tty_run() {
    TTY_N=$((TTY_N + 1))
    local out=$WORK/tty$TTY_N.out steps=()
    while [[ "$1" != -- ]]; do
        steps+=("$1")
        shift
    done
    shift
    LAST_CMD="[tty] ferry $*"
    RC=0
    python3 "$PTY" --out "$out" --timeout 60 "${steps[@]}" -- "$FERRY_BIN" "$@" || RC=$?
    TTY=$(tr -d '\r' <"$out")
    OUT=$TTY ERR=''
    assert_sanitizer_clean "$out" "$LAST_CMD"
    [[ "$RC" != 124 ]] || fail "$LAST_CMD: still running after 60 s; it showed: $(tail -c 600 <<<"$TTY")"
}
assert_tty_contains() { assert_contains "$TTY" "$1" "the terminal of $LAST_CMD"; }
assert_tty_lacks() { assert_not_contains "$TTY" "$1" "the terminal of $LAST_CMD"; }

start_server --signup open
new_client alice
PW='tty test password'

# ---------------------------------------------------------------- item 21: identity first
# A wrong pin: the mismatch is said, and no password is asked for. Before,
# "Password:" came first (here answered with Ctrl-C).
wrong=${SID:0:51}$([[ ${SID:51:1} == A ]] && echo B || echo A)
# (Ctrl-C may also reach it on its way out after the mismatch: exit 1 or 130.)
tty_run --expect '(Password:|MISMATCH)' --send '\x03' -- signup --server "$wrong@$ADDR" --user alice
[[ "$RC" == 1 || "$RC" == 130 ]] || fail "signup with a wrong pinned ID: exit $RC"
assert_tty_contains 'SERVER IDENTITY MISMATCH'
assert_tty_lacks 'Password:'
# An unknown server: its identity is shown and confirmed first, then the password.
tty_run --expect 'Trust it\? \[y/N\] ' --send 'y\n' --expect 'Password: ' --send "$PW\\n" \
    --expect 'Repeat password: ' --send "$PW\\n" -- signup --server "$ADDR" --user alice \
    --device tty
assert_rc 0 "signup confirming the identity on the terminal"
[[ "${TTY%%Trust it*}" != "$TTY" && "${TTY%%Password:*}" == *"Trust it"* ]] ||
    fail "the trust question did not come before the password prompt: $TTY"
assert_tty_contains "$SID"
# A signup password too short is said before it is typed twice.
new_client bob
tty_run --expect 'Password: ' --send 'short\n' -- signup --server "$SID@$ADDR" --user bob
assert_rc 2 "signup with a 5-byte password"
assert_tty_contains 'password too short (at least 8 bytes)'
assert_tty_lacks 'Repeat password'
use_client alice

# passwd: a wrong current password is said at once; before, the new one was
# asked for twice first.
tty_run --expect 'Current password: ' --send 'not the password\n' \
    --expect '(New password: |wrong)' --send 'whatever else\n' -- passwd
assert_rc 1 "passwd with a wrong current password"
assert_tty_contains 'wrong user name or password'
assert_tty_lacks 'New password'
# A new password that is too short is said before the repeat.
tty_run --expect 'Current password: ' --send "$PW\\n" --expect 'New password: ' --send 'short\n' \
    --expect '(Repeat new password: |too short)' --send 'short\n' -- passwd
assert_rc 2 "passwd with a 5-byte new password"
assert_tty_contains 'new password too short (at least 8 bytes)'
assert_tty_lacks 'Repeat new password'
NEWPW='a brand new tty password'
tty_run --expect 'Current password: ' --send "$PW\\n" --expect 'New password: ' \
    --send "$NEWPW\\n" --expect 'Repeat new password: ' --send "$NEWPW\\n" -- passwd
assert_rc 0 "passwd on the terminal"
assert_tty_contains 'password changed'
fy_ok logout
fy login --server "$ADDR" --user alice --password-stdin <<<"$NEWPW"
assert_rc 0 "login with the new password"

# ---------------------------------------------------------------- item 25: ls -l
L=$WORK/local
mkdir -p "$L"
cd "$L"
head -c $((3 << 20)) /dev/urandom >three.bin
printf 'small\n' >small.txt
fy_ok put three.bin small.txt /d/
tty_run -- ls -l /d
assert_rc 0
assert_tty_contains '3.0 MiB'
assert_tty_contains 'total 2 files, 0 folders, 3.0 MiB'
assert_tty_lacks "$((3 << 20))"
tty_run -- ls -l --bytes /d
assert_tty_contains " $((3 << 20)) "
assert_tty_contains "total 2 files, 0 folders, $(((3 << 20) + 6)) bytes"
# Not a terminal: exact bytes for programs.
fy_ok ls -l /d
assert_out_contains " $((3 << 20)) "

# ---------------------------------------------------------------- the progress line
head -c $((8 << 20)) /dev/urandom >slow.bin
printf 'gone soon\n' >vanish.txt
# The name of the file on the line; a file that vanished mid-run is reported
# on a line of its own, never glued to the progress line; "verifying" while
# the server makes it durable.
tty_run --expect 'files 0/2  slow\.bin' --shell "rm -f '$L/vanish.txt'" -- \
    put --bwlimit 4M slow.bin vanish.txt /p/
assert_rc 3 "put with a file removed mid-run"
assert_tty_contains 'slow.bin'
assert_tty_contains 'verifying'
raw=$(<"$WORK/tty$TTY_N.out")
glued=$(python3 -c 'import re,sys; d=open(sys.argv[1],"rb").read()
print(sum(1 for m in re.finditer(rb"ferry: ", d) if not (d[:m.start()].endswith(b"\r\x1b[K") or d[:m.start()].endswith(b"\n") or m.start() == 0)))' \
    "$WORK/tty$TTY_N.out")
[[ "$glued" == 0 ]] || fail "$glued message(s) printed onto the progress line: $(cat -v <<<"$raw" | tail -c 800)"
assert_tty_contains 'vanish.txt: No such file or directory'

# ---------------------------------------------------------------- Ctrl-C
head -c $((6 << 20)) /dev/urandom >ctrlc.bin
tty_run --expect 'files 0/1  ctrlc\.bin' --send '\x03' -- put --bwlimit 2M ctrlc.bin /ctrlc.bin
assert_rc 4 "put interrupted by Ctrl-C"
assert_tty_contains "ferry resume"
assert_tty_contains 'Run the same command again'
fy_ok resume --list
assert_out_contains 'ferry put --bwlimit 2M ctrlc.bin /ctrlc.bin'
fy_ok resume
fy_ok get /ctrlc.bin "$WORK/ctrlc.back"
assert_same_file ctrlc.bin "$WORK/ctrlc.back"
fy_ok resume --list
assert_out_line 'nothing to resume'

# Ctrl-C of a get. A relay cuts the download after 8 MiB; while get waits to
# redial, the server is frozen (SIGSTOP), so the download is certainly
# unfinished when Ctrl-C comes, and stopping must not wait for an answer
# from the server. What was received is kept in the part file; the same
# command, through `ferry resume`, finishes.
need_cutrelay
head -c $((96 << 20)) /dev/urandom >ctrlc-big.bin
fy_ok put -q ctrlc-big.bin /ctrlc-big.bin
mkdir -p "$WORK/gc"
start_relay --cut-s2c $((8 << 20))
tty_run --expect 'reconnecting in' --shell "kill -STOP $SERVER_PID" --send '\x03' -- get /ctrlc-big.bin "$WORK/gc/big.bin"
kill -CONT "$SERVER_PID"
stop_relay
point_session_at "$ADDR"
assert_rc 4 "get interrupted by Ctrl-C"
assert_tty_contains 'Run the same command again'
assert_tty_contains "ferry resume"
assert_no_file "$WORK/gc/big.bin"
parts=("$WORK"/gc/.ferry-*.part)
[[ -f "${parts[0]}" ]] || fail "no part file kept after Ctrl-C of a get: $(ls -la "$WORK/gc")"
fy_ok resume --list
assert_out_contains "ferry get /ctrlc-big.bin $WORK/gc/big.bin"
fy_ok resume
assert_same_file ctrlc-big.bin "$WORK/gc/big.bin"
parts=("$WORK"/gc/.ferry-*.part)
[[ ! -e "${parts[0]}" ]] || fail "a part file outlived the finished get: ${parts[*]}"
fy_ok resume --list
assert_out_line 'nothing to resume'

# ---------------------------------------------------------------- help and version
fy_ok help put
assert_out_contains 'usage: ferry put'
fy_ok help serve
assert_out_contains 'usage: ferry serve'
fy help nosuchcommand
assert_rc 2 "ferry help of an unknown command"
fy_ok -V
assert_out_contains 'ferry 0.'
fy_ok --version
assert_out_contains 'protocol'
fy_ok --help
assert_out_contains '-V, --version'
assert_out_contains 'ferry help COMMAND'

stop_server
