#!/usr/bin/env bash
# Issue 9, item 15 (R-ADMIN-2): ferry serve raises its soft limit on open
# files to the hard limit, refuses an explicit --max-conns that the limit
# cannot hold, and lowers the default with a warning.
source "$(dirname "$0")/lib.sh"

# start_limited SOFT HARD FLAGS...: ferry serve under those limits (HARD '' keeps it).
start_limited() {
    local soft=$1 hard=$2
    shift 2
    SERVER_N=$((SERVER_N + 1))
    DATA=$WORK/server$SERVER_N SERVER_OUT=$WORK/server$SERVER_N.out SERVER_ERR=$WORK/server$SERVER_N.err
    (
        [[ -z "$hard" ]] || ulimit -n "$hard"
        ulimit -Sn "$soft"
        exec "$FERRY_BIN" serve --data "$DATA" --listen 127.0.0.1:0 "$@"
    ) >"$SERVER_OUT" 2>"$SERVER_ERR" &
    SERVER_PID=$!
    ALL_PIDS+=("$SERVER_PID")
}

# The soft and hard "Max open files" of a running process.
nofile() { awk '/^Max open files/ { print $4, $5 }' "/proc/$1/limits"; }

hard=$(ulimit -Hn)
if [[ "$hard" == unlimited ]]; then
    want=$(cat /proc/sys/fs/nr_open)
    soft=1024
else
    want=$hard
    soft=$((hard > 1024 ? 1024 : hard / 2))
fi
((soft < want)) || fail "cannot test: the hard limit ($hard) leaves no room to raise"
log "hard limit $hard: starting with a soft limit of $soft, expecting $want"

# ---------------------------------------------------------------- the soft limit is raised
start_limited "$soft" '' --max-conns 100
wait_until 20 "ferry serve to listen" _server_ready
read -r s h < <(nofile "$SERVER_PID")
assert_eq "$s" "$want" "R-ADMIN-2: the soft limit of ferry serve (hard $h)"
stop_server

# ---------------------------------------------------------------- caps checked against the limit
# 256 open files hold (256 - 64 - 64) / 2 = 64 connections: 64 for the
# server itself, 64 for connections being refused with a reason (R-SESS-9).
start_limited 256 256 --max-conns 1000
wait_exit "$SERVER_PID" 30 "ferry serve with an impossible --max-conns"
SERVER_PID=''
assert_eq "$WAIT_RC" 1 "exit code of ferry serve with an impossible --max-conns"
err=$(cat "$SERVER_ERR")
[[ "$(wc -l <<<"$err")" == 1 ]] || fail "expected one line, got: $err"
assert_contains "$err" "--max-conns 1000 needs 2128 open files, but the limit is 256" "the refusal"
assert_contains "$err" "at most 64 connections" "the refusal"
[[ ! -s "$SERVER_OUT" ]] || fail "a refused server printed: $(cat "$SERVER_OUT")"

# The same from a config file: a key is as explicit as a flag.
printf 'max-conns = 500\n' >"$WORK/conns.conf"
start_limited 256 256 --config "$WORK/conns.conf"
wait_exit "$SERVER_PID" 30 "ferry serve with an impossible max-conns key"
SERVER_PID=''
assert_eq "$WAIT_RC" 1 "exit code of ferry serve with an impossible max-conns key"
assert_contains "$(cat "$SERVER_ERR")" "--max-conns 500 needs 1128 open files" "the refusal"

# The default is lowered to what fits, and said so.
start_limited 256 256 --signup open
wait_until 20 "ferry serve to listen with a lowered default" _server_ready
err=$(cat "$SERVER_ERR")
assert_contains "$err" "level=warn max-conns lowered from 1024 to 64: the open-file limit is 256" \
    "the warning"
assert_contains "$err" "max-conns=64" "the ready line"
line=$(head -n 1 "$SERVER_OUT")
[[ "$line" =~ ^listening\ on\ (127\.0\.0\.1:[0-9]+)\ id\ ([A-Z2-7]{52})$ ]] || fail "readiness: $line"
ADDR=${BASH_REMATCH[1]} SID=${BASH_REMATCH[2]}
new_client c1
signup ann 'ann password 1'
fy_ok ls /
stop_server

# Exactly what fits starts without a word.
start_limited 256 256 --max-conns 64
wait_until 20 "ferry serve to listen at the limit" _server_ready
assert_not_contains "$(cat "$SERVER_ERR")" "level=warn" "--max-conns 64 under 256 files"
stop_server
