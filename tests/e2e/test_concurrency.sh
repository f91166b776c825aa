#!/usr/bin/env bash
# Many clients at once: five ferry processes of one device share its state
# database (one writer behind a lock) while three users upload and list in
# parallel; every file arrives intact and the server stays clean.
source "$(dirname "$0")/lib.sh"

start_server --signup open --max-unauth-per-ip 64
L=$WORK/local
mkdir -p "$L"
for u in ann ben cat; do
    new_client "$u"
    signup "$u" "password of $u"
    mkdir -p "$L/$u"
    for i in 1 2 3 4 5; do
        head -c $((100000 + i * 7919)) /dev/urandom >"$L/$u/f$i.bin"
    done
done

# Five processes per device, three devices, all at the same time.
pids=()
for u in ann ben cat; do
    for i in 1 2 3 4 5; do
        XDG_STATE_HOME="$WORK/clients/$u/state" timeout 120 "$FERRY_BIN" put -q \
            "$L/$u/f$i.bin" "/f$i.bin" >"$WORK/$u.$i.out" 2>"$WORK/$u.$i.err" &
        pids+=($!)
    done
    XDG_STATE_HOME="$WORK/clients/$u/state" timeout 120 "$FERRY_BIN" ls / \
        >"$WORK/$u.ls.out" 2>"$WORK/$u.ls.err" &
    pids+=($!)
done
for pid in "${pids[@]}"; do
    wait "$pid" || fail "a concurrent ferry process failed: $(cat "$WORK"/*.err)"
done
for f in "$WORK"/*.err; do
    assert_sanitizer_clean "$f" "client $(basename "$f")"
done

# Everything arrived, each user got their own bytes back.
for u in ann ben cat; do
    use_client "$u"
    mkdir -p "$WORK/back/$u"
    fy_ok get /f1.bin /f2.bin /f3.bin /f4.bin /f5.bin "$WORK/back/$u"
    for i in 1 2 3 4 5; do
        check assert_same_file "$L/$u/f$i.bin" "$WORK/back/$u/f$i.bin"
    done
done
[[ "$(sqlite3 "$DATA/ferry.db" 'PRAGMA integrity_check')" == ok ]] || fail "integrity_check"
stop_server
