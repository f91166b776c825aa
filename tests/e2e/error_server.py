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
import uuid

from fake_server import accept, command, read_command, serve

# ESC sequences (colour, clear screen, window title), a bell, a C1 CSI
# (U+009B) and a line break.
TEXT = "\x1b[31mred\x1b[0m \x1b[2J\x1b]0;title\x07 csi\u009b1m end\nsecond line"


def error(ref, code):
    return command(7, {"id": str(uuid.uuid4()), "version": "1.2", "ref": ref, "code": code,
                       "message": TEXT})


def serve_one(conn, out_lock, args, code):
    msgtype, body = read_command(conn)
    with out_lock:
        print("request %d" % msgtype, flush=True)
    if args.mode == "connect":
        conn.sendall(error(body.get("id", ""), code))
        return
    conn.sendall(accept(body.get("id", ""), args.server_id, "1.2"))
    while True:
        msgtype, body = read_command(conn)
        with out_lock:
            print("request %d" % msgtype, flush=True)
        conn.sendall(error(body.get("id", ""), code))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--server-id", required=True)
    ap.add_argument("--mode", choices=("connect", "reply"), required=True)
    ap.add_argument("--code", required=True, help="the Error's code, as JSON text")
    args = ap.parse_args()
    code = json.loads(args.code)
    serve(args.cert, args.key, lambda conn, out_lock: serve_one(conn, out_lock, args, code))


if __name__ == "__main__":
    main()
