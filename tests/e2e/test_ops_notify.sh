#!/usr/bin/env bash
# Issue 9, item 24 (R-ADMIN-3): ferry serve speaks systemd's readiness
# protocol by hand: READY=1 on $NOTIFY_SOCKET once its "listening on" line
# is out, STOPPING=1 when a signal stops it; a path or an abstract (@) name.
source "$(dirname "$0")/lib.sh"

# A service manager's end: binds a datagram socket, records each message
# and whether the server had printed its readiness line when it arrived.
cat >"$WORK/listen.py" <<'EOF'
import socket, sys
name, out, ready, server_out = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + name[1:] if name.startswith("@") else name)
open(ready, "w").close()
s.settimeout(300)
with open(out, "a") as f:
    for _ in range(2):
        msg = s.recv(4096).decode()
        try:
            listening = open(server_out).read().startswith("listening on ")
        except OSError:
            listening = False
        f.write("%s listening=%s\n" % (msg.replace("\n", "|"), listening))
        f.flush()
EOF

# run_case NAME: a server notifying NAME, from start to stop.
run_case() {
    local name=$1 n=$2 out=$WORK/notify$2.txt ready=$WORK/notify$2.ready pid
    python3 "$WORK/listen.py" "$name" "$out" "$ready" "$WORK/server$n.out" &
    pid=$!
    ALL_PIDS+=("$pid")
    wait_until 30 "the notify socket $name to be bound" test -e "$ready"
    NOTIFY_SOCKET=$name start_server
    [[ "$SERVER_N" == "$n" ]] || fail "server numbering: $SERVER_N, expected $n"
    wait_until 30 "READY=1 on $name" grep -qs '^READY=1' "$out"
    assert_contains "$(head -n 1 "$out")" "READY=1|STATUS=listening on 127.0.0.1 port $PORT id $SID" \
        "the first message on $name"
    assert_contains "$(head -n 1 "$out")" "listening=True" "READY=1 after the listening line"
    stop_server
    wait_exit "$pid" 30 "the notify listener of $name"
    [[ "$WAIT_RC" == 0 ]] || fail "the notify listener of $name exited with $WAIT_RC"
    assert_eq "$(sed -n 2p "$out")" "STOPPING=1 listening=True" "the second message on $name"
    assert_eq "$(wc -l <"$out")" 2 "messages on $name"
}

run_case "$WORK/notify.sock" 1
run_case "@ferry-test-notify-$$-$RANDOM" 2

# Something that is not a socket name is warned about, and the server runs.
NOTIFY_SOCKET=relative/path start_server
assert_contains "$(cat "$SERVER_ERR")" "NOTIFY_SOCKET 'relative/path' is not a socket path" \
    "the warning"
stop_server
