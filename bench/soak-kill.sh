#!/usr/bin/env bash
# bench/soak-kill.sh: crash soak for chunked transfers (issue 4). Each iteration uploads a file of
# fresh random bytes (default 64 MiB) and downloads it again, and at a random moment kills either
# the client or the server with SIGKILL. What was killed is restarted (the server on the same
# port, from the same data directory), and the interrupted command is run again until it succeeds.
# Then it checks:
#   - the downloaded file is byte-identical to the source (cmp);
#   - `PRAGMA integrity_check` of the server's ferry.db says ok;
#   - every row of the chunks table has its bytes in its pack packs/<uid>/<id>.pack at its offset,
#     with that size and that SHA-256 (hashed the first time its row is seen; after the last
#     iteration every chunk is hashed again), and each pack counts the rows that point into it.
# and removes the remote file, so the next iteration starts from an empty tree.
#
# Usage: bench/soak-kill.sh [-n N] [options]        (bench/soak-kill.sh --help)
# It prints one line per iteration and a summary line:
#   SOAK iterations=N passed=P failed=F ...
# Exit status 0 when every iteration passed, 1 otherwise. Nothing leaves 127.0.0.1.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$BENCH_DIR/lib.sh"

usage() {
    cat <<EOF
usage: bench/soak-kill.sh [options]

  -n N              iterations (default 500)
  --size-mb N       file size in MiB (default 64)
  --seed S          seed for the random choices (bash \$RANDOM; default: from /dev/urandom)
  --victims LIST    what may be killed: client,server (default both, chosen at random)
  --attempts N      runs of one command (put or get) before the iteration fails (default 10)
  --partial-ttl S   the server's --partial-ttl (default 60). Chunks stay for this long after they
                    were stored even when the file that used them is removed (R-CHUNK-11): with the
                    server's default of 24 h, 500 iterations would keep 32 GB of chunks. Every rerun
                    follows its kill within seconds, so 60 s still keeps what a resume needs.
  --ferry PATH      use this ferry binary instead of building one
  --build-dir DIR   where to build ferry (default ROOT/build/bench, the -O2 build of compare.sh)
  --workdir DIR     scratch directory, empty or new (default: mktemp -d under /var/tmp, removed at
                    the end unless --keep is given or an iteration failed)
  --keep            keep the scratch directory
  --stop-on-fail    stop at the first failed iteration (its state is kept)
  -h, --help        this text

The random moment is uniform over [0, 0.9 D), D being the time an undisturbed put + get took in a
calibration iteration (iteration 0, never killed). A server kill is followed by a random pause of
0-500 ms before the restart; a put whose server went away keeps retrying by itself (--retry-for,
default 60 s), every other interrupted command is run again.
EOF
}

N=500
SIZE_MB=64
SEED=""
VICTIMS=client,server
ATTEMPTS=10
PTTL=60
FERRY=""
BUILD_DIR=$ROOT/build/bench
W=""
KEEP=0
STOP_ON_FAIL=0
need_arg() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case $1 in
    -n) need_arg "$@"; N=$2; shift 2 ;;
    --size-mb) need_arg "$@"; SIZE_MB=$2; shift 2 ;;
    --seed) need_arg "$@"; SEED=$2; shift 2 ;;
    --victims) need_arg "$@"; VICTIMS=$2; shift 2 ;;
    --attempts) need_arg "$@"; ATTEMPTS=$2; shift 2 ;;
    --partial-ttl) need_arg "$@"; PTTL=$2; shift 2 ;;
    --ferry) need_arg "$@"; FERRY=$2; shift 2 ;;
    --build-dir) need_arg "$@"; BUILD_DIR=$2; shift 2 ;;
    --workdir) need_arg "$@"; W=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --stop-on-fail) STOP_ON_FAIL=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done
for v in N SIZE_MB ATTEMPTS PTTL; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} == 0)); then die "${v,,} must be a positive integer"; fi
done
VICT=()
IFS=, read -r -a vl <<<"$VICTIMS"
for v in "${vl[@]}"; do
    case $v in client | server) VICT+=("$v") ;; *) die "--victims: client and/or server" ;; esac
done
[[ -z $SEED ]] && SEED=$(od -An -tu2 -N2 /dev/urandom | tr -d ' ')
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a number"
RANDOM=$SEED
for c in python3 cmp timeout od dd; do command -v "$c" >/dev/null 2>&1 || die "'$c' is needed"; done

# ---------------------------------------------------------------- scratch, clean-up
SPID="" CPID="" W_CREATED=0 FAILED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM PIPE
    if [[ -n $CPID ]] && kill -0 "$CPID" 2>/dev/null; then kill -KILL "$CPID" 2>/dev/null || true; fi
    if [[ -n $SPID ]]; then stop_pid "$SPID" "ferry serve"; fi
    if ((W_CREATED)); then
        if ((KEEP == 0 && FAILED == 0 && rc == 0)); then
            rm -rf -- "$W"
        else
            info "scratch directory kept: $W (logs in $W/logs)"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
if [[ -z $W ]]; then
    W=$(mktemp -d /var/tmp/ferry-soak.XXXXXX)
    W_CREATED=1
else
    mkdir -p "$W"
    W=$(cd "$W" && pwd)
    [[ -z $(ls -A "$W") ]] || die "--workdir $W is not empty"
fi
LOGDIR=$W/logs
DATA=$W/data
SRC=$W/src/f.bin
DOWN=$W/down
mkdir -p "$LOGDIR" "$DATA" "$W/src" "$DOWN" "$W/client"/{state,config,data,cache}
export XDG_STATE_HOME=$W/client/state XDG_CONFIG_HOME=$W/client/config
export XDG_DATA_HOME=$W/client/data XDG_CACHE_HOME=$W/client/cache

# ---------------------------------------------------------------- ferry
if [[ -z $FERRY ]]; then
    log=$LOGDIR/build.log
    info "building ferry (-O2 Release) in $BUILD_DIR (log: $log)"
    if ! build_o2 "$ROOT" "$BUILD_DIR" "$log"; then
        show_tail "$log" 30
        die "ferry did not build (log: $log)"
    fi
    FERRY=$BUILD_DIR/ferry
    git_rev "$ROOT" >"$BUILD_DIR/bench-commit.txt"
fi
[[ -x $FERRY ]] || die "$FERRY is not an executable"
FERRY=$(cd "$(dirname "$FERRY")" && pwd)/$(basename "$FERRY")

PORT=0 SID="" RESTARTS=0
# server_start: start `ferry serve` (on PORT once it is known) and wait for its line.
server_start() {
    local out=$W/serve.out try line i
    for try in 1 2 3 4 5 6 7 8 9 10; do
        : >"$out"
        "$FERRY" serve --data "$DATA" --listen "127.0.0.1:$PORT" --signup open --partial-ttl "$PTTL" \
            >"$out" 2>>"$LOGDIR/serve.err" </dev/null &
        SPID=$!
        for ((i = 0; i < 1000; i++)); do
            line=$(head -n 1 "$out" 2>/dev/null || true)
            if [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)\ id\ ([^[:space:]]+)$ ]]; then
                PORT=${BASH_REMATCH[1]}
                [[ -z $SID || $SID == "${BASH_REMATCH[2]}" ]] || die "the server id changed across a restart"
                SID=${BASH_REMATCH[2]}
                return 0
            fi
            kill -0 "$SPID" 2>/dev/null || break
            sleep 0.02
        done
        wait "$SPID" 2>/dev/null || true
        SPID=""
        warn "ferry serve did not start (try $try; stderr: $LOGDIR/serve.err); retrying in 1 s"
        show_tail "$LOGDIR/serve.err" 3
        sleep 1
    done
    die "ferry serve would not start on 127.0.0.1:$PORT"
}

alive() { # PID: running and not a zombie
    local s
    [[ -n $1 && -r /proc/$1/stat ]] || return 1
    read -r s <"/proc/$1/stat" 2>/dev/null || return 1
    s=${s##*) }
    [[ ${s%% *} != Z ]]
}

server_kill_restart() {
    local pause
    kill -KILL "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
    pause=$((RANDOM % 500))
    sleep "$(awk -v p="$pause" 'BEGIN { printf "%.3f", p / 1000 }')"
    server_start
    RESTARTS=$((RESTARTS + 1))
}

# check_store [full]: integrity_check, and every chunks row against its bytes (in its pack, or
# its file for a store of the old layout): inside the pack's recorded end, with that size and that
# SHA-256 the first time a row is seen (or for every row with "full"), and each pack's row count.
# A row's bytes never move or change while it exists, so $W/verified (rows already hashed) keeps
# the check from growing with the store. tests/e2e/check_chunks.py does the work.
check_store() {
    if [[ ${1:-} == full ]]; then
        python3 "$ROOT/tests/e2e/check_chunks.py" "$DATA"
    else
        python3 "$ROOT/tests/e2e/check_chunks.py" "$DATA" --seen "$W/verified"
    fi
}

# ---------------------------------------------------------------- one iteration
# run_cmd PHASE: start the client command of PHASE (put or get) in the background (CPID).
# The client runs directly (no timeout(1) in between), so CPID is the process a client kill hits;
# the iteration's own watchdog (ITER_LIMIT) stands in for timeout.
run_cmd() {
    if [[ $1 == put ]]; then
        "$FERRY" put -q "$SRC" /f.bin </dev/null >>"$ITLOG" 2>&1 &
    else
        "$FERRY" get -q /f.bin "$DOWN/f.bin" </dev/null >>"$ITLOG" 2>&1 &
    fi
    CPID=$!
}
ITER_LIMIT=600

declare -A KILLS=()
ITER_SECS=()
PARTS=0 LATE=0 PASSED=0
iteration() { # I DELAY_MS (DELAY_MS < 0: no kill)
    local i=$1 delay=$2 victim="" phase=put rc t0 now kill_at killed=0 kphase="" attempts_put=1 attempts_get=0
    local t_start t_end secs k res="" status=ok why="" p
    ITLOG=$LOGDIR/iter_$i.log
    : >"$ITLOG"
    rand_fill "$SRC" "$SIZE_MB"
    rm -f "$DOWN/f.bin"
    ((delay >= 0)) && victim=${VICT[RANDOM % ${#VICT[@]}]}
    stamp t_start
    t0=${t_start/./}
    kill_at=$((t0 + delay * 1000))
    run_cmd put
    while :; do
        if ! alive "$CPID"; then
            rc=0
            wait "$CPID" 2>/dev/null || rc=$?
            echo "[$phase exit $rc]" >>"$ITLOG"
            if ((rc == 0)); then
                if [[ $phase == put ]]; then
                    phase="get"
                    attempts_get=1
                    run_cmd get
                    continue
                fi
                CPID=""
                stamp now
                XFER_SECS=$(fsub "$now" "$t_start")
                break
            fi
            # A failed or killed run: run it again (the server first, if it is down).
            alive "$SPID" || server_start
            if [[ $phase == put ]]; then k=$((++attempts_put)); else k=$((++attempts_get)); fi
            if ((k > ATTEMPTS)); then
                status=FAIL why="$phase still failing after $ATTEMPTS runs (exit $rc)"
                CPID=""
                break
            fi
            run_cmd "$phase"
            continue
        fi
        if ((delay >= 0 && killed == 0)); then
            stamp now
            if ((${now/./} >= kill_at)); then
                killed=1 kphase=$phase
                if [[ $victim == client ]]; then
                    kill -KILL "$CPID" 2>/dev/null || true
                    echo "[SIGKILL client during $phase at $(((${now/./} - t0) / 1000)) ms]" >>"$ITLOG"
                else
                    echo "[SIGKILL server during $phase at $(((${now/./} - t0) / 1000)) ms]" >>"$ITLOG"
                    server_kill_restart
                fi
            fi
        fi
        stamp now
        if ((${now/./} - t0 > ITER_LIMIT * 1000000)); then
            kill -KILL "$CPID" 2>/dev/null || true
            wait "$CPID" 2>/dev/null || true
            status=FAIL why="no success within $ITER_LIMIT s (the $phase run hangs?)"
            CPID=""
            break
        fi
        sleep 0.01
    done 2>>"$ITLOG" # bash's own "Killed" notices of the client go to the log
    if ((delay >= 0 && killed == 0)); then
        # The moment fell after both commands finished: kill the idle server all the same (a
        # client has nothing left to kill), so every iteration restarts something.
        kphase=late
        LATE=$((LATE + 1))
        UNDISTURBED+=("$XFER_SECS") # a put + get nothing interrupted: it recalibrates D
        if [[ $victim == server ]]; then server_kill_restart; fi
        echo "[kill of the $victim after both commands had finished]" >>"$ITLOG"
    fi
    if [[ $status == ok ]]; then
        if ! cmp -s "$SRC" "$DOWN/f.bin"; then
            status=FAIL why="the downloaded file differs from the source"
        elif ! res=$(check_store 2>&1); then
            status=FAIL why="store check: ${res//$'\n'/; }"
        fi
        echo "store check: ${res:-}" >>"$ITLOG"
    fi
    # Stale temporary files of killed downloads (a SIGKILLed client cannot remove them).
    p=$(find "$DOWN" -maxdepth 1 -name '.ferry-*.part' | wc -l)
    PARTS=$((PARTS + p))
    find "$DOWN" -maxdepth 1 -name '.ferry-*.part' -delete
    if [[ $status == ok ]] && ! timeout 120 "$FERRY" rm /f.bin </dev/null >>"$ITLOG" 2>&1; then
        status=FAIL why="ferry rm /f.bin failed"
    fi
    stamp t_end
    secs=$(fsub "$t_end" "$t_start")
    ITER_SECS+=("$secs")
    if ((delay >= 0)); then KILLS["$victim|$kphase"]=$((${KILLS["$victim|$kphase"]:-0} + 1)); fi
    if [[ $status == ok ]]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
    fi
    printf 'iter %4d  %-6s %-6s at %5s ms  runs put %d get %d  %6.2f s  %s%s\n' "$i" "${victim:-none}" \
        "${kphase:--}" "$( ((delay >= 0)) && echo "$delay" || echo -)" "$attempts_put" "$attempts_get" "$secs" \
        "$status" "${why:+: $why (log: $ITLOG)}"
    [[ $status == ok ]]
}

# ---------------------------------------------------------------- main
printf '# ferry bench/soak-kill.sh: %s, %s iterations of %s MiB, seed %s, victims %s\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$N" "$SIZE_MB" "$SEED" "${VICT[*]}"
printf '# ferry: %s (commit %s); scratch %s; load average %s\n' "$FERRY" \
    "$(ferry_rev "$FERRY")" "$W" "$(cut -d' ' -f1-3 /proc/loadavg)"
server_start
info "ferry serve: pid $SPID, 127.0.0.1:$PORT"
pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
printf '%s\n' "$pw" | timeout 60 "$FERRY" signup --server "127.0.0.1:$PORT" --server-id "$SID" \
    --user soak --password-stdin >"$LOGDIR/signup.log" 2>&1 || {
    show_tail "$LOGDIR/signup.log"
    die "signup failed"
}

# Calibration: one undisturbed put + get. Later, D follows the median of the last 20 undisturbed
# put + get times (iterations whose kill came late), as the first run is slower than the rest.
XFER_SECS=0
UNDISTURBED=()
iteration 0 -1 || die "the calibration iteration (no kill) failed"
UNDISTURBED=("$XFER_SECS")
set_d() {
    local n=${#UNDISTURBED[@]}
    ((n > 20)) && UNDISTURBED=("${UNDISTURBED[@]:n-20}")
    D_MS=$(awk -v s="$(median "${UNDISTURBED[@]}")" 'BEGIN { printf "%d", s * 900 }')
    ((D_MS > 50)) || D_MS=50
}
set_d
info "calibration: put + get took $XFER_SECS s (with the checks ${ITER_SECS[0]} s); kill moments start uniform over [0, $D_MS) ms"
D_ALL=()
ITER_SECS=()
PASSED=0
stamp T_ALL0
for ((it = 1; it <= N; it++)); do
    D_ALL+=("$D_MS")
    if ! iteration "$it" $(((RANDOM * 32768 + RANDOM) % D_MS)) && ((STOP_ON_FAIL)); then
        warn "stopping at the first failure (--stop-on-fail)"
        break
    fi
    set_d
done
stamp T_ALL1
done_n=${#ITER_SECS[@]}
# A last full pass: every chunk file hashed again.
if final=$(check_store full 2>&1); then
    info "final full store check: ok ($final)"
else
    FAILED=$((FAILED + 1))
    warn "final full store check FAILED: ${final//$'\n'/; }"
fi
kc=0 ks=0
for k in "${!KILLS[@]}"; do
    if [[ $k == client* ]]; then kc=$((kc + KILLS[$k])); else ks=$((ks + KILLS[$k])); fi
done
detail=$(for k in "${!KILLS[@]}"; do printf '%s=%s ' "${k/|/:}" "${KILLS[$k]}"; done | tr ' ' '\n' | sort | tr '\n' ' ')
printf '\nSOAK iterations=%d passed=%d failed=%d size_mib=%s seed=%s partial_ttl=%s kills_client=%d kills_server=%d server_restarts=%d late_kills=%d stale_part_files=%d mean_iter_s=%s median_iter_s=%s total_s=%s\n' \
    "$done_n" "$PASSED" "$FAILED" "$SIZE_MB" "$SEED" "$PTTL" "$kc" "$ks" "$RESTARTS" "$LATE" "$PARTS" \
    "$(printf '%s\n' "${ITER_SECS[@]}" | awk '{ s += $1 } END { if (NR) printf "%.2f", s / NR; else print "NA" }')" \
    "$(fmt "$(median "${ITER_SECS[@]}")" %.2f)" "$(fmt "$(fsub "$T_ALL1" "$T_ALL0")" %.0f)"
printf 'kills by victim:phase: %s(late: the moment fell after the get had finished; a late server kill still restarts the server)\n' "$detail"
printf 'kill window D: median %s ms (0.9 x the median of the last 20 undisturbed put + get times); final store: %s (files - rows = chunk files without a row, left by server kills; R-STORE-1 allows them)\n' \
    "$(fmt "$(median "${D_ALL[@]}")" %.0f)" "${final:-}"
((FAILED == 0))
