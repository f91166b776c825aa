#!/usr/bin/env bash
# Issue 4's kill loop: in each iteration a 64 MiB upload or download is cut
# by SIGKILL of the client or of the server at a random moment. Whatever
# was killed is restarted and the same command run again; every iteration
# must end byte-identical, with every acknowledged chunk on disk and intact
# (R-CHUNK-7), PRAGMA integrity_check ok, and nothing partial visible under
# the destination name (R-STORE-6). FERRY_E2E_KILL_ITER sets the count
# (default 20); FERRY_E2E_KILL_SEED replays a run.
source "$(dirname "$0")/lib.sh"

command -v sqlite3 >/dev/null || fail "sqlite3 (the command-line shell) is required"

ITER=${FERRY_E2E_KILL_ITER:-20}
SEED=${FERRY_E2E_KILL_SEED:-$(date +%s)}
RANDOM=$SEED
log "seed $SEED (FERRY_E2E_KILL_SEED=$SEED replays this run), $ITER iterations"
MIB=64

# Chunks of removed files go once their 60 s TTL is over (R-CHUNK-11).
start_server --signup open --partial-ttl 60
PORT1=$PORT
new_client alice
signup alice 'kill loop password'
L=$WORK/local G=$WORK/got
mkdir -p "$L" "$G"

restart_server() {
    SRV_DATA=$DATA SRV_LISTEN=127.0.0.1:$PORT1 start_server --signup open --partial-ttl 60
}

# Runs ferry in the background, kills the client or the server after a
# random delay (the random moment is the point: this sleep synchronises
# nothing), and brings a killed server back.
cut_run() { # VICTIM ARGS...
    local victim=$1 pid delay_ms
    shift
    "$FERRY_BIN" "$@" >"$WORK/bg.out" 2>"$WORK/bg.err" &
    pid=$!
    ALL_PIDS+=("$pid")
    delay_ms=$((RANDOM % 1500))
    sleep "$(printf '0.%03d' "$delay_ms")"
    if [[ "$victim" == client ]]; then
        exec 3>&2 2>/dev/null
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        exec 2>&3 3>&-
        log "  client killed after ${delay_ms} ms"
    else
        kill9_server
        log "  server killed after ${delay_ms} ms"
        restart_server
        # A client that was still running carries on or gives up by itself.
        wait_exit "$pid" 120 "ferry $1 after the server restart"
        assert_sanitizer_clean "$WORK/bg.err" "ferry $1 cut by a server kill"
        [[ "$WAIT_RC" == 0 || "$WAIT_RC" == 4 ]] ||
            fail "ferry $1 cut by a server kill exited $WAIT_RC: $(<"$WORK/bg.err")"
    fi
}

for ((i = 1; i <= ITER; i++)); do
    victim=$([[ $((RANDOM % 2)) == 0 ]] && echo client || echo server)
    phase=$([[ $((RANDOM % 2)) == 0 ]] && echo upload || echo download)
    log "iteration $i: $phase, killing the $victim"
    f=$L/f$i.bin
    head -c $((MIB << 20)) /dev/urandom >"$f"
    if [[ "$phase" == upload ]]; then
        cut_run "$victim" put -q --retry-for 5 "$f" "/f$i.bin"
        # Whatever happened, nothing partial is visible (R-STORE-6).
        fy ls "/f$i.bin"
        if [[ "$RC" == 0 ]]; then
            fy_ok get -q "/f$i.bin" "$G/check$i.bin"
            assert_same_file "$f" "$G/check$i.bin"
            rm -f "$G/check$i.bin"
        fi
        assert_chunks_sound "iteration $i after the kill"
        fy_ok put -q "$f" "/f$i.bin"
    else
        fy_ok put -q "$f" "/f$i.bin"
        cut_run "$victim" get -q "/f$i.bin" "$G/f$i.bin"
        # The destination name holds the whole file or nothing.
        if [[ -e "$G/f$i.bin" ]]; then
            assert_same_file "$f" "$G/f$i.bin"
        fi
        rm -f "$G/f$i.bin"
    fi
    fy_ok get -q "/f$i.bin" "$G/f$i.bin"
    assert_same_file "$f" "$G/f$i.bin"
    assert_chunks_sound "iteration $i"
    rm -f "$f" "$G/f$i.bin" "$G"/.ferry-*.part
    fy_ok rm "/f$i.bin"
done
stop_server
