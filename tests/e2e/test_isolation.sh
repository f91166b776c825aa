#!/usr/bin/env bash
# Two users on one server: each sees only their own tree, may use the same
# names with other content, and content is stored and deduplicated per user
# only (R-STORE-7, R-PATH-5).
source "$(dirname "$0")/lib.sh"

start_server --signup open
new_client alice
signup alice 'alice-password-1'
new_client bob
signup bob 'bob-password-22'

L=$WORK/local G=$WORK/got
mkdir -p "$L/alice/private" "$L/bob" "$G/alice" "$G/bob"
printf 'alice secret\n' >"$L/alice/private/secret.txt"
printf 'alice: my notes\n' >"$L/alice/notes.txt"
printf 'bob: completely different notes, longer\n' >"$L/bob/notes.txt"
# Uploaded by both; large enough to be a blob file, not inline content.
head -c 300000 /dev/urandom >"$L/same.bin"
same_hex=$(sha256sum "$L/same.bin" | cut -d' ' -f1)

use_client alice
fy_ok put -r "$L/alice/private" /private
fy_ok put "$L/alice/notes.txt" /notes.txt
fy_ok put "$L/same.bin" /same.bin

use_client bob
fy_ok put "$L/bob/notes.txt" /notes.txt
fy_ok put "$L/same.bin" /same.bin

# bob's root shows only his files.
fy_ok ls /
assert_eq "$OUT" "$(printf 'notes.txt\nsame.bin')" "bob's ls /"
fy_ok ls -R --json /
assert_eq "$(json_names | sort | tr '\n' ' ')" 'notes.txt same.bin ' "bob's ls -R --json /"
# alice's paths do not exist for bob: listing, getting, moving, removing fail.
fy ls /private
assert_rc 1 "bob: ls of alice's folder"
assert_err_contains 'not found'
fy ls /private/secret.txt
assert_rc 1 "bob: ls of alice's file"
fy get /private/secret.txt "$G/bob/stolen.txt"
assert_rc 1 "bob: get of alice's file"
assert_no_file "$G/bob/stolen.txt"
fy get -r /private "$G/bob/stolen-dir"
assert_rc 1 "bob: get -r of alice's folder"
[[ -z "$(find "$G/bob" -type f)" ]] || fail "bob's get of alice's files wrote something"
fy mv /private/secret.txt /mine.txt
assert_rc 1 "bob: mv of alice's file"
fy rm -r /private
assert_rc 1 "bob: rm -r of alice's folder"
# A leading slash means the user's own root, and '..' cannot climb out of it (R-PATH-1).
fy ls /../alice
assert_rc 1 "bob: ls /../alice"
fy ls ../private
assert_rc 1 "bob: ls ../private"
fy ls /private/../notes.txt
assert_rc 1 "bob: ls with a '..' component"
# The same name holds bob's own bytes.
fy_ok get /notes.txt "$G/bob/notes.txt"
assert_same_file "$L/bob/notes.txt" "$G/bob/notes.txt"

use_client alice
fy_ok ls /
assert_eq "$OUT" "$(printf 'notes.txt\nprivate/\nsame.bin')" "alice's ls /"
fy_ok get /notes.txt "$G/alice/notes.txt"
assert_same_file "$L/alice/notes.txt" "$G/alice/notes.txt"
# bob's failed mv and rm changed nothing of alice's.
fy_ok get /private/secret.txt "$G/alice/secret.txt"
assert_same_file "$L/alice/private/secret.txt" "$G/alice/secret.txt"
fy_ok get /same.bin "$G/alice/same.bin"
assert_same_file "$L/same.bin" "$G/alice/same.bin"

# R-STORE-7: the content both uploaded is stored once per user, under each
# user's id: blobs/<uid>/<hh>/<64 hex>.
mapfile -t copies < <(cd "$DATA" && find blobs -type f -name "$same_hex" | sort)
[[ ${#copies[@]} == 2 ]] || fail "expected the shared content under 2 user ids, found: ${copies[*]:-none}"
uid1=$(cut -d/ -f2 <<<"${copies[0]}") uid2=$(cut -d/ -f2 <<<"${copies[1]}")
[[ "$uid1" != "$uid2" ]] || fail "both copies are under the same user id: ${copies[*]}"
for c in "${copies[@]}"; do
    [[ "$c" == "blobs/"*"/${same_hex:0:2}/$same_hex" ]] || fail "blob path not blobs/<uid>/<hh>/<hex>: $c"
    cmp -s "$DATA/$c" "$L/same.bin" || fail "blob $c does not hold the uploaded bytes"
done
# Every blob file holds exactly the content its name says, and is content
# someone uploaded (small content may be kept inline in the database instead).
uploaded=$(sha256sum "$L/same.bin" "$L/alice/notes.txt" "$L/alice/private/secret.txt" \
    "$L/bob/notes.txt" | cut -d' ' -f1)
while IFS= read -r -d '' b; do
    name=${b##*/}
    [[ "$(sha256sum <"$b" | cut -d' ' -f1)" == "$name" ]] || fail "blob $b does not hold content $name"
    grep -qxF "$name" <<<"$uploaded" || fail "blob $b is not content anyone uploaded"
done < <(find "$DATA/blobs" -type f -print0)
# R-PATH-5: no user-chosen name reaches the server's file system.
leak=$(find "$DATA" \( -name 'notes.txt' -o -name 'secret.txt' -o -name 'private' -o -name 'same.bin' \))
[[ -z "$leak" ]] || fail "client names appear in the data directory: $leak"

# Within one user, the same content twice is stored once (dedup per user).
use_client alice
fy_ok put "$L/same.bin" /copy-of-same.bin
[[ "$(find "$DATA/blobs" -type f -name "$same_hex" | wc -l)" == 2 ]] ||
    fail "a second copy for the same user was stored twice"
# Removing alice's copies drops only her blob; bob's stays and still downloads.
fy_ok rm /same.bin /copy-of-same.bin
[[ "$(find "$DATA/blobs" -type f -name "$same_hex" | wc -l)" == 1 ]] ||
    fail "after alice removed her copies, expected only bob's blob to remain"
use_client bob
fy_ok get /same.bin "$G/bob/same.bin"
assert_same_file "$L/same.bin" "$G/bob/same.bin"

stop_server
