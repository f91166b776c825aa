# shellcheck shell=bash
# bench/lib.sh: helpers for bench/compare.sh. Sourced, never executed.
# Everything here is local to 127.0.0.1 and to the scratch directory $W.

# ---------------------------------------------------------------- messages
info() { printf '[bench] %s\n' "$*" >&2; }
warn() { printf '[bench] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

# Print the last lines of a log file to stderr, indented (for failure reports).
show_tail() { # FILE [LINES]
    [[ -s $1 ]] || return 0
    printf '[bench]   --- last lines of %s ---\n' "$1" >&2
    tail -n "${2:-15}" "$1" | sed 's/^/[bench]   | /' >&2
}

# ---------------------------------------------------------------- clocks
# stamp VAR: store the wall clock (seconds, microsecond resolution) in VAR without forking.
stamp() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then
        printf -v "$1" '%s' "$EPOCHREALTIME"
    else
        printf -v "$1" '%s' "$(date +%s.%N)"
    fi
}

# lo_bytes: set LO_BYTES to the byte counter of the loopback interface (no fork).
# Every byte any tool sends over 127.0.0.1 is counted once; other loopback traffic on
# the machine only makes the figure larger.
lo_bytes() {
    local line rest
    LO_BYTES=0
    while IFS= read -r line; do
        if [[ $line =~ ^[[:space:]]*lo: ]]; then
            rest=${line#*:}
            read -r LO_BYTES _ <<<"$rest"
            return 0
        fi
    done </proc/net/dev
}

# clock_start / clock_stop: bracket the timed part of a run. They set T0/T1 (seconds)
# and LO0/LO1 (loopback byte counters) for the caller.
# shellcheck disable=SC2034
clock_start() {
    lo_bytes
    LO0=$LO_BYTES
    stamp T0
}
# shellcheck disable=SC2034
clock_stop() {
    stamp T1
    lo_bytes
    LO1=$LO_BYTES
}

# ---------------------------------------------------------------- arithmetic (awk)
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a - b }'; }
fdiv() { # A B [FORMAT]: A / B, or NA when B is 0 or either is NA
    awk -v a="$1" -v b="$2" -v f="${3:-%.3f}" \
        'BEGIN { if (a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf f "\n", a / b }'
}
fmt() { # VALUE FORMAT: printf a number, NA passes through
    awk -v a="$1" -v f="$2" 'BEGIN { if (a == "NA" || a == "") print "NA"; else printf f "\n", a }'
}
# median of the arguments (NA when there are none)
median() {
    if (($# == 0)); then
        echo NA
        return 0
    fi
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
        END { if (NR % 2) printf "%.6f\n", a[(NR + 1) / 2]; else printf "%.6f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# compare VALUE OP TARGET -> prints MET or MISSED (OP is >= or <=), NA if VALUE is NA
meets() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        if (v == "NA") { print "NA"; exit }
        ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0)
        print ok ? "MET" : "MISSED" }'
}

# ---------------------------------------------------------------- ports
port_in_use() { # PORT: true when something listens on 127.0.0.1:PORT or *:PORT (TCP)
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
}
free_port() { # PREFERRED: print the first free TCP port from PREFERRED upwards
    local p=$1
    while port_in_use "$p"; do
        p=$((p + 1))
        ((p < $1 + 200)) || return 1
    done
    printf '%s\n' "$p"
}
# wait_port PORT PID SECONDS: poll (every 20 ms, bounded) until PORT listens.
# Fails early when PID (if not empty) has exited.
wait_port() {
    local port=$1 pid=$2 limit=$(($3 * 50)) i=0
    while ! port_in_use "$port"; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        i=$((i + 1))
        ((i < limit)) || return 1
        sleep 0.02
    done
}

# stop_pid PID [NAME]: SIGTERM one process we started, wait up to 5 s, then SIGKILL it.
stop_pid() {
    local pid=$1 i=0
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && ((i < 250)); do
        sleep 0.02
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "${2:-process} (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- content
# sha_file FILE: print the hex SHA-256 (OpenSSL uses SHA-NI; coreutils' sha256sum does not).
sha_file() {
    local out
    if command -v openssl >/dev/null 2>&1; then
        out=$(openssl dgst -sha256 -r "$1") || return 1
    else
        out=$(sha256sum "$1") || return 1
    fi
    printf '%s\n' "${out%% *}"
}

# sha_check FILE EXPECTED: compare FILE's SHA-256 with EXPECTED (prints the mismatch).
sha_check() {
    local got
    got=$(sha_file "$1") || return 1
    if [[ $got != "$2" ]]; then
        echo "sha256 mismatch for $1: got $got, expected $2"
        return 1
    fi
}

# tree_manifest DIR OUT: a sorted sha256 manifest of every regular file under DIR,
# paths relative to DIR ("./dNNN/fNNN.bin").
tree_manifest() {
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) >"$2"
}

# make_tree DIR COUNT: COUNT files of 4 KiB of random bytes as DIR/dNNN/fNNN.bin,
# 100 files per directory. Files that exist already are overwritten in place (same
# inode, same page-cache pages), so calling it again gives new content cheaply.
make_tree() {
    python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100))
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "f%03d.bin" % (i % 100))
    with open(p, "r+b" if os.path.exists(p) else "wb") as f:
        f.write(os.urandom(4096))
PY
}

# regen_big FILE MIB MODE: new content for the big source, written in place (conv=notrunc,
# so the page cache keeps the same pages). MODE head: the first 4 KiB only; full: all of it.
regen_big() {
    if [[ $3 == full ]]; then
        rand_fill "$1" "$2"
    else
        dd if=/dev/urandom of="$1" bs=4096 count=1 conv=notrunc status=none
    fi
}

# settle: the untimed pause before every timed run (performance.md section 6.3).
settle() {
    sync
    sleep "$SETTLE"
}

# ---------------------------------------------------------------- chunked transfers (issue 4)
# rand_fill FILE MIB: MIB MiB of fresh pseudo-random bytes (AES-128-CTR of zeros under a key from
# /dev/urandom: incompressible, never seen before by any store, and about twice as fast as
# /dev/urandom on the reference VM). Written in place (conv=notrunc), so an existing file keeps its
# page-cache pages. With chunk-level dedup, every byte must be new for a full upload.
rand_fill() {
    local key
    if command -v openssl >/dev/null 2>&1; then
        key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
        { openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$key" -in /dev/zero 2>/dev/null || :; } |
            dd of="$1" bs=1M count="$2" iflag=fullblock conv=notrunc status=none
    else
        dd if=/dev/urandom of="$1" bs=1M count="$2" conv=notrunc status=none
    fi
    truncate -s "$(($2 * 1048576))" "$1"
}

# ferry_stats FILE: parse the four lines of `ferry put --stats` into ST_UPLOADED ST_FAILED
# ST_TOTAL ST_SENT ST_HELD ST_TX ST_RX ST_READ (bytes; NA when a line is missing).
# shellcheck disable=SC2034
ferry_stats() {
    local line
    ST_UPLOADED=NA ST_FAILED=NA ST_TOTAL=NA ST_SENT=NA ST_HELD=NA ST_TX=NA ST_RX=NA ST_READ=NA
    [[ -f $1 ]] || return 1
    while IFS= read -r line; do
        if [[ $line =~ ^files:\ ([0-9]+)\ uploaded,\ ([0-9]+)\ failed ]]; then
            ST_UPLOADED=${BASH_REMATCH[1]} ST_FAILED=${BASH_REMATCH[2]}
        elif [[ $line =~ ^bytes:\ ([0-9]+)\ in\ all,\ ([0-9]+)\ sent,\ ([0-9]+)\ already ]]; then
            ST_TOTAL=${BASH_REMATCH[1]} ST_SENT=${BASH_REMATCH[2]} ST_HELD=${BASH_REMATCH[3]}
        elif [[ $line =~ ^wire:\ ([0-9]+)\ sent,\ ([0-9]+)\ received ]]; then
            ST_TX=${BASH_REMATCH[1]} ST_RX=${BASH_REMATCH[2]}
        elif [[ $line =~ ^read:\ ([0-9]+)\ bytes ]]; then
            ST_READ=${BASH_REMATCH[1]}
        fi
    done <"$1"
    [[ $ST_SENT != NA && $ST_TX != NA ]]
}

# rsync_stats FILE: parse `rsync --stats` into RS_SENT RS_RECV RS_LITERAL RS_MATCHED (bytes).
# shellcheck disable=SC2034
rsync_stats() {
    local line v
    RS_SENT=NA RS_RECV=NA RS_LITERAL=NA RS_MATCHED=NA
    [[ -f $1 ]] || return 1
    while IFS= read -r line; do
        v=${line##*: }
        v=${v%% *}
        v=${v//,/}
        case $line in
        "Total bytes sent: "*) RS_SENT=$v ;;
        "Total bytes received: "*) RS_RECV=$v ;;
        "Literal data: "*) RS_LITERAL=$v ;;
        "Matched data: "*) RS_MATCHED=$v ;;
        esac
    done <"$1"
    [[ $RS_SENT =~ ^[0-9]+$ && $RS_RECV =~ ^[0-9]+$ ]]
}

# mb BYTES [FORMAT]: bytes as MB (10^6), NA passes through.
mb() { fdiv "$1" 1000000 "${2:-%.2f}"; }

# git_rev ROOT: the short commit, marked when src/, include/ or CMakeLists.txt differ from it
# (others may be editing the tree while a benchmark builds it).
git_rev() {
    local r
    r=$(git -C "$1" rev-parse --short HEAD 2>/dev/null) || {
        echo none
        return 0
    }
    git -C "$1" diff --quiet HEAD -- src include CMakeLists.txt 2>/dev/null || r+=" + uncommitted changes"
    printf '%s\n' "$r"
}

# build_o2 SRC BUILD_DIR LOG: the -O2 Release build every benchmark measures (no tests, no
# sanitizers; warnings reported, never fatal), its output in LOG. Returns cmake's status.
build_o2() {
    {
        cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
            -DFERRY_SANITIZE=OFF -DFERRY_WERROR=OFF "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" &&
            cmake --build "$2" -j2
    } >"$3" 2>&1
}

# ferry_rev FERRY: the commit FERRY was built from, as its build directory's bench-commit.txt
# records it (written by these scripts after each build), or "unknown" with the tree's commit.
ferry_rev() {
    local stamp
    stamp=$(dirname "$1")/bench-commit.txt
    if [[ -f $stamp && ! $stamp -ot $1 ]]; then
        cat "$stamp"
    else
        printf 'unknown (not built by bench/; the tree is at %s)\n' "$(git_rev "$ROOT")"
    fi
}
