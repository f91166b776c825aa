#!/usr/bin/env bash
# Server limits and process rules: --max-file-size refuses one file of a put
# and keeps the connection and the rest (protocol.md 12, error 2); one server
# per data directory (R-STORE-8); SIGINT stops the server cleanly.
source "$(dirname "$0")/lib.sh"

# Bad flag values are usage errors (exit 2) and start nothing: one line that
# names the flag (R-CONF-4). A server that wrongly starts is stopped by the
# 5 s timeout (exit 124).
for bad in '--max-file-size 1X' '--max-file-size 0' '--max-file-size -5' '--max-unacked -1M' \
    '--signup maybe' '--listen nowhere' '--auth-timeout 0' '--login-rate many'; do
    # shellcheck disable=SC2086 # split the flag and its value
    FY_TIMEOUT=5 FY_ALLOW_TIMEOUT=1 fy serve --data "$WORK/never" --listen 127.0.0.1:0 $bad
    check assert_rc 2 "ferry serve $bad"
    check assert_err_contains "ferry serve: ${bad%% *} "
done
check assert_no_file "$WORK/never"

start_server --signup open --max-file-size 1M
new_client alice
signup alice 'limits password'

L=$WORK/local G=$WORK/got
mkdir -p "$L" "$G"
head -c $((2 << 20)) /dev/urandom >"$L/two-mib.bin"
head -c $((1 << 20)) /dev/urandom >"$L/one-mib.bin"
head -c $(((1 << 20) + 1)) /dev/urandom >"$L/one-mib-plus-one.bin"
printf 'small enough\n' >"$L/small.txt"

# Only an oversized file: it fails, exit 1, naming the file and the limit.
fy put "$L/two-mib.bin"
assert_rc 1 "put of a 2 MiB file with --max-file-size 1M"
assert_err_contains 'two-mib.bin'
assert_err_contains 'size over limit'
fy_ok ls /
assert_out_no_line 'two-mib.bin'

# Oversized and small in one put: exit 3, the small one is stored.
fy put "$L/two-mib.bin" "$L/small.txt" /
assert_rc 3 "put of a 2 MiB file and a small one"
assert_err_contains 'two-mib.bin'
assert_err_contains 'size over limit'
assert_not_contains "$ERR" 'small.txt' "stderr of the partly refused put"
fy_ok ls /
assert_eq "$OUT" 'small.txt' "ls / after the partly refused put"
fy_ok get /small.txt "$G/small.txt"
assert_same_file "$L/small.txt" "$G/small.txt"

# The limit is inclusive: exactly 1 MiB is accepted, one byte more is not.
fy_ok put "$L/one-mib.bin" /
fy put "$L/one-mib-plus-one.bin" /
assert_rc 1 "put of 1 MiB + 1 byte"
assert_err_contains 'size over limit'
fy_ok get /one-mib.bin "$G/one-mib.bin"
assert_same_file "$L/one-mib.bin" "$G/one-mib.bin"

# A refused upload in a tree: the rest of the tree arrives.
mkdir -p "$L/tree/sub"
cp "$L/two-mib.bin" "$L/tree/sub/too-big.bin"
printf 'a\n' >"$L/tree/a.txt"
printf 'b\n' >"$L/tree/sub/b.txt"
fy put -r "$L/tree" /tree
assert_rc 3 "put -r of a tree with one oversized file"
assert_err_contains 'too-big.bin'
fy_ok ls -R /tree
assert_eq "$OUT" "$(printf 'a.txt\nsub/\nsub/b.txt')" "ls -R /tree after the partly refused put"

# Refused uploads leave no temp file; the server still serves.
[[ -z "$(find "$DATA/tmp" -type f)" ]] || fail "refused uploads left files in tmp/: $(ls "$DATA/tmp")"
fy_ok put "$L/small.txt" /again.txt
fy_ok get /again.txt "$G/again.txt"
assert_same_file "$L/small.txt" "$G/again.txt"

# ---------------------------------------------------------------- one server per data directory
CMD_N=$((CMD_N + 1))
second_out=$WORK/second-serve.out second_err=$WORK/second-serve.err
rc=0
timeout -k 5 20 "$FERRY_BIN" serve --data "$DATA" --listen 127.0.0.1:0 >"$second_out" 2>"$second_err" || rc=$?
assert_sanitizer_clean "$second_err" "the second ferry serve"
[[ "$rc" != 0 && "$rc" != 124 && "$rc" != 137 ]] ||
    fail "a second ferry serve on the same --data exited $rc, expected a prompt failure"
assert_contains "$(<"$second_err")" 'in use' "stderr of the second ferry serve"
assert_not_contains "$(<"$second_out")" 'listening on' "stdout of the second ferry serve"
# The first server is unharmed (its tmp/ was not swept, its files are there).
fy_ok ls /
assert_out_line 'again.txt'
fy_ok put "$L/one-mib.bin" /after-second.bin
fy_ok get /after-second.bin "$G/after-second.bin"
assert_same_file "$L/one-mib.bin" "$G/after-second.bin"

# ---------------------------------------------------------------- SIGINT
stop_server INT
# The lock went with the process: the data directory serves again, intact.
SRV_DATA=$DATA SRV_LISTEN=127.0.0.1:$PORT start_server --signup open --max-file-size 1M
fy_ok ls / # same identity, same address: the saved session still works
assert_out_line 'small.txt'
assert_out_line 'after-second.bin'
stop_server TERM
