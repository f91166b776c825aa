#!/usr/bin/env bash
# bench/link.sh: ferry against rsync (to its daemon) over an emulated WAN link (issue 4).
# Client and servers live in two network namespaces joined by the userspace link emulator
# tests/tools/linkemu.c (TUN devices; this kernel has no netem), set up as in
# tests/e2e/test_lossy_link.sh. Rounds are interleaved: ferry, rsyncd, nc, then the next round.
#
#   fast   200 Mbit/s each way, 50 ms RTT (25 ms each way), no loss:
#          target: ferry's upload >= 90 % of the link rate
#   lossy  100 Mbit/s each way, 50 ms RTT, 0.5 % loss each way:
#          target: ferry's upload >= 2x rsync's over the same link
# nc (a bare TCP stream into a file) shows what the emulated link gives one TCP connection.
#
# Usage: bench/link.sh [options]        (bench/link.sh --help). Needs root, /dev/net/tun, ip.
# Nothing leaves the two namespaces; every process is started here and stopped by its PID.
set -euo pipefail
export LC_ALL=C

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$BENCH_DIR/lib.sh"

usage() {
    cat <<EOF
usage: bench/link.sh [options]

  --only LIST        fast, lossy (default fast,lossy)
  --rounds N         rounds per scenario (default 3)
  --size-mb N        file size for fast, in MiB (default 1024)
  --lossy-size-mb N  file size for lossy, in MiB (default 1024)
  --tools LIST       ferry,rsyncd,nc (default all)
  --fast-mbit N, --lossy-mbit N, --rtt-ms N, --loss P
                     link parameters (defaults 200, 100, 50, 0.5)
  --cc NAME          TCP congestion control inside both namespaces (a per-namespace sysctl;
                     default: what a new namespace inherits, bbr on the reference machine)
  --ferry PATH       use this ferry binary instead of building one
  --linkemu PATH     use this linkemu binary instead of compiling tests/tools/linkemu.c
  --build-dir DIR    where to build (default ROOT/build/bench, the -O2 build of compare.sh)
  --workdir DIR      scratch directory, empty or new (default: mktemp -d under /var/tmp)
  --keep             keep the scratch directory
  --timeout S        limit for any one transfer (default 1800)
  --settle S         pause after the untimed sync before every timed run (default 1)
  -h, --help         this text
EOF
}

ONLY=fast,lossy
ROUNDS=3
SIZE_MB=1024
LOSSY_MB=1024
TOOLS_OPT=ferry,rsyncd,nc
FAST_MBIT=200
LOSSY_MBIT=100
RTT_MS=50
LOSS=0.5
CC=""
FERRY=""
LINKEMU=""
BUILD_DIR=$ROOT/build/bench
W=""
KEEP=0
TO=1800
SETTLE=1
need_arg() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case $1 in
    --only) need_arg "$@"; ONLY=$2; shift 2 ;;
    --rounds) need_arg "$@"; ROUNDS=$2; shift 2 ;;
    --size-mb) need_arg "$@"; SIZE_MB=$2; shift 2 ;;
    --lossy-size-mb) need_arg "$@"; LOSSY_MB=$2; shift 2 ;;
    --tools) need_arg "$@"; TOOLS_OPT=$2; shift 2 ;;
    --fast-mbit) need_arg "$@"; FAST_MBIT=$2; shift 2 ;;
    --lossy-mbit) need_arg "$@"; LOSSY_MBIT=$2; shift 2 ;;
    --rtt-ms) need_arg "$@"; RTT_MS=$2; shift 2 ;;
    --loss) need_arg "$@"; LOSS=$2; shift 2 ;;
    --cc) need_arg "$@"; CC=$2; shift 2 ;;
    --ferry) need_arg "$@"; FERRY=$2; shift 2 ;;
    --linkemu) need_arg "$@"; LINKEMU=$2; shift 2 ;;
    --build-dir) need_arg "$@"; BUILD_DIR=$2; shift 2 ;;
    --workdir) need_arg "$@"; W=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --timeout) need_arg "$@"; TO=$2; shift 2 ;;
    --settle) need_arg "$@"; SETTLE=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done
for v in ROUNDS SIZE_MB LOSSY_MB FAST_MBIT LOSSY_MBIT RTT_MS TO; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} == 0)); then die "${v,,} must be a positive integer"; fi
done
[[ $LOSS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--loss must be a percentage"
DO_FAST=0 DO_LOSSY=0
IFS=, read -r -a ol <<<"$ONLY"
for s in "${ol[@]}"; do
    case $s in fast) DO_FAST=1 ;; lossy) DO_LOSSY=1 ;; *) die "--only: fast and/or lossy" ;; esac
done
TOOLS=()
IFS=, read -r -a tl <<<"$TOOLS_OPT"
for t in ferry rsyncd nc; do [[ " ${tl[*]} " == *" $t "* ]] && TOOLS+=("$t"); done
((${#TOOLS[@]})) || die "--tools: ferry, rsyncd and/or nc"
has_tool() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces and TUN devices)"
[[ -c /dev/net/tun ]] || die "needs /dev/net/tun"
for c in ip rsync nc ss timeout python3 cc; do command -v "$c" >/dev/null 2>&1 || die "'$c' is needed"; done

# ---------------------------------------------------------------- scratch, clean-up
NSA=ferry-bench-a-$$ NSB=ferry-bench-b-$$
PIDS=() # "pid:name" of the long-lived processes (emulator, servers)
EMU_PID="" W_CREATED=0 ANY_FAIL=0 NS_MADE=0
cleanup() {
    local rc=$? e
    trap - EXIT INT TERM PIPE
    for e in "${PIDS[@]}"; do stop_pid "${e%%:*}" "${e#*:}"; done
    [[ -n $EMU_PID ]] && stop_pid "$EMU_PID" linkemu
    if ((NS_MADE)); then
        ip netns del "$NSA" 2>/dev/null || true
        ip netns del "$NSB" 2>/dev/null || true
    fi
    if ((W_CREATED)); then
        if ((KEEP == 0 && ANY_FAIL == 0 && rc == 0)); then rm -rf -- "$W"; else info "scratch directory kept: $W"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
if [[ -z $W ]]; then
    W=$(mktemp -d /var/tmp/ferry-link.XXXXXX)
    W_CREATED=1
else
    mkdir -p "$W"
    W=$(cd "$W" && pwd)
    [[ -z $(ls -A "$W") ]] || die "--workdir $W is not empty"
fi
LOGDIR=$W/logs
mkdir -p "$LOGDIR" "$W/src" "$W/dst" "$W/verify" "$W/ferry/data" "$W/ferry/client"/{state,config,data,cache}
export XDG_STATE_HOME=$W/ferry/client/state XDG_CONFIG_HOME=$W/ferry/client/config
export XDG_DATA_HOME=$W/ferry/client/data XDG_CACHE_HOME=$W/ferry/client/cache

# ---------------------------------------------------------------- build
mkdir -p "$BUILD_DIR"
if [[ -z $FERRY ]] && has_tool ferry; then
    log=$LOGDIR/build.log
    info "building ferry (-O2 Release) in $BUILD_DIR (log: $log)"
    build_o2 "$ROOT" "$BUILD_DIR" "$log" || {
        show_tail "$log" 30
        die "ferry did not build (log: $log)"
    }
    FERRY=$BUILD_DIR/ferry
    git_rev "$ROOT" >"$BUILD_DIR/bench-commit.txt"
fi
if has_tool ferry; then
    [[ -x $FERRY ]] || die "$FERRY is not an executable"
    FERRY=$(cd "$(dirname "$FERRY")" && pwd)/$(basename "$FERRY")
fi
if [[ -z $LINKEMU ]]; then
    LINKEMU=$BUILD_DIR/linkemu
    cc -O2 -std=c11 -D_GNU_SOURCE -Wall -o "$LINKEMU" "$ROOT/tests/tools/linkemu.c" 2>"$LOGDIR/linkemu_build.log" || {
        show_tail "$LOGDIR/linkemu_build.log"
        die "could not compile tests/tools/linkemu.c"
    }
fi
[[ -x $LINKEMU ]] || die "$LINKEMU is not an executable"

# ---------------------------------------------------------------- namespaces, link, servers
ADDR_A=10.99.0.1 ADDR_B=10.99.0.2
ip netns add "$NSA"
ip netns add "$NSB"
NS_MADE=1
ip -n "$NSA" link set lo up
ip -n "$NSB" link set lo up
ina() { ip netns exec "$NSA" "$@"; }
inb() { ip netns exec "$NSB" "$@"; }
if [[ -n $CC ]]; then
    grep -qw -- "$CC" /proc/sys/net/ipv4/tcp_available_congestion_control ||
        die "--cc $CC: not in $(cat /proc/sys/net/ipv4/tcp_available_congestion_control)"
    for ns in "$NSA" "$NSB"; do
        ip netns exec "$ns" sh -c "echo $CC > /proc/sys/net/ipv4/tcp_congestion_control" ||
            die "could not set the congestion control in $ns"
    done
fi
CC_USED=$(ina cat /proc/sys/net/ipv4/tcp_congestion_control)

LINK_DESC="" LINK_NOW=""
# link_up MBIT LOSS: (re)start the emulator with these parameters and address both ends.
link_up() {
    local out=$LOGDIR/emu_$1_$2.out i=0
    [[ $LINK_NOW == "$1 $2" ]] && return 0
    LINK_NOW="$1 $2"
    if [[ -n $EMU_PID ]]; then
        stop_pid "$EMU_PID" linkemu
        EMU_PID=""
    fi
    "$LINKEMU" --ns-a "$NSA" --ns-b "$NSB" --delay-ms $((RTT_MS / 2)) --rate-mbit "$1" --loss "$2" \
        --seed "$RANDOM" >"$out" 2>"$LOGDIR/emu.err" &
    EMU_PID=$!
    until grep -qs '^ready$' "$out"; do
        kill -0 "$EMU_PID" 2>/dev/null || {
            show_tail "$LOGDIR/emu.err"
            die "linkemu exited"
        }
        i=$((i + 1))
        ((i < 500)) || die "linkemu did not print ready"
        sleep 0.02
    done
    ip -n "$NSA" addr add "$ADDR_A" peer "$ADDR_B" dev emu0
    ip -n "$NSA" link set emu0 up
    ip -n "$NSB" addr add "$ADDR_B" peer "$ADDR_A" dev emu0
    ip -n "$NSB" link set emu0 up
    LINK_DESC="$1 Mbit/s each way, ${RTT_MS} ms RTT, $2 % loss each way, TCP $CC_USED"
    info "link: $LINK_DESC (linkemu pid $EMU_PID)"
}

FERRY_ADDR="" FERRY_ID=""
ferry_start() {
    local out=$W/ferry/serve.out pid i=0 line
    # Not through inb: a shell function in the background is a subshell, and $! would be its PID
    # instead of the server's. `ip netns exec` execs the command in its own process.
    ip netns exec "$NSB" "$FERRY" serve --data "$W/ferry/data" --listen "$ADDR_B:0" --signup open \
        >"$out" 2>"$W/ferry/serve.err" </dev/null &
    pid=$!
    PIDS+=("$pid:ferry serve")
    while :; do
        line=$(head -n 1 "$out" 2>/dev/null || true)
        if [[ $line =~ ^listening\ on\ ([0-9.]+:[0-9]+)\ id\ ([^[:space:]]+)$ ]]; then
            FERRY_ADDR=${BASH_REMATCH[1]} FERRY_ID=${BASH_REMATCH[2]}
            break
        fi
        kill -0 "$pid" 2>/dev/null || die "ferry serve exited ($W/ferry/serve.err)"
        i=$((i + 1))
        ((i < 1000)) || die "ferry serve did not print its line"
        sleep 0.02
    done
    od -An -tx1 -N16 /dev/urandom | tr -d ' \n' | { cat; echo; } |
        ina timeout 120 "$FERRY" signup --server "$FERRY_ADDR" --server-id "$FERRY_ID" --user bench \
            --password-stdin >"$LOGDIR/signup.log" 2>&1 || {
        show_tail "$LOGDIR/signup.log"
        die "ferry signup over the emulated link failed"
    }
    info "ferry serve: pid $pid in $NSB, $FERRY_ADDR"
}

RSYNC_URL=""
rsyncd_start() {
    local pid
    cat >"$W/rsyncd.conf" <<EOF
pid file = $W/rsyncd.pid
port = 8730
address = $ADDR_B
use chroot = no
log file = $W/rsyncd.log
[dst]
    path = $W/dst
    read only = false
    uid = root
    gid = root
EOF
    ip netns exec "$NSB" rsync --daemon --no-detach --config="$W/rsyncd.conf" </dev/null >"$LOGDIR/rsyncd.out" 2>&1 &
    pid=$!
    PIDS+=("$pid:rsync daemon")
    RSYNC_URL=rsync://$ADDR_B:8730/dst
    local i
    for ((i = 0; i < 250; i++)); do
        [[ -n $(inb ss -Hltn "sport = :8730") ]] && break
        sleep 0.02
    done
    info "rsync daemon: pid $pid in $NSB, $RSYNC_URL"
}

# ---------------------------------------------------------------- measuring
SRC=$W/src/big.bin
declare -A TIMES=() FAILS=() EXTRA=()
measure() { # SCEN MIB TOOL ROUND
    local scen=$1 mib=$2 tool=$3 r=$4 log=$LOGDIR/$1_$3_r$4.log out=$LOGDIR/$1_$3_r$4.out rc=0 secs sha
    local bytes=$(($2 * 1048576)) mbps frac extra="" bpid
    : >"$log"
    # New content for every run: ferry keeps chunks, so the same bytes would not travel again.
    rand_fill "$SRC" "$mib"
    truncate -s "$bytes" "$SRC"
    sha=$(sha_file "$SRC")
    rm -f "$W/dst/big.bin"
    { [[ $tool != ferry ]] || ina timeout 120 "$FERRY" rm /big.bin </dev/null || true; } >>"$log" 2>&1
    sync
    sleep "$SETTLE"
    case $tool in
    ferry)
        stamp T0
        ina timeout "$TO" "$FERRY" put -q --stats "$SRC" /big.bin </dev/null >"$out" 2>>"$log" || rc=$?
        stamp T1
        ;;
    rsyncd)
        stamp T0
        ina timeout "$TO" rsync -a --stats "$SRC" "$RSYNC_URL/big.bin" </dev/null >"$out" 2>>"$log" || rc=$?
        stamp T1
        ;;
    nc)
        ip netns exec "$NSB" timeout "$TO" nc -l "$ADDR_B" 9000 >"$W/dst/big.bin" </dev/null 2>>"$log" &
        bpid=$!
        local i
        for ((i = 0; i < 250; i++)); do
            [[ -n $(inb ss -Hltn "sport = :9000") ]] && break
            sleep 0.02
        done
        stamp T0
        ina timeout "$TO" nc -N "$ADDR_B" 9000 <"$SRC" 2>>"$log" || rc=$?
        wait "$bpid" || rc=$?
        stamp T1
        ;;
    esac
    cat "$out" >>"$log" 2>/dev/null || true
    if ((rc != 0)); then
        FAILS["$scen|$tool"]=$((${FAILS["$scen|$tool"]:-0} + 1))
        ANY_FAIL=1
        printf '  %-6s r%-2s %-7s FAILED: exit status %s (log: %s)\n' "$scen" "$r" "$tool" "$rc" "$log"
        show_tail "$log" 8
        return 0
    fi
    secs=$(fsub "$T1" "$T0")
    # Verification (untimed); ferry's copy is fetched inside the server's namespace, off the link.
    if [[ $tool == ferry ]]; then
        ferry_stats "$out" || true
        extra="sent $(mb "$ST_SENT" %.1f) MB, wire $(mb "$ST_TX" %.1f) MB out"
        rm -f "$W/verify/big.bin"
        if ! inb timeout 600 "$FERRY" get -q /big.bin "$W/verify/big.bin" </dev/null >>"$log" 2>&1 ||
            ! sha_check "$W/verify/big.bin" "$sha" >>"$log" 2>&1; then
            rc=1
        fi
        rm -f "$W/verify/big.bin"
        if [[ $ST_SENT != "$bytes" ]]; then
            extra+=" WARNING: not the whole file was sent"
        fi
    else
        sha_check "$W/dst/big.bin" "$sha" >>"$log" 2>&1 || rc=1
        if [[ $tool == rsyncd ]] && rsync_stats "$out"; then extra="sent $(mb "$RS_SENT" %.1f) MB"; fi
    fi
    if ((rc != 0)); then
        FAILS["$scen|$tool"]=$((${FAILS["$scen|$tool"]:-0} + 1))
        ANY_FAIL=1
        printf '  %-6s r%-2s %-7s FAILED: verification (log: %s)\n' "$scen" "$r" "$tool" "$log"
        return 0
    fi
    mbps=$(fdiv "$bytes" "$(awk -v s="$secs" 'BEGIN { print s * 1e6 }')" %.2f)
    frac=$(awk -v b="$bytes" -v s="$secs" -v m="$LINK_MBIT" 'BEGIN { printf "%.3f", b * 8 / s / (m * 1e6) }')
    TIMES["$scen|$tool"]+="$secs "
    printf '  %-6s r%-2s %-7s %8.2f s  %7s MB/s  %5s of the link rate  %s\n' "$scen" "$r" "$tool" "$secs" "$mbps" "$frac" "$extra"
}

RESULTS=() TARGETS=()
MET=0 MISSED=0
summ() { # SCEN MIB
    local scen=$1 bytes=$(($2 * 1048576)) t med mbps frac arr runs f p ratio st
    printf '\n%s: %s MiB over %s\n' "$scen" "$2" "${EXTRA[$scen]}"
    printf '  %-7s %9s %9s %10s %4s %6s  %s\n' tool median_s MB/s link_frac ok failed "runs (s)"
    for t in "${TOOLS[@]}"; do
        read -r -a arr <<<"${TIMES["$scen|$t"]:-}"
        ((${#arr[@]} + ${FAILS["$scen|$t"]:-0} > 0)) || continue
        med=$(median "${arr[@]}")
        TIMES["$scen|$t|med"]=$med
        mbps=$(fdiv "$bytes" "$(awk -v s="$med" 'BEGIN { print (s == "NA") ? "NA" : s * 1e6 }')" %.2f)
        frac=$(awk -v b="$bytes" -v s="$med" -v m="${EXTRA["$scen|mbit"]}" 'BEGIN { if (s == "NA") print "NA"; else printf "%.3f", b * 8 / s / (m * 1e6) }')
        TIMES["$scen|$t|frac"]=$frac
        runs=$(printf '%s\n' "${arr[@]}" | awk 'NF { printf "%s%.2f", (NR > 1 ? "," : ""), $1 }')
        printf '  %-7s %9s %9s %10s %4s %6s  %s\n' "$t" "$(fmt "$med" %.2f)" "$mbps" "$frac" "${#arr[@]}" \
            "${FAILS["$scen|$t"]:-0}" "${runs:--}"
        RESULTS+=("RESULT link_$scen tool=$t size_mib=$2 median_s=$(fmt "$med" %.3f) mbytes_per_s=$mbps link_fraction=$frac ok=${#arr[@]} failed=${FAILS["$scen|$t"]:-0} runs=${runs:-none} link=\"${EXTRA[$scen]}\"")
    done
    if [[ $scen == fast ]]; then
        f=${TIMES["fast|ferry|frac"]:-NA}
        st=$(meets "$f" ">=" 0.9)
        TARGETS+=("RATIO link_fast ferry/link_rate=$f target>=0.9 $st")
    else
        ratio=$(fdiv "${TIMES["lossy|rsyncd|med"]:-NA}" "${TIMES["lossy|ferry|med"]:-NA}" %.3f)
        st=$(meets "$ratio" ">=" 2)
        TARGETS+=("RATIO link_lossy ferry/rsyncd=$ratio target>=2 $st")
    fi
    if [[ $st == MET ]]; then MET=$((MET + 1)); elif [[ $st == MISSED ]]; then MISSED=$((MISSED + 1)); fi
    return 0
}

run_scen() { # SCEN MBIT LOSS MIB
    local r t
    LINK_MBIT=$2
    link_up "$2" "$3"
    EXTRA[$1]=$LINK_DESC
    EXTRA["$1|mbit"]=$2
    printf '\n== %s: %s MiB over %s; %s rounds, interleaved ==\n' "$1" "$4" "$LINK_DESC" "$ROUNDS"
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in "${TOOLS[@]}"; do measure "$1" "$4" "$t" "$r"; done
    done
}

# ---------------------------------------------------------------- main
printf '# ferry bench/link.sh: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf '# machine: %s CPUs, kernel %s; load average %s\n' "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '# ferry: %s (commit %s); linkemu: %s\n' "${FERRY:-none}" "$(ferry_rev "$FERRY")" "$LINKEMU"
printf '# %s\n' "$(rsync --version | head -n 1 | tr -s ' ')"
# The first link carries signup; the servers live on across the link restarts.
if ((DO_FAST)); then link_up "$FAST_MBIT" 0; else link_up "$LOSSY_MBIT" "$LOSS"; fi
has_tool ferry && ferry_start
has_tool rsyncd && rsyncd_start
((DO_FAST)) && run_scen fast "$FAST_MBIT" 0 "$SIZE_MB"
((DO_LOSSY)) && run_scen lossy "$LOSSY_MBIT" "$LOSS" "$LOSSY_MB"

printf '\n================================================================ results\n'
printf '# %s; load average at the end %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"
((DO_FAST)) && summ fast "$SIZE_MB"
((DO_LOSSY)) && summ lossy "$LOSSY_MB"
printf '\nMachine-readable lines:\n'
printf '%s\n' "${RESULTS[@]}" "${TARGETS[@]}"
printf 'Targets: %d met, %d missed (fast: ferry >= 90 %% of the link rate; lossy: ferry >= 2x rsyncd)\n' "$MET" "$MISSED"
((ANY_FAIL == 0))
