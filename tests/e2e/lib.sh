# shellcheck shell=bash
# Shared helpers for ferry's end-to-end tests. Sourced by every tests/e2e/test_*.sh.
#
# Each test gets one private work directory (mktemp -d) that holds the
# servers' data directories, every client's XDG state and all captured
# output; it is removed on exit (kept when FERRY_E2E_KEEP=1 or on failure when
# FERRY_E2E_KEEP_FAILED=1). Servers are real `ferry serve` processes on
# 127.0.0.1 with an ephemeral port, stopped by PID; clients are the real CLI.
#
# Conventions:
#   fy ARGS...        runs `ferry ARGS...` as the current client; never fails
#                     by itself, sets RC, OUT and ERR (stdout/stderr text); a
#                     sanitizer report from the client fails the test at its end.
#   fy_ok ARGS...     the same, and the exit code must be 0.
#   assert_*          check something and call fail with a precise message.
#   check ASSERTION   the assertion's failure is counted, the test goes on.
#   start_server ...  starts `ferry serve` (SRV_DATA / SRV_LISTEN override the
#                     data directory and listen address), sets ADDR, PORT, SID,
#                     DATA, SERVER_PID, SERVER_OUT, SERVER_ERR.
#   stop_server [SIG] SIGTERM (or SIG), bounded wait, exit 0 and a clean stderr.
#   new_client NAME   a device of its own (XDG_STATE_HOME), made current.

set -euo pipefail
set -E
umask 022

if [[ -z "${FERRY_BIN:-}" ]]; then
    FERRY_BIN="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/test/ferry"
fi
[[ -x "$FERRY_BIN" ]] || {
    echo "FAIL: FERRY_BIN ($FERRY_BIN) is not an executable" >&2
    exit 1
}
FERRY_TESTS=${FERRY_TESTS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LC_ALL=C
export TZ=UTC

TEST_NAME="$(basename "$0" .sh)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ferry-e2e-$TEST_NAME.XXXXXX")"
export HOME="$WORK/home"
export XDG_DATA_HOME="$WORK/home/.local/share"
export XDG_CONFIG_HOME="$WORK/home/.config"
export XDG_STATE_HOME="$WORK/home/.local/state"
mkdir -p "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" "$XDG_STATE_HOME"
# Nothing in a test reads the terminal: non-interactive by construction (R-TLS-4).
exec </dev/null

SANITIZER_RE='ERROR: AddressSanitizer|WARNING: ThreadSanitizer|runtime error:|LeakSanitizer'
SERVER_N=0
CMD_N=0
ALL_PIDS=()   # every process we started in the background, for cleanup
RC=0 OUT='' ERR='' LAST_CMD=''
SERVER_PID='' SERVER_OUT='' SERVER_ERR='' ADDR='' PORT='' SID='' DATA=''
CLIENT=''
T_START=$EPOCHREALTIME
SOFT_FAILS=0
CLIENT_SAN_REPORTS=0

log() { printf '# %s\n' "$*" >&2; }

# Prints the failure, where it happened, and what the last ferry command said.
fail() {
    local i
    printf 'FAIL [%s]: %s\n' "$TEST_NAME" "$*" >&2
    # Call chain: FUNCNAME[i] was called from BASH_SOURCE[i+1]:BASH_LINENO[i].
    for ((i = 0; i + 1 < ${#FUNCNAME[@]}; i++)); do
        printf '    %s called at %s:%s\n' "${FUNCNAME[$i]}" "$(basename "${BASH_SOURCE[$((i + 1))]}")" \
            "${BASH_LINENO[$i]}" >&2
    done
    if [[ -n "$LAST_CMD" ]]; then
        printf '  last command: %s (exit %s)\n' "$LAST_CMD" "$RC" >&2
        [[ -n "$OUT" ]] && printf '  stdout:\n%s\n' "$(head -c 3000 <<<"$OUT" | sed 's/^/    /')" >&2
        [[ -n "$ERR" ]] && printf '  stderr:\n%s\n' "$(head -c 3000 <<<"$ERR" | sed 's/^/    /')" >&2
    fi
    if [[ -n "$SERVER_PID" ]]; then
        local st
        st=$(proc_state "$SERVER_PID")
        [[ -n "$st" && "$st" != Z ]] ||
            printf '  ferry serve (pid %s) is no longer running!\n' "$SERVER_PID" >&2
    fi
    if [[ -n "$SERVER_ERR" && -s "$SERVER_ERR" ]]; then
        printf '  server stderr (%s, last 30 lines):\n' "$SERVER_ERR" >&2
        tail -n 30 "$SERVER_ERR" | sed 's/^/    /' >&2
    fi
    exit 1
}

on_err() {
    local rc=$? line=$1 cmd=$2
    printf 'FAIL [%s]: unexpected failure (exit %s) of: %s\n    at %s:%s\n' "$TEST_NAME" "$rc" \
        "$cmd" "$(basename "${BASH_SOURCE[1]:-$0}")" "$line" >&2
    exit 1
}
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

cleanup() {
    local rc=$? pid
    trap - ERR
    set +e
    for pid in "${ALL_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    if ((rc == 0 && SOFT_FAILS > 0)); then
        printf 'FAIL [%s]: %d check(s) failed (see above)\n' "$TEST_NAME" "$SOFT_FAILS" >&2
        rc=1
    fi
    if [[ "${FERRY_E2E_KEEP:-0}" == 1 || ($rc -ne 0 && "${FERRY_E2E_KEEP_FAILED:-0}" == 1) ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    if ((rc == 0)); then
        printf 'PASS [%s] in %s s\n' "$TEST_NAME" "$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------- assertions

# check ASSERTION ARGS...: runs one assertion; if it fails, the failure is
# reported and counted, the test goes on and exits 1 at the end. For checks
# that a known ferry bug breaks, so that it does not hide the checks after it.
check() {
    if ! ("$@"); then
        SOFT_FAILS=$((SOFT_FAILS + 1))
    fi
}

assert_rc() { # EXPECTED [WHAT]
    [[ "$RC" == "$1" ]] || fail "${2:-$LAST_CMD}: expected exit $1, got $RC"
}
assert_eq() { # ACTUAL EXPECTED WHAT
    [[ "$1" == "$2" ]] || fail "$3: expected '$2', got '$1'"
}
assert_contains() { # HAYSTACK NEEDLE WHAT
    [[ "$1" == *"$2"* ]] || fail "$3: expected to contain '$2', got: $(head -c 1500 <<<"$1")"
}
assert_not_contains() { # HAYSTACK NEEDLE WHAT
    [[ "$1" != *"$2"* ]] || fail "$3: must not contain '$2', got: $(head -c 1500 <<<"$1")"
}
assert_out_contains() { assert_contains "$OUT" "$1" "stdout of $LAST_CMD"; }
assert_err_contains() { assert_contains "$ERR" "$1" "stderr of $LAST_CMD"; }
assert_out_lacks() { assert_not_contains "$OUT" "$1" "stdout of $LAST_CMD"; }
# A line of stdout equal to LINE.
assert_out_line() {
    grep -qxF -- "$1" <<<"$OUT" || fail "stdout of $LAST_CMD: no line '$1' in: $(head -c 1500 <<<"$OUT")"
}
assert_out_no_line() {
    ! grep -qxF -- "$1" <<<"$OUT" || fail "stdout of $LAST_CMD: unexpected line '$1'"
}
assert_same_file() { # A B
    [[ -f "$2" ]] || fail "$2 does not exist (expected a copy of $1)"
    cmp -s -- "$1" "$2" || fail "content differs: $1 vs $2"
}
# Modification times equal to the second (stat %Y) and to the nanosecond (%y).
assert_same_mtime() { # ORIGINAL COPY
    local a b
    a=$(stat -c %Y -- "$1") b=$(stat -c %Y -- "$2")
    [[ "$a" == "$b" ]] || fail "mtime (s) of $2 is $b, expected $a as $1"
    a=$(stat -c %y -- "$1") b=$(stat -c %y -- "$2")
    [[ "$a" == "$b" ]] || fail "mtime (ns) of $2 is $b, expected $a as $1"
}
assert_mode() { # FILE OCTAL
    local m
    m=$(stat -c %a -- "$1")
    [[ "$m" == "$2" ]] || fail "mode of $1 is $m, expected $2"
}
assert_no_file() { # PATH
    [[ ! -e "$1" && ! -L "$1" ]] || fail "$1 must not exist"
}
# Fails if a file (a process's stderr) contains sanitizer output.
assert_sanitizer_clean() { # FILE WHAT
    if grep -qE "$SANITIZER_RE" "$1" 2>/dev/null; then
        printf 'sanitizer report in %s (%s):\n' "$1" "$2" >&2
        grep -E -A 30 "$SANITIZER_RE" "$1" | head -n 60 | sed 's/^/    /' >&2
        fail "sanitizer report from $2"
    fi
}
# Valid JSON on stdin.
assert_json() { # WHAT
    python3 -c 'import json,sys; json.load(sys.stdin)' <<<"$OUT" 2>/dev/null ||
        fail "$1: not valid JSON: $(head -c 1500 <<<"$OUT")"
}

# ---------------------------------------------------------------- processes

# State of a child: R/S/D/..., Z once it exited (not yet reaped), '' once gone.
proc_state() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    s=${s##*) } # after "pid (comm) "
    printf '%s' "${s%% *}"
}

# Waits (bounded) until child PID has exited; sets WAIT_RC to its exit status.
# On timeout it kills the child and fails.
wait_exit() { # PID TIMEOUT_S WHAT
    local pid=$1 steps=$(($2 * 20)) i st
    for ((i = 0; i < steps; i++)); do
        st=$(proc_state "$pid")
        [[ -z "$st" || "$st" == Z ]] && break
        sleep 0.05
    done
    st=$(proc_state "$pid")
    if [[ -n "$st" && "$st" != Z ]]; then
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        fail "$3 (pid $pid) did not exit within $2 s"
    fi
    WAIT_RC=0
    wait "$pid" 2>/dev/null || WAIT_RC=$? # no "Killed" job notice
}

# Polls until COMMAND succeeds, at most TIMEOUT_S seconds, in 0.05 s steps.
wait_until() { # TIMEOUT_S WHAT COMMAND...
    local steps=$(($1 * 20)) what=$2 i
    shift 2
    for ((i = 0; i < steps; i++)); do
        "$@" && return 0
        sleep 0.05
    done
    fail "timed out after ${steps}x0.05 s waiting for: $what"
}

# ---------------------------------------------------------------- server

_server_ready() {
    grep -qs '^listening on ' "$SERVER_OUT" && return 0
    local st
    st=$(proc_state "$SERVER_PID")
    if [[ -z "$st" || "$st" == Z ]]; then
        local rc=0
        wait "$SERVER_PID" || rc=$?
        fail "ferry serve exited with $rc before it was ready: $(cat "$SERVER_ERR")"
    fi
    return 1
}

# start_server [FLAGS...]: SRV_DATA and SRV_LISTEN override the defaults (a
# fresh data directory, 127.0.0.1:0).
start_server() {
    SERVER_N=$((SERVER_N + 1))
    DATA=${SRV_DATA:-$WORK/server$SERVER_N}
    local listen=${SRV_LISTEN:-127.0.0.1:0} line
    SERVER_OUT="$WORK/server$SERVER_N.out"
    SERVER_ERR="$WORK/server$SERVER_N.err"
    "$FERRY_BIN" serve --data "$DATA" --listen "$listen" "$@" >"$SERVER_OUT" 2>"$SERVER_ERR" &
    SERVER_PID=$!
    ALL_PIDS+=("$SERVER_PID")
    # The readiness signal: exactly one "listening on HOST:PORT id ID" line.
    wait_until 20 "ferry serve to print its 'listening on' line" _server_ready
    line=$(head -n 1 "$SERVER_OUT")
    [[ "$line" =~ ^listening\ on\ (127\.0\.0\.1:([0-9]+))\ id\ ([A-Z2-7]{52})$ ]] ||
        fail "unexpected readiness line: '$line'"
    # shellcheck disable=SC2034 # PORT is for the tests
    ADDR=${BASH_REMATCH[1]} PORT=${BASH_REMATCH[2]} SID=${BASH_REMATCH[3]}
    [[ "$(wc -l <"$SERVER_OUT")" -eq 1 ]] || fail "ferry serve printed more than one line"
    log "server $SERVER_N: pid $SERVER_PID on $ADDR id $SID data $DATA"
}

# stop_server [SIGNAL]: the current server must exit 0 within 30 s, clean.
stop_server() {
    local sig=${1:-TERM}
    [[ -n "$SERVER_PID" ]] || fail "stop_server: no server running"
    kill -s "$sig" "$SERVER_PID"
    wait_exit "$SERVER_PID" 30 "ferry serve after SIG$sig"
    assert_sanitizer_clean "$SERVER_ERR" "ferry serve (server $SERVER_N)"
    [[ "$WAIT_RC" == 0 ]] || fail "ferry serve exited with $WAIT_RC after SIG$sig: $(tail -n 20 "$SERVER_ERR")"
    log "server $SERVER_N stopped by SIG$sig (exit 0, sanitizer-clean)"
    SERVER_PID=''
}

# kill9_server: no clean-up chance; only what it printed before can be checked.
kill9_server() {
    local i st
    # The shell reports a job killed by a signal ("Killed") on stderr while
    # reaping it: expected here, so that notice is silenced.
    exec 3>&2 2>/dev/null
    kill -9 "$SERVER_PID"
    for ((i = 0; i < 600; i++)); do
        st=$(proc_state "$SERVER_PID")
        [[ -z "$st" || "$st" == Z ]] && break
        sleep 0.05
    done
    if [[ -z "$st" || "$st" == Z ]]; then
        wait "$SERVER_PID" || true
    fi
    exec 2>&3 3>&-
    [[ -z "$(proc_state "$SERVER_PID")" ]] || fail "ferry serve (pid $SERVER_PID) survived SIGKILL"
    assert_sanitizer_clean "$SERVER_ERR" "ferry serve (server $SERVER_N, before SIGKILL)"
    SERVER_PID=''
}

# ---------------------------------------------------------------- clients

new_client() { # NAME: a device with its own state directory, made current
    mkdir -p "$WORK/clients/$1/state"
    use_client "$1"
}
use_client() { # NAME
    [[ -d "$WORK/clients/$1" ]] || fail "use_client: unknown client $1"
    CLIENT=$1
    export XDG_STATE_HOME="$WORK/clients/$1/state"
}

# fy ARGS...: `ferry ARGS...` as the current client, bounded by FY_TIMEOUT
# (default 180 s; a timeout fails the test unless FY_ALLOW_TIMEOUT=1, then RC
# is 124). Sets RC, OUT, ERR. Stdin is the caller's (here-strings).
fy() {
    CMD_N=$((CMD_N + 1))
    local o="$WORK/cmd$CMD_N.out" e="$WORK/cmd$CMD_N.err"
    LAST_CMD="${CLIENT:+[$CLIENT] }ferry $*"
    RC=0
    timeout -k 5 "${FY_TIMEOUT:-180}" "$FERRY_BIN" "$@" >"$o" 2>"$e" || RC=$?
    OUT=$(<"$o") ERR=$(<"$e")
    # A sanitizer report from a client fails the test, but at the end: one
    # leak on an error path must not hide every check after it. Assertions
    # see stderr without the report.
    if grep -qE "$SANITIZER_RE" "$e"; then
        SOFT_FAILS=$((SOFT_FAILS + 1))
        if ((CLIENT_SAN_REPORTS++ == 0)); then
            printf 'FAIL [%s]: sanitizer report from client: %s (exit %s)\n' "$TEST_NAME" \
                "$LAST_CMD" "$RC" >&2
            grep -E -A 40 "$SANITIZER_RE" "$e" | grep -v '^ *$' | head -n 50 | sed 's/^/    /' >&2
        else
            printf 'FAIL [%s]: sanitizer report from client: %s (%s)\n' "$TEST_NAME" "$LAST_CMD" \
                "$(grep -oE "$SANITIZER_RE.*" "$e" | head -n 1)" >&2
        fi
        ERR=$(sed -n '/^=================================================================$/q;p' "$e")
    fi
    [[ "$RC" != 124 && "$RC" != 137 || "${FY_ALLOW_TIMEOUT:-0}" == 1 ]] || fail "$LAST_CMD timed out after ${FY_TIMEOUT:-180} s"
    return 0
}
# fy_ok ARGS...: as fy, and the command must exit 0.
fy_ok() {
    fy "$@"
    assert_rc 0
}

signup() { # USER PASSWORD [MORE FLAGS]: as the current client, must succeed
    local user=$1 pw=$2
    shift 2
    fy signup --server "$ADDR" --server-id "$SID" --user "$user" --password-stdin \
        --device "$CLIENT" "$@" <<<"$pw"
    assert_rc 0 "signup of $user"
    assert_out_contains "signed up and logged in as $user"
}
login() { # USER PASSWORD [MORE FLAGS]: as the current client, must succeed
    local user=$1 pw=$2
    shift 2
    fy login --server "$ADDR" --server-id "$SID" --user "$user" --password-stdin \
        --device "$CLIENT" "$@" <<<"$pw"
    assert_rc 0 "login of $user"
    assert_out_contains "logged in as $user"
}

# ---------------------------------------------------------------- files

# Sets FILE's mtime to DATE (anything `touch -d` takes, nanoseconds allowed).
set_mtime() { touch -h -d "$2" -- "$1"; }

# Names listed by `ferry ls --json` (in OUT), one per line.
json_names() {
    python3 -c 'import json,sys; [print(e["name"]) for e in json.load(sys.stdin)]' <<<"$OUT"
}

# ---- the chunk store (R-CHUNK-7)
# Chunks the server has recorded as stored (rows: each one a ChunkStored promise), as a count.
chunk_count() { sqlite3 "$DATA/ferry.db" 'SELECT COUNT(*) FROM chunks' 2>/dev/null || echo 0; }
# Bytes of chunks the server has recorded as stored.
chunk_bytes() { sqlite3 "$DATA/ferry.db" 'SELECT COALESCE(SUM(size), 0) FROM chunks'; }
# Bytes of the pack files (what chunk writes append to), all users.
pack_bytes() { find "$DATA/packs" -type f -name '*.pack' -printf '%s\n' 2>/dev/null | awk '{ n += $1 } END { print n + 0 }'; }
# Every recorded chunk has its bytes where its row says, with its hash (so
# its size), and every pack counts its rows: an acknowledged chunk survived
# whatever happened (R-CHUNK-7). integrity_check says ok.
assert_chunks_sound() { # WHAT
    local out
    out=$(python3 "$FERRY_TESTS/e2e/check_chunks.py" "$DATA" 2>&1) ||
        fail "$1: recorded chunks missing or corrupt: $out"
    log "$1: all stored chunks present and intact ($out)"
}
# The "sent" figure of `ferry put --stats` output in OUT.
stats_sent() { sed -n 's/^bytes: [0-9]* in all, \([0-9]*\) sent.*/\1/p' <<<"$OUT"; }

# ---------------------------------------------------------------- relays

# need_cutrelay: the cutting relay of ctest's environment (and sqlite3, to
# point a session at it), or the test fails: never a silent skip.
need_cutrelay() {
    command -v sqlite3 >/dev/null || fail "sqlite3 (the command-line shell) is required"
    [[ -n "${FERRY_CUTRELAY:-}" && -x "$FERRY_CUTRELAY" ]] ||
        fail "FERRY_CUTRELAY (${FERRY_CUTRELAY:-unset}) is not the cutrelay tool (run through ctest)"
}

# point_session_at HOST:PORT: the current client's saved session goes there,
# pinned to the server's identity (a relay forwards the server's own TLS).
point_session_at() {
    local db=$XDG_STATE_HOME/ferry/state.db
    sqlite3 "$db" "UPDATE session SET addr = '$1';
        INSERT OR REPLACE INTO known_servers(addr, server_id) VALUES('$1', '$SID');"
    [[ "$(sqlite3 "$db" 'SELECT addr FROM session')" == "$1" ]] ||
        fail "could not point the session at $1"
}

# start_relay CUTRELAY-FLAGS...: a cutrelay in front of the current server,
# and the session pointed at it. Sets RELAY_PID, RELAY_OUT, RELAY_ERR,
# RELAY_PORT and RADDR.
RELAY_N=0 RELAY_PID='' RELAY_OUT='' RELAY_ERR='' RELAY_PORT='' RADDR=''
_relay_ready() { grep -qs '^ready [0-9]*$' "$RELAY_OUT"; }
start_relay() {
    RELAY_N=$((RELAY_N + 1))
    RELAY_OUT=$WORK/relay$RELAY_N.out RELAY_ERR=$WORK/relay$RELAY_N.err
    "$FERRY_CUTRELAY" --listen 127.0.0.1:0 --to "$ADDR" "$@" >"$RELAY_OUT" 2>"$RELAY_ERR" &
    RELAY_PID=$!
    ALL_PIDS+=("$RELAY_PID")
    wait_until 10 "cutrelay $* to print 'ready PORT'" _relay_ready
    RELAY_PORT=$(sed -n 's/^ready \([0-9]*\)$/\1/p' "$RELAY_OUT")
    RADDR=127.0.0.1:$RELAY_PORT
    point_session_at "$RADDR"
}

# stop_relay: the current relay must exit 0 on SIGTERM.
stop_relay() {
    kill -TERM "$RELAY_PID"
    wait_exit "$RELAY_PID" 10 "cutrelay"
    [[ "$WAIT_RC" == 0 ]] || fail "cutrelay exited with $WAIT_RC: $(cat "$RELAY_ERR")"
    RELAY_PID=''
}
