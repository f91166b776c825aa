#!/usr/bin/env bash
# A hostile server against `ferry get` (issue 9 item 16). The server
# (tests/e2e/hostile_server.py) presents the identity of a real `ferry serve`
# the client logged in to, so the client trusts it, and then:
#   - R-RECV-7: sends a recursive listing without a last page: the client
#     stops at its cap, with a clear error, exit 1, its memory bounded;
#   - R-RECV-6: declares a file of 2^62 bytes: the client refuses it before
#     a part file exists, says why, exit 1, and cancels the transfer.
# And a server that checks every acknowledgement of a tree of 300 small
# files, one in five of which does not match its hash (issue 9 item 26):
#   - R-RECV-5, R-XFER-3: a 1.2 server remembers the last 64 downloads: the
#     client never acknowledges one it has forgotten, files failed after
#     their data included, and never sends it `tids`;
#   - R-XFER-6: a 1.3 server announcing 1024 gets the acknowledgements in
#     `tids`, many to a message.
# And 1.4 servers that answer small files with file frames (R-XFER-7, R-FILE):
#   - R-FILE-3, R-RECV-3: the same tree, an empty file, one of exactly 32695
#     bytes and one of 40000 (Transfer and data) among them: the client fails
#     exactly the files whose bytes do not match the frame's sha256, places the
#     others byte-identical with their mtime and mode, leaves no part file, and
#     acknowledges each placed one while the server remembers it, a file frame
#     counting as a TransferComplete (R-RECV-5), also against a memory of 64;
#   - R-FILE-1, R-FILE-2, R-FILE-3: a file frame from a 1.3 server, one
#     shorter than its header, one with flags 2, one whose ref is no Download,
#     a second one for an answered Download, and one while another download's
#     data is arriving are protocol faults: exit 1, no reconnect, nothing placed
#     for it, no part file, nothing acknowledged that the server did not finish.
source "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 is required (scripts/install-deps.sh installs it)"

# A real server, for its identity and the client's session and pin.
start_server --signup open
new_client alice
signup alice 'hostile server password'
IDDIR=$DATA/identity
[[ -s $IDDIR/key.pem && -s $IDDIR/cert.pem ]] || fail "no identity in $IDDIR"
stop_server

# start_hostile MODE: the hostile server on the real one's port; sets HPID, HLOG.
start_hostile() {
    local ready=$WORK/hostile-$1.ready
    HLOG=$WORK/hostile-$1.log
    : >"$HLOG"
    python3 "$FERRY_TESTS/e2e/hostile_server.py" "$1" "$PORT" "$IDDIR" "$SID" "$ready" "$HLOG" \
        2>"$WORK/hostile-$1.err" &
    HPID=$!
    ALL_PIDS+=("$HPID")
    wait_until 20 "the hostile server ($1) to listen" test -s "$ready"
}
stop_hostile() {
    kill "$HPID" 2>/dev/null || true
    wait "$HPID" 2>/dev/null || true
    [[ ! -s $WORK/hostile-$1.err ]] || fail "the hostile server failed: $(cat "$WORK/hostile-$1.err")"
}

# ---------------------------------------------------------------- R-RECV-7: a listing without end
start_hostile endless
mkdir -p "$WORK/out1"
# Peak memory of the client: the cap holds 128 MiB of names (twice: path and label);
# with the sanitizers' overhead the process peaks near 0.7 GiB (ASan) or 1 GiB (TSan).
# Without a cap it grows until killed; the exit status and message above are the proof.
FY_TIMEOUT=120 fy get -q -r /tree "$WORK/out1/tree" --retry-for 0
assert_rc 1 "get -r of an endless listing"
assert_err_contains "holds more than this client accepts"
grep -q '^listing$' "$HLOG" || fail "the hostile server never got the recursive DirInfo"
# The peak RSS, measured by a second run under /usr/bin/time (GNU time: %M in KiB).
if [[ -x /usr/bin/time ]]; then
    timeout -k 5 120 /usr/bin/time -f '%M' -o "$WORK/rss" "$FERRY_BIN" get -q -r /tree \
        "$WORK/out1/tree2" --retry-for 0 >/dev/null 2>"$WORK/rss.err" || true
    rss_kib=$(tail -n 1 "$WORK/rss")
    log "peak RSS of get -r against an endless listing: $((rss_kib / 1024)) MiB"
    ((rss_kib < 1536 * 1024)) || fail "get -r grew to $((rss_kib / 1024)) MiB on an endless listing"
    assert_sanitizer_clean "$WORK/rss.err" "get -r against an endless listing"
fi
stop_hostile endless

# ---------------------------------------------------------------- R-RECV-6: an absurd declared size
start_hostile huge
mkdir -p "$WORK/out2"
FY_TIMEOUT=120 fy get -q /huge.bin "$WORK/out2/" --retry-for 0
assert_rc 1 "get of a file declared 2^62 bytes"
assert_err_contains "not enough free space"
assert_err_contains "nothing was written"
[[ -z "$(ls -A "$WORK/out2")" ]] || fail "files left in the destination: $(ls -la "$WORK/out2")"
# R-XFER-4: the client told the server to stop (logged before the client's Disconnect).
wait_until 20 "the hostile server to log the client's TransferCancel" grep -q '^cancel ' "$HLOG"
stop_hostile huge

# ---------------------------------------------------------------- R-RECV-5, R-XFER-6: acknowledgements
for mode in old new; do
    start_hostile "$mode"
    mkdir -p "$WORK/acks-$mode"
    FY_TIMEOUT=300 fy get -q -r /tree "$WORK/acks-$mode/tree" --retry-for 0
    wait_until 20 "the $mode server to see the client go" grep -qE '^(disconnect|refused)' "$HLOG"
    ! grep '^refused' "$HLOG" || fail "the $mode server refused an acknowledgement"
    assert_rc 3 "get -r from the $mode server, 60 files of 300 not matching their hash"
    [[ "$(grep -c 'did not match its hash' <<<"$ERR")" == 60 ]] ||
        fail "$mode: expected 60 files failed by their hash: $(head -c 500 <<<"$ERR")"
    [[ "$(find "$WORK/acks-$mode/tree" -type f | wc -l)" == 240 ]] ||
        fail "$mode: expected 240 files placed"
    [[ "$(grep -c '^ack' "$HLOG")" == 240 ]] || fail "$mode: expected 240 acknowledgements"
    [[ "$(find "$WORK/acks-$mode/tree" -name '.ferry-*' | wc -l)" == 0 ]] || fail "$mode: part files left"
    stop_hostile "$mode"
done
grep -q '^tids ' "$WORK/hostile-old.log" && fail "the old server got tids"
grep -q '^ack$' "$WORK/hostile-new.log" && fail "the new server got acknowledgements one by one"
[[ "$(grep -c '^tids ' "$WORK/hostile-new.log")" -lt 240 ]] ||
    fail "the new server got no acknowledgement many to a message"
diff -r "$WORK/acks-old/tree" "$WORK/acks-new/tree" >/dev/null || fail "the two trees differ"

# ---------------------------------------------------------------- R-FILE-3, R-XFER-7: file frames (1.4)
# Whether every file named in a "did not match its hash" line of ERR is one of every fifth.
failed_are_fifths() {
    local n bad=0
    while read -r n; do
        ((n % 5 == 0)) || bad=$((bad + 1))
    done < <(grep 'did not match its hash' <<<"$ERR" | grep -oE 'd[0-2]/f[0-9]+' | sed 's/.*f//')
    ((bad == 0))
}
for mode in file-bad file-bad64; do
    start_hostile "$mode"
    mkdir -p "$WORK/$mode"
    FY_TIMEOUT=300 fy get -q -r /tree "$WORK/$mode/tree" --retry-for 0
    wait_until 20 "the $mode server to see the client go" grep -qE '^(disconnect|refused|closed)' "$HLOG"
    ! grep '^refused' "$HLOG" || fail "the $mode server refused an acknowledgement"
    grep -qE '^connect 1\.([4-9]|[1-9][0-9]+)$' "$HLOG" ||
        fail "$mode: the client did not announce 1.4: $(grep '^connect' "$HLOG")"
    assert_rc 3 "get -r from the $mode server, 60 files of 300 not matching their hash"
    [[ "$(grep -c 'content did not match its hash' <<<"$ERR")" == 60 ]] ||
        fail "$mode: expected 60 files failed by their hash: $(head -c 500 <<<"$ERR")"
    failed_are_fifths || fail "$mode: a file failed by its hash that matched it"
    placed=$(python3 "$FERRY_TESTS/e2e/hostile_server.py" check "$mode" "$WORK/$mode/tree") ||
        fail "$mode: the tree placed is wrong: $placed"
    [[ "$placed" == 240 ]] || fail "$mode: expected 240 files placed, got $placed"
    [[ "$(grep -c '^ack' "$HLOG")" == 240 ]] || fail "$mode: expected 240 acknowledgements"
    [[ "$(grep -c '^connect ' "$HLOG")" == 1 ]] || fail "$mode: the client connected more than once"
    stop_hostile "$mode"
done
diff -r "$WORK/file-bad/tree" "$WORK/file-bad64/tree" >/dev/null || fail "the two file-frame trees differ"

# R-FILE-1, R-FILE-2, R-FILE-3: file frames the client must take for a protocol fault.
for mode in file-old file-short file-flags file-ref file-dup file-mid; do
    start_hostile "$mode"
    mkdir -p "$WORK/$mode"
    FY_TIMEOUT=120 fy get -q -r /tree "$WORK/$mode/tree" --retry-for 0
    wait_until 20 "the $mode server to see the client go" grep -qE '^(disconnect|refused|closed)' "$HLOG"
    grep -q '^fault file ' "$HLOG" || fail "$mode: the server never sent its fault"
    assert_rc 1 "get -r from the $mode server (a protocol fault)"
    assert_err_contains "protocol error"
    assert_sanitizer_clean "$WORK/cmd$CMD_N.err" "get -r from the $mode server"
    ! grep '^refused' "$HLOG" || fail "$mode: the client acknowledged a download the server did not finish"
    # R-CLI-3: a protocol fault ends the command; another connection would meet it again.
    [[ "$(grep -c '^connect ' "$HLOG")" == 1 ]] || fail "$mode: the client connected again after a fault"
    placed=$(python3 "$FERRY_TESTS/e2e/hostile_server.py" check "$mode" "$WORK/$mode/tree") ||
        fail "$mode: the tree placed is wrong: $placed"
    if [[ $mode != file-dup ]]; then # file-dup's first frame for the file was sound
        while read -r f; do
            assert_no_file "$WORK/$mode/tree/$f"
        done < <(sed -n 's/^fault file //p' "$HLOG")
    fi
    log "$mode: a protocol fault, exit 1, $placed good files placed before it"
    stop_hostile "$mode"
done
