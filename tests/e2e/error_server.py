#!/usr/bin/env python3
"""A ferry server that answers with Errors, for the CLI's error tests
(R-ERR-2, R-ERR-3).

--mode connect: every Connect gets Error {ref, code: CODE, message: TEXT},
  then the connection is closed.
--mode reply: Connect gets Accept; every later request gets
  Error {ref, code: CODE, message: TEXT} and the connection stays open.

CODE is a JSON value given as text (an int, a huge int, a string...), so
that codes a real server never sends can be tried. TEXT holds terminal
control sequences: the client must show it escaped.

It presents a real ferry serve's identity (its cert.pem and key.pem), so a
client pinned to that server connects. It prints "ready PORT" once
listening, one "request TYPE" line per command received, and exits on
SIGTERM.
"""
import argparse
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import uuid

# ESC sequences (colour, clear screen, window title), a bell, a C1 CSI
# (U+009B) and a line break.
TEXT = "\x1b[31mred\x1b[0m \x1b[2J\x1b]0;title\x07 csi\u009b1m end\nsecond line"


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


def error(ref, code):
    return command(7, {"id": str(uuid.uuid4()), "version": "1.2", "ref": ref, "code": code,
                       "message": TEXT})


def serve_one(conn, args, code, out_lock):
    try:
        msgtype, body = read_command(conn)
        with out_lock:
            print("request %d" % msgtype, flush=True)
        if args.mode == "connect":
            conn.sendall(error(body.get("id", ""), code))
            return
        conn.sendall(command(2, {
            "id": str(uuid.uuid4()),
            "version": "1.2",
            "ref": body.get("id", ""),
            "server_id": args.server_id,
            "proto": 1,
            "user": "alice",
            "limits": {"frame_payload_max": 32768, "data_max": 16384, "page_entries_max": 50},
        }))
        while True:
            msgtype, body = read_command(conn)
            with out_lock:
                print("request %d" % msgtype, flush=True)
            conn.sendall(error(body.get("id", ""), code))
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
    ap.add_argument("--mode", choices=("connect", "reply"), required=True)
    ap.add_argument("--code", required=True, help="the Error's code, as JSON text")
    args = ap.parse_args()
    code = json.loads(args.code)

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
        threading.Thread(target=serve_one, args=(conn, args, code, out_lock), daemon=True).start()


if __name__ == "__main__":
    main()
