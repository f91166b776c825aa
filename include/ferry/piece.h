/*
 * The piece store: one file being received by chunks (docs/protocol.md
 * R-CHUNK-15, R-CHUNK-16, R-RECV), kept in its part file (ferry/part.h)
 * until it is whole, verified and placed.
 *
 * What it is for: a download that already has bytes on this disk (an old
 * version of the file, a partial download, chunks a killed run made
 * durable) takes them, asks only for the rest, and survives a restart;
 * and, for the swarm, a file being received can serve the chunks it
 * holds to another reader before it is complete.
 *
 * Its life: ferry_piece_new with the list's length (its cap checked), the
 * list's bytes (ferry_piece_list_data), ferry_piece_plan (checks the list
 * against the content id, opens the part file, takes what is found
 * locally), then chunks arrive (ferry_piece_chunk, each hash checked
 * before it is written), ferry_piece_sync makes them durable and records
 * them, and ferry_piece_place reads the whole part file back, checks every
 * chunk and renames it into place. Each chunk is missing, written
 * (verified and pwritten) or durable (written, then fdatasync'd and
 * recorded in the chunk bitmap, bound to the part file's identity,
 * R-RECV-2); "held" means written or durable.
 *
 * Ownership: the piece store owns the list, a descriptor of the folder and
 * the part file's descriptor; ferry_piece_free closes them (the part file
 * stays on disk for a rerun unless ferry_piece_discard removed it). The
 * state store passed to ferry_piece_new is borrowed and must outlive the
 * piece store; NULL means no records (nothing resumed, nothing indexed).
 *
 * Threads: every call but the plain getters blocks on the disk or on
 * SQLite. They are meant for pool threads (ferry/pool.h), never a loop
 * thread, and a piece store is used by one task at a time: the job that
 * owns it serialises its tasks. Nothing here locks.
 */
#ifndef FERRY_PIECE_H
#define FERRY_PIECE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "ferry/part.h"
#include "ferry/wire.h"

struct ferry_state;
struct ferry_piece;

/* New chunk bytes written between two fdatasyncs (and bitmap records), R-CHUNK-16. */
#define FERRY_PIECE_SYNC_STEP (32u << 20)
/* ferry_piece_plan's answer when the old file already is the content (its index says so). */
#define FERRY_PIECE_ALREADY 1

/* What ferry_piece_state says of one chunk. */
enum {
    FERRY_PIECE_MISSING = 0,
    FERRY_PIECE_WRITTEN = 1, /* verified and pwritten, not yet fdatasync'd */
    FERRY_PIECE_DURABLE = 2, /* fdatasync'd (and recorded when a state store is there) */
};

/*
 * Starts receiving the list of content cid ("chunks:..."), a file of size
 * bytes. R-CHUNK-15: list_len is checked against FERRY_CHUNK_LIST_MAX and
 * must be whole entries before anything is allocated: FERRY_EPROTO, or
 * -ENOMEM; 0 and *out otherwise.
 */
int ferry_piece_new(struct ferry_state *st, const char *cid, uint64_t size, uint64_t list_len,
                    struct ferry_piece **out);
void ferry_piece_free(struct ferry_piece *p);
/* The list's bytes at off, in order and within list_len: 0 or FERRY_EPROTO. */
int ferry_piece_list_data(struct ferry_piece *p, uint64_t off, const uint8_t *b, size_t n);
/*
 * The list is complete: checks it against the size (R-CHUNK-2) and the
 * content id (R-CHUNK-15; FERRY_EPROTO), checks that what is missing fits
 * on the disk (R-RECV-6, else -ENOSPC before anything is created), opens
 * the part file `part` in dirfd (R-RECV-1, -EPERM when planted; sized to
 * the file), and takes every chunk found locally: the saved bitmap and a
 * streamed download's durable prefix, each only if recorded for this very
 * part file (R-RECV-2), and the old file `name`, each chunk re-hashed.
 * What it took is durable when it returns 0. When the local index
 * (ferry/index.h) shows `name` already holds this content, it only sets
 * its mode and mtime and returns FERRY_PIECE_ALREADY.
 */
int ferry_piece_plan(struct ferry_piece *p, int dirfd, const char *name, const char *part,
                     mode_t mode, int64_t mtime_ns);
/* After -ENOSPC from ferry_piece_plan: the bytes needed, and *avail those free. */
uint64_t ferry_piece_need(const struct ferry_piece *p, uint64_t *avail);
/* 1 when every chunk is held. */
int ferry_piece_complete(const struct ferry_piece *p);
/*
 * The Download `chunks` ranges of what is still missing (at most
 * FERRY_DL_RANGES_MAX runs; the rest in the next call), and the order in
 * which ferry_piece_chunk now expects their frames. NULL on -ENOMEM.
 */
json_t *ferry_piece_ranges(struct ferry_piece *p);
/*
 * A chunk frame of the requested ranges (R-CHUNK-16: in the order asked,
 * each chunk from offset 0). When it completes a chunk, the chunk's
 * SHA-256 is checked against the list before a byte is written:
 * FERRY_EHASH, and the chunk stays missing. *fresh is the bytes of a chunk
 * it wrote. FERRY_EPROTO for a frame out of order or past its chunk's end;
 * -errno for a write or sync error. Every FERRY_PIECE_SYNC_STEP new bytes
 * it syncs as ferry_piece_sync does.
 */
int ferry_piece_chunk(struct ferry_piece *p, const struct ferry_chunk_frame *f, uint64_t *fresh);
/*
 * Chunks verified by ferry_piece_chunk are kept in memory (up to
 * FERRY_PIECE_STAGE bytes) instead of written, so the receiving thread
 * makes no system call for them; ferry_piece_chunk then returns
 * FERRY_PIECE_FLUSH (> 0) once they are due to be written, and the caller
 * runs ferry_piece_write (on another thread, the piece untouched meanwhile)
 * before it passes the next frame. ferry_piece_sync and _place write what
 * is kept first.
 */
#define FERRY_PIECE_STAGE (8u << 20)
#define FERRY_PIECE_FLUSH 2
void ferry_piece_stage(struct ferry_piece *p);
/*
 * Writes the chunks kept, and syncs as ferry_piece_sync does once
 * FERRY_PIECE_SYNC_STEP new bytes are written: 0 or -errno (the chunks
 * not written are missing again).
 */
int ferry_piece_write(struct ferry_piece *p);
/* fdatasyncs what was written and records it (R-CHUNK-16): 0 or -errno (fatal for the write). */
int ferry_piece_sync(struct ferry_piece *p);
/*
 * Sets mode and mtime, fdatasyncs, reads the part file back and checks
 * every chunk against the list (R-RECV-3: FERRY_EHASH, nothing placed, on a
 * mismatch), then renames it to name, fsyncs the folder, forgets its
 * records and indexes the placed file. FERRY_EINTERNAL when not complete.
 */
int ferry_piece_place(struct ferry_piece *p, const char *name, mode_t mode, int64_t mtime_ns);
/* Removes the part file and its records (its bytes cannot be trusted). */
void ferry_piece_discard(struct ferry_piece *p);

/*
 * For another reader (the swarm): chunk i's bytes into buf, only if the
 * chunk is held. They are read back from the part file and their SHA-256
 * checked again before they are handed out. Returns the chunk's length;
 * FERRY_ENOTFOUND when i is past the list or the chunk is not held;
 * FERRY_ETOOBIG when cap is less than the chunk (at most FERRY_CHUNK_MAX);
 * FERRY_EHASH when the disk no longer holds its bytes (then the chunk is
 * missing again, and no longer recorded as durable); -errno.
 */
ssize_t ferry_piece_read(struct ferry_piece *p, size_t i, uint8_t *buf, size_t cap);
/* 1 when chunk i is held, 0 when it is missing or past the list. */
int ferry_piece_has(const struct ferry_piece *p, size_t i);
/* Chunks held, and chunks in the list (0 before ferry_piece_plan). */
size_t ferry_piece_held(const struct ferry_piece *p);
size_t ferry_piece_count(const struct ferry_piece *p);
/* Chunk i's state (FERRY_PIECE_*), length and offset in the file; 0 past the list. */
int ferry_piece_state(const struct ferry_piece *p, size_t i);
uint32_t ferry_piece_len(const struct ferry_piece *p, size_t i);
uint64_t ferry_piece_off(const struct ferry_piece *p, size_t i);

/* Bytes taken from the old file; *kept those a partial download held. */
uint64_t ferry_piece_reused(const struct ferry_piece *p, uint64_t *kept);
/* The part file's descriptor (-1 before ferry_piece_plan opened it). */
int ferry_piece_fd(const struct ferry_piece *p);
/* The size of the file the list describes. */
uint64_t ferry_piece_size(const struct ferry_piece *p);
/* Whether a chunk bitmap of content cid is recorded for this very part file (R-RECV-2). */
int ferry_piece_has_bitmap(struct ferry_state *st, int dirfd, const char *part, const char *cid,
                           const struct ferry_part_id *id);

#endif
