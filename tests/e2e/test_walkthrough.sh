#!/usr/bin/env bash
# The README walkthrough, end to end: serve, signup, put a file and a tree,
# list it every way, get it back byte- and mtime-identical, then rm, mv,
# replace, the symlink and missing-file rules, --help and usage errors.
source "$(dirname "$0")/lib.sh"

start_server --signup open
new_client alice
# README step 2: the identity before the @ pins the server (R-TLS-4).
fy signup --server "$SID@$ADDR" --user alice --password-stdin <<<'correct horse battery staple'
assert_rc 0 "signup with ID@HOST:PORT"
assert_out_contains "signed up and logged in as alice on $ADDR (server $SID)"

L=$WORK/local G=$WORK/got
mkdir -p "$L" "$G"

# ---------------------------------------------------------------- one file
printf 'hello, ferry\n' >"$L/hello.txt"
set_mtime "$L/hello.txt" '2020-01-02 03:04:05.123456789'
# With one argument the upload goes to the remote root (README step 3).
cd "$L"
fy_ok put hello.txt
cd "$WORK"
fy_ok ls
assert_out_line 'hello.txt'

# ---------------------------------------------------------------- a tree
# Nested folders, an empty folder, an executable, names with spaces and
# non-ASCII UTF-8, a file spanning many data frames; every file and folder
# gets its own mtime with nanoseconds. (Empty files have their own section.)
T=$L/tree
mkdir -p "$T/a/b/c" "$T/empty" "$T/bin" "$T/with space"
printf 'read me\n' >"$T/readme.md"
printf 'deep\n' >"$T/a/b/c/deep.txt"
head -c 300001 /dev/urandom >"$T/a/b/data.bin"
printf '#!/bin/sh\necho ran\n' >"$T/bin/run.sh"
chmod 755 "$T/bin/run.sh"
printf 'spaced out\n' >"$T/with space/file with spaces.txt"
printf 'unicode\n' >"$T/with space/ünïcødé ✓.txt"
set_mtime "$T/readme.md" '2019-05-06 07:08:09.000000001'
set_mtime "$T/a/b/c/deep.txt" '2018-01-01 00:00:00.5'
set_mtime "$T/a/b/data.bin" '2017-07-07 17:17:17.171717171'
set_mtime "$T/bin/run.sh" '2015-03-04 05:06:07.89'
set_mtime "$T/with space/file with spaces.txt" '2014-12-31 23:59:59.999999999'
set_mtime "$T/with space/ünïcødé ✓.txt" '2013-06-15 10:20:30.405060708'
# Folders last, deepest first: creating entries changes a folder's mtime.
set_mtime "$T/a/b/c" '2012-01-01 01:01:01.010101010'
set_mtime "$T/a/b" '2012-02-02 02:02:02.020202020'
set_mtime "$T/a" '2012-03-03 03:03:03.030303030'
set_mtime "$T/empty" '2011-11-11 11:11:11.111111111'
set_mtime "$T/bin" '2010-10-10 10:10:10'
set_mtime "$T/with space" '2009-09-09 09:09:09.9'
set_mtime "$T" '2008-08-08 08:08:08.080808080'

# Without -r a folder is refused.
fy put "$T" /tree
assert_rc 1
assert_err_contains 'use -r'

fy_ok put -r "$T" /tree

fy_ok ls /
assert_out_line 'hello.txt'
assert_out_line 'tree/'

# ls: names only, folders with a trailing slash.
fy_ok ls /tree
assert_eq "$OUT" "$(printf 'a/\nbin/\nempty/\nreadme.md\nwith space/')" "ls /tree"

# ls -l: type, exec bit, size, mtime (UTC here), name.
fy_ok ls -l /tree/bin
size=$(stat -c %s "$T/bin/run.sh")
[[ "${OUT%%$'\n'*}" =~ ^-x\ +$size\ 2015-03-04\ 05:06\ run\.sh$ ]] || fail "ls -l /tree/bin: unexpected '$OUT'"
assert_out_line "total 1 file, 0 folders, $size bytes"
fy_ok ls -l /tree
assert_out_contains 'd-            0 2011-11-11 11:11 empty/'
[[ "$OUT" == *$'\n--            8 2019-05-06 07:08 readme.md'* ]] || fail "ls -l /tree: readme.md line: '$OUT'"

# ls -R: the whole subtree, depth-first.
fy_ok ls -R /tree
for p in a/ a/b/ a/b/c/ a/b/c/deep.txt a/b/data.bin bin/ bin/run.sh empty/ \
    readme.md 'with space/' 'with space/file with spaces.txt' 'with space/ünïcødé ✓.txt'; do
    assert_out_line "$p"
done
[[ "$(wc -l <<<"$OUT")" == 12 ]] || fail "ls -R /tree: expected 12 entries, got: $OUT"

# ls --json: valid JSON, and every field agrees with the local tree
# (names, pre-order, type, size, exec, mtime ns, sha256 content id: R-STORE-7).
fy_ok ls --json /tree
assert_json "ls --json /tree"
fy_ok ls -R --json /tree
assert_json "ls -R --json /tree"
problems=$(python3 "$FERRY_TESTS/e2e/check_tree.py" "$T" <<<"$OUT") ||
    fail "ls -R --json /tree disagrees with the local tree: $problems"
# A file path lists as the file itself (protocol.md 6.3).
fy_ok ls --json /tree/readme.md
assert_eq "$(json_names)" 'readme.md' "ls --json of a file"
# A missing path is an error, exit 1.
fy ls /tree/nope
assert_rc 1
assert_err_contains 'not found'

# ---------------------------------------------------------------- get
# A single file to a named path, relative to the current folder (README step 5).
cd "$G"
fy_ok get /hello.txt ./copy-of-hello.txt
cd "$WORK"
assert_same_file "$L/hello.txt" "$G/copy-of-hello.txt"
assert_same_mtime "$L/hello.txt" "$G/copy-of-hello.txt"
assert_mode "$G/copy-of-hello.txt" 644
# Several files into an existing folder keep their names.
mkdir "$G/into"
fy_ok get /hello.txt "/tree/with space/file with spaces.txt" "$G/into"
assert_same_file "$L/hello.txt" "$G/into/hello.txt"
assert_same_file "$T/with space/file with spaces.txt" "$G/into/file with spaces.txt"
assert_same_mtime "$T/with space/file with spaces.txt" "$G/into/file with spaces.txt"
# A folder without -r is refused; a missing file is exit 1 and creates nothing.
fy get /tree "$G/norec"
assert_rc 1
assert_err_contains 'use -r'
assert_no_file "$G/norec"
fy get /nope.txt "$G/nope.txt"
assert_rc 1
assert_no_file "$G/nope.txt"
# An existing and a missing file: exit 3 (some files failed), the existing one arrives.
mkdir "$G/mixed"
fy get /hello.txt /nope.txt "$G/mixed"
check assert_rc 3 "get of an existing and a missing file"
assert_err_contains 'nope.txt'
assert_same_file "$L/hello.txt" "$G/mixed/hello.txt"

# The whole tree into a fresh folder.
R=$WORK/restored
fy_ok get -r /tree "$R"
diff -r "$T" "$R" >"$WORK/diff.out" 2>&1 || fail "get -r /tree differs from the original: $(cat "$WORK/diff.out")"
# mtimes of every file and folder, including the empty one and the top.
while IFS= read -r -d '' p; do
    assert_same_mtime "$T/$p" "$R/$p"
done < <(cd "$T" && find . -mindepth 0 -print0)
assert_same_mtime "$T/empty" "$R/empty"
# The exec bit survives; plain files are not made executable (umask 022).
[[ -x "$R/bin/run.sh" ]] || fail "exec bit of bin/run.sh lost"
assert_mode "$R/bin/run.sh" 755
assert_mode "$R/readme.md" 644
assert_mode "$R/a/b/data.bin" 644
[[ "$("$R/bin/run.sh")" == ran ]] || fail "restored bin/run.sh does not run"
# R-STORE-6: no temporary file is left beside the results.
leftovers=$(find "$R" "$G" -name '.ferry-*')
[[ -z "$leftovers" ]] || fail "temporary files left behind: $leftovers"

# get -r into an existing folder creates the folder's own name inside it.
mkdir "$G/existing"
fy_ok get -r /tree/a "$G/existing"
diff -r "$T/a" "$G/existing/a" >/dev/null || fail "get -r /tree/a into a folder differs"
assert_same_mtime "$T/a/b" "$G/existing/a/b"

# ---------------------------------------------------------------- rm
fy_ok rm /hello.txt
fy_ok ls /
assert_out_no_line 'hello.txt'
assert_out_line 'tree/'
fy rm /hello.txt
assert_rc 1 "rm of a removed file"
assert_err_contains 'not found'
# A folder needs -r (error 12), and stays whole without it.
fy rm /tree/a
assert_rc 1 "rm of a non-empty folder without -r"
assert_err_contains 'is a folder (use -r)'
fy_ok ls -R /tree/a
assert_out_line 'b/c/deep.txt'
fy_ok rm -r /tree/a
fy_ok ls /tree
assert_out_no_line 'a/'
fy ls /tree/a/b
assert_rc 1
# An empty folder too needs -r, as rm's help says.
fy rm /tree/empty
assert_rc 1 "rm of an empty folder without -r"
assert_err_contains 'is a folder (use -r)'
fy_ok ls /tree
assert_out_line 'empty/'
fy_ok rm -r /tree/empty
fy_ok ls /tree
assert_out_no_line 'empty/'
# The root cannot be removed (R-PATH, error 7), and nothing is lost trying.
fy rm -r /
assert_rc 1 "rm -r /"
fy_ok ls /tree
assert_out_line 'readme.md'
# Several paths at once: one missing one gives exit 3, the rest are removed.
fy_ok put "$L/hello.txt" /one.txt
fy_ok put "$L/hello.txt" /two.txt
fy rm /one.txt /missing.txt /two.txt
assert_rc 3 "rm with one missing path of three"
assert_err_contains 'missing.txt'
fy_ok ls /
assert_out_no_line 'one.txt'
assert_out_no_line 'two.txt'

# ---------------------------------------------------------------- mv
fy_ok mv /tree/readme.md /tree/README.txt
fy_ok ls /tree
assert_out_line 'README.txt'
assert_out_no_line 'readme.md'
fy_ok get /tree/README.txt "$G/README.txt"
assert_same_file "$T/readme.md" "$G/README.txt"
assert_same_mtime "$T/readme.md" "$G/README.txt"

printf 'the other one\n' >"$L/other.txt"
fy_ok put "$L/other.txt" /tree/other.txt
# Onto an existing name without -f: exit 1 (error 6), both untouched.
fy mv /tree/other.txt /tree/README.txt
assert_rc 1 "mv onto an existing file without -f"
assert_err_contains 'already exists'
fy_ok get /tree/README.txt "$G/README-after-refused-mv.txt"
assert_same_file "$T/readme.md" "$G/README-after-refused-mv.txt"
fy_ok get /tree/other.txt "$G/other-after-refused-mv.txt"
assert_same_file "$L/other.txt" "$G/other-after-refused-mv.txt"
# With -f the file replaces the target.
fy_ok mv -f /tree/other.txt /tree/README.txt
fy_ok ls /tree
assert_out_no_line 'other.txt'
fy_ok get /tree/README.txt "$G/README-after-forced-mv.txt"
assert_same_file "$L/other.txt" "$G/README-after-forced-mv.txt"
# A folder moves with its contents; a missing source is exit 1.
fy_ok mv "/tree/with space" /tree/spaced
fy_ok ls -R /tree/spaced
assert_out_line 'file with spaces.txt'
fy mv /tree/no-such /tree/whatever
assert_rc 1 "mv of a missing path"
assert_err_contains 'not found'

# ---------------------------------------------------------------- replace
# An upload onto an existing file replaces it; the file keeps its id (6.3).
fy_ok ls --json /tree/README.txt
id_before=$(python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])' <<<"$OUT")
printf 'version two, longer than the first\n' >"$L/v2.txt"
set_mtime "$L/v2.txt" '2021-04-05 06:07:08.090807060'
fy_ok put "$L/v2.txt" /tree/README.txt
fy_ok get /tree/README.txt "$G/README-v2.txt"
assert_same_file "$L/v2.txt" "$G/README-v2.txt"
assert_same_mtime "$L/v2.txt" "$G/README-v2.txt"
fy_ok ls --json /tree/README.txt
id_after=$(python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])' <<<"$OUT")
assert_eq "$id_after" "$id_before" "file id after replacing its content"

# ---------------------------------------------------------------- symlinks (R-PATH-6)
ln -s hello.txt "$L/link.txt"
fy put "$L/link.txt"
assert_rc 0 "put of a lone symlink"
assert_err_contains 'warning'
assert_err_contains 'symlink'
assert_err_contains 'link.txt'
fy_ok ls /
assert_out_no_line 'link.txt'
# Inside a tree: file and folder symlinks are skipped, never followed.
mkdir -p "$L/lt"
printf 'real\n' >"$L/lt/real.txt"
ln -s real.txt "$L/lt/file-link"
ln -s .. "$L/lt/dir-link"
ln -s /etc/passwd "$L/lt/abs-link"
fy put -r "$L/lt" /lt
assert_rc 0 "put -r of a tree with symlinks"
assert_err_contains 'file-link'
assert_err_contains 'dir-link'
assert_err_contains 'abs-link'
fy_ok ls -R /lt
assert_eq "$OUT" 'real.txt' "ls -R of the uploaded tree with symlinks"

# ---------------------------------------------------------------- partial failure
printf 'I exist\n' >"$L/exists.txt"
fy put "$L/does-not-exist.txt" "$L/exists.txt" /
check assert_rc 3 "put of a missing file and an existing one"
assert_err_contains 'does-not-exist.txt'
fy_ok ls /
assert_out_line 'exists.txt'
assert_out_no_line 'does-not-exist.txt'
fy_ok get /exists.txt "$G/exists.txt"
assert_same_file "$L/exists.txt" "$G/exists.txt"
# Only missing files: exit 1.
fy put "$L/nope1" "$L/nope2" /
assert_rc 1 "put of only missing files"

# ---------------------------------------------------------------- --help and usage
fy_ok --help
assert_out_contains 'usage: ferry COMMAND'
for c in serve signup login passwd logout put get ls rm mv; do
    fy "$c" --help
    assert_rc 0 "ferry $c --help"
    assert_out_contains "usage: ferry $c"
    fy "$c" --no-such-option
    assert_rc 2 "ferry $c --no-such-option"
    # The usage, or (ferry serve, R-CONF-4) one line pointing to --help.
    [[ "$ERR" == *usage* || "$ERR" == *"see 'ferry $c --help'"* ]] ||
        fail "ferry $c --no-such-option: no usage and no pointer to --help: $ERR"
done
fy frobnicate
assert_rc 2 "unknown command"
assert_err_contains "unknown command 'frobnicate'"
fy
assert_rc 2 "no command at all"
for c in put get rm mv; do
    fy "$c"
    assert_rc 2 "ferry $c without arguments"
done
fy mv /only-one
assert_rc 2 "mv with one argument"

# ---------------------------------------------------------------- empty files
# Zero bytes: no data frame at all (R-XFER-2), alone and inside a tree.
: >"$L/empty.txt"
set_mtime "$L/empty.txt" '2016-02-29 12:00:00.5'
mkdir -p "$L/with-empty/sub"
: >"$L/with-empty/sub/nothing"
printf 'x\n' >"$L/with-empty/something"
fy_ok put "$L/empty.txt" /empty.txt
fy_ok ls -l /empty.txt
[[ "${OUT%%$'\n'*}" =~ ^--\ +0\ 2016-02-29\ 12:00\ empty\.txt$ ]] || fail "ls -l /empty.txt: '$OUT'"
fy_ok get /empty.txt "$G/empty.txt"
assert_same_file "$L/empty.txt" "$G/empty.txt"
assert_same_mtime "$L/empty.txt" "$G/empty.txt"
fy_ok put -r "$L/with-empty" /with-empty
fy_ok get -r /with-empty "$G/with-empty"
diff -r "$L/with-empty" "$G/with-empty" >/dev/null || fail "get -r of a tree with an empty file differs"

stop_server
