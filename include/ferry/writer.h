/* A file writer thread: hashes and writes big buffers while the caller keeps receiving. */
#ifndef FERRY_WRITER_H
#define FERRY_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/crypto.h"

/* Bytes per buffer handed to the writer: one write(2) each. */
#define FERRY_WRITER_BUF (1u << 20)
/* Buffers per writer: bounds the bytes in flight to 8 MiB. */
#define FERRY_WRITER_NBUF 8
/* Buffer and O_DIRECT alignment (the logical block size of common disks). */
#define FERRY_WRITER_ALIGN 4096
/* Writeback is started every this many bytes, so a final fdatasync is short. */
#define FERRY_WRITER_SYNC_STEP (8u << 20)

struct ferry_writer;

/* Starts the thread and allocates its buffers once; reused file after file. */
int ferry_writer_new(struct ferry_writer **out);
/* Stops the thread (after the current file, if any, is abandoned) and frees. */
void ferry_writer_free(struct ferry_writer *w);

/* Starts a file: bytes go to fd from its current offset, hashed with SHA-256. */
int ferry_writer_begin(struct ferry_writer *w, int fd);
/*
 * A free buffer of FERRY_WRITER_BUF bytes to fill; waits while all are in
 * flight (the backpressure). NULL if the file already failed.
 */
uint8_t *ferry_writer_buf(struct ferry_writer *w);
/* Queues a filled buffer (from ferry_writer_buf) of len bytes. */
void ferry_writer_submit(struct ferry_writer *w, uint8_t *buf, size_t len);
/*
 * Waits until every queued byte of the file is written. Returns 0 and the
 * content id in cid, or the first error (-errno); the writer is then free
 * for the next file. Without a file in progress (ended already) it returns
 * FERRY_EUSAGE and changes nothing.
 */
int ferry_writer_end(struct ferry_writer *w, char cid[static 72]);
/* The same, but the content id is the "chunks:" id of R-CHUNK-3. */
int ferry_writer_begin_chunked(struct ferry_writer *w, int fd);
/*
 * After a begin, continues a file whose first prefix bytes are already in
 * fd (opened for reading too): they are read back into the hash and the
 * next bytes go after them. R-CHUNK-14's resumed downloads.
 */
int ferry_writer_resume(struct ferry_writer *w, uint64_t prefix);
/* Waits for every queued byte, fdatasyncs, and reports the bytes now durable. */
int ferry_writer_sync(struct ferry_writer *w, uint64_t *durable);
/*
 * After a begin: the thread fdatasyncs by itself each time this many more
 * bytes are written (0: never), so the caller does not wait for the disk.
 */
void ferry_writer_sync_every(struct ferry_writer *w, uint64_t bytes);
/* The bytes the thread has made durable so far (0 after an error). */
uint64_t ferry_writer_durable(struct ferry_writer *w);
/*
 * fn is called on the syncing thread, without the writer's lock, after each
 * step of ferry_writer_sync_every, with the bytes of the file now durable
 * (R-CHUNK-14: a receiver records them there, its own thread free). The
 * file's end (ferry_writer_end, _sync) waits for a call under way. NULL: none.
 */
void ferry_writer_set_on_durable(struct ferry_writer *w, void (*fn)(void *arg, uint64_t durable),
                                 void *arg);
/*
 * For a caller on an event loop, which must not wait: fn is called on one
 * of the writer's threads (with its lock held: it must only signal, e.g.
 * uv_async_send) each time a buffer becomes free or the queued work is
 * done, so the caller can stop reading its input while ferry_writer_ready()
 * or ferry_writer_idle() is 0 and read on when told. NULL: no calls.
 */
void ferry_writer_set_notify(struct ferry_writer *w, void (*fn)(void *arg), void *arg);
/* 1 when ferry_writer_buf() would return at once: a buffer is free. */
int ferry_writer_ready(struct ferry_writer *w);
/*
 * 1 when every queued byte is hashed and written and no fdatasync runs, so
 * ferry_writer_end() and ferry_writer_sync() would not wait for the disk.
 */
int ferry_writer_idle(struct ferry_writer *w);
/* Whether a file is in progress. */
int ferry_writer_busy(const struct ferry_writer *w);

#endif
