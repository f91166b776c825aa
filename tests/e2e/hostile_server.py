#!/usr/bin/env python3
"""A hostile ferry server for tests/e2e/test_get_hostile.sh (issue 9 items 16, 26).

It speaks just enough of docs/protocol.md (TLS 1.3, frames, Connect/Accept,
DirInfo, Download) to reach the client's download code, then misbehaves:

  endless  a recursive listing that never sends its last page (R-RECV-7)
  huge     a Transfer declaring a size no disk holds (R-RECV-6)

or checks the client's acknowledgements (R-XFER-3, R-XFER-6, R-RECV-5),
serving a tree of FILES small files of which every fifth does not match
its hash (so the client fails it after its data):

  old      a 1.2 server: remembers the last 64 downloads, knows no `tids`
  new      a 1.3 server: announces and remembers 1024, takes `tids`

An acknowledgement the server would not take (forgotten, or `tids` to an
old server) is logged as "refused ..." and answered with Error and a close,
as `ferry serve` would.

It presents the identity of a real `ferry serve` (its key.pem and cert.pem),
so that a client logged in to that server trusts it. It writes "ready" to
READY_FILE once it listens, and one line per event to LOG_FILE.

usage: hostile_server.py MODE PORT IDENTITY_DIR SERVER_ID READY_FILE LOG_FILE
"""
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import uuid

MODE, PORT, IDDIR, SERVER_ID, READY, LOG = (sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4],
                                             sys.argv[5], sys.argv[6])
HUGE = 1 << 62
FILES = 300
ACKS = 64 if MODE == "old" else 1024


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


def frame(ftype, payload):
    return struct.pack(">BBI", 1, ftype, len(payload)) + payload


def command(msgtype, body):
    body = dict(body, id=str(uuid.uuid4()), version="1.3" if MODE == "new" else "1.2")
    return frame(1, struct.pack(">i", msgtype) + json.dumps(body).encode())


def data(tid, offset, payload):
    return frame(2, tid + struct.pack(">Q", offset) + payload)


class Conn:
    def __init__(self, tls):
        self.tls = tls
        self.buf = b""

    def read_frame(self):
        """The next command frame as (msgtype, body); heartbeats are skipped."""
        while True:
            while len(self.buf) < 2 or (self.buf[1] != 0 and len(self.buf) < 6):
                self.fill()
            if self.buf[1] == 0:
                self.buf = self.buf[2:]
                continue
            n = struct.unpack(">I", self.buf[2:6])[0]
            while len(self.buf) < 6 + n:
                self.fill()
            ftype, payload = self.buf[1], self.buf[6:6 + n]
            self.buf = self.buf[6 + n:]
            if ftype == 1:
                return struct.unpack(">i", payload[:4])[0], json.loads(payload[4:])

    def fill(self):
        chunk = self.tls.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk


def entry(eid, name, etype, size=0, digest=None):
    e = {"id": eid, "dir_id": 1, "name": name, "type": etype, "size": size,
         "mtime": 0, "smtime": 0, "exec": False}
    if digest is not None:
        e["hash"] = digest
    return e


def content(i):
    """File i of the tree: its bytes, and the hash the listing gives."""
    good = ("file %d\n" % i).encode() * (1 + i % 7)
    return good, "sha256:" + hashlib.sha256(good).hexdigest()


def serve_acks(conn, server_id):
    done = []  # tids of the downloads finished, oldest first
    while True:
        msgtype, body = conn.read_frame()
        ref = body.get("id")
        if msgtype == 1:  # Connect
            limits = {"frame_payload_max": 32768, "data_max": 16384, "page_entries_max": 50}
            if MODE == "new":
                limits["acks"] = ACKS
            conn.tls.sendall(command(2, {"ref": ref, "server_id": server_id, "proto": 1,
                                         "user": "alice", "limits": limits}))
        elif msgtype == 4:  # Disconnect
            log("disconnect")
            return
        elif msgtype == 200 and body.get("stat"):
            conn.tls.sendall(command(201, {"ref": ref, "path": body["path"], "dir_id": 1,
                                           "entries": [entry(1, "tree", "dir")], "last": True}))
        elif msgtype == 200:  # the tree: FILES files in 3 folders
            ents = [entry(2 + d, "d%d" % d, "dir") for d in range(3)]
            ents += [entry(10 + i, "d%d/f%d" % (i % 3, i), "file", len(content(i)[0]),
                           content(i)[1]) for i in range(FILES)]
            for k in range(0, len(ents), 50):
                conn.tls.sendall(command(201, {"ref": ref, "path": body["path"], "dir_id": 1,
                                               "entries": ents[k:k + 50],
                                               "last": k + 50 >= len(ents)}))
        elif msgtype == 301:  # Download by file_id
            i = body["file_id"] - 10
            good, digest = content(i)
            sent = good if i % 5 else b"X" * len(good)
            tid = os.urandom(16)
            conn.tls.sendall(command(302, {
                "ref": ref, "tid": tid.hex(), "file_id": body["file_id"], "size": len(good),
                "hash": digest, "mtime": 0, "exec": False}) + data(tid, 0, sent) +
                command(304, {"tid": tid.hex(), "hash": digest}))
            done.append(tid.hex())
        elif msgtype == 304:  # the client's acknowledgements
            tids = body.get("tids")
            if tids is not None and MODE == "old":
                log("refused tids")
                conn.tls.sendall(command(7, {"ref": ref, "code": 1, "message": "malformed"}))
                return
            for t in tids if tids is not None else [body.get("tid")]:
                if t not in done[-ACKS:]:
                    log("refused forgotten %s, %d finished after it" %
                        (t, len(done) - 1 - done.index(t) if t in done else -1))
                    conn.tls.sendall(command(7, {"ref": ref, "code": 5, "message": "unknown"}))
                    return
                log("ack" if tids is None else "ack in tids")
            if tids is not None:
                log("tids %d" % len(tids))
        elif msgtype == 303:
            log("cancel")
        else:
            log("other %d" % msgtype)


def serve(conn, server_id):
    pages = 0
    if MODE in ("old", "new"):
        serve_acks(conn, server_id)
        return
    while True:
        msgtype, body = conn.read_frame()
        ref = body.get("id")
        if msgtype == 1:  # Connect
            conn.tls.sendall(command(2, {
                "ref": ref, "server_id": server_id, "proto": 1, "user": "alice",
                "limits": {"frame_payload_max": 32768, "data_max": 16384, "page_entries_max": 50}}))
        elif msgtype == 4:  # Disconnect
            log("disconnect")
            return
        elif msgtype == 200 and body.get("stat"):  # DirInfo stat
            if MODE == "endless":
                e = entry(1, "tree", "dir")
            else:
                e = entry(7, "huge.bin", "file", HUGE, "sha256:" + "ab" * 32)
            conn.tls.sendall(command(201, {"ref": ref, "path": body["path"], "dir_id": 1,
                                           "entries": [e], "last": True}))
        elif msgtype == 200:  # DirInfo recursive: pages without end
            log("listing")
            # Valid names as long as a path may be (4 KiB, components of 250 bytes).
            name = ("n" * 250 + "/") * 15
            page = None
            while True:
                if page is None or pages % 64 == 0:
                    entries = [entry(100 + pages * 8 + i, "%s%d" % (name, pages * 8 + i), "file",
                                     1, "sha256:" + "cd" * 32) for i in range(7)]
                    page = command(201, {"ref": ref, "path": body["path"], "dir_id": 1,
                                         "entries": entries, "last": False})
                conn.tls.sendall(page)
                pages += 1
        elif msgtype == 301:  # Download
            tid = os.urandom(16)
            log("download")
            conn.tls.sendall(command(302, {
                "ref": ref, "tid": tid.hex(), "file_id": 7, "size": HUGE,
                "hash": "sha256:" + "ab" * 32, "mtime": 0, "exec": False}))
            # Some data, then back to reading: a client that took the size writes it and
            # waits for more; one that refused it sends TransferCancel, which is logged.
            zeros = bytes(16384)
            for i in range(4):
                conn.tls.sendall(data(tid, i * len(zeros), zeros))
            log("data sent")
        elif msgtype == 303:  # TransferCancel
            log("cancel " + body.get("tid", ""))
        else:
            log("other %d" % msgtype)


def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(os.path.join(IDDIR, "cert.pem"), os.path.join(IDDIR, "key.pem"))
    ctx.num_tickets = 0
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", PORT))
    lsock.listen(8)
    with open(READY, "w") as f:
        f.write("ready\n")
    while True:
        raw, _ = lsock.accept()
        try:
            tls = ctx.wrap_socket(raw, server_side=True)
            serve(Conn(tls), SERVER_ID)
        except (EOFError, OSError, ssl.SSLError) as e:
            log("closed: %s" % type(e).__name__)
        finally:
            raw.close()


main()
