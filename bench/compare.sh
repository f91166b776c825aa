#!/usr/bin/env bash
# bench/compare.sh: ferry against rsync (daemon, daemon --fsync, over ssh), scp and nc on
# 127.0.0.1, interleaved round by round, each tool writing into a freshly emptied destination.
#
#   (a) one big file (default 1 GiB) up and down      -> median seconds and MB/s
#   (b) many small files (default 10,000 x 4 KiB) up   -> median seconds and files/s
#       and down (b-down): `ferry get -r` against rsync pulls from its daemon, each into a new
#       destination; wall time and CPU seconds (user + sys of every process: client and server)
#   (c) `ferry ls /` (a whole process) against rsync's no-op on an up-to-date big file
#
# Chunked transfers (issue 4; --only chunked, or any of resume, unchanged, delta):
#   resume     a big upload killed (kill -9 of the client) once about half of it is durable on the
#              server, then the same `ferry put` again: its bytes against the unacknowledged
#              remainder + 2 % of the file
#   unchanged  a big upload, then the same local file under a new remote name: wire < 1 MiB, time
#              <= 0.2x the first upload
#   delta-down the same two edits the other way: the server holds the edited file, the local
#              destination the original; ferry get against rsync's pull from its daemon.
#   delta      1 MiB overwritten in the middle (delta-mod) and 100 B inserted (delta-ins) of a big
#              file the server already holds: ferry's wire bytes and time against rsync's delta to
#              its daemon
#
# Usage: bench/compare.sh [options]        (bench/compare.sh --help, and bench/README.md)
# Nothing leaves 127.0.0.1. Every server is started here and stopped by its PID on exit.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$BENCH_DIR/lib.sh"

ALL_TOOLS=(ferry ferry-base rsyncd rsyncd-fsync rsync-ssh scp nc rsyncd-inplace)

usage() {
    cat <<EOF
usage: bench/compare.sh [options]

  --rounds N        rounds per scenario; each round runs every tool once, interleaved (default 5)
  --only LIST       scenarios to run, comma separated: a (= a-up,a-down), a-up, a-down,
                    b (= b-up,b-down), b-up, b-down, c,
                    and for chunked transfers (issue 4): resume, unchanged, delta
                    (= delta-mod,delta-ins), delta-mod, delta-ins, delta-down, chunked (= all of these)
                    (default a,b,c)
  --size-mb N       size of the big file in MiB (default 1024 = 1 GiB)
  --files N         number of 4 KiB files for (b) and (b-down) (default 10000, 100 per directory)
  --tools LIST      tools to run, comma separated, from: ${ALL_TOOLS[*]}
                    (default: all; rsyncd-inplace runs in the delta scenarios only, and
                    resume and unchanged measure ferry alone)
  --skip-ferry      measure the peers only (same as leaving ferry out of --tools)
  --ferry PATH      use this ferry binary instead of building one
  --base REV|PATH   also run an older ferry as the tool ferry-base, interleaved with the new one
                    in (a) and (b), each against its own server: a binary, or a git revision of
                    this repository built here (-O2, from `git archive`); ratios then compare
                    ferry with ferry-base too (throughput and CPU)
  --build-dir DIR   where to build ferry (default ROOT/build/bench, an -O2 Release build)
  --workdir DIR     scratch directory on the disk under test, empty or new (default: mktemp -d
                    under /var/tmp, deleted at the end unless --keep is given or a run failed;
                    a DIR given here is never deleted)
  --keep            keep the scratch directory
  --regen full|head before every run, give the big source new content: the whole file
                    (default: no chunk of it was ever seen, so nothing can be deduplicated) or
                    the first 4 KiB only (for dedup experiments; ferry's later runs then
                    send almost nothing and are not counted as throughput figures)
  --noop-runs N     timed runs per round for (c) (default 20, after 3 warm-up runs)
  --settle S        seconds to sleep after the untimed 'sync' before every timed run (default 1)
  --timeout S       limit for any one transfer (default 900)
  --kill-at PCT     resume: kill the client once PCT % of the file is durable on the server
                    (default 50)
  --kill-when acked|sent
                    resume: count PCT % in bytes durable on the server (acked, the default) or
                    in bytes the client has written to its sockets (sent: /proc/PID/io wchar)
  --rsync-port P, --ssh-port P, --nc-port P
                    preferred ports (defaults 8730, 2222, 9000; the next free one is used if busy)
  -h, --help        this text

Quick smoke run (about 45 s for the peers, plus whatever ferry takes):
  bench/compare.sh --size-mb 64 --files 500 --rounds 1
Chunked transfers only (issue 4), 3 rounds of 1 GiB:
  bench/compare.sh --only chunked --rounds 3
EOF
}

# ---------------------------------------------------------------- options
ROUNDS=5
ONLY=a,b,c
SIZE_MB=1024
FILES=10000
TOOLS_OPT=""
SKIP_FERRY=0
FERRY=""
BUILD_DIR=$ROOT/build/bench
W=""
KEEP=0
REGEN="full"
FERRY_BASE=""
NOOP_RUNS=20
SETTLE=1
TO=900
RSYNC_PORT=8730
SSH_PORT=2222
NC_PORT=9000
KILL_AT=50
KILL_WHEN=acked

need_arg() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case $1 in
    --rounds) need_arg "$@"; ROUNDS=$2; shift 2 ;;
    --only) need_arg "$@"; ONLY=$2; shift 2 ;;
    --size-mb) need_arg "$@"; SIZE_MB=$2; shift 2 ;;
    --files) need_arg "$@"; FILES=$2; shift 2 ;;
    --tools) need_arg "$@"; TOOLS_OPT=$2; shift 2 ;;
    --skip-ferry) SKIP_FERRY=1; shift ;;
    --ferry) need_arg "$@"; FERRY=$2; shift 2 ;;
    --base) need_arg "$@"; FERRY_BASE=$2; shift 2 ;;
    --build-dir) need_arg "$@"; BUILD_DIR=$2; shift 2 ;;
    --workdir) need_arg "$@"; W=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --regen) need_arg "$@"; REGEN=$2; shift 2 ;;
    --noop-runs) need_arg "$@"; NOOP_RUNS=$2; shift 2 ;;
    --settle) need_arg "$@"; SETTLE=$2; shift 2 ;;
    --timeout) need_arg "$@"; TO=$2; shift 2 ;;
    --rsync-port) need_arg "$@"; RSYNC_PORT=$2; shift 2 ;;
    --ssh-port) need_arg "$@"; SSH_PORT=$2; shift 2 ;;
    --nc-port) need_arg "$@"; NC_PORT=$2; shift 2 ;;
    --kill-at) need_arg "$@"; KILL_AT=$2; shift 2 ;;
    --kill-when) need_arg "$@"; KILL_WHEN=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done

is_uint() { [[ $1 =~ ^[0-9]+$ ]] && (($1 > 0)); }
for v in ROUNDS SIZE_MB FILES NOOP_RUNS TO RSYNC_PORT SSH_PORT NC_PORT KILL_AT; do
    is_uint "${!v}" || die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive integer (got '${!v}')"
done
[[ $SETTLE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--settle must be a number of seconds"
[[ $REGEN == head || $REGEN == full ]] || die "--regen must be head or full"
((KILL_AT < 100)) || die "--kill-at must be below 100"
[[ $KILL_WHEN == acked || $KILL_WHEN == sent ]] || die "--kill-when must be acked or sent"

DO_UP=0 DO_DOWN=0 DO_SMALL=0 DO_SMALL_DOWN=0 DO_NOOP=0 DO_RESUME=0 DO_UNCHANGED=0 DO_DMOD=0 DO_DINS=0 DO_DDOWN=0
IFS=, read -r -a only_list <<<"$ONLY"
for s in "${only_list[@]}"; do
    case $s in
    a) DO_UP=1; DO_DOWN=1 ;;
    a-up) DO_UP=1 ;;
    a-down) DO_DOWN=1 ;;
    b) DO_SMALL=1; DO_SMALL_DOWN=1 ;;
    b-up) DO_SMALL=1 ;;
    b-down) DO_SMALL_DOWN=1 ;;
    c) DO_NOOP=1 ;;
    resume) DO_RESUME=1 ;;
    unchanged) DO_UNCHANGED=1 ;;
    delta) DO_DMOD=1; DO_DINS=1 ;;
    delta-mod) DO_DMOD=1 ;;
    delta-ins) DO_DINS=1 ;;
    delta-down) DO_DDOWN=1 ;;
    chunked) DO_RESUME=1; DO_UNCHANGED=1; DO_DMOD=1; DO_DINS=1; DO_DDOWN=1 ;;
    *) die "--only: unknown scenario '$s' (use a, a-up, a-down, b, b-up, b-down, c, resume, unchanged, delta, delta-mod, delta-ins, delta-down, chunked)" ;;
    esac
done

TOOLS=()
if [[ -n $TOOLS_OPT ]]; then
    IFS=, read -r -a want <<<"$TOOLS_OPT"
    for t in "${want[@]}"; do
        [[ " ${ALL_TOOLS[*]} " == *" $t "* ]] || die "--tools: unknown tool '$t' (from: ${ALL_TOOLS[*]})"
    done
    for t in "${ALL_TOOLS[@]}"; do # keep the canonical interleaving order
        [[ " ${want[*]} " == *" $t "* ]] && TOOLS+=("$t")
    done
else
    for t in "${ALL_TOOLS[@]}"; do
        [[ $t == ferry-base && -z $FERRY_BASE ]] && continue # only with --base
        TOOLS+=("$t")
    done
fi
if ((SKIP_FERRY)); then
    t2=()
    for t in "${TOOLS[@]}"; do [[ $t == ferry ]] || t2+=("$t"); done
    TOOLS=("${t2[@]}")
fi
((${#TOOLS[@]} > 0)) || die "no tools left to run"
has_tool() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }
WITH_FERRY=0
has_tool ferry && WITH_FERRY=1
WITH_BASE=0
has_tool ferry-base && WITH_BASE=1
if ((WITH_BASE)) && [[ -z $FERRY_BASE ]]; then die "--tools ferry-base needs --base REV|PATH"; fi
if [[ -n $FERRY_BASE ]] && ((WITH_BASE == 0)); then warn "--base given but ferry-base is not among --tools"; fi
# is_ferry TOOL: either ferry (the tree's, or --ferry) or ferry-base (--base).
is_ferry() { [[ $1 == ferry || $1 == ferry-base ]]; }
has_ssh_tool() { has_tool rsync-ssh || has_tool scp; }
DO_DELTA=$((DO_DMOD || DO_DINS || DO_DDOWN))
DO_CHUNKED=$((DO_RESUME || DO_UNCHANGED || DO_DELTA))
has_rsyncd_tool() {
    has_tool rsyncd || { has_tool rsyncd-fsync && ((DO_UP || DO_DOWN || DO_SMALL || DO_SMALL_DOWN || DO_DELTA)); } ||
        { has_tool rsyncd-inplace && ((DO_DELTA)); }
}
if ((DO_RESUME || DO_UNCHANGED)) && ((WITH_FERRY == 0)); then
    warn "resume and unchanged measure ferry alone; with ferry left out they are skipped"
fi

# ---------------------------------------------------------------- dependencies
missing=()
for c in rsync ssh scp ssh-keygen nc ss timeout python3 awk sha256sum dd; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
if [[ ! -x /usr/sbin/sshd ]] && ! command -v sshd >/dev/null 2>&1; then missing+=(sshd); fi
if ((DO_NOOP)) && ! command -v hyperfine >/dev/null 2>&1; then missing+=(hyperfine); fi
if ((${#missing[@]})); then
    info "missing: ${missing[*]}; running scripts/install-deps.sh --bench"
    "$ROOT/scripts/install-deps.sh" --bench || die "scripts/install-deps.sh --bench failed"
fi
for c in rsync ssh scp ssh-keygen nc ss timeout python3 awk; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' is still missing after scripts/install-deps.sh --bench"
done
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
[[ -x $SSHD ]] || die "sshd not found"
HAVE_HYPERFINE=0
command -v hyperfine >/dev/null 2>&1 && HAVE_HYPERFINE=1

# ---------------------------------------------------------------- scratch, clean-up
SERVERS=() # "pid:name" of every long-lived server started here
BG_PID=""  # the current nc listener, if any
ANY_FAIL=0
W_CREATED=0

cleanup() {
    local rc=$? e
    trap - EXIT INT TERM PIPE
    if [[ -n $BG_PID ]]; then stop_pid "$BG_PID" "nc listener"; fi
    for e in "${SERVERS[@]}"; do stop_pid "${e%%:*}" "${e#*:}"; done
    if ((W_CREATED)); then
        if ((KEEP == 0 && ANY_FAIL == 0 && rc == 0)); then
            info "removing scratch directory $W"
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
trap 'exit 141' PIPE # e.g. the output piped into a `head` that has quit: still stop the servers

if [[ -z $W ]]; then
    base=/var/tmp
    [[ -d $base && -w $base ]] || base=/tmp
    W=$(mktemp -d "$base/ferry-bench.XXXXXX")
    W_CREATED=1
else
    mkdir -p "$W"
    W=$(cd "$W" && pwd)
    [[ -z $(ls -A "$W") ]] || die "--workdir $W is not empty: every tool must write into a fresh destination"
fi
[[ $W != *[[:space:]]* ]] || die "the scratch path must not contain white space: $W"
LOGDIR=$W/logs
mkdir -p "$LOGDIR" "$W/src" "$W/dst" "$W/down" "$W/verify" "$W/ssh" "$W/ferry"

fstype=$(findmnt -n -o FSTYPE -T "$W" 2>/dev/null || echo unknown)
if [[ $fstype == tmpfs ]]; then
    warn "$W is on tmpfs; the reference figures were taken on disk (use --workdir on disk)"
fi

# Disk space: big-file copies (source, destinations, ferry blobs that may outlive `rm`) and
# every small-file tree (nothing is deleted inside a batch).
need_mb=16
if ((DO_UP || DO_DOWN || DO_NOOP)); then need_mb=$((need_mb + SIZE_MB * (7 + ROUNDS))); fi
# chunked: a source, the server's chunks of up to two versions, and for delta the original, the
# edited copy, ferry's local copy, rsync's basis and its temporary copy
if ((DO_RESUME || DO_UNCHANGED)); then need_mb=$((need_mb + SIZE_MB * 4)); fi
if ((DO_DELTA)); then need_mb=$((need_mb + SIZE_MB * 8)); fi
if ((DO_SMALL)); then need_mb=$((need_mb + (FILES * 10 * (ROUNDS * ${#TOOLS[@]} + 2)) / 1024)); fi
if ((DO_SMALL_DOWN)); then need_mb=$((need_mb + (FILES * 10 * (ROUNDS * ${#TOOLS[@]} + 3)) / 1024)); fi
avail_mb=$(($(df -Pk "$W" | awk 'NR == 2 { print $4 }') / 1024))
((avail_mb >= need_mb)) || die "need about $need_mb MB free in $W, only $avail_mb MB available"

# ---------------------------------------------------------------- ferry: build, serve, signup
ferry_build() {
    local log=$LOGDIR/build.log
    info "building ferry (-O2 Release) in $BUILD_DIR (log: $log)"
    if ! build_o2 "$ROOT" "$BUILD_DIR" "$log"; then
        show_tail "$log" 30
        die "ferry did not build (full log: $log). Fix the build, pass --ferry PATH, or use --skip-ferry to measure the peers only."
    fi
    FERRY=$BUILD_DIR/ferry
    git_rev "$ROOT" >"$BUILD_DIR/bench-commit.txt"
    [[ -x $FERRY ]] || die "the build succeeded but $FERRY is not there (log: $log)"
    # Warnings do not stop a benchmark build (-DFERRY_WERROR=OFF: GCC's -O2 analyses warn about
    # things the -O0 development build does not see); they are reported here.
    if grep -q 'warning:' "$log"; then
        warn "the -O2 build printed $(grep -c 'warning:' "$log") compiler warning(s); see $log"
        grep 'warning:' "$log" | head -n 5 | sed 's/^/[bench]   | /' >&2
    fi
    if [[ -f $BUILD_DIR/compile_commands.json ]] && ! grep -q -- '-O2' "$BUILD_DIR/compile_commands.json"; then
        warn "compile_commands.json shows no -O2; check the flags in $BUILD_DIR/CMakeCache.txt"
    fi
}

# ferry_x TOOL: sets FX to the command line that runs TOOL's binary (ferry or ferry-base) as the
# client of its own server: each has its own data directory and client state ($W/TOOL).
FX=()
ferry_x() {
    local d=$W/$1 bin=$FERRY
    [[ $1 == ferry-base ]] && bin=$FERRY_BASE_BIN
    FX=(env "XDG_STATE_HOME=$d/client/state" "XDG_CONFIG_HOME=$d/client/config"
        "XDG_DATA_HOME=$d/client/data" "XDG_CACHE_HOME=$d/client/cache" "$bin")
}
# fcmd TOOL ARGS...: an untimed client command of TOOL (never reads the terminal).
fcmd() {
    ferry_x "$1"
    shift
    timeout "$TO" "${FX[@]}" "$@" </dev/null
}
# ferry_cmd ARGS...: the same for the tree's ferry.
ferry_cmd() { fcmd ferry "$@"; }

FERRY_PORT="" FERRY_ID="" FERRY_BASE_SERVE_PID=""
ferry_start() { # TOOL
    local tool=$1 d=$W/$1 pid i=0 line st=0 port="" id=""
    local out=$d/serve.out err=$d/serve.err
    mkdir -p "$d/data" "$d/client"/{state,config,data,cache}
    if [[ $tool == ferry ]]; then
        # The scenarios that measure the tree's ferry alone run "$FERRY" with these.
        export XDG_STATE_HOME=$d/client/state XDG_CONFIG_HOME=$d/client/config
        export XDG_DATA_HOME=$d/client/data XDG_CACHE_HOME=$d/client/cache
    fi
    : >"$out"
    ferry_x "$tool"
    "${FX[@]}" serve --data "$d/data" --listen 127.0.0.1:0 --signup open >"$out" 2>"$err" </dev/null &
    pid=$! # env execs the server: the same process
    SERVERS+=("$pid:$tool serve")
    # Poll (bounded: 20 s) for the one line the server prints once it is ready.
    while :; do
        while IFS= read -r line || [[ -n $line ]]; do
            if [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)\ id\ ([^[:space:]]+)[[:space:]]*$ ]]; then
                port=${BASH_REMATCH[1]} id=${BASH_REMATCH[2]}
                break 2
            fi
        done <"$out"
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || st=$?
            show_tail "$err"
            die "$tool serve exited (status $st) before printing 'listening on 127.0.0.1:PORT id ID' (stderr: $err)"
        fi
        i=$((i + 1))
        if ((i >= 1000)); then
            show_tail "$out"
            show_tail "$err"
            die "$tool serve (pid $pid) did not print 'listening on 127.0.0.1:PORT id ID' on stdout within 20 s (stdout: $out; is the line flushed when stdout is a file?)"
        fi
        sleep 0.02
    done
    if [[ $tool == ferry ]]; then
        FERRY_SERVE_PID=$pid FERRY_PORT=$port FERRY_ID=$id
    else
        FERRY_BASE_SERVE_PID=$pid
    fi
    info "$tool serve: pid $pid, 127.0.0.1:$port, id $id"
    local pw log=$LOGDIR/${tool}_signup.log
    pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    if ! printf '%s\n' "$pw" | timeout 60 "${FX[@]}" signup --server "127.0.0.1:$port" \
        --server-id "$id" --user bench --password-stdin >"$log" 2>&1; then
        show_tail "$log"
        die "$tool signup failed (log: $log)"
    fi
    log=$LOGDIR/${tool}_ls_check.log
    if ! fcmd "$tool" ls / >"$log" 2>&1; then
        show_tail "$log"
        die "'$tool ls /' failed right after signup (log: $log)"
    fi
}

# ferry_base_build REV: builds revision REV of this repository (-O2) under $W, from `git archive`
# (the working tree and its worktrees are left alone).
ferry_base_build() {
    local rev=$1 src=$W/base/src bd=$W/base/build log=$LOGDIR/base_build.log
    mkdir -p "$src"
    info "building ferry-base from $rev (-O2 Release) in $bd (log: $log)"
    if ! git -C "$ROOT" archive --format=tar "$rev" | tar -x -C "$src" || ! build_o2 "$src" "$bd" "$log"; then
        show_tail "$log" 30
        die "ferry-base ($rev) did not build (full log: $log)"
    fi
    git -C "$ROOT" rev-parse --short "$rev" >"$bd/bench-commit.txt"
    FERRY_BASE_BIN=$bd/ferry
}

# ---------------------------------------------------------------- peers: rsync daemon, sshd
RSYNC_URL=""
rsyncd_start() {
    local pid log=$LOGDIR/rsyncd.out ids=""
    RSYNC_PORT=$(free_port "$RSYNC_PORT") || die "no free port for the rsync daemon"
    if [[ $(id -u) == 0 ]]; then ids=$'    uid = root\n    gid = root'; fi
    cat >"$W/rsyncd.conf" <<EOF
pid file = $W/rsyncd.pid
port = $RSYNC_PORT
address = 127.0.0.1
use chroot = no
log file = $W/rsyncd.log
[dst]
    path = $W/dst
    read only = false
$ids
EOF
    rsync --daemon --no-detach --config="$W/rsyncd.conf" </dev/null >"$log" 2>&1 &
    pid=$!
    SERVERS+=("$pid:rsync daemon")
    RSYNCD_PID=$pid
    if ! wait_port "$RSYNC_PORT" "$pid" 10; then
        show_tail "$log"
        show_tail "$W/rsyncd.log"
        die "the rsync daemon did not listen on 127.0.0.1:$RSYNC_PORT"
    fi
    RSYNC_URL=rsync://127.0.0.1:$RSYNC_PORT/dst
    rsync "rsync://127.0.0.1:$RSYNC_PORT/" 2>&1 | grep -q '^dst' ||
        die "the rsync daemon on port $RSYNC_PORT does not list module dst"
    info "rsync daemon: pid $pid, $RSYNC_URL"
}

SSHCFG=$W/ssh/config
sshd_start() {
    local pid d=$W/ssh user
    user=$(id -un)
    SSH_PORT=$(free_port "$SSH_PORT") || die "no free port for sshd"
    rm -f "$d"/host_ed25519* "$d"/id_ed25519*
    ssh-keygen -q -t ed25519 -N '' -f "$d/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -f "$d/id_ed25519"
    cp "$d/id_ed25519.pub" "$d/authorized_keys"
    chmod 600 "$d/authorized_keys"
    cat >"$d/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $d/host_ed25519
PidFile $d/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile $d/authorized_keys
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
EOF
    cat >"$SSHCFG" <<EOF
Host localhost 127.0.0.1
    HostName 127.0.0.1
    Port $SSH_PORT
    User $user
    IdentityFile $d/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $d/known_hosts
    StrictHostKeyChecking accept-new
    BatchMode yes
EOF
    [[ -d /run/sshd ]] || mkdir -p /run/sshd 2>/dev/null || true
    "$SSHD" -t -f "$d/sshd_config" >"$LOGDIR/sshd_check.log" 2>&1 || {
        show_tail "$LOGDIR/sshd_check.log"
        die "sshd -t rejected $d/sshd_config"
    }
    "$SSHD" -D -f "$d/sshd_config" -E "$d/sshd.log" </dev/null &
    pid=$!
    SERVERS+=("$pid:sshd")
    SSHD_PID=$pid
    if ! wait_port "$SSH_PORT" "$pid" 10; then
        show_tail "$d/sshd.log"
        die "sshd did not listen on 127.0.0.1:$SSH_PORT"
    fi
    if ! ssh -F "$SSHCFG" localhost true </dev/null >"$LOGDIR/ssh_check.log" 2>&1; then
        show_tail "$LOGDIR/ssh_check.log"
        show_tail "$d/sshd.log"
        die "ssh to the private sshd on 127.0.0.1:$SSH_PORT failed"
    fi
    info "sshd: pid $pid, 127.0.0.1:$SSH_PORT (keys and known_hosts in $d)"
}

# ---------------------------------------------------------------- transfers used by several scenarios
# timed CMD...: run one command as the timed part of a run.
timed() {
    local rc=0
    clock_start
    timeout "$TO" "$@" </dev/null || rc=$?
    clock_stop
    return "$rc"
}

# nc_xfer SRC DST: nc -l on 127.0.0.1 writes DST; the clock runs from the sender's start
# until the receiver has exited (performance.md scripts/nc_big.sh, without its sleep).
nc_xfer() {
    local rc=0
    timeout "$TO" nc -l 127.0.0.1 "$NC_PORT" >"$2" </dev/null &
    BG_PID=$!
    if ! wait_port "$NC_PORT" "$BG_PID" 10; then
        echo "nc listener on port $NC_PORT did not start"
        stop_pid "$BG_PID" "nc listener"
        BG_PID=""
        return 1
    fi
    clock_start
    timeout "$TO" nc -N 127.0.0.1 "$NC_PORT" <"$1" || rc=$?
    wait "$BG_PID" || rc=$?
    clock_stop
    BG_PID=""
    return "$rc"
}

# tar_nc SRCDIR DSTDIR: tar | nc -> nc | tar (performance.md scripts/tarnc.sh).
tar_nc() {
    local rc=0
    # shellcheck disable=SC2016 # $1 and $2 belong to the inner bash
    timeout "$TO" bash -c 'set -o pipefail; nc -l 127.0.0.1 "$1" </dev/null | tar -x -C "$2"' \
        _ "$NC_PORT" "$2" </dev/null &
    BG_PID=$!
    if ! wait_port "$NC_PORT" "$BG_PID" 10; then
        echo "nc listener on port $NC_PORT did not start"
        stop_pid "$BG_PID" "nc listener"
        BG_PID=""
        return 1
    fi
    clock_start
    tar -c -C "$1" . | timeout "$TO" nc -N 127.0.0.1 "$NC_PORT" || rc=$?
    wait "$BG_PID" || rc=$?
    clock_stop
    BG_PID=""
    return "$rc"
}


# ---------------------------------------------------------------- (a) up: one big file
# Regime A: the same destination path every run, the previous copy removed (untimed) first.
SRC_BIG=$W/src/big.bin
BIG_BYTES=$((SIZE_MB * 1048576))
SRC_SHA=""

prep_up_big() {
    regen_big "$SRC_BIG" "$SIZE_MB" "$REGEN" || return 1
    SRC_SHA=$(sha_file "$SRC_BIG") || return 1
    if is_ferry "$1"; then
        fcmd "$1" rm /big.bin || echo "($1 rm /big.bin failed; expected on the first run)"
    else
        rm -f "$W/dst/big.bin"
    fi
}
run_up_big() {
    local d=$W/dst/big.bin
    case $1 in
    ferry | ferry-base) # lands as /big.bin (cp semantics: into the root)
        ferry_x "$1"
        timed "${FX[@]}" put -q "$SRC_BIG" /
        ;;
    rsyncd) timed rsync -a "$SRC_BIG" "$RSYNC_URL/big.bin" ;;
    rsyncd-fsync) timed rsync -a --fsync "$SRC_BIG" "$RSYNC_URL/big.bin" ;;
    rsync-ssh) timed rsync -a -e "ssh -F $SSHCFG" "$SRC_BIG" "localhost:$d" ;;
    scp) timed scp -q -F "$SSHCFG" "$SRC_BIG" "localhost:$d" ;;
    nc) nc_xfer "$SRC_BIG" "$d" ;;
    esac
}
verify_up_big() {
    if is_ferry "$1"; then
        # The server keeps blobs in its own layout: fetch the file back (untimed) and hash it.
        local v=$W/verify/big.bin rc=0
        rm -f "$v"
        fcmd "$1" get -q /big.bin "$v" || return 1
        sha_check "$v" "$SRC_SHA" || rc=1
        rm -f "$v"
        return "$rc"
    fi
    sha_check "$W/dst/big.bin" "$SRC_SHA"
}

# ---------------------------------------------------------------- (a) down: one big file
# The server-side copy is made once (untimed) per batch; every run empties the local destination.
DOWN_SHA=""
declare -A DOWN_READY=() SMALL_DOWN_READY=()
setup_down_big() {
    local log=$LOGDIR/down_big_setup.log
    regen_big "$SRC_BIG" "$SIZE_MB" "$REGEN"
    DOWN_SHA=$(sha_file "$SRC_BIG")
    mkdir -p "$W/dst/down"
    cp "$SRC_BIG" "$W/dst/down/big.bin"
    local t
    : >"$log"
    for t in ferry ferry-base; do
        has_tool "$t" || continue
        { fcmd "$t" rm /big.bin || true; } >>"$log" 2>&1
        if fcmd "$t" put -q "$SRC_BIG" / >>"$log" 2>&1; then
            DOWN_READY[$t]=1
        else
            show_tail "$log"
            warn "could not upload /big.bin for the download runs; $t's download runs will fail (log: $log)"
        fi
    done
}
prep_down_big() {
    rm -f "$W/down/big.bin"
    if is_ferry "$1" && [[ -z ${DOWN_READY[$1]:-} ]]; then
        echo "no /big.bin on the $1 server (setup failed)"
        return 1
    fi
}
run_down_big() {
    local s=$W/dst/down/big.bin d=$W/down/big.bin
    case $1 in
    ferry | ferry-base)
        ferry_x "$1"
        timed "${FX[@]}" get -q /big.bin "$d"
        ;;
    rsyncd) timed rsync -a "$RSYNC_URL/down/big.bin" "$d" ;;
    rsyncd-fsync) timed rsync -a --fsync "$RSYNC_URL/down/big.bin" "$d" ;;
    rsync-ssh) timed rsync -a -e "ssh -F $SSHCFG" "localhost:$s" "$d" ;;
    scp) timed scp -q -F "$SSHCFG" "localhost:$s" "$d" ;;
    nc) nc_xfer "$s" "$d" ;;
    esac
}
verify_down_big() { sha_check "$W/down/big.bin" "$DOWN_SHA"; }

# ---------------------------------------------------------------- (b) up: many small files
# Regime B: every run writes a new destination directory; nothing is deleted inside the batch.
SRC_SMALL=$W/src/small
MANIFEST=$W/manifest.src
small_dst() { printf '%s\n' "$W/dst/small/$1_r$2"; } # TOOL ROUND -> local destination (peers)

prep_up_small() {
    # New content for every file (in place) so a content-addressed store can never skip one.
    make_tree "$SRC_SMALL" "$FILES" || return 1
    tree_manifest "$SRC_SMALL" "$MANIFEST" || return 1
    mkdir -p "$W/dst/small"
    if [[ $1 == nc ]]; then mkdir -p "$(small_dst "$1" "$2")"; fi
    # ferry uploads "into the root" (cp semantics, which needs no remote mkdir and works
    # whether or not `put -r DIR /new-name` names the copy): the local tree is renamed
    # (one untimed rename, no data touched) so that it lands as /small_rN.
    if is_ferry "$1"; then mv "$SRC_SMALL" "$W/src/small_r$2" || return 1; fi
}
run_up_small() {
    local d
    d=$(small_dst "$1" "$2")
    case $1 in
    ferry | ferry-base) # lands as /small_rN
        ferry_x "$1"
        timed "${FX[@]}" put -q -r "$W/src/small_r$2" /
        ;;
    rsyncd) timed rsync -a "$SRC_SMALL/" "$RSYNC_URL/small/rsyncd_r$2/" ;;
    rsyncd-fsync) timed rsync -a --fsync "$SRC_SMALL/" "$RSYNC_URL/small/rsyncd-fsync_r$2/" ;;
    rsync-ssh) timed rsync -a -e "ssh -F $SSHCFG" "$SRC_SMALL/" "localhost:$d/" ;;
    scp) timed scp -q -r -F "$SSHCFG" "$SRC_SMALL" "localhost:$d" ;;
    nc) tar_nc "$SRC_SMALL" "$d" ;;
    esac
}
post_up_small() { # always runs after the timed part, failed or not
    if is_ferry "$1" && [[ -d $W/src/small_r$2 ]]; then mv "$W/src/small_r$2" "$SRC_SMALL"; fi
}
# ferry_manifest REMOTE_DIR OUT [TOOL]: the server's SHA-256 of every file under REMOTE_DIR, in
# the format of tree_manifest (from `ferry ls -R --json`).
ferry_manifest() {
    fcmd "${3:-ferry}" ls -R --json "$1" >"$W/verify/ls.json" || return 1
    python3 - "$W/verify/ls.json" >"$2" <<'PY'
import json, sys
rows = []
for e in json.load(open(sys.argv[1])):
    if e.get("type") == "file":
        rows.append((str(e.get("hash", "")).split(":", 1)[-1], "./" + e["name"]))
rows.sort(key=lambda r: r[1].encode())
for h, n in rows:
    print("%s  %s" % (h, n))
PY
}
verify_up_small() {
    if is_ferry "$1"; then
        # Every file's hash as the server recorded it (ls -R --json) against the manifest ...
        ferry_manifest "/small_r$2" "$W/manifest.dst" "$1" || {
            echo "ferry ls -R --json /small_r$2 failed"
            return 1
        }
        if ! cmp -s "$MANIFEST" "$W/manifest.dst"; then
            echo "manifest mismatch for /small_r$2 (server-side hashes):"
            diff "$MANIFEST" "$W/manifest.dst" | head -n 10
            return 1
        fi
        # ... and the bytes of a sample (first, middle, last file), fetched back and hashed.
        local n line rel want v=$W/verify/sample.bin
        n=$(wc -l <"$MANIFEST")
        for line in 1 $(((n + 1) / 2)) "$n"; do
            read -r want rel < <(sed -n "${line}p" "$MANIFEST")
            rel=${rel#./}
            rm -f "$v"
            fcmd "$1" get -q "/small_r$2/$rel" "$v" || {
                echo "ferry get /small_r$2/$rel failed"
                return 1
            }
            sha_check "$v" "$want" || return 1
        done
        rm -f "$v"
        return 0
    fi
    local d
    d=$(small_dst "$1" "$2")
    tree_manifest "$d" "$W/manifest.dst" || return 1
    if ! cmp -s "$MANIFEST" "$W/manifest.dst"; then
        echo "manifest mismatch for $d:"
        diff "$MANIFEST" "$W/manifest.dst" | head -n 10
        return 1
    fi
}

# ---------------------------------------------------------------- (b) down: many small files
# The same tree is put on every server once (untimed); each run pulls it into a new local
# destination (regime B), which must not exist before: `ferry get -r` creates it, as rsync does.
# Nothing is deleted inside the batch: a deleted tree's inodes make the next run's file
# creations slower on ext4 (it skips recently freed inodes), whoever runs next.
setup_down_small() {
    local log=$LOGDIR/down_small_setup.log
    : >"$log"
    make_tree "$SRC_SMALL" "$FILES" || die "cannot create the small-file tree"
    tree_manifest "$SRC_SMALL" "$W/manifest.down" || die "cannot hash the small-file tree"
    rm -rf "$W/dst/small_down"
    mkdir -p "$W/dst" "$W/down"
    cp -a "$SRC_SMALL" "$W/dst/small_down"
    local t
    for t in ferry ferry-base; do
        has_tool "$t" || continue
        { fcmd "$t" rm -r /small_down || true; } >>"$log" 2>&1
        mv "$SRC_SMALL" "$W/src/small_down"
        if fcmd "$t" put -q -r "$W/src/small_down" / >>"$log" 2>&1; then
            SMALL_DOWN_READY[$t]=1
        else
            show_tail "$log"
            warn "could not upload /small_down; $t's (b-down) runs will fail (log: $log)"
        fi
        mv "$W/src/small_down" "$SRC_SMALL"
    done
}
small_down_dst() { printf '%s\n' "$W/down/small_$1_r$2"; } # TOOL ROUND -> a new destination
prep_down_small() {
    rm -rf "$(small_down_dst "$1" "$2")"
    if is_ferry "$1" && [[ -z ${SMALL_DOWN_READY[$1]:-} ]]; then
        echo "no /small_down on the $1 server (setup failed)"
        return 1
    fi
}
run_down_small() {
    local d s=$W/dst/small_down
    d=$(small_down_dst "$1" "$2")
    case $1 in
    ferry | ferry-base)
        ferry_x "$1"
        timed "${FX[@]}" get -q -r /small_down "$d"
        ;;
    rsyncd) timed rsync -a "$RSYNC_URL/small_down/" "$d/" ;;
    rsyncd-fsync) timed rsync -a --fsync "$RSYNC_URL/small_down/" "$d/" ;;
    rsync-ssh) timed rsync -a -e "ssh -F $SSHCFG" "localhost:$s/" "$d/" ;;
    scp) timed scp -q -r -F "$SSHCFG" "localhost:$s" "$d" ;;
    *)
        echo "(b-down) does not run $1"
        return 1
        ;;
    esac
}
post_down_small() { :; }
verify_down_small() {
    local d
    d=$(small_down_dst "$1" "$2")
    tree_manifest "$d" "$W/manifest.got" || return 1
    if ! cmp -s "$W/manifest.down" "$W/manifest.got"; then
        echo "manifest mismatch for $d:"
        diff "$W/manifest.down" "$W/manifest.got" | head -n 10
        return 1
    fi
}

# ---------------------------------------------------------------- CPU seconds of every process
# The CPU time (user + sys, in clock ticks) of one run: the client side is every process the
# timed command started (children of this shell, counted once waited for), the server side is
# the server process with its threads, plus its children for servers that fork per connection
# (rsync daemon, sshd), counted once it has reaped them.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
FERRY_SERVE_PID="" RSYNCD_PID="" SSHD_PID=""
proc_ticks() { # PID WITH_CHILDREN -> utime + stime (+ cutime + cstime), or 0 when gone
    local f rest
    [[ -n $1 && -r /proc/$1/stat ]] || {
        echo 0
        return
    }
    f=$(</proc/"$1"/stat)
    rest=${f##*) }
    # shellcheck disable=SC2086 # word splitting intended
    set -- $2 $rest
    local with=$1
    shift
    # after "pid (comm) ": state=1 ... utime=12 stime=13 cutime=14 cstime=15
    if ((with)); then echo $((${12} + ${13} + ${14} + ${15})); else echo $((${12} + ${13})); fi
}
server_pid_of() { # TOOL -> the server process serving it, and whether its children count
    case $1 in
    ferry) echo "$FERRY_SERVE_PID 0" ;;
    ferry-base) echo "$FERRY_BASE_SERVE_PID 0" ;;
    rsyncd*) echo "$RSYNCD_PID 1" ;;
    rsync-ssh | scp) echo "$SSHD_PID 1" ;;
    *) echo "" ;;
    esac
}
# Waits (at most 5 s) until a forking server has reaped the children of the run.
server_children_gone() {
    local pid=$1 i c
    for ((i = 0; i < 100; i++)); do
        c=$(cat /proc/"$pid"/task/*/children 2>/dev/null | tr -d ' \n')
        [[ -z $c ]] && return 0
        sleep 0.05
    done
    return 1
}
cpu_snap() { # TOOL -> sets CPU_SELF and CPU_SRV (ticks)
    local sp with
    read -r sp with _ <<<"$(server_pid_of "$1") 0"
    CPU_SELF=$(proc_ticks $$ 1)
    CPU_SRV=$(proc_ticks "$sp" "${with:-0}")
}
cpu_since() { # TOOL SELF0 SRV0 -> CPU seconds of the run
    local sp with
    read -r sp with _ <<<"$(server_pid_of "$1") 0"
    if [[ -n $sp ]] && ((with)); then server_children_gone "$sp" || true; fi
    cpu_snap "$1"
    awk -v a="$((CPU_SELF - $2 + CPU_SRV - $3))" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", a / t }'
}

# ---------------------------------------------------------------- the measuring loop
declare -A TIMES=() FAILS=() WIRE=() CPU=() SHORT=()

note_fail() { # SCEN TOOL ROUND REASON LOG
    local key="$1|$2"
    FAILS[$key]=$((${FAILS[$key]:-0} + 1))
    ANY_FAIL=1
    printf '  %-9s r%-3s %-13s FAILED: %s (log: %s)\n' "$1" "$3" "$2" "$4" "$5"
    show_tail "$5" 8
}

payload_bytes() { # SCEN
    case $1 in
    up_big | down_big) echo "$BIG_BYTES" ;;
    up_small | down_small) echo $((FILES * 4096)) ;;
    *) echo 0 ;;
    esac
}

rate_of() { # SCEN SECONDS -> MB/s (10^6 B/s) or files/s
    case $1 in
    up_big | down_big) fdiv "$(awk -v b="$BIG_BYTES" 'BEGIN { print b / 1e6 }')" "$2" "%.1f" ;;
    up_small | down_small) fdiv "$FILES" "$2" "%.0f" ;;
    esac
}
rate_unit() { case $1 in up_big | down_big) echo MB/s ;; up_small | down_small) echo files/s ;; *) echo "" ;; esac }

measure() { # SCEN TOOL ROUND
    local scen=$1 tool=$2 r=$3 rc=0 secs wire rate payload flag="" cpu self0 srv0
    local key="$1|$2" log=$LOGDIR/${1}_${2}_r${3}.log
    T0="" T1=""
    if ! "prep_$scen" "$tool" "$r" >"$log" 2>&1; then
        note_fail "$scen" "$tool" "$r" "untimed preparation failed" "$log"
        return 0
    fi
    settle
    cpu_snap "$tool"
    self0=$CPU_SELF srv0=$CPU_SRV
    "run_$scen" "$tool" "$r" >>"$log" 2>&1 || rc=$?
    cpu=$(cpu_since "$tool" "$self0" "$srv0")
    if declare -F "post_$scen" >/dev/null; then "post_$scen" "$tool" "$r" >>"$log" 2>&1 || true; fi
    if ((rc != 0)); then
        note_fail "$scen" "$tool" "$r" "exit status $rc" "$log"
        return 0
    fi
    secs=$(fsub "$T1" "$T0")
    wire=$((LO1 - LO0))
    if ! "verify_$scen" "$tool" "$r" >>"$log" 2>&1; then
        note_fail "$scen" "$tool" "$r" "verification failed" "$log"
        return 0
    fi
    payload=$(payload_bytes "$scen")
    rate=$(rate_of "$scen" "$secs")
    if ((wire * 100 < payload * 95)); then
        # Less crossed the wire than the payload (dedup, compression): a correct transfer, but not
        # a throughput figure; it is left out of the medians and counted apart.
        flag="  NOT COUNTED: only $((wire / 1000000)) MB crossed loopback for $((payload / 1000000)) MB of payload"
        warn "$scen $tool r$r: less data crossed loopback than the payload; not counted as a throughput figure"
        SHORT[$key]=$((${SHORT[$key]:-0} + 1))
    else
        TIMES[$key]+="$secs "
        WIRE[$key]+="$wire "
        CPU[$key]+="$cpu "
    fi
    printf '  %-9s r%-3s %-13s %9.3f s  %9s %-7s  cpu %6s s  wire %6s MB  ok%s\n' "$scen" "$r" "$tool" \
        "$secs" "$rate" "$(rate_unit "$scen")" "$cpu" "$(fdiv "$wire" 1000000 "%.1f")" "$flag"
}

run_batch() { # SCEN TITLE
    local r t
    printf '\n== %s ==\n' "$2"
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in "${TOOLS[@]}"; do
            [[ $t == rsyncd-inplace ]] && continue # a delta-only peer
            [[ $1 == down_small && $t == nc ]] && continue # no pull over nc
            measure "$1" "$t" "$r"
        done
    done
}

# ---------------------------------------------------------------- (c) ferry ls against rsync's no-op
FERRY_NOOP_READY=0 RSYNC_NOOP_READY=0
setup_noop() {
    local log=$LOGDIR/noop_setup.log stats
    : >"$log"
    if ((WITH_FERRY)); then
        # `ferry ls /` lists a root that holds at least the big file.
        local listing=""
        listing=$(ferry_cmd ls / 2>>"$log") || true
        if [[ $listing != *big.bin* ]]; then
            [[ -s $SRC_BIG ]] || head -c "$BIG_BYTES" /dev/urandom >"$SRC_BIG"
            ferry_cmd put -q "$SRC_BIG" / >>"$log" 2>&1 || true
        fi
        if ferry_cmd ls / >>"$log" 2>&1; then
            FERRY_NOOP_READY=1
        else
            show_tail "$log"
            warn "'ferry ls /' fails; (c) will have no ferry figure (log: $log)"
        fi
    fi
    if has_tool rsyncd; then
        mkdir -p "$W/dst/noop"
        rsync -a "$SRC_BIG" "$RSYNC_URL/noop/big.bin" >>"$log" 2>&1 || true
        stats=$(rsync -a --stats "$SRC_BIG" "$RSYNC_URL/noop/big.bin" 2>&1)
        printf '%s\n' "$stats" >>"$log"
        if grep -q 'Number of regular files transferred: 0' <<<"$stats"; then
            RSYNC_NOOP_READY=1
        else
            warn "rsync's second run still transferred the file; (c) has no rsync figure (log: $log)"
        fi
    fi
}

noop_measure() { # TOOL ROUND
    local tool=$1 r=$2 key="noop|$1" log=$LOGDIR/noop_${1}_r${2}.log json=$LOGDIR/noop_${1}_r${2}.json
    local -a cmd times=()
    local i t rc=0
    case $tool in
    ferry) cmd=("$FERRY" ls /) ;;
    rsyncd) cmd=(rsync -a "$SRC_BIG" "$RSYNC_URL/noop/big.bin") ;;
    esac
    if ((HAVE_HYPERFINE)); then
        if hyperfine -N --warmup 3 --runs "$NOOP_RUNS" --export-json "$json" "${cmd[*]}" >"$log" 2>&1; then
            mapfile -t times < <(python3 -c 'import json, sys
for t in json.load(open(sys.argv[1]))["results"][0]["times"]: print("%.6f" % t)' "$json")
        else
            rc=1
        fi
    else
        : >"$log"
        for ((i = 0; i < 3; i++)); do "${cmd[@]}" </dev/null >>"$log" 2>&1 || rc=1; done
        for ((i = 0; i < NOOP_RUNS && rc == 0; i++)); do
            clock_start
            "${cmd[@]}" </dev/null >>"$log" 2>&1 || rc=1
            clock_stop
            times+=("$(fsub "$T1" "$T0")")
        done
    fi
    if ((rc != 0 || ${#times[@]} == 0)); then
        note_fail noop "$tool" "$r" "command failed" "$log"
        return 0
    fi
    for t in "${times[@]}"; do TIMES[$key]+="$t "; done
    printf '  %-9s r%-3s %-13s %9.1f ms median of %d runs%s\n' noop "$r" "$tool" \
        "$(awk -v m="$(median "${times[@]}")" 'BEGIN { print m * 1000 }')" "${#times[@]}" \
        "$( ((HAVE_HYPERFINE)) && echo " (hyperfine -N)")"
}

run_noop() {
    local r
    # shellcheck disable=SC2016 # literal backquotes
    printf '\n== (c) no-op: `ferry ls /` (whole process) against `rsync -a` of an up-to-date %s MiB file to the daemon ==\n' "$SIZE_MB"
    ((HAVE_HYPERFINE)) || warn "hyperfine not found; (c) is timed with the shell clock instead"
    for ((r = 1; r <= ROUNDS; r++)); do
        settle
        if ((FERRY_NOOP_READY)); then noop_measure ferry "$r"; elif ((WITH_FERRY)); then note_fail noop ferry "$r" "not set up" "$LOGDIR/noop_setup.log"; fi
        if ((RSYNC_NOOP_READY)); then noop_measure rsyncd "$r"; elif has_tool rsyncd; then note_fail noop rsyncd "$r" "not set up" "$LOGDIR/noop_setup.log"; fi
    done
}

# ---------------------------------------------------------------- chunked transfers (issue 4)
# resume, unchanged and delta need content the server has never held: with chunk-level dedup,
# --regen head would leave every chunk but the first one known. rand_fill (lib.sh) rewrites the
# whole file with fresh pseudo-random bytes, in place, before every round. All three only run
# with ferry; delta also runs rsync to its daemon (plain, --fsync, --inplace) in the same rounds.
C4_SRC=$W/src/c4.bin
declare -A C4=() # "SCEN|FIELD" -> one value per round, space separated
c4_add() { C4["$1|$2"]+="$3 "; } # SCEN FIELD VALUE
c4_vals() { printf '%s' "${C4["$1|$2"]:-}"; }
C4_TARGET_LINES=()
C4_MD=()

# chunk_bytes: acknowledged (durable) chunk bytes on the ferry server, all users: the same query
# as `sqlite3 DATA/ferry.db 'SELECT COALESCE(SUM(size),0) FROM chunks'`, read-only.
chunk_bytes() {
    python3 - "$W/ferry/data/ferry.db" <<'PY'
import sqlite3, sys
con = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=10)
print(con.execute("SELECT COALESCE(SUM(size), 0) FROM chunks").fetchone()[0])
PY
}

# c4_get_check REMOTE SHA: fetch REMOTE back (untimed) and compare its SHA-256.
c4_get_check() {
    local v=$W/verify/c4.bin rc=0
    rm -f "$v"
    ferry_cmd get -q "$1" "$v" || {
        echo "ferry get $1 failed"
        return 1
    }
    sha_check "$v" "$2" || rc=1
    rm -f "$v"
    return "$rc"
}

# ferry_hash REMOTE: the server's content id of one file (`ferry ls --json`).
ferry_hash() {
    ferry_cmd ls --json "$1" | python3 -c 'import json, sys
e = json.load(sys.stdin)
print(e[0]["hash"] if len(e) == 1 else "")'
}

# The resume watcher: polls the server's chunk table every 20 ms and sends SIGKILL to the client
# once TARGET bytes more than BASE are durable (MODE acked), or once the client has written TARGET
# bytes to its sockets and files (MODE sent: wchar of /proc/PID/io, all threads); then waits until the table has not changed for
# 3 s (chunks whose bytes had all arrived still commit after the client died: with 4 connections
# of up to 256 MiB staged each, hundreds of MB can be in the queue) and prints
#   killed ACKED SECONDS        (ACKED: durable chunk bytes of this upload when the kill was sent)
#   final ACKED                 (the same after the server settled)
# or "exited ACKED" (the client ended first) or "timeout ACKED".
# shellcheck disable=SC2016 # python, not shell
RESUME_WATCH_PY='
import os, signal, sqlite3, sys, time
db, base, target, pid, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
mode = sys.argv[6]
def wchar():
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
q = "SELECT COALESCE(SUM(size), 0) FROM chunks"
def acked():
    return con.execute(q).fetchone()[0] - base
def alive():
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
t0 = time.monotonic()
while True:
    a = acked()
    if (a if mode == "acked" else wchar()) >= target:
        os.kill(pid, signal.SIGKILL)
        a = acked()
        print("killed %d %.3f" % (a, time.monotonic() - t0), flush=True)
        break
    if not alive():
        print("exited %d" % a)
        sys.exit(0)
    if time.monotonic() - t0 > limit:
        os.kill(pid, signal.SIGKILL)
        print("timeout %d" % a)
        sys.exit(0)
    time.sleep(0.02)
last, since, t1 = None, time.monotonic(), time.monotonic()
while time.monotonic() - since < 3.0 and time.monotonic() - t1 < 120:
    a = acked()
    if a != last:
        last, since = a, time.monotonic()
    time.sleep(0.1)
print("final %d" % last)
'

resume_round() { # ROUND
    local r=$1 log=$LOGDIR/resume_r$1.log st1=$LOGDIR/resume_r$1_killed.out st2=$LOGDIR/resume_r$1_again.out
    local sha="" base="" target pid rc1=0 rc=0 watch what akill tkill afinal astart secs bound sbound verdict f
    target=$((BIG_BYTES * KILL_AT / 100))
    if ! {
        rand_fill "$C4_SRC" "$SIZE_MB" && sha=$(sha_file "$C4_SRC") &&
            { ferry_cmd rm /resume.bin || echo "(ferry rm /resume.bin failed; expected in the first round)"; } &&
            base=$(chunk_bytes)
    } >"$log" 2>&1; then
        note_fail resume ferry "$r" "untimed preparation failed" "$log"
        return 0
    fi
    settle
    # First run: killed with SIGKILL by the watcher once KILL_AT % of the file is durable.
    "$FERRY" put -q --stats "$C4_SRC" /resume.bin </dev/null >"$st1" 2>>"$log" &
    pid=$!
    watch=$(python3 -c "$RESUME_WATCH_PY" "$W/ferry/data/ferry.db" "$base" "$target" "$pid" "$TO" "$KILL_WHEN" 2>>"$log") || true
    wait "$pid" 2>/dev/null || rc1=$?
    printf 'watcher: %s\nfirst run: exit status %s\n' "${watch//$'\n'/; }" "$rc1" >>"$log"
    read -r what akill tkill <<<"${watch%%$'\n'*}"
    afinal=$(sed -n 's/^final //p' <<<"$watch")
    if [[ $what != killed || -z $afinal ]]; then
        note_fail resume ferry "$r" "the first run was not killed mid-upload (watcher: ${watch//$'\n'/; }; exit $rc1)" "$log"
        return 0
    fi
    settle
    # What the server holds right before the second run: the strict bound is measured from here.
    astart=$(chunk_bytes 2>>"$log") && astart=$((astart - base)) || astart=$afinal
    if ((astart != afinal)); then
        echo "durable chunk bytes changed after the 3 s of quiet: $afinal then $astart" >>"$log"
    fi
    # Second run: the same command, timed.
    timed "$FERRY" put -q --stats "$C4_SRC" /resume.bin >"$st2" 2>>"$log" || rc=$?
    cat "$st2" >>"$log"
    if ((rc != 0)); then
        note_fail resume ferry "$r" "the second run ended with exit status $rc" "$log"
        return 0
    fi
    secs=$(fsub "$T1" "$T0")
    if ! ferry_stats "$st2" || [[ $ST_UPLOADED != 1 ]]; then
        note_fail resume ferry "$r" "no --stats output, or not 1 file uploaded ($st2)" "$log"
        return 0
    fi
    if ! c4_get_check /resume.bin "$sha" >>"$log" 2>&1; then
        note_fail resume ferry "$r" "verification failed" "$log"
        return 0
    fi
    # The bound: the unacknowledged remainder when the client was killed, plus 2 % of the file.
    bound=$((BIG_BYTES - akill + BIG_BYTES / 50))
    sbound=$((BIG_BYTES - astart + BIG_BYTES / 50))
    verdict=PASS
    ((ST_SENT <= bound && ST_TX <= bound)) || verdict=FAIL
    c4_add resume verdict "$verdict"
    c4_add resume secs "$secs"
    afinal=$astart
    for f in akill:"$akill" afinal:"$afinal" tkill:"$tkill" sent:"$ST_SENT" tx:"$ST_TX" rx:"$ST_RX" \
        read:"$ST_READ" bound:"$bound" sbound:"$sbound"; do
        c4_add resume "${f%%:*}" "${f#*:}"
    done
    TIMES["resume|ferry"]+="$secs "
    printf '  %-9s r%-3s killed after %6.2f s with %8s MB durable (%s MB when run again); again: %6.3f s, sent %8s MB, wire %8s MB out + %s MB in; bound %8s MB  %s\n' \
        resume "$r" "$tkill" "$(mb "$akill" %.1f)" "$(mb "$afinal" %.1f)" "$secs" "$(mb "$ST_SENT" %.1f)" \
        "$(mb "$ST_TX" %.1f)" "$(mb "$ST_RX" %.2f)" "$(mb "$bound" %.1f)" "$verdict"
}

unchanged_round() { # ROUND
    local r=$1 log=$LOGDIR/unchanged_r$1.log sa=$LOGDIR/unchanged_r$1_first.out sb=$LOGDIR/unchanged_r$1_second.out
    local sha="" rc=0 t1 t2 s1 x1 y1 w2 ha hb bytes_ok time_ok
    if ! {
        rand_fill "$C4_SRC" "$SIZE_MB" && sha=$(sha_file "$C4_SRC") &&
            { ferry_cmd rm /unchanged_a.bin || echo "(ferry rm failed; expected in the first round)"; } &&
            { ferry_cmd rm /unchanged_b.bin || echo "(ferry rm failed; expected in the first round)"; }
    } >"$log" 2>&1; then
        note_fail unchanged ferry "$r" "untimed preparation failed" "$log"
        return 0
    fi
    settle # also ages the file's mtime past the index's racy window (100 ms)
    timed "$FERRY" put -q --stats "$C4_SRC" /unchanged_a.bin >"$sa" 2>>"$log" || rc=$?
    cat "$sa" >>"$log"
    if ((rc != 0)) || ! ferry_stats "$sa"; then
        note_fail unchanged ferry "$r" "first upload: exit status $rc" "$log"
        return 0
    fi
    t1=$(fsub "$T1" "$T0") s1=$ST_SENT x1=$ST_TX y1=$ST_RX
    settle
    timed "$FERRY" put -q --stats "$C4_SRC" /unchanged_b.bin >"$sb" 2>>"$log" || rc=$?
    cat "$sb" >>"$log"
    if ((rc != 0)) || ! ferry_stats "$sb" || [[ $ST_UPLOADED != 1 ]]; then
        note_fail unchanged ferry "$r" "second upload: exit status $rc" "$log"
        return 0
    fi
    t2=$(fsub "$T1" "$T0")
    ha=$(ferry_hash /unchanged_a.bin 2>>"$log") || true
    hb=$(ferry_hash /unchanged_b.bin 2>>"$log") || true
    if [[ -z $ha || $ha != "$hb" ]] || ! c4_get_check /unchanged_b.bin "$sha" >>"$log" 2>&1; then
        note_fail unchanged ferry "$r" "verification failed (content ids '$ha' and '$hb')" "$log"
        return 0
    fi
    w2=$((ST_TX + ST_RX))
    bytes_ok=PASS
    ((w2 < 1048576)) || bytes_ok=FAIL
    time_ok=$(awk -v a="$t2" -v b="$t1" 'BEGIN { print (a <= 0.2 * b) ? "PASS" : "FAIL" }')
    for f in t1:"$t1" t2:"$t2" s1:"$s1" x1:"$x1" y1:"$y1" w2:"$w2" read2:"$ST_READ" sent2:"$ST_SENT" \
        bytes_ok:"$bytes_ok" time_ok:"$time_ok"; do
        c4_add unchanged "${f%%:*}" "${f#*:}"
    done
    TIMES["unchanged|ferry"]+="$t2 "
    printf '  %-9s r%-3s first %7.3f s (sent %s MB, wire %s MB); again under a new name %6.3f s = %.3fx, wire %s B, read %s B  bytes %s time %s\n' \
        unchanged "$r" "$t1" "$(mb "$s1" %.1f)" "$(mb "$((x1 + y1))" %.1f)" "$t2" "$(fdiv "$t2" "$t1" %.4f)" \
        "$w2" "$ST_READ" "$bytes_ok" "$time_ok"
}

# ---- delta: the server (ferry's /delta.bin, rsync's dst/delta/delta.bin) holds the original;
# the edited file is sent. performance.md section 4: 1 MiB of new random bytes at SIZE/2, or
# 100 new random bytes inserted at 500 MiB (scaled for other sizes). Each round has new random
# edit bytes, so no round can reuse another round's chunks; the original stays the same.
D_ORIG=$W/src/delta_orig.bin
D_NEW=$W/src/delta_new.bin
D_FERRY=$W/src/dferry/delta.bin
D_RSYNC=$W/dst/delta/delta.bin
D_NEW_SHA="" D_ORIG_CID=""
DELTA_READY=0

# delta_tools CASE: the tools of one delta case, in interleaving order. rsync --inplace is left
# out of the insertion: it cannot move the data after the insertion point, so it sends the whole
# second half as literal data (34.6 MB of a 64 MiB file in a trial run); it is no delta peer there.
delta_tools() {
    local t
    for t in "${TOOLS[@]}"; do
        case $t in
        ferry | rsyncd | rsyncd-fsync) printf '%s\n' "$t" ;;
        rsyncd-inplace) [[ $1 == mod ]] && printf '%s\n' "$t" ;;
        esac
    done
    return 0
}

setup_delta() {
    local log=$LOGDIR/delta_setup.log
    mkdir -p "$W/dst/delta" "$W/src/dferry"
    if ! {
        rand_fill "$D_ORIG" "$SIZE_MB"
    } >"$log" 2>&1; then
        show_tail "$log"
        warn "could not make the delta original (log: $log)"
        return 0
    fi
    if ((WITH_FERRY)); then
        # The original goes up once; every ferry run restores it (only its chunk list travels).
        if ! {
            cp "$D_ORIG" "$D_FERRY" && { ferry_cmd rm /delta.bin || true; } &&
                ferry_cmd put -q "$D_FERRY" /delta.bin && D_ORIG_CID=$(ferry_hash /delta.bin) &&
                [[ -n $D_ORIG_CID ]]
        } >>"$log" 2>&1; then
            show_tail "$log"
            warn "could not upload the delta original to ferry; its delta runs will fail (log: $log)"
        fi
        echo "original on the ferry server: $D_ORIG_CID" >>"$log"
    fi
    DELTA_READY=1
}

# delta_make CASE: the edited file D_NEW from D_ORIG, with new random edit bytes.
delta_make() {
    local off
    rm -f "$D_NEW"
    if [[ $1 == mod ]]; then
        cp "$D_ORIG" "$D_NEW" || return 1
        head -c 1M /dev/urandom | dd of="$D_NEW" bs=1M seek=$((SIZE_MB / 2)) conv=notrunc status=none || return 1
    else
        off=$((SIZE_MB * 500 / 1024)) # MiB: 500 for a 1 GiB file
        off=$((off * 1048576))
        {
            head -c "$off" "$D_ORIG"
            head -c 100 /dev/urandom
            tail -c +$((off + 1)) "$D_ORIG"
        } >"$D_NEW" || return 1
    fi
    D_NEW_SHA=$(sha_file "$D_NEW")
}

prep_delta() { # TOOL
    if [[ $1 == ferry ]]; then
        local cid
        [[ -n $D_ORIG_CID ]] || {
            echo "no original on the ferry server (setup failed)"
            return 1
        }
        # Restore the original under the same remote name (the server holds its chunks: only the
        # list travels, though the client reads the file again), check it, then edit the local file.
        cp "$D_ORIG" "$D_FERRY" && ferry_cmd put -q "$D_FERRY" /delta.bin || return 1
        cid=$(ferry_hash /delta.bin) || return 1
        [[ $cid == "$D_ORIG_CID" ]] || {
            echo "/delta.bin is $cid on the server, not the original $D_ORIG_CID"
            return 1
        }
        cp "$D_NEW" "$D_FERRY"
    else
        cp "$D_ORIG" "$D_RSYNC" # the basis rsync's delta works against (performance.md section 4)
    fi
}

run_delta() { # TOOL STATSFILE
    case $1 in
    ferry) timed "$FERRY" put -q --stats "$D_FERRY" /delta.bin >"$2" ;;
    rsyncd) timed rsync -a --stats "$D_NEW" "$RSYNC_URL/delta/delta.bin" >"$2" ;;
    rsyncd-fsync) timed rsync -a --fsync --stats "$D_NEW" "$RSYNC_URL/delta/delta.bin" >"$2" ;;
    rsyncd-inplace) timed rsync -a --inplace --stats "$D_NEW" "$RSYNC_URL/delta/delta.bin" >"$2" ;;
    esac
}

delta_measure() { # CASE TOOL ROUND
    local c=$1 tool=$2 r=$3 scen=delta_$1 rc=0 secs lo bytes extra
    local log=$LOGDIR/delta_${1}_${2}_r${3}.log out=$LOGDIR/delta_${1}_${2}_r${3}.out key="delta_$1|$2"
    T0="" T1=""
    if ! prep_delta "$tool" >"$log" 2>&1; then
        note_fail "$scen" "$tool" "$r" "untimed preparation failed" "$log"
        return 0
    fi
    settle
    run_delta "$tool" "$out" 2>>"$log" || rc=$?
    cat "$out" >>"$log"
    if ((rc != 0)); then
        note_fail "$scen" "$tool" "$r" "exit status $rc" "$log"
        return 0
    fi
    secs=$(fsub "$T1" "$T0")
    lo=$((LO1 - LO0))
    if [[ $tool == ferry ]]; then
        if ! ferry_stats "$out" || [[ $ST_UPLOADED != 1 ]]; then
            note_fail "$scen" "$tool" "$r" "no --stats output, or not 1 file uploaded" "$log"
            return 0
        fi
        bytes=$((ST_TX + ST_RX))
        extra="chunks sent $(mb "$ST_SENT") MB, read $(mb "$ST_READ" %.1f) MB"
        c4_add "$scen" "sent_ferry" "$ST_SENT"
        c4_add "$scen" "read_ferry" "$ST_READ"
        if ! c4_get_check /delta.bin "$D_NEW_SHA" >>"$log" 2>&1; then
            note_fail "$scen" "$tool" "$r" "verification failed" "$log"
            return 0
        fi
    else
        if ! rsync_stats "$out"; then
            note_fail "$scen" "$tool" "$r" "no rsync --stats totals" "$log"
            return 0
        fi
        bytes=$((RS_SENT + RS_RECV))
        extra="sent $RS_SENT + received $RS_RECV B, literal $RS_LITERAL B"
        # A delta, not the whole file (rsync defaults to --whole-file for local copies only).
        if [[ $RS_LITERAL =~ ^[0-9]+$ ]] && ((RS_LITERAL * 10 > BIG_BYTES)); then
            note_fail "$scen" "$tool" "$r" "rsync sent the whole file (literal data $RS_LITERAL B)" "$log"
            return 0
        fi
        if ! sha_check "$D_RSYNC" "$D_NEW_SHA" >>"$log" 2>&1; then
            note_fail "$scen" "$tool" "$r" "verification failed" "$log"
            return 0
        fi
    fi
    TIMES[$key]+="$secs "
    WIRE[$key]+="$bytes "
    c4_add "$scen" "lo_$tool" "$lo"
    printf '  %-9s r%-3s %-14s %8.3f s  wire %9s B (loopback %9s B)  %s  ok\n' "$scen" "$r" "$tool" "$secs" \
        "$bytes" "$lo" "$extra"
}

# ---- delta-down: the server holds the edited file, the local destination the original; ferry get
# and rsync's pull from its daemon update it (R-CHUNK-16: only the changed chunks travel).
DD_DIR=$W/down

prep_down() { # TOOL
    mkdir -p "$DD_DIR/ferry" "$DD_DIR/rsync" || return 1
    if [[ $1 == ferry ]]; then
        ferry_cmd put -q "$D_NEW" /delta.bin || return 1
        cp "$D_ORIG" "$DD_DIR/ferry/delta.bin"
    else
        cp "$D_NEW" "$D_RSYNC" && cp "$D_ORIG" "$DD_DIR/rsync/delta.bin"
    fi
}

# ferry_get_stats FILE: `ferry get --stats` into GS_RECV GS_LOCAL GS_TX GS_RX.
ferry_get_stats() {
    local line
    GS_RECV=NA GS_LOCAL=NA GS_TX=NA GS_RX=NA
    [[ -f $1 ]] || return 1
    while IFS= read -r line; do
        if [[ $line =~ ^bytes:\ [0-9]+\ in\ all,\ ([0-9]+)\ received ]]; then
            GS_RECV=${BASH_REMATCH[1]}
        elif [[ $line =~ ^local:\ ([0-9]+)\ taken ]]; then
            GS_LOCAL=${BASH_REMATCH[1]}
        elif [[ $line =~ ^wire:\ ([0-9]+)\ sent,\ ([0-9]+)\ received ]]; then
            GS_TX=${BASH_REMATCH[1]} GS_RX=${BASH_REMATCH[2]}
        fi
    done <"$1"
    [[ $GS_RECV != NA && $GS_TX != NA ]]
}

down_measure() { # CASE TOOL ROUND
    local scen=ddown_$1 tool=$2 r=$3 rc=0 secs bytes extra dst
    local log=$LOGDIR/ddown_${1}_${2}_r${3}.log out=$LOGDIR/ddown_${1}_${2}_r${3}.out key="ddown_$1|$2"
    T0="" T1=""
    if ! prep_down "$tool" >"$log" 2>&1; then
        note_fail "$scen" "$tool" "$r" "untimed preparation failed" "$log"
        return 0
    fi
    settle
    if [[ $tool == ferry ]]; then
        dst=$DD_DIR/ferry/delta.bin
        timed "$FERRY" get -q --stats /delta.bin "$dst" >"$out" 2>>"$log" || rc=$?
    else
        dst=$DD_DIR/rsync/delta.bin
        # -I: the basis and the new file may share size and mtime second; compare content.
        timed rsync -a -I --stats "$RSYNC_URL/delta/delta.bin" "$dst" >"$out" 2>>"$log" || rc=$?
    fi
    cat "$out" >>"$log"
    if ((rc != 0)); then
        note_fail "$scen" "$tool" "$r" "exit status $rc" "$log"
        return 0
    fi
    secs=$(fsub "$T1" "$T0")
    if [[ $tool == ferry ]]; then
        if ! ferry_get_stats "$out"; then
            note_fail "$scen" "$tool" "$r" "no --stats output" "$log"
            return 0
        fi
        bytes=$((GS_TX + GS_RX))
        extra="received $(mb "$GS_RECV") MB, taken locally $(mb "$GS_LOCAL") MB"
    else
        if ! rsync_stats "$out"; then
            note_fail "$scen" "$tool" "$r" "no rsync --stats totals" "$log"
            return 0
        fi
        bytes=$((RS_SENT + RS_RECV))
        extra="sent $RS_SENT + received $RS_RECV B, literal $RS_LITERAL B"
    fi
    if ! sha_check "$dst" "$D_NEW_SHA" >>"$log" 2>&1; then
        note_fail "$scen" "$tool" "$r" "verification failed" "$log"
        return 0
    fi
    TIMES[$key]+="$secs "
    WIRE[$key]+="$bytes "
    printf '  %-11s r%-3s %-14s %8.3f s  wire %9s B  %s  ok\n' "$scen" "$r" "$tool" "$secs" "$bytes" "$extra"
}

summarize_down() {
    local c scen t key arr warr med wmed a b
    for c in mod ins; do
        scen=ddown_$c
        [[ -n ${TIMES["$scen|ferry"]:-}${FAILS["$scen|ferry"]:-} ]] || continue
        printf '\ndelta-down-%s: ferry get / rsync pull over the original of a %s MiB file\n' "$c" "$SIZE_MB"
        printf '  %-8s %9s %12s  %s\n' tool median_s median_wire_B "runs (s)"
        C4_MD+=("" "delta-down-$c ($SIZE_MB MiB): the local file is the original, the server holds the edit" ""
            "| tool | median (s) | median wire (B) | runs (s) |" "|---|---|---|---|")
        for t in ferry rsyncd; do
            key="$scen|$t"
            read -r -a arr <<<"${TIMES[$key]:-}"
            read -r -a warr <<<"${WIRE[$key]:-}"
            ((${#arr[@]} > 0)) || continue
            med=$(median "${arr[@]}")
            wmed=$(median "${warr[@]}")
            MED[$key]=$med
            MED["$key|wire"]=$wmed
            printf '  %-8s %9s %12s  %s\n' "$t" "$(fmt "$med" %.3f)" "$(fmt "$wmed" %.0f)" "${arr[*]}"
            RESULT_LINES+=("RESULT delta-down-$c tool=$t median_s=$(fmt "$med" %.6f) median_wire=$(fmt "$wmed" %.0f) size_mib=$SIZE_MB runs=${arr[*]}")
            C4_MD+=("| $t | $(fmt "$med" %.2f) | $(fmt "$wmed" %.0f) | ${arr[*]} |")
        done
        a=$(fdiv "${MED["$scen|ferry|wire"]:-NA}" "${MED["$scen|rsyncd|wire"]:-NA}" %.3f)
        b=$(fdiv "${MED["$scen|ferry"]:-NA}" "${MED["$scen|rsyncd"]:-NA}" %.3f)
        RATIO_LINES+=("RATIO delta-down-$c bytes ferry/rsyncd=$a" "RATIO delta-down-$c time ferry/rsyncd=$b")
    done
}

run_delta_batch() {
    local r c t cases=() log=$LOGDIR/delta_make.log
    ((DO_DMOD || DO_DDOWN)) && cases+=(mod)
    ((DO_DINS || DO_DDOWN)) && cases+=(ins)
    # shellcheck disable=SC2016 # literal backquotes
    printf '\n== delta: %s MiB file, the server holds the original; wire bytes and time of the update, %s rounds, interleaved ==\n' \
        "$SIZE_MB" "$ROUNDS"
    setup_delta
    for ((r = 1; r <= ROUNDS; r++)); do
        for c in "${cases[@]}"; do
            if ((DELTA_READY == 0)) || ! delta_make "$c" >>"$log" 2>&1; then
                for t in $(delta_tools "$c"); do note_fail "delta_$c" "$t" "$r" "could not make the edited file" "$log"; done
                continue
            fi
            if [[ ($c == mod && $DO_DMOD == 1) || ($c == ins && $DO_DINS == 1) ]]; then
                for t in $(delta_tools "$c"); do delta_measure "$c" "$t" "$r"; done
            fi
            if ((DO_DDOWN)); then
                for t in ferry rsyncd; do down_measure "$c" "$t" "$r"; done
            fi
        done
    done
}

run_chunked() {
    local r
    if ((WITH_FERRY && DO_RESUME)); then
        printf '\n== resume: %s MiB upload killed (SIGKILL of the client) at %s %% %s, then run again; %s rounds ==\n' \
            "$SIZE_MB" "$KILL_AT" "$( [[ $KILL_WHEN == acked ]] && echo durable || echo sent)" "$ROUNDS"
        for ((r = 1; r <= ROUNDS; r++)); do resume_round "$r"; done
        { ferry_cmd rm /resume.bin || true; } >/dev/null 2>&1
    fi
    if ((WITH_FERRY && DO_UNCHANGED)); then
        printf '\n== unchanged: %s MiB upload, then the same local file under a new remote name; %s rounds ==\n' \
            "$SIZE_MB" "$ROUNDS"
        for ((r = 1; r <= ROUNDS; r++)); do unchanged_round "$r"; done
        { ferry_cmd rm /unchanged_a.bin || true; ferry_cmd rm /unchanged_b.bin || true; } >/dev/null 2>&1
    fi
    if ((DO_DELTA)); then run_delta_batch; fi
}

# ---- summary of the chunked scenarios
c4_target() { # NAME VERDICT... : PASS when every round passed
    local name=$1 n=0 p=0 v status
    shift
    for v in "$@"; do
        n=$((n + 1))
        [[ $v == PASS ]] && p=$((p + 1))
    done
    if ((n == 0)); then status=NA; elif ((p == n)); then status=PASS; else status=FAIL; fi
    if [[ $status == PASS ]]; then MET=$((MET + 1)); elif [[ $status == FAIL ]]; then MISSED=$((MISSED + 1)); fi
    C4_TARGET_LINES+=("TARGET $name $status ($p of $n rounds)")
}

summarize_chunked() {
    local v a b i
    if ((WITH_FERRY && DO_RESUME)); then
        printf '\nresume: %s MiB upload killed at %s %% %s, then the same put again (MB = 10^6 B)\n' "$SIZE_MB" "$KILL_AT" \
            "$( [[ $KILL_WHEN == acked ]] && echo durable || echo 'sent (client wchar)')"
        printf '  %-5s %9s %11s %11s %9s %9s %9s %9s %11s %7s\n' round kill_s acked_MB at_2nd_MB again_s sent_MB wire_MB \
            bound_MB strict_MB verdict
        C4_MD+=("" "resume: $SIZE_MB MiB, client killed at $KILL_AT % $( [[ $KILL_WHEN == acked ]] && echo durable || echo sent) (MB = 10^6 B)" ""
            "| round | killed after (s) | durable at kill (MB) | durable when the 2nd run began (MB) | 2nd run (s) | sent S (MB) | wire X (MB) | bound (MB) | verdict |"
            "|---|---|---|---|---|---|---|---|---|")
        local -a ak af tk se tx bo sb sc ve
        read -r -a ak <<<"$(c4_vals resume akill)"
        read -r -a af <<<"$(c4_vals resume afinal)"
        read -r -a tk <<<"$(c4_vals resume tkill)"
        read -r -a se <<<"$(c4_vals resume sent)"
        read -r -a tx <<<"$(c4_vals resume tx)"
        read -r -a bo <<<"$(c4_vals resume bound)"
        read -r -a sb <<<"$(c4_vals resume sbound)"
        read -r -a sc <<<"$(c4_vals resume secs)"
        read -r -a ve <<<"$(c4_vals resume verdict)"
        for ((i = 0; i < ${#ve[@]}; i++)); do
            printf '  %-5s %9.2f %11s %11s %9.3f %9s %9s %9s %11s %7s\n' "$((i + 1))" "${tk[i]}" "$(mb "${ak[i]}" %.1f)" \
                "$(mb "${af[i]}" %.1f)" "${sc[i]}" "$(mb "${se[i]}" %.1f)" "$(mb "${tx[i]}" %.1f)" "$(mb "${bo[i]}" %.1f)" \
                "$(mb "${sb[i]}" %.1f)" "${ve[i]}"
            RESULT_LINES+=("RESULT resume round=$((i + 1)) size_mib=$SIZE_MB kill_when=$KILL_WHEN killed_after_s=${tk[i]} acked_at_kill=${ak[i]} acked_at_2nd_run=${af[i]} again_s=${sc[i]} sent=${se[i]} wire_tx=${tx[i]} bound=${bo[i]} strict_bound=${sb[i]} verdict=${ve[i]}")
            C4_MD+=("| $((i + 1)) | ${tk[i]} | $(mb "${ak[i]}" %.1f) | $(mb "${af[i]}" %.1f) | $(fmt "${sc[i]}" %.2f) | $(mb "${se[i]}" %.1f) | $(mb "${tx[i]}" %.1f) | $(mb "${bo[i]}" %.1f) | ${ve[i]} |")
        done
        printf '  (bound = file - durable at kill + 2 %% of the file; strict = the same with what was durable when the 2nd run began)\n'
        c4_target "resume sent<=remainder+2%" "${ve[@]}"
    fi
    if ((WITH_FERRY && DO_UNCHANGED)); then
        printf '\nunchanged: %s MiB upload, then the same local file under a new remote name\n' "$SIZE_MB"
        printf '  %-5s %9s %10s %9s %9s %12s %11s %7s %7s\n' round first_s first_MB again_s ratio again_wire_B again_read_B bytes time
        C4_MD+=("" "unchanged: $SIZE_MB MiB, then the same local file under a new name" ""
            "| round | 1st upload (s) | 2nd upload (s) | time ratio | 2nd wire X+Y (B) | 2nd read (B) | wire < 1 MiB | time ≤ 0.2× |"
            "|---|---|---|---|---|---|---|---|")
        local -a t1 t2 s1 w2 rd bk tm
        read -r -a t1 <<<"$(c4_vals unchanged t1)"
        read -r -a t2 <<<"$(c4_vals unchanged t2)"
        read -r -a s1 <<<"$(c4_vals unchanged s1)"
        read -r -a w2 <<<"$(c4_vals unchanged w2)"
        read -r -a rd <<<"$(c4_vals unchanged read2)"
        read -r -a bk <<<"$(c4_vals unchanged bytes_ok)"
        read -r -a tm <<<"$(c4_vals unchanged time_ok)"
        for ((i = 0; i < ${#t1[@]}; i++)); do
            printf '  %-5s %9.3f %10s %9.3f %9s %12s %11s %7s %7s\n' "$((i + 1))" "${t1[i]}" "$(mb "${s1[i]}" %.1f)" "${t2[i]}" \
                "$(fdiv "${t2[i]}" "${t1[i]}" %.4f)" "${w2[i]}" "${rd[i]}" "${bk[i]}" "${tm[i]}"
            RESULT_LINES+=("RESULT unchanged round=$((i + 1)) size_mib=$SIZE_MB first_s=${t1[i]} again_s=${t2[i]} time_ratio=$(fdiv "${t2[i]}" "${t1[i]}" %.4f) again_wire=${w2[i]} again_read=${rd[i]} bytes=${bk[i]} time=${tm[i]}")
            C4_MD+=("| $((i + 1)) | $(fmt "${t1[i]}" %.2f) | $(fmt "${t2[i]}" %.3f) | $(fdiv "${t2[i]}" "${t1[i]}" %.4f) | ${w2[i]} | ${rd[i]} | ${bk[i]} | ${tm[i]} |")
        done
        c4_target "unchanged wire<1MiB" "${bk[@]}"
        c4_target "unchanged time<=0.2x" "${tm[@]}"
    fi
    local c scen t key arr warr ok fails med wmed runs f p
    for c in mod ins; do
        scen=delta_$c
        if [[ $c == mod ]]; then ((DO_DMOD)) || continue; else ((DO_DINS)) || continue; fi
        if [[ $c == mod ]]; then
            printf '\ndelta-mod: 1 MiB overwritten at %s MiB of a %s MiB file the server holds\n' "$((SIZE_MB / 2))" "$SIZE_MB"
        else
            printf '\ndelta-ins: 100 B inserted at %s MiB of a %s MiB file the server holds\n' "$((SIZE_MB * 500 / 1024))" "$SIZE_MB"
        fi
        printf '  %-14s %9s %12s %4s %6s  %s\n' tool median_s median_wire_B ok failed "runs (s / wire B)"
        C4_MD+=("" "$scen ($SIZE_MB MiB): wire = ferry's TLS bytes both ways (--stats), rsync's total bytes sent + received (--stats)" ""
            "| tool | median (s) | median wire (B) | runs (s) | runs (wire B) |" "|---|---|---|---|---|")
        for t in $(delta_tools "$c"); do
            key="$scen|$t"
            read -r -a arr <<<"${TIMES[$key]:-}"
            read -r -a warr <<<"${WIRE[$key]:-}"
            ok=${#arr[@]}
            fails=${FAILS[$key]:-0}
            ((ok + fails > 0)) || continue
            med=$(median "${arr[@]}")
            wmed=$(median "${warr[@]}")
            MED[$key]=$med
            MED["$key|wire"]=$wmed
            runs=""
            ((ok > 0)) && runs=$(printf '%s\n' "${arr[@]}" | awk '{ printf "%s%.3f", (NR > 1 ? "," : ""), $1 }')
            printf '  %-14s %9s %12s %4s %6s  %s / %s\n' "$t" "$(fmt "$med" %.3f)" "$(fmt "$wmed" %.0f)" "$ok" "$fails" \
                "${runs:--}" "$(
                    IFS=,
                    echo "${warr[*]}"
                )"
            RESULT_LINES+=("RESULT $scen tool=$t median_s=$(fmt "$med" %.6f) median_wire=$(fmt "$wmed" %.0f) ok=$ok failed=$fails size_mib=$SIZE_MB runs=${runs:-none} wire=$(
                IFS=,
                echo "${warr[*]}"
            )")
            local wl
            wl=$(
                IFS=,
                echo "${warr[*]}"
            )
            C4_MD+=("| $t | $(fmt "$med" %.2f) | $(fmt "$wmed" %.0f) | ${runs//,/ \/ } | ${wl//,/ \/ } |")
        done
        f=${MED["$scen|ferry|wire"]:-NA}
        for p in rsyncd rsyncd-fsync rsyncd-inplace; do
            [[ " $(delta_tools "$c" | tr '\n' ' ') " == *" $p "* ]] || continue
            a=$(fdiv "$f" "${MED["$scen|$p|wire"]:-NA}" %.3f)
            b=$(fdiv "${MED["$scen|ferry"]:-NA}" "${MED["$scen|$p"]:-NA}" %.3f)
            if [[ $p == rsyncd ]]; then
                v=$(meets "$a" "<=" 3)
                RATIO_LINES+=("RATIO $scen bytes ferry/$p=$a target<=3 $v")
                [[ $v == MET ]] && MET=$((MET + 1))
                [[ $v == MISSED ]] && MISSED=$((MISSED + 1))
                v=$(meets "$b" "<=" 1)
                RATIO_LINES+=("RATIO $scen time ferry/$p=$b target<=1 $v")
                [[ $v == MET ]] && MET=$((MET + 1))
                [[ $v == MISSED ]] && MISSED=$((MISSED + 1))
            else
                RATIO_LINES+=("RATIO $scen bytes ferry/$p=$a" "RATIO $scen time ferry/$p=$b")
            fi
        done
    done
}

# ---------------------------------------------------------------- summary
declare -A MED=()
RESULT_LINES=()
MD_LINES=()

summarize() { # SCEN TITLE TOOL...
    local scen=$1 title=$2 t key n ok fails short med rate wmed runs unit cmed cruns cbest
    shift 2
    unit=$(rate_unit "$scen")
    printf '\n%s\n' "$title"
    if [[ $scen == noop ]]; then
        printf '  %-13s %10s %6s %6s\n' tool median_ms ok failed
    else
        printf '  %-13s %10s %10s %9s %9s %4s %6s  %s\n' tool median_s "$unit" cpu_s wire_MB ok failed "runs (s)"
    fi
    MD_LINES+=("" "$title" "")
    if [[ $scen == noop ]]; then
        MD_LINES+=("| tool | median (ms) | runs |" "|---|---|---|")
    else
        MD_LINES+=("| tool | median (s) | $unit | median CPU (s) | runs (s) | runs CPU (s) |" "|---|---|---|---|---|---|")
    fi
    for t in "$@"; do
        key="$scen|$t"
        read -r -a arr <<<"${TIMES[$key]:-}"
        ok=${#arr[@]}
        fails=${FAILS[$key]:-0}
        short=${SHORT[$key]:-0}
        ((ok + fails + short > 0)) || continue
        med=$(median "${arr[@]}")
        MED[$key]=$med
        if [[ $scen == noop ]]; then
            local ms
            ms=$(awk -v m="$med" 'BEGIN { if (m == "NA") print "NA"; else printf "%.1f\n", m * 1000 }')
            printf '  %-13s %10s %6s %6s\n' "$t" "$ms" "$ok" "$fails"
            RESULT_LINES+=("RESULT noop tool=$t median_s=$(fmt "$med" %.6f) median_ms=$ms ok=$ok failed=$fails runs_per_round=$NOOP_RUNS rounds=$ROUNDS method=$( ((HAVE_HYPERFINE)) && echo hyperfine || echo shell)")
            MD_LINES+=("| $t | $ms | $ok |")
            continue
        fi
        rate=$(rate_of "$scen" "$med")
        read -r -a warr <<<"${WIRE[$key]:-}"
        wmed=$(median "${warr[@]}")
        wmed=$(fdiv "$wmed" 1000000 "%.1f")
        runs=$(printf '%s\n' "${arr[@]}" | awk '{ printf "%s%.3f", (NR > 1 ? "," : ""), $1 }')
        read -r -a carr <<<"${CPU[$key]:-}"
        cmed=$(median "${carr[@]}")
        MED["$key|cpu"]=$cmed
        cruns=$(printf '%s\n' "${carr[@]}" | awk 'NF { printf "%s%.2f", (NR > 1 ? "," : ""), $1 }')
        cbest=$(printf '%s\n' "${carr[@]}" | awk 'NF && (b == "" || $1 < b) { b = $1 } END { print (b == "" ? "NA" : b) }')
        MED["$key|cpubest"]=$cbest
        printf '  %-13s %10s %10s %9s %9s %4s %6s  %s%s\n' "$t" "$(fmt "$med" %.3f)" "$rate" "$(fmt "$cmed" %.2f)" \
            "$wmed" "$ok" "$fails" "${runs:--}" "$( ((short)) && echo " (+$short not counted: wire below payload)")"
        case $scen in
        up_big | down_big)
            RESULT_LINES+=("RESULT $scen tool=$t median_s=$(fmt "$med" %.6f) mbps=$rate ok=$ok failed=$fails not_counted=$short wire_mb=$wmed size_mib=$SIZE_MB regime=A runs=${runs:-none} cpu_s=$(fmt "$cmed" %.2f) cpu_runs=${cruns:-none} cpu_s_per_gib=$(fdiv "$cmed" "$(fdiv "$SIZE_MB" 1024 %.6f)" %.2f) best_cpu_s_per_gib=$(fdiv "$cbest" "$(fdiv "$SIZE_MB" 1024 %.6f)" %.2f)") ;;
        up_small | down_small)
            RESULT_LINES+=("RESULT $scen tool=$t median_s=$(fmt "$med" %.6f) files_per_s=$rate ok=$ok failed=$fails not_counted=$short wire_mb=$wmed files=$FILES regime=B runs=${runs:-none} cpu_s=$(fmt "$cmed" %.2f) cpu_runs=${cruns:-none}") ;;
        esac
        MD_LINES+=("| $t | $(fmt "$med" %.2f) | $rate | $(fmt "$cmed" %.2f) | ${runs//,/ \/ } | ${cruns//,/ \/ } |")
    done
}

# ratio SCEN PEER OP TARGET: ferry relative to PEER. For transfers it is a throughput ratio
# (peer time / ferry time); for the no-op it is a time ratio (ferry time / peer time).
RATIO_LINES=()
MET=0 MISSED=0
ratio() {
    local scen=$1 peer=$2 op=${3:-} target=${4:-} f p r status tgt=""
    f=${MED["$scen|ferry"]:-NA}
    p=${MED["$scen|$peer"]:-NA}
    if [[ $scen == noop ]]; then r=$(fdiv "$f" "$p" "%.3f"); else r=$(fdiv "$p" "$f" "%.3f"); fi
    if [[ -n $op ]]; then
        status=$(meets "$r" "$op" "$target")
        tgt=" target${op}${target} $status"
        if [[ $status == MET ]]; then MET=$((MET + 1)); elif [[ $status == MISSED ]]; then MISSED=$((MISSED + 1)); fi
        [[ $r == NA ]] && tgt+=" (not measured)"
    fi
    RATIO_LINES+=("RATIO $scen ferry/$peer=$r$tgt")
}

print_summary() {
    printf '\n================================================================ results\n'
    local l1 l5 l15
    read -r l1 l5 l15 _ </proc/loadavg
    printf '# %s, %s CPUs, kernel %s, scratch %s (%s), rounds %s, big %s MiB, small %s files, regen %s\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -r)" "$W" "$fstype" "$ROUNDS" "$SIZE_MB" "$FILES" "$REGEN"
    printf '# load average at start %s, at end %s %s %s (1/5/15 min)\n' "$load1" "$l1" "$l5" "$l15"
    ((DO_UP)) && summarize up_big "(a) up: one $SIZE_MB MiB file (regime A: same path, previous copy removed; MB = 10^6 B)" "${TOOLS[@]}"
    ((DO_DOWN)) && summarize down_big "(a) down: one $SIZE_MB MiB file (regime A: local destination removed before each run)" "${TOOLS[@]}"
    ((DO_SMALL)) && summarize up_small "(b) up: $FILES files of 4 KiB (regime B: a new destination directory every run)" "${TOOLS[@]}"
    ((DO_SMALL_DOWN)) && summarize down_small "(b) down: $FILES files of 4 KiB pulled (regime B: a new local destination every run; CPU = user + sys of client and server)" "${TOOLS[@]}"
    ((DO_NOOP)) && summarize noop "(c) no-op: ferry = \`ferry ls /\` (whole process), rsyncd = \`rsync -a\` of the up-to-date big file" ferry rsyncd

    local p
    if ((DO_UP)); then
        ratio up_big rsyncd-fsync ">=" 1.0
        ratio up_big rsyncd ">=" 0.85
        ratio up_big rsync-ssh ">=" 2.0
        for p in scp nc; do has_tool "$p" && ratio up_big "$p"; done
    fi
    if ((DO_DOWN)); then
        ratio down_big rsyncd ">=" 0.9
        for p in rsyncd-fsync rsync-ssh scp nc; do has_tool "$p" && ratio down_big "$p"; done
    fi
    if ((DO_SMALL)); then
        ratio up_small rsyncd ">=" 1.0
        for p in rsyncd-fsync rsync-ssh scp nc; do has_tool "$p" && ratio up_small "$p"; done
    fi
    if ((DO_SMALL_DOWN)); then
        ratio down_small rsyncd ">=" 1.0
        for p in rsyncd-fsync rsync-ssh scp; do has_tool "$p" && ratio down_small "$p"; done
        # CPU: ferry's CPU seconds relative to the peer's (less is better).
        for p in rsyncd rsyncd-fsync; do
            has_tool "$p" || continue
            RATIO_LINES+=("RATIO down_small cpu ferry/$p=$(fdiv "${MED["down_small|ferry|cpu"]:-NA}" "${MED["down_small|$p|cpu"]:-NA}" %.3f)")
        done
    fi
    ((DO_NOOP)) && ratio noop rsyncd "<=" 0.3
    local sc
    if ((WITH_BASE && WITH_FERRY)); then
        # The tree's ferry against the older one: throughput (new / old) and CPU (new / old, less
        # is better), the same data in the same run.
        for sc in up_big down_big up_small down_small; do
            [[ -n ${MED["$sc|ferry"]:-} ]] || continue
            ratio "$sc" ferry-base
            RATIO_LINES+=("RATIO $sc cpu ferry/ferry-base=$(fdiv "${MED["$sc|ferry|cpu"]:-NA}" "${MED["$sc|ferry-base|cpu"]:-NA}" %.3f)")
        done
    fi
    # CPU seconds per GiB of the big file (client + server, the best run), issue 10's measure.
    for sc in up_big down_big; do
        for p in ferry ferry-base; do
            [[ -n ${MED["$sc|$p|cpubest"]:-} ]] || continue
            local per st=""
            per=$(fdiv "${MED["$sc|$p|cpubest"]}" "$(fdiv "$SIZE_MB" 1024 %.6f)" %.2f)
            if [[ $sc == up_big && $p == ferry ]]; then
                st=$(meets "$per" "<=" 3.9)
                if [[ $st == MET ]]; then MET=$((MET + 1)); elif [[ $st == MISSED ]]; then MISSED=$((MISSED + 1)); fi
                st=" target<=3.9 $st"
            fi
            RATIO_LINES+=("CPU $sc $p best_cpu_s_per_gib=$per median_cpu_s_per_gib=$(fdiv "${MED["$sc|$p|cpu"]:-NA}" "$(fdiv "$SIZE_MB" 1024 %.6f)" %.2f)$st")
        done
    done
    ((DO_CHUNKED)) && summarize_chunked
    ((DO_DDOWN)) && summarize_down

    printf '\nMachine-readable lines:\n'
    ((${#RESULT_LINES[@]})) && printf '%s\n' "${RESULT_LINES[@]}"
    ((${#RATIO_LINES[@]})) && printf '%s\n' "${RATIO_LINES[@]}"
    ((${#C4_TARGET_LINES[@]})) && printf '%s\n' "${C4_TARGET_LINES[@]}"
    printf '\nRatios are ferry relative to the peer: throughput ratios for (a) and (b), a time ratio for (c),\n'
    printf 'and for delta byte and time ratios (less is better). TARGET lines pass only if every round passed.\n'
    printf 'Targets: %d met, %d missed' "$MET" "$MISSED"
    ((WITH_FERRY)) || printf ' (ferry was not measured)'
    printf '\n'
    if ((SIZE_MB != 1024 || FILES != 10000)); then
        printf 'Note: the targets are set for 1024 MiB and 10000 files; this run used %s MiB and %s files.\n' "$SIZE_MB" "$FILES"
    fi
    printf '\nMarkdown rows for bench/README.md:\n'
    ((${#MD_LINES[@]})) && printf '%s\n' "${MD_LINES[@]}"
    ((${#C4_MD[@]})) && printf '%s\n' "${C4_MD[@]}"
    return 0
}

# ---------------------------------------------------------------- main
printf '# ferry bench/compare.sh: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf '# machine: %s CPUs, %s MiB RAM, kernel %s\n' "$(nproc)" \
    "$(awk '/^MemTotal/ { print int($2 / 1024) }' /proc/meminfo)" "$(uname -r)"
printf '# scratch: %s (%s, %s MB free)\n' "$W" "$fstype" "$avail_mb"
read -r load1 _ </proc/loadavg
printf '# load average at start: %s\n' "$load1"
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
    warn "load average $load1: something else is running; the figures will be noisy (performance.md section 7)"
fi
printf '# tools: %s; scenarios:%s%s%s%s%s%s%s%s%s; rounds %s; big file %s MiB; %s small files; regen %s\n' \
    "${TOOLS[*]}" "$( ((DO_UP)) && echo ' a-up')" "$( ((DO_DOWN)) && echo ' a-down')" \
    "$( ((DO_SMALL)) && echo ' b')" "$( ((DO_SMALL_DOWN)) && echo ' b-down')" "$( ((DO_NOOP)) && echo ' c')" "$( ((DO_RESUME)) && echo ' resume')" \
    "$( ((DO_UNCHANGED)) && echo ' unchanged')" "$( ((DO_DMOD)) && echo ' delta-mod')" "$( ((DO_DINS)) && echo ' delta-ins')" \
    "$ROUNDS" "$SIZE_MB" "$FILES" "$REGEN"
printf '# %s; %s; %s; %s\n' "$(rsync --version | head -n 1 | tr -s ' ')" "$(ssh -V 2>&1)" \
    "$(nc -h 2>&1 | head -n 1)" "$( ((HAVE_HYPERFINE)) && hyperfine --version || echo 'no hyperfine')"

if ((WITH_FERRY)); then
    if [[ -n $FERRY ]]; then
        [[ -x $FERRY ]] || die "--ferry $FERRY is not an executable"
        FERRY=$(cd "$(dirname "$FERRY")" && pwd)/$(basename "$FERRY")
    else
        ferry_build
    fi
    [[ $FERRY != *[[:space:]]* ]] || die "the ferry path must not contain white space: $FERRY"
    printf '# ferry: %s (commit %s)\n' "$FERRY" "$(ferry_rev "$FERRY")"
fi

if ((WITH_BASE)); then
    if [[ -f $FERRY_BASE && -x $FERRY_BASE ]]; then
        FERRY_BASE_BIN=$(cd "$(dirname "$FERRY_BASE")" && pwd)/$(basename "$FERRY_BASE")
    else
        git -C "$ROOT" rev-parse --verify -q "$FERRY_BASE^{commit}" >/dev/null ||
            die "--base $FERRY_BASE is neither an executable nor a revision of $ROOT"
        ferry_base_build "$FERRY_BASE"
    fi
    printf '# ferry-base: %s (commit %s)\n' "$FERRY_BASE_BIN" "$(ferry_rev "$FERRY_BASE_BIN")"
    if ((DO_NOOP || DO_CHUNKED)); then
        warn "ferry-base runs in (a) and (b) only; (c) and the chunked scenarios measure the tree's ferry"
    fi
fi
# first: a broken ferry fails the run before anything else
if ((WITH_FERRY)); then ferry_start ferry; fi
if ((WITH_BASE)); then ferry_start ferry-base; fi
if has_rsyncd_tool; then rsyncd_start; fi
if ((DO_UP || DO_DOWN || DO_SMALL || DO_SMALL_DOWN)) && has_ssh_tool; then sshd_start; fi
if ((DO_UP || DO_DOWN || DO_SMALL)) && has_tool nc; then
    NC_PORT=$(free_port "$NC_PORT") || die "no free port for nc"
fi

if ((DO_UP || DO_DOWN || DO_NOOP)); then
    info "creating the $SIZE_MB MiB source"
    rand_fill "$SRC_BIG" "$SIZE_MB"
fi
if ((DO_SMALL)); then
    info "creating $FILES files of 4 KiB"
    make_tree "$SRC_SMALL" "$FILES"
fi

((DO_UP)) && run_batch up_big "(a) up: one $SIZE_MB MiB file, $ROUNDS rounds, interleaved"
if ((DO_DOWN)); then
    setup_down_big
    run_batch down_big "(a) down: one $SIZE_MB MiB file, $ROUNDS rounds, interleaved"
fi
if ((DO_UP && WITH_FERRY)); then
    data_mb=$(du -sm "$W/ferry/data" | awk '{ print $1 }')
    if ((data_mb > SIZE_MB * 3)); then
        warn "the ferry server's data holds $data_mb MB after the big-file runs: \`ferry rm\` does not free blobs, so ferry wrote into fresh pages (regime B) while the peers reused freed ones (regime A)"
    fi
fi
((DO_SMALL)) && run_batch up_small "(b) up: $FILES files of 4 KiB, $ROUNDS rounds, interleaved"
if ((DO_SMALL_DOWN)); then
    info "putting $FILES files of 4 KiB on every server for (b) down"
    setup_down_small
    run_batch down_small "(b) down: $FILES files of 4 KiB pulled, $ROUNDS rounds, interleaved"
fi
if ((DO_NOOP)); then
    setup_noop
    run_noop
fi
((DO_CHUNKED)) && run_chunked

print_summary
if ((ANY_FAIL)); then
    warn "some runs failed; see the FAILED lines above (logs in $LOGDIR)"
    exit 1
fi
