#!/usr/bin/env bash
# Issue 4: a connection cut after N bytes, N swept across frame boundaries.
# The client talks to the server through the cutting relay
# (tests/tools/cutrelay.c), which cuts one connection (the first, or a
# put's K-th: an extra chunk connection) after exactly N bytes
# client->server or M bytes server->client, by FIN or by RST. The cut
# points cross the TLS handshake, the
# Connect/Accept exchange, put's DirInfo, ChunkedUpload, the chunk list's
# data frames, ChunkNeed/ChunkStored, the 16 KiB chunk frames and a
# download's data frames: a fixed list, the exact write boundaries the relay
# sees on an uncut transfer, and a few random points. Each time the client
# must reconnect (its second connection is not cut), resume, exit 0 and
# leave a byte-identical file; the server's database stays sound.
#
# FERRY_CUT_SEED fixes the random part of the sweep (it is logged).
source "$(dirname "$0")/lib.sh"

need_cutrelay

start_server --signup open
new_client alice
signup alice 'cut relay password'
STATE_DB=$XDG_STATE_HOME/ferry/state.db
[[ -f "$STATE_DB" ]] || fail "no client state database at $STATE_DB"
L=$WORK/local
BACK=$WORK/back
mkdir -p "$L" "$BACK"
SIZE=$((3 << 20)) # chunked (R-CHUNK): at least 1 MiB

# The relay really cut at exactly N: otherwise the case tested nothing.
assert_cut() { # DIRECTION N WHAT
    grep -qE "^cut $1 at $2( |\$)" "$RELAY_ERR" ||
        fail "$3: the relay did not cut $1 at $2 (relay log: $(tr '\n' ';' <"$RELAY_ERR"))"
}
relay_conns() { grep -c '^conn [0-9]* accepted$' "$RELAY_ERR" || true; }
assert_reconnected() { # WHAT CONNECTIONS
    (($2 >= 2)) || fail "$1: the client did not reconnect (the relay saw $2 connection(s))"
}
# Where the peer's writes ended on the first connection, in bytes of
# DIRECTION (a --verbose relay log): the TLS records as they left, so the
# frame boundaries. Runs of equal writes (a list frame per entry) keep only
# their first and last. The first bulk write (a chunk's or a download's
# data) ends the list; its own end counts unless the relay's 64 KiB read
# buffer, not the peer, made it.
write_ends() { # DIRECTION LOG
    awk -v d="$1" '$1 == "conn" && $2 == 1 && $3 == d && $4 == "read" {
            len = $5; end = $7 + $5
            if (len >= 16384) { print $7; if (len < 65536) print end; exit }
            if (len != plen && prev) print pend
            if (len != plen) print end
            plen = len; pend = end; prev = 1
        }
        END { if (prev) print pend }' "$2" | sort -n -u
}
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# A put may spread chunks over several connections (R-CHUNK-13,
# --connections). The sweep pins one, so that the connection it cuts
# carries every frame of the upload; the extra connections get cases of
# their own.
ONE=() MULTI=0
fy put --help
if [[ "$OUT" == *--connections* ]]; then
    ONE=(--connections 1) MULTI=1
fi

# ---------------------------------------------------------------- the layout, uncut
# One upload and one download through a relay that cuts nothing: they must
# work on one connection each, and show where the frames fall.
head -c "$SIZE" /dev/urandom >"$L/probe.bin"
start_relay --verbose
fy_ok put -q "${ONE[@]}" "$L/probe.bin" /up/r-000.bin
fy_ok get -q /up/r-000.bin "$BACK/probe.bin"
stop_relay
assert_same_file "$L/probe.bin" "$BACK/probe.bin"
[[ "$(relay_conns)" == 2 ]] || fail "an uncut put and get took $(relay_conns) connections"
mapfile -t PUT_C2S < <(write_ends c2s "$RELAY_ERR")
mapfile -t PUT_S2C < <(write_ends s2c "$RELAY_ERR")
# The download is the relay's second connection.
sed -n 's/^conn 2 /conn 1 /p' "$RELAY_ERR" >"$WORK/get-layout"
mapfile -t GET_S2C < <(write_ends s2c "$WORK/get-layout")
# Of a put's server->client writes only the first three (handshake, Accept,
# DirInfo's reply) fall at the same bytes for every file: ChunkNeed and the
# ChunkStored that follow depend on how many chunks the content has.
PUT_S2C=("${PUT_S2C[@]:0:3}")
log "put writes end at (c2s): ${PUT_C2S[*]}"
log "put writes end at (s2c): ${PUT_S2C[*]}"
log "get writes end at (s2c): ${GET_S2C[*]}"
((${#PUT_C2S[@]} >= 5 && ${#PUT_S2C[@]} == 3 && ${#GET_S2C[@]} >= 2)) ||
    fail "the relay saw too few writes: $(head -n 40 "$RELAY_ERR" | tr '\n' ';')"

# ---------------------------------------------------------------- uploads
# put's first connection: handshake (ClientHello, the client's flight),
# Connect, DirInfo, ChunkedUpload, the list's frames, then chunk frames of
# 16,408 bytes of payload split over TLS records, deep into the file. (The
# first chunk frame's record spans ~2,200 to ~18,600: a few points in it
# suffice.)
CUTS=(500 1000 1500 2000 2500 8000 16500 33000 65536 100000 300000 1000000 2000000
    "${PUT_C2S[@]:1}")
SEED=${FERRY_CUT_SEED:-$((($(date +%s) ^ $$) & 0x7fff))}
RANDOM=$SEED
log "random cut points from seed $SEED (FERRY_CUT_SEED=$SEED replays them)"
CUTS+=($((RANDOM % 6000 + 1)) $(((RANDOM * 32768 + RANDOM) % (SIZE - 65536) + 1)))
# Each case: "CONNECTIONS DIRECTION N K [MODE]": put with --connections 1
# (1) or its default (d), the relay cutting its K-th connection after N
# bytes, by FIN or RST (MODE; alternately when not given).
CASES=()
# In the TLS handshake (ClientHello, up to its end, the server's flight),
# both ways: a FIN reaches the client as an unexpected EOF, a RST as a reset.
for n in 1 100 "${PUT_C2S[0]}"; do CASES+=("1 c2s $n 1 fin" "1 c2s $n 1 rst"); done
for m in 1 300; do CASES+=("1 s2c $m 1 fin" "1 s2c $m 1 rst"); done
for n in "${CUTS[@]}"; do CASES+=("1 c2s $n 1"); done
# Server->client during a put: the Accept, DirInfo's reply, ChunkNeed (from
# byte ~1100), the first ChunkStored (from ~1340; a 3 MiB file has at least
# 3 chunks, so at least ~1700 bytes reach the client). A ChunkStored lost
# must not make the client lose track of what the server holds.
for m in "${PUT_S2C[@]}" 700 1200 1500; do CASES+=("1 s2c $m 1"); done
if ((MULTI)); then
    # Several connections: the first (list, ChunkNeed, commit) cut among
    # chunks, then an extra one (chunks only) cut in its handshake, after
    # its Connect, in its chunk frames and its ChunkStored.
    CASES+=("d c2s 100000 1")
    for n in 1 804 20000 200000; do CASES+=("d c2s $n 2"); done
    CASES+=("d s2c 1000 2")
fi

FAILED=()
PUT_OK=() # by index: 1 if the put exited 0
i=0
for c in "${CASES[@]}"; do
    read -r nc dir n k how <<<"$c"
    i=$((i + 1))
    conn_flags=("${ONE[@]}")
    [[ "$nc" == 1 ]] || conn_flags=()
    # Fresh content each time: otherwise the server already holds every
    # chunk, nothing but the list travels and the cut never comes.
    f=$L/r-$(printf %03d "$i").bin
    head -c "$SIZE" /dev/urandom >"$f"
    mode=()
    [[ "${how:-}" == rst || (-z "${how:-}" && $((i % 2)) == 0) ]] && mode=(--rst)
    start_relay "--cut-$dir" "$n" --conn "$k" "${mode[@]}"
    t0=$EPOCHREALTIME
    fy put -q --stats --retry-for 20 "${conn_flags[@]}" "$f" "/up/${f##*/}"
    what="put ${conn_flags[*]} through a relay cutting connection $k $dir at $n${mode:+ (rst)}"
    check assert_rc 0 "$what"
    stop_relay
    assert_cut "$dir" "$n" "$what"
    conns=$(relay_conns)
    # Cut, the first connection must be made again; an extra one need not.
    ((k > 1)) || check assert_reconnected "$what" "$conns"
    [[ "$RC" == 0 && ("$conns" -ge 2 || $k -gt 1) ]] ||
        FAILED+=("put ${conn_flags[*]:-(default connections)} conn $k $dir $n${mode:+ rst}: exit $RC")
    PUT_OK[i]=$((RC == 0))
    log "put ${conn_flags[*]:-(default connections)}, conn $k cut $dir at $n${mode:+ (rst)}:" \
        "exit $RC, $conns connections, $(elapsed "$t0") s"
done

log "upload sweep: ${#CASES[@]} cases, $(elapsed "$T_START") s since the start"
# Every file arrived whole: fetched straight from the server in one go.
point_session_at "$ADDR"
fy get -q -r /up "$BACK/"
check assert_rc 0 "get -r of every uploaded file straight from the server"
for ((k = 1; k <= i; k++)); do
    name=r-$(printf %03d "$k").bin
    # A failed put is reported above; its file may rightly be missing.
    ((PUT_OK[k])) || continue
    check assert_same_file "$L/$name" "$BACK/up/$name"
done
[[ "$(sqlite3 "$DATA/ferry.db" 'PRAGMA integrity_check')" == ok ]] ||
    fail "PRAGMA integrity_check after the upload sweep"
assert_chunks_sound "after the upload sweep"
log "checked: $(elapsed "$T_START") s since the start"

# ---------------------------------------------------------------- downloads
# The server's handshake flight, its Accept, DirInfo's reply, then the Download's data frames (R-CHUNK-10) to the very end.
# Each case: "M [MODE]", as above; the handshake both ways.
SCUTS=("1 fin" "1 rst" "300 fin" "300 rst" "${GET_S2C[@]}" 700 1000 1200 65536 1000000 2500000
    $((SIZE - 1000)))
j=0
for c in "${SCUTS[@]}"; do
    read -r m how <<<"$c"
    j=$((j + 1))
    mode=()
    [[ "${how:-}" == rst || (-z "${how:-}" && $((j % 2)) == 0) ]] && mode=(--rst)
    start_relay --cut-s2c "$m" "${mode[@]}"
    rm -f "$BACK/down-$j.bin"
    t0=$EPOCHREALTIME
    fy get -q --retry-for 20 /up/r-000.bin "$BACK/down-$j.bin"
    what="get through a relay cutting s2c at $m${mode:+ (rst)}"
    check assert_rc 0 "$what"
    stop_relay
    assert_cut s2c "$m" "$what"
    [[ "$RC" != 0 ]] || check assert_same_file "$L/probe.bin" "$BACK/down-$j.bin"
    conns=$(relay_conns)
    check assert_reconnected "$what" "$conns"
    [[ "$RC" == 0 && "$conns" -ge 2 ]] || FAILED+=("get s2c $m${mode:+ rst}: exit $RC")
    log "get cut s2c at $m${mode:+ (rst)}: exit $RC, $conns connections, $(elapsed "$t0") s"
done

log "download sweep: ${#SCUTS[@]} cases, $(elapsed "$T_START") s since the start"

# ---------------------------------------------------------------- downloads by chunks
# An older version at the destination: the get asks for the list, then for
# the missing chunks (R-CHUNK-15, R-CHUNK-16). Cut anywhere in that, it
# reconnects, keeps what it made durable and ends byte for byte.
cp "$L/probe.bin" "$WORK/old.bin"
head -c $((1 << 20)) /dev/urandom | dd of="$WORK/old.bin" bs=1M seek=1 conv=notrunc status=none
PCUTS=(700 1200 "20000 rst" 65536 200000 "600000 rst" 1000000)
for c in "${PCUTS[@]}"; do
    read -r m how <<<"$c"
    j=$((j + 1))
    mode=()
    [[ "${how:-}" == rst ]] && mode=(--rst)
    cp "$WORK/old.bin" "$BACK/down-$j.bin"
    start_relay --cut-s2c "$m" "${mode[@]}"
    t0=$EPOCHREALTIME
    fy get -q --retry-for 20 /up/r-000.bin "$BACK/down-$j.bin"
    what="get over an old version through a relay cutting s2c at $m${mode:+ (rst)}"
    check assert_rc 0 "$what"
    stop_relay
    assert_cut s2c "$m" "$what"
    [[ "$RC" != 0 ]] || check assert_same_file "$L/probe.bin" "$BACK/down-$j.bin"
    conns=$(relay_conns)
    check assert_reconnected "$what" "$conns"
    [[ "$RC" == 0 && "$conns" -ge 2 ]] || FAILED+=("get by chunks s2c $m${mode:+ rst}: exit $RC")
    log "get by chunks cut s2c at $m${mode:+ (rst)}: exit $RC, $conns connections, $(elapsed "$t0") s"
done
[[ "$(find "$BACK" -name '.ferry-*' | wc -l)" == 0 ]] || fail "part files left after the chunk sweep"
((${#FAILED[@]} == 0)) || log "failed cases (seed $SEED): $(printf '%s; ' "${FAILED[@]}")"
point_session_at "$ADDR"
stop_server
[[ "$(sqlite3 "$DATA/ferry.db" 'PRAGMA integrity_check')" == ok ]] ||
    fail "PRAGMA integrity_check at the end"
