#!/usr/bin/env bash
# ferry serve's options (issue 9, items 20 and 24): a bad value is one line
# naming the flag and what it accepts, exit 2 (R-CONF-4); the config file of
# --config takes every flag as a key, flags override it, and its mistakes are
# one line naming FILE:LINE (R-CONF-1..3).
source "$(dirname "$0")/lib.sh"

CONF=$WORK/conf
mkdir -p "$CONF"

# One line on stderr, exit 2, nothing started or created.
expect_usage_line() { # WHAT NEEDLE...
    local what=$1 needle
    shift
    assert_rc 2 "$what"
    [[ -z "$OUT" ]] || fail "$what: printed on stdout: $OUT"
    [[ "$(wc -l <<<"$ERR")" == 1 ]] || fail "$what: expected one line on stderr, got: $ERR"
    assert_not_contains "$ERR" "usage:" "$what"
    for needle in "$@"; do
        assert_contains "$ERR" "$needle" "$what"
    done
}

# ---------------------------------------------------------------- R-CONF-4 (item 20)
D=$WORK/never
fy serve --data "$D" --max-conns abc
expect_usage_line "--max-conns abc" "--max-conns" "'abc'" "whole number from 1 to 1000000"
fy serve --data "$D" --listen nowhere
expect_usage_line "--listen nowhere" "--listen" "'nowhere'" "HOST:PORT"
fy serve --data "$D" --signup maybe
expect_usage_line "--signup maybe" "--signup" "open or closed"
fy serve --data "$D" --quota -5
expect_usage_line "--quota -5" "--quota" "'-5'" "K, M, G or T"
fy serve --data "$D" --max-listing 10K
expect_usage_line "--max-listing 10K" "--max-listing" "at least 1M"
fy serve --data "$D" --auth-timeout 0
expect_usage_line "--auth-timeout 0" "--auth-timeout" "whole seconds from 1 to 86400"
fy serve --data "$D" --partial-ttl 99999999
expect_usage_line "--partial-ttl 99999999" "--partial-ttl" "2592000"
fy serve --data "$D" --no-such-flag
expect_usage_line "an unknown flag" "unknown option '--no-such-flag'"
fy serve --data "$D" -x
expect_usage_line "an unknown short flag" "unknown option '-x'"
fy serve --data "$D" --heartbeat
expect_usage_line "a flag without its value" "--heartbeat needs a value"
fy serve --data "$D" --verbose=yes
expect_usage_line "a value for a flag that takes none" "--verbose takes no value"
fy serve --data "$D" stray
expect_usage_line "a stray argument" "unexpected argument 'stray'"
assert_no_file "$D"

# --help still prints the whole help, on stdout, exit 0.
fy_ok serve --help
assert_out_contains "usage: ferry serve"
assert_out_contains "--config FILE"
HELP=$OUT

# ---------------------------------------------------------------- R-CONF-1: every flag is a key
# The flags of --help, each with a value of its kind, in one file.
{
    echo "# every option of ferry serve, from its --help"
    echo
    sed -nE 's/^ +(-[a-z], )? *--([a-z-]+)( ([^ ]+))? .*/\2 \4/p' <<<"$HELP" |
        while read -r key arg; do
            case "$key" in
            config | help) continue ;;
            reserve-conns) # a part of max-conns (100), never all of it (R-SESS-8)
                printf '  %s\t=  %s  \n' "$key" 10
                continue
                ;;
            esac
            case "$arg" in
            DIR) val=$WORK/alldata ;;
            HOST:PORT) val=127.0.0.1:0 ;;
            open\|closed) val=open ;;
            SECS) val=100 ;;
            N) val=100 ;;
            BYTES) val=2M ;;
            '') val=yes ;;
            *) fail "no sample value for --$key $arg" ;;
            esac
            printf '  %s\t=  %s  \n' "$key" "$val"
        done
} >"$CONF/all.conf"
nkeys=$(grep -c '=' "$CONF/all.conf")
((nkeys >= 19)) || fail "only $nkeys flags found in --help: $HELP"
log "a config file with all $nkeys keys of --help"
# Started with that file alone: data, listen and signup come from it.
"$FERRY_BIN" serve --config "$CONF/all.conf" >"$WORK/all.out" 2>"$WORK/all.err" &
SERVER_PID=$!
ALL_PIDS+=("$SERVER_PID")
SERVER_OUT=$WORK/all.out SERVER_ERR=$WORK/all.err
wait_until 20 "the server of all.conf to listen" _server_ready
[[ "$(head -n 1 "$WORK/all.out")" =~ ^listening\ on\ (127\.0\.0\.1:[0-9]+)\ id\ ([A-Z2-7]{52})$ ]] ||
    fail "unexpected readiness line: $(cat "$WORK/all.out")"
ADDR=${BASH_REMATCH[1]} SID=${BASH_REMATCH[2]} DATA=$WORK/alldata
[[ -f "$WORK/alldata/ferry.db" ]] || fail "data = $WORK/alldata was not used"
# max-conns = 100 from the file is in force.
assert_contains "$(cat "$WORK/all.err")" "max-conns=100" "max-conns = 100 from the file"
new_client c1
signup ann 'ann password 1'
stop_server

# ---------------------------------------------------------------- R-CONF-2: flags win
cat >"$CONF/closed.conf" <<'EOF'
# sign-up closed by the file
signup = closed
EOF
cat >"$CONF/open.conf" <<'EOF'
signup=open
EOF
start_server --config "$CONF/closed.conf" --signup open
new_client c2
signup bob 'bob password 2'
stop_server
start_server --signup closed --config "$CONF/open.conf"
new_client c3
fy signup --server "$ADDR" --server-id "$SID" --user carl --password-stdin <<<'carl password 3'
assert_rc 1 "signup against --signup closed given before a file that opens it"
assert_err_contains "sign-up is closed"
stop_server
start_server --config "$CONF/open.conf"
new_client c4
signup dora 'dora password 4'
stop_server

# ---------------------------------------------------------------- R-CONF-3: one line naming FILE:LINE
D=$WORK/never2
printf '# ok\n\nsignup = open\nbogus = 1\n' >"$CONF/unknown.conf"
fy serve --data "$D" --config "$CONF/unknown.conf"
expect_usage_line "an unknown key" "$CONF/unknown.conf:4:" "unknown key 'bogus'"
printf 'max-conns = 10\n  max-conns = lots\n' >"$CONF/badval.conf"
fy serve --data "$D" --config "$CONF/badval.conf"
expect_usage_line "a key set twice" "$CONF/badval.conf:2:" "max-conns is set twice"
printf 'signup = open\nmax-conns = lots\n' >"$CONF/badval.conf"
fy serve --data "$D" --config "$CONF/badval.conf"
expect_usage_line "a bad value" "$CONF/badval.conf:2:" "max-conns 'lots'" \
    "whole number from 1 to 1000000"
printf 'signup open\n' >"$CONF/noeq.conf"
fy serve --data "$D" --config "$CONF/noeq.conf"
expect_usage_line "a line without =" "$CONF/noeq.conf:1:" "expected KEY = VALUE"
printf 'verbose = maybe\n' >"$CONF/flag.conf"
fy serve --data "$D" --config "$CONF/flag.conf"
expect_usage_line "a flag key without yes or no" "$CONF/flag.conf:1:" "yes or no"
printf 'config = %s\n' "$CONF/open.conf" >"$CONF/nested.conf"
fy serve --data "$D" --config "$CONF/nested.conf"
expect_usage_line "config inside a config file" "$CONF/nested.conf:1:" "unknown key 'config'"
{
    printf '# long\ndata = /'
    head -c 5000 /dev/zero | tr '\0' 'a'
    printf '\n'
} >"$CONF/long.conf"
fy serve --data "$D" --config "$CONF/long.conf"
expect_usage_line "an over-long line" "$CONF/long.conf:2:" "longer than 4096 bytes"
fy serve --data "$D" --config "$CONF/missing.conf"
expect_usage_line "a missing file" "$CONF/missing.conf" "No such file"
fy serve --data "$D" --config "$CONF"
expect_usage_line "a directory as the file" "not a regular file"
# The flag is judged too when the file is fine.
fy serve --config "$CONF/open.conf" --data "$D" --max-conns 0
expect_usage_line "a bad flag beside a good file" "--max-conns '0'"
assert_no_file "$D"
