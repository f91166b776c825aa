#!/usr/bin/env python3
"""A hostile ferry server for the CLI tests (issue 9, item 16).

It speaks just enough of the protocol to get a client past Connect, then
answers the next request with a frame header announcing 32000 bytes and
sends one byte of it every --interval-ms, each in its own TLS record:
bytes keep coming, the frame never ends (a slowloris aimed at the client).

It uses a ferry identity (cert.pem, key.pem of a server's data directory),
so a client pinned to that server connects without complaint. It prints
"ready PORT" once listening and "dripping" on stdout when a connection
starts to misbehave, and exits on SIGTERM.
"""
import argparse
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import uuid


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        got = conn.recv(n - len(buf))
        if not got:
            raise EOFError
        buf += got
    return buf


def read_frame(conn):
    """One frame: (type, payload); heartbeats come back as (0, b"")."""
    head = read_exact(conn, 2)
    if head[1] == 0:
        return 0, b""
    (length,) = struct.unpack(">I", read_exact(conn, 4))
    return head[1], read_exact(conn, length)


def command(msgtype, body):
    payload = struct.pack(">i", msgtype) + json.dumps(body).encode()
    return bytes([1, 1]) + struct.pack(">I", len(payload)) + payload


def serve_one(conn, args, out_lock):
    try:
        ftype, payload = read_frame(conn)
        while ftype == 0:
            ftype, payload = read_frame(conn)
        req = json.loads(payload[4:])
        accept = {
            "id": str(uuid.uuid4()),
            "version": "1.1",
            "ref": req.get("id", ""),
            "server_id": args.server_id,
            "proto": 1,
            "user": "alice",
            "limits": {"frame_payload_max": 32768, "data_max": 16384, "page_entries_max": 50},
        }
        conn.sendall(command(2, accept))
        # Wait for the next request, then start a frame that never ends.
        ftype, _ = read_frame(conn)
        while ftype == 0:
            ftype, _ = read_frame(conn)
        conn.sendall(bytes([1, 1]) + struct.pack(">I", 32000))
        with out_lock:
            print("dripping", flush=True)
        conn.settimeout(args.interval_ms / 1000.0)
        while True:
            conn.sendall(b"{")
            # Read (and drop) whatever the client sends, within the interval.
            try:
                if not conn.recv(65536):
                    return
            except (socket.timeout, ssl.SSLWantReadError):
                pass
    except (EOFError, OSError, ssl.SSLError, ValueError):
        return
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--server-id", required=True)
    ap.add_argument("--interval-ms", type=int, default=200)
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(args.cert, args.key)
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
        threading.Thread(target=serve_one, args=(conn, args, out_lock), daemon=True).start()


if __name__ == "__main__":
    main()
