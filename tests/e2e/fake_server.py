"""What the CLI tests' fake ferry servers share: the framing, an Accept,
and a TLS listener that presents a real server's identity (its cert.pem and
key.pem, so a client pinned to that server connects), prints "ready PORT"
once listening, runs handler(conn, out_lock) on a thread per connection,
and exits on SIGTERM. out_lock serialises the lines handlers print.
"""
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import uuid


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        got = conn.recv(n - len(buf))
        if not got:
            raise EOFError
        buf += got
    return buf


def read_command(conn):
    """The next command as (type, body); heartbeats and data frames are skipped."""
    while True:
        head = read_exact(conn, 2)
        if head[1] == 0:
            continue
        (length,) = struct.unpack(">I", read_exact(conn, 4))
        payload = read_exact(conn, length)
        if head[1] == 1:
            (msgtype,) = struct.unpack(">i", payload[:4])
            return msgtype, json.loads(payload[4:])


def command(msgtype, body):
    payload = struct.pack(">i", msgtype) + json.dumps(body).encode()
    return bytes([1, 1]) + struct.pack(">I", len(payload)) + payload


def accept(ref, server_id, version):
    """An Accept for the Connect whose id is ref, as user alice."""
    return command(2, {
        "id": str(uuid.uuid4()),
        "version": version,
        "ref": ref,
        "server_id": server_id,
        "proto": 1,
        "user": "alice",
        "limits": {"frame_payload_max": 32768, "data_max": 16384, "page_entries_max": 50},
    })


def _run(handler, conn, out_lock):
    try:
        handler(conn, out_lock)
    except (EOFError, OSError, ssl.SSLError, ValueError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def serve(cert, key, handler):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_NONE
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready %d" % lsock.getsockname()[1], flush=True)
    out_lock = threading.Lock()
    while True:
        raw, _ = lsock.accept()
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_run, args=(handler, conn, out_lock), daemon=True).start()
