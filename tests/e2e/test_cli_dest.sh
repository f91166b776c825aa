#!/usr/bin/env bash
# Issue 9, items 3 and 4: where things land.
# - A trailing '/' on get's local destination names a folder, as with cp:
#   a file cannot go to "nodir/" (missing) or "notes.txt/" (a file): "Not a
#   directory", exit 1, nothing written (R-CLI-8).
# - Running an interrupted `put -r proj /proj` again must give what one
#   uninterrupted run gives, not /proj/proj: the first run created /proj, so
#   cp's rule would now nest the tree. The task record remembers how the
#   first run resolved its destination and the re-run, or `ferry resume`,
#   uses that (R-CLI-9); the same for get -r. A re-run that finishes takes
#   the task off the list (R-CLI-10).
source "$(dirname "$0")/lib.sh"

need_cutrelay

start_server --signup open
new_client alice
signup alice 'destination test password'
STATE_DB=$XDG_STATE_HOME/ferry/state.db
L=$WORK/local
mkdir -p "$L"
cd "$L"

# ---------------------------------------------------------------- item 3
printf 'a\n' >a.txt
fy_ok put a.txt /a.txt
fy_ok put a.txt /docs/a.txt
fy get /a.txt nodir/
assert_rc 1 "get of a file to a missing nodir/"
assert_err_contains 'nodir/: Not a directory'
assert_no_file nodir
printf 'keep me\n' >notes.txt
fy get /docs/a.txt notes.txt/
assert_rc 1 "get of a file to notes.txt/ (a file)"
assert_err_contains 'notes.txt/: Not a directory'
[[ "$(cat notes.txt)" == 'keep me' ]] || fail "notes.txt was overwritten"
[[ -z "$(find . -name '.ferry-*')" ]] || fail "a part file was left: $(find . -name '.ferry-*')"
# A folder with a trailing '/' is a folder, existing or (for a folder source) not.
mkdir have
fy_ok get /a.txt have/
assert_same_file a.txt have/a.txt
fy_ok get -r /docs newdir/
assert_same_file a.txt newdir/a.txt
rm -rf have newdir notes.txt

# ---------------------------------------------------------------- item 4: the relay
# cut_relay CUTRELAY-FLAGS...: a relay cutting the first connection, session pointed at it.
cut_relay() { start_relay --once "$@"; }
remote_dir_exists() { # NAME: a folder of that name at the remote root, committed
    [[ "$(sqlite3 "$DATA/ferry.db" "SELECT COUNT(*) FROM nodes n JOIN nodes r ON n.parent_id = r.id
        WHERE r.parent_id = 0 AND n.name = '$1' AND n.is_dir = 1")" == 1 ]]
}
tasks_listed() { fy_ok resume --list; grep -c '^[0-9]' <<<"$OUT" || true; }

# make_tree DIR: a small tree with a chunked file of fresh bytes (none of its
# chunks on the server yet, so the cut lands in the middle of them).
make_tree() {
    mkdir -p "$1/sub"
    printf 'a\n' >"$1/a.txt"
    printf 'b\n' >"$1/sub/b.txt"
    head -c $((3 << 20)) /dev/urandom >"$1/big.bin"
}
make_tree proj
make_tree proj2
expect_tree() { # REMOTE: exactly the tree of proj, no nesting
    fy_ok ls -R "$1"
    assert_eq "$OUT" "$(printf 'a.txt\nbig.bin\nsub/\nsub/b.txt')" "ls -R $1"
}

# put -r, run again by hand. Before: the second run made /proj/proj.
cut_relay --cut-c2s $((1 << 20))
fy put -r --retry-for 0 --connections 1 proj /proj
assert_rc 4 "put -r cut after 1 MiB"
wait_until 20 "/proj committed on the server" remote_dir_exists proj
[[ "$(tasks_listed)" == 1 ]] || fail "the interrupted put is not on the task list once: $OUT"
fy put -r --retry-for 0 --connections 1 proj /proj
assert_rc 0 "the same put -r run again"
expect_tree /proj
[[ "$(tasks_listed)" == 0 ]] || fail "the finished put is still on the task list: $OUT"
stop_relay

# put -r, finished by `ferry resume`.
cut_relay --cut-c2s $((1 << 20))
fy put -r --retry-for 0 --connections 1 proj2 /proj2
assert_rc 4 "put -r cut after 1 MiB"
wait_until 20 "/proj2 committed on the server" remote_dir_exists proj2
fy resume
assert_rc 0 "ferry resume of the cut put -r"
expect_tree /proj2
[[ "$(tasks_listed)" == 0 ]] || fail "the resumed put is still on the task list: $OUT"
stop_relay

# get -r, run again. Before: the second run made dl/proj.
cut_relay --cut-s2c $((1 << 20))
fy get -r --retry-for 0 /proj dl
assert_rc 4 "get -r cut after 1 MiB"
[[ -d dl ]] || fail "the cut get -r did not create dl"
fy get -r --retry-for 0 /proj dl
assert_rc 0 "the same get -r run again"
[[ ! -e dl/proj ]] || fail "the re-run get -r nested the tree in dl/proj"
diff -r proj dl >/dev/null || fail "dl differs from proj: $(diff -r proj dl 2>&1 | head)"
[[ "$(tasks_listed)" == 0 ]] || fail "the finished get is still on the task list: $OUT"
stop_relay

# Once finished, the same command is a new one: cp's rule applies again.
point_session_at "$ADDR"
fy_ok put -r proj /fresh
expect_tree /fresh
fy_ok put -r proj /fresh
fy_ok ls /fresh
assert_out_line 'proj/'

stop_server
