#!/usr/bin/env bash
# Issue 9, item 20: mv and rm say what happened, about the right path, and
# do what mv and rm do (R-CLI-11; section 6.3 for Remove).
# Before: `mv /emptytree /nodir/x` said "/emptytree: not found"; `mv /y.txt
# /docs` onto an existing folder said "already exists" instead of moving the
# file into it; `mv /docs /docs/sub/x` said "invalid path name"; and `rm` of
# an empty folder removed it without -r (R-CLI-12).
source "$(dirname "$0")/lib.sh"

assert_err_lacks() { assert_not_contains "$ERR" "$1" "stderr of $LAST_CMD"; }

start_server --signup open
new_client alice
signup alice 'mv test password'
L=$WORK/local
mkdir -p "$L/empty" "$L/docs/sub"
cd "$L"
printf 'y\n' >y.txt
printf 'a\n' >docs/a.txt
printf 'f\n' >docs/sub/f.txt
fy_ok put -r empty /emptytree
fy_ok put -r docs /docs
fy_ok put y.txt /y.txt
for f in m1 m2 m3; do fy_ok put y.txt "/$f.txt"; done

# ---------------------------------------------------------------- the path at fault
fy mv /emptytree /nodir/x
assert_rc 1 "mv into a missing folder"
assert_err_contains '/nodir: no such folder'
assert_err_lacks '/emptytree: not found'
fy mv /y.txt /y.txt/x
assert_rc 1 "mv under a file"
assert_err_contains '/y.txt is not a folder'
fy mv /missing.txt /docs/x.txt
assert_rc 1 "mv of a missing source"
assert_err_contains '/missing.txt: not found'

# ---------------------------------------------------------------- into an existing folder
fy mv /y.txt /docs
assert_rc 0 "mv of a file onto an existing folder"
fy_ok ls /docs
assert_out_line 'y.txt'
fy_ok ls /
assert_out_no_line 'y.txt'
# Several sources go into a folder; onto anything else they are refused.
fy_ok mv /m1.txt /m2.txt /docs/sub
fy_ok ls /docs/sub
assert_out_line 'm1.txt'
assert_out_line 'm2.txt'
fy mv /m3.txt /docs/a.txt /docs/y.txt
assert_rc 1 "mv of two sources onto a file"
assert_err_contains 'not a folder'
# A trailing '/' names a folder: a missing one is an error, not a new name.
fy mv /m3.txt /newname/
assert_rc 1 "mv onto a missing folder/"
assert_err_contains '/newname/: not a folder'
fy_ok mv /m3.txt /docs/sub/
fy_ok ls /docs/sub
assert_out_line 'm3.txt'
# -T: TO is a name even when it is a folder.
fy mv -T /docs/sub/m3.txt /emptytree
assert_rc 1 "mv -T of a file onto a folder"
assert_err_lacks 'no such folder'
# A name that exists in the folder is not replaced without -f.
fy_ok put y.txt /y.txt
fy mv /y.txt /docs
assert_rc 1 "mv into a folder that has the name already"
assert_err_contains '/docs/y.txt: it already exists (-f replaces it)'
fy_ok mv -f /y.txt /docs

# ---------------------------------------------------------------- into itself
fy mv /docs /docs/sub/x
assert_rc 1 "mv of a folder into its own subtree"
assert_err_contains 'a folder cannot move into itself'
assert_err_lacks 'invalid path name'
fy mv /docs /docs/sub
assert_rc 1 "mv of a folder into its own subfolder"
assert_err_contains 'a folder cannot move into itself'
fy mv /docs /
assert_rc 1 "mv of a folder to where it is"
assert_err_contains 'are the same'
fy_ok ls -R /docs
assert_out_line 'sub/f.txt'

# ---------------------------------------------------------------- rm needs -r for any folder
fy rm /emptytree
assert_rc 1 "rm of an empty folder without -r"
assert_err_contains '/emptytree: is a folder (use -r)'
fy_ok ls /
assert_out_line 'emptytree/'
fy rm /docs
assert_rc 1 "rm of a folder without -r"
assert_err_contains '/docs: is a folder (use -r)'
fy_ok rm -r /emptytree
fy_ok ls /
assert_out_no_line 'emptytree/'
# Some removed, one refused: exit 3, the refusal named.
fy rm /docs/a.txt /docs/sub
assert_rc 3
assert_err_contains '/docs/sub: is a folder (use -r)'
fy_ok ls /docs
assert_out_no_line 'a.txt'

stop_server
