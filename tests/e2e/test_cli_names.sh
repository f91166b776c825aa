#!/usr/bin/env bash
# Issue 9, items 16 and 17: names. A local name the protocol cannot carry
# (R-PATH-3: not UTF-8, a backslash, a tab, a line break) is refused by
# name before anything of it is sent (R-NAME-1): a per-file error, exit 3,
# and every other file still goes up. Before, one such name made put -r
# reconnect forever ("connection lost (protocol error)"). Names that can
# travel but would drive a terminal (C1 controls such as U+009B, a
# one-byte CSI) are shown escaped by ls, errors and messages (R-CLI-1).
source "$(dirname "$0")/lib.sh"

assert_err_lacks() { assert_not_contains "$ERR" "$1" "stderr of $LAST_CMD"; }

start_server --signup open
new_client alice
signup alice 'names test password'

T=$WORK/tree
mkdir -p "$T/ok" "$T/"$'bad\xfedir'
printf 'spaces\n' >"$T/my file.txt"
printf 'ok\n' >"$T/ok/f.txt"
printf 'c1\n' >"$T/"$'c1\xc2\x9bname.txt'
printf 'bs\n' >"$T/back\\slash.txt"
printf 'tab\n' >"$T/"$'tab\there.txt'
printf 'nl\n' >"$T/"$'new\nline.txt'
printf 'cr\n' >"$T/"$'car\rriage.txt'
printf 'bad\n' >"$T/"$'bad\xff.txt'
printf 'inside\n' >"$T/"$'bad\xfedir/inside.txt'
head -c 1100000 /dev/urandom >"$T/ok/big.bin" # chunked too (R-CHUNK)

FY_TIMEOUT=120 fy put -r --retry-for 5 "$T" /t
assert_rc 3 "put -r of a tree with names the protocol cannot carry"
assert_err_lacks 'reconnecting'
assert_err_lacks 'connection lost'
# Each refused name is named, escaped, with the reason.
assert_err_contains 'tree/bad\xff.txt: not uploaded: the name is not valid UTF-8'
assert_err_contains 'tree/back\\slash.txt: not uploaded: a backslash in the name'
assert_err_contains 'tree/tab\x09here.txt: not uploaded: a tab in the name'
assert_err_contains 'tree/new\x0aline.txt: not uploaded: a line break in the name'
assert_err_contains 'tree/car\x0driage.txt: not uploaded: a line break in the name'
assert_err_contains 'tree/bad\xfedir: folder not uploaded, nor anything in it: the name is not valid UTF-8'
[[ "$ERR" != *$'\x9b'* && "$ERR" != *$'\xff'* && "$ERR" != *$'\t'* ]] ||
    fail "stderr carries raw control or invalid bytes: $(od -c <<<"$ERR" | head)"

# Everything else went up, the C1 name included (it is valid UTF-8).
fy_ok ls -R --json /t
mapfile -t names < <(json_names | LC_ALL=C sort)
expected=$(printf '%s\n' 'c1'$'\xc2\x9b''name.txt' 'my file.txt' ok ok/big.bin ok/f.txt | LC_ALL=C sort)
assert_eq "$(printf '%s\n' "${names[@]}")" "$expected" "the names uploaded"

# ls shows the C1 name escaped, never the raw CSI byte (before: printed raw).
fy_ok ls /t
assert_out_line 'c1\xc2\x9bname.txt'
[[ "$OUT" != *$'\x9b'* ]] || fail "ls printed a raw U+009B"
fy_ok ls -l /t
assert_out_contains 'c1\xc2\x9bname.txt'
[[ "$OUT" != *$'\x9b'* ]] || fail "ls -l printed a raw U+009B"

# Errors name it escaped too.
fy rm "/t/"$'c1\xc2\x9bnope'
assert_rc 1
assert_err_contains 't/c1\xc2\x9bnope: not found'
[[ "$ERR" != *$'\x9b'* ]] || fail "rm printed a raw U+009B"
fy ls '/t/a\b'
assert_rc 1
assert_err_contains 't/a\\b'

# A download brings the C1 name back byte for byte.
fy_ok get -r /t "$WORK/back"
assert_same_file "$T/"$'c1\xc2\x9bname.txt' "$WORK/back/"$'c1\xc2\x9bname.txt'
assert_same_file "$T/my file.txt" "$WORK/back/my file.txt"
assert_same_file "$T/ok/big.bin" "$WORK/back/ok/big.bin"

# A single file whose name cannot travel: refused by name, no connection lost, exit 1.
cd "$T"
fy put $'bad\xff.txt'
assert_rc 1 "put of one file with a non-UTF-8 name"
assert_err_contains 'bad\xff.txt: not uploaded: the name is not valid UTF-8'
assert_err_lacks 'reconnecting'
# Its contents can still go up under a name that can travel.
fy_ok put $'bad\xff.txt' /renamed.txt
cd "$WORK"

stop_server
