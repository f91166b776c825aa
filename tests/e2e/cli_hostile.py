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
import socket
import ssl
import struct

from fake_server import accept, read_command, serve


def serve_one(conn, out_lock, args):
    _, req = read_command(conn)
    conn.sendall(accept(req.get("id", ""), args.server_id, "1.1"))
    # Wait for the next request, then start a frame that never ends.
    read_command(conn)
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--server-id", required=True)
    ap.add_argument("--interval-ms", type=int, default=200)
    args = ap.parse_args()
    serve(args.cert, args.key, lambda conn, out_lock: serve_one(conn, out_lock, args))


if __name__ == "__main__":
    main()
