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

or, as a 1.4 server, answers Downloads of files of at most 32695 bytes with
file frames (R-XFER-7, docs/protocol.md section 5.1) and larger ones with
Transfer, data and TransferComplete; the tree then holds an empty file, one
of exactly 32695 bytes and one of 40000, with mtimes to the nanosecond and
executable files:

  file-bad    every fifth file's sha256 does not match its bytes (R-FILE-3);
              announces and remembers 1024
  file-bad64  the same, announcing no `acks`: it remembers the last 64, and
              a file frame counts as a TransferComplete (R-XFER-7, R-RECV-5)

or answers the Download of file FAULT of a tree of FAULT_FILES good files
with a frame the client must take for a protocol fault:

  file-old    Accept says 1.3, and FAULT comes as a file frame (R-FILE-1)
  file-short  a file payload of 72 bytes (R-FILE-2)
  file-flags  a file frame with flags 2 (R-FILE-2)
  file-ref    a file frame whose ref is no Download of the client (R-FILE-3)
  file-dup    FAULT's file frame, then a second one with its ref (R-FILE-3)
  file-mid    FAULT's Transfer and part of its data, then the file frame of
              the next Download while FAULT's data is arriving (R-FILE-3)

An acknowledgement the server would not take (forgotten, a tid it never
finished, or `tids` to an old server) is logged as "refused ..." and answered
with Error and a close, as `ferry serve` would. Each Connect is logged as
"connect VERSION".

"hostile_server.py check MODE DIR" checks a tree the client placed: every
file byte-identical, with its mtime and mode; for file-bad and file-bad64
exactly the files whose hash matched, for the fault modes any of the good
files but FAULT (file-dup: FAULT may be placed). It prints the number of
files placed, or what is wrong and exits 1.

It presents the identity of a real `ferry serve` (its key.pem and cert.pem),
so that a client logged in to that server trusts it. It writes "ready" to
READY_FILE once it listens, and one line per event to LOG_FILE.

usage: hostile_server.py MODE PORT IDENTITY_DIR SERVER_ID READY_FILE LOG_FILE
       hostile_server.py check MODE DIR
"""
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import uuid

if sys.argv[1] == "check":
    MODE, DEST = sys.argv[2], sys.argv[3]
else:
    MODE, PORT, IDDIR, SERVER_ID, READY, LOG = (sys.argv[1], int(sys.argv[2]), sys.argv[3],
                                                 sys.argv[4], sys.argv[5], sys.argv[6])
HUGE = 1 << 62
FILE_MODES = ("file-bad", "file-bad64", "file-old", "file-short", "file-flags", "file-ref",
              "file-dup", "file-mid")
FAULT_MODES = FILE_MODES[2:]
# The modes whose every fifth file does not match its hash.
BAD_HASH = MODE in ("old", "new", "file-bad", "file-bad64")
FILES = 24 if MODE in FAULT_MODES else 300
FAULT = 11
ACKS = 64 if MODE in ("old", "file-bad64") else 1024
VERSION = "1.3" if MODE in ("new", "file-old") else "1.4" if MODE in FILE_MODES else "1.2"
FILE_HDR_LEN = 73
FILE_DATA_MAX = 32768 - FILE_HDR_LEN


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\n")


def frame(ftype, payload):
    return struct.pack(">BBI", 1, ftype, len(payload)) + payload


def command(msgtype, body):
    body = dict(body, id=str(uuid.uuid4()), version=VERSION)
    return frame(1, struct.pack(">i", msgtype) + json.dumps(body).encode())


def data(tid, offset, payload):
    return frame(2, tid + struct.pack(">Q", offset) + payload)


def file_payload(ref, tid, mtime, flags, sha256, payload):
    """A file payload (section 5.1): ref is the Download's id as text."""
    return (uuid.UUID(ref).bytes + tid + struct.pack(">qB", mtime, flags) + sha256 + payload)


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


def entry(eid, name, etype, size=0, digest=None, mtime=0, exe=False):
    e = {"id": eid, "dir_id": 1, "name": name, "type": etype, "size": size,
         "mtime": mtime, "smtime": 0, "exec": exe}
    if digest is not None:
        e["hash"] = digest
    return e


def content(i):
    """File i of the tree: its bytes, and the hash the listing gives."""
    good = ("file %d\n" % i).encode() * (1 + i % 7)
    if MODE in FILE_MODES and i == 1:
        good = b""
    elif MODE in FILE_MODES and i == 2:
        good = bytes(range(256)) * (FILE_DATA_MAX // 256) + b"e" * (FILE_DATA_MAX % 256)
    elif MODE in FILE_MODES and i == 3:
        good = b"l" * 40000  # too large for a file frame
    return good, "sha256:" + hashlib.sha256(good).hexdigest()


def meta(i):
    """File i's mtime (ns; 0 outside the file modes) and whether it is executable."""
    if MODE not in FILE_MODES:
        return 0, False
    return 1600000000123456789 + i * 1000000007, i % 3 == 1


def bad(i):
    """Whether file i's bytes do not match its hash."""
    return BAD_HASH and i % 5 == 0


def path_of(i):
    return "d%d/f%d" % (i % 3, i)


def check_tree(dest):
    """The check subcommand: see the module's docstring."""
    want = set(i for i in range(FILES) if not bad(i))
    if MODE in FAULT_MODES and MODE != "file-dup":
        want.discard(FAULT)
    placed, errors = set(), []
    for root, _, names in os.walk(dest):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), dest)
            if not name.startswith("f") or not name[1:].isdigit() or path_of(int(name[1:])) != rel:
                errors.append("unexpected file %s" % rel)
                continue
            i = int(name[1:])
            full = os.path.join(dest, rel)
            st = os.lstat(full)
            mtime, exe = meta(i)
            with open(full, "rb") as f:
                got = f.read()
            if i not in want:
                errors.append("%s placed, but it must not be" % rel)
            elif got != content(i)[0]:
                errors.append("%s: %d bytes, not its content" % (rel, len(got)))
            elif MODE in FILE_MODES and st.st_mtime_ns != mtime:
                errors.append("%s: mtime %d, expected %d" % (rel, st.st_mtime_ns, mtime))
            elif MODE in FILE_MODES and st.st_mode & 0o777 != (0o755 if exe else 0o644):
                errors.append("%s: mode %o" % (rel, st.st_mode & 0o777))
            placed.add(i)
    if MODE not in FAULT_MODES and placed != want:
        errors.append("files missing: %s" % sorted(want - placed)[:20])
    if errors:
        print("\n".join(errors[:20]))
        sys.exit(1)
    print(len(placed))


def transfer(ref, file_id, i, tid, sent):
    """The answer of a 1.3 server: Transfer, data frames, TransferComplete."""
    good, digest = content(i)
    mtime, exe = meta(i)
    out = command(302, {"ref": ref, "tid": tid.hex(), "file_id": file_id, "size": len(good),
                        "hash": digest, "mtime": mtime, "exec": exe})
    for off in range(0, len(sent), 16384):
        out += data(tid, off, sent[off:off + 16384])
    return out + command(304, {"tid": tid.hex(), "hash": digest})


def file_frame(ref, i, tid, sent, flags=None):
    """The answer of a 1.4 server to a small file: one file frame (R-XFER-7)."""
    good, digest = content(i)
    mtime, exe = meta(i)
    return frame(4, file_payload(ref, tid, mtime, int(exe) if flags is None else flags,
                                 bytes.fromhex(digest[7:]), sent))


def answer_fault(conn, ref, file_id, i, held):
    """The Download of file FAULT in a fault mode: the frames the client must refuse.
    Returns the tids it finished (those whose acknowledgement is valid)."""
    good, _ = content(i)
    tid = os.urandom(16)
    if MODE == "file-old":
        out, fin = file_frame(ref, i, tid, good), []
    elif MODE == "file-short":
        out, fin = frame(4, file_payload(ref, tid, 0, 0, bytes(32), b"")[:FILE_HDR_LEN - 1]), []
    elif MODE == "file-flags":
        out, fin = file_frame(ref, i, tid, good, flags=2), []
    elif MODE == "file-ref":
        out, fin = file_frame(str(uuid.uuid4()), i, tid, good), []
    elif MODE == "file-dup":
        out, fin = file_frame(ref, i, tid, good) + file_frame(ref, i, os.urandom(16), good), [tid]
    else:  # file-mid: FAULT's data has begun when the next Download's file frame comes
        (nref, nfile_id), = held
        ntid = os.urandom(16)
        out = command(302, {"ref": ref, "tid": tid.hex(), "file_id": file_id, "size": len(good),
                            "hash": content(i)[1], "mtime": 0, "exec": False})
        out += data(tid, 0, good[:3])
        out += file_frame(nref, nfile_id - 10, ntid, content(nfile_id - 10)[0])
        fin = []
        log("fault file %s" % path_of(nfile_id - 10))
    log("fault file %s" % path_of(i))
    conn.tls.sendall(out)
    return [t.hex() for t in fin]


def serve_acks(conn, server_id):
    done = []  # tids of the downloads finished, oldest first
    held = None  # file-mid: FAULT's Download, answered once the next one has come
    while True:
        msgtype, body = conn.read_frame()
        ref = body.get("id")
        if msgtype == 1:  # Connect
            log("connect %s" % body.get("version"))
            limits = {"frame_payload_max": 32768, "data_max": 16384, "page_entries_max": 50}
            if MODE not in ("old", "file-bad64"):
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
            ents += [entry(10 + i, path_of(i), "file", len(content(i)[0]), content(i)[1],
                           *meta(i)) for i in range(FILES)]
            for k in range(0, len(ents), 50):
                conn.tls.sendall(command(201, {"ref": ref, "path": body["path"], "dir_id": 1,
                                               "entries": ents[k:k + 50],
                                               "last": k + 50 >= len(ents)}))
        elif msgtype == 301:  # Download by file_id
            i = body["file_id"] - 10
            good, digest = content(i)
            sent = b"X" * len(good) if bad(i) else good
            tid = os.urandom(16)
            if held is not None:  # file-mid: the Download after FAULT's
                done += answer_fault(conn, held[0][0], held[0][1], FAULT, [(ref, body["file_id"])])
                held = None
            elif MODE in FAULT_MODES and i == FAULT:
                if MODE == "file-mid":
                    held = [(ref, body["file_id"])]
                    continue
                done += answer_fault(conn, ref, body["file_id"], i, None)
            elif MODE in FILE_MODES and MODE != "file-old" and len(good) <= FILE_DATA_MAX:
                conn.tls.sendall(file_frame(ref, i, tid, sent))
                done.append(tid.hex())
            else:
                conn.tls.sendall(transfer(ref, body["file_id"], i, tid, sent))
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
    if MODE in ("old", "new") or MODE in FILE_MODES:
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


if sys.argv[1] == "check":
    check_tree(DEST)
else:
    main()
