#!/usr/bin/env bash
# ferry over a bad link: client and server in two network namespaces joined
# by the userspace link emulator (tests/tools/linkemu.c) with 5 % loss,
# 5 % reordering and 10 ms of delay. Files still arrive byte-identical.
source "$(dirname "$0")/lib.sh"

# A missing fixture fails the test: a skip would pass unseen (CI runs as root).
if [[ "$(id -u)" != 0 || ! -c /dev/net/tun || -z "${FERRY_LINKEMU:-}" ]] || ! command -v ip >/dev/null; then
    fail "needs root, /dev/net/tun, ip(8) and the linkemu tool (FERRY_LINKEMU, set by ctest)"
fi
NSA=ferry-a-$$ NSB=ferry-b-$$
teardown() {
    ip netns del "$NSA" 2>/dev/null || true
    ip netns del "$NSB" 2>/dev/null || true
}
trap 'rc_=$?; [[ -n "${EMU_PID:-}" ]] && kill "$EMU_PID" 2>/dev/null; teardown; (exit $rc_); cleanup' EXIT
ip netns add "$NSA" && ip netns add "$NSB" || fail "cannot create network namespaces"
ip -n "$NSA" link set lo up
ip -n "$NSB" link set lo up
"$FERRY_LINKEMU" --ns-a "$NSA" --ns-b "$NSB" --delay-ms 10 --loss 5 --reorder 5 --seed 42 \
    >"$WORK/emu.out" 2>"$WORK/emu.err" &
EMU_PID=$!
ALL_PIDS+=("$EMU_PID")
emu_ready() { grep -qs '^ready$' "$WORK/emu.out"; }
wait_until 10 "the link emulator to create its devices" emu_ready
ip -n "$NSA" addr add 10.99.0.1 peer 10.99.0.2 dev emu0
ip -n "$NSA" link set emu0 up
ip -n "$NSB" addr add 10.99.0.2 peer 10.99.0.1 dev emu0
ip -n "$NSB" link set emu0 up

# The server lives in namespace B, reachable only through the emulator.
DATA=$WORK/data SERVER_OUT=$WORK/serve.out SERVER_ERR=$WORK/serve.err
ip netns exec "$NSB" "$FERRY_BIN" serve --data "$DATA" --listen 10.99.0.2:0 --signup open \
    >"$SERVER_OUT" 2>"$SERVER_ERR" &
SERVER_PID=$!
ALL_PIDS+=("$SERVER_PID")
srv_ready() { grep -qs '^listening on ' "$SERVER_OUT"; }
wait_until 20 "ferry serve in $NSB" srv_ready
line=$(head -n 1 "$SERVER_OUT")
[[ "$line" =~ ^listening\ on\ (10\.99\.0\.2:[0-9]+)\ id\ ([A-Z2-7]{52})$ ]] || fail "bad line: $line"
ADDR=${BASH_REMATCH[1]} SID=${BASH_REMATCH[2]}

L=$WORK/local
mkdir -p "$L/tree/sub"
head -c $((8 << 20)) /dev/urandom >"$L/big.bin"
for i in $(seq 1 50); do head -c $((i * 997)) /dev/urandom >"$L/tree/sub/f$i"; done
new_client alice
ina() { ip netns exec "$NSA" env XDG_STATE_HOME="$XDG_STATE_HOME" "$FERRY_BIN" "$@"; }
ina signup --server "$ADDR" --server-id "$SID" --user alice --password-stdin -q <<<'lossy link password' ||
    fail "signup over the lossy link"
ina put -q "$L/big.bin" || fail "put of 8 MiB over the lossy link"
ina put -q -r "$L/tree" / || fail "put -r over the lossy link"
mkdir -p "$WORK/back"
ina get -q /big.bin "$WORK/back/big.bin" || fail "get over the lossy link"
ina get -q -r /tree "$WORK/back/" || fail "get -r over the lossy link"
check assert_same_file "$L/big.bin" "$WORK/back/big.bin"
diff -r "$L/tree" "$WORK/back/tree" || fail "the tree differs after the round trip"
kill -TERM "$SERVER_PID"
wait_exit "$SERVER_PID" 30 "ferry serve"
assert_sanitizer_clean "$SERVER_ERR" "ferry serve behind the emulator"
