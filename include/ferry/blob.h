/*
 * The server's content store: where the bytes of files and chunks live,
 * behind a table of operations, so that the server's group commit and its
 * downloads work the same over any store (pack files on a local disk
 * today; an object store later).
 *
 * The model: the commit job opens a batch, puts into it the chunks (bytes
 * in memory) and whole files (a spool file the upload streamed into) that
 * are new, makes the batch durable, records the store's own bookkeeping in
 * the same metadata transaction as the rows that point at the content, and
 * ends the batch. Each put hands back a reference (struct ferry_blob_ref)
 * that the metadata keeps and that reads and frees hand back; only the
 * store that made a reference looks inside it. Nothing put is read before
 * a committed row points at it, so bytes of a batch that failed are never
 * seen: the store overwrites or frees them.
 *
 * Ownership: the caller owns the store, each batch (until
 * ferry_blob_batch_end) and each reader; the store owns the files, names
 * and descriptors behind them. A spool's descriptor is the caller's to
 * write to until the spool is put or dropped. Errors are negative codes:
 * -errno from the system, or FERRY_E*.
 *
 * Threads: one batch at a time, on one thread (the commit job's); readers
 * and spools on any one thread each. The store keeps no lock of its own:
 * a batch and a reader never share a descriptor.
 */
#ifndef FERRY_BLOB_H
#define FERRY_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "ferry/store.h"

/*
 * Where the store keeps one piece of content. The server copies it between
 * the store and the metadata (a chunk's row keeps loc and off) and compares
 * two of them, but never reads meaning into the fields; build one from a
 * row with ferry_blob_ref_chunk or ferry_blob_ref_file.
 */
struct ferry_blob_ref {
    int64_t uid;
    int64_t loc;     /* pack files: the pack (0: a file named by key) */
    int64_t off;     /* where the content starts in loc */
    int64_t size;    /* bytes of content */
    int whole;       /* a whole file's content, not a chunk */
    uint8_t key[32]; /* the content's SHA-256 */
};

/* A temp file an upload streams into before it is put (or dropped). */
struct ferry_blob_spool {
    int fd;        /* written by the caller; -1 when there is none */
    char name[40]; /* the store's name for it; "" once put or dropped */
};

struct ferry_blob_store;
struct ferry_blob_batch;
struct ferry_blob_reader;

/*
 * Space to free once a commit no longer refers to it, as ferry_meta_gc and
 * ferry_blob_unused report it: an opaque name with either len 0 (all of it)
 * or a range [off, off + len).
 */
struct ferry_blob_garbage {
    char *name;
    int64_t off;
    int64_t len;
};

/*
 * The table of a store's operations; ferry_blob_* below call through it.
 * Every function gets the store it was called on, so a store can wrap
 * another one (tests/fault injection) and pass its inner store along.
 */
struct ferry_blob_ops {
    const char *name;
    int (*spool_open)(struct ferry_blob_store *st, struct ferry_blob_spool *sp);
    void (*spool_drop)(struct ferry_blob_store *st, struct ferry_blob_spool *sp);
    int (*batch_begin)(struct ferry_blob_store *st, struct ferry_meta *m,
                       struct ferry_blob_batch **out);
    int (*put_chunk)(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                     const uint8_t hash[static 32], uint8_t *buf, size_t len,
                     struct ferry_blob_ref *ref, int *status);
    int (*put_spool)(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                     const char *cid, struct ferry_blob_spool *sp, struct ferry_blob_ref *ref,
                     int *status);
    int (*durable)(struct ferry_blob_store *st, struct ferry_blob_batch *b);
    int (*record)(struct ferry_blob_store *st, struct ferry_blob_batch *b);
    void (*batch_end)(struct ferry_blob_store *st, struct ferry_blob_batch *b);
    int (*unused)(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                  ferry_meta_gc_fn fn, void *arg);
    void (*free)(struct ferry_blob_store *st, struct ferry_blob_garbage *g, size_t n);
    int (*reader_open)(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                       struct ferry_blob_reader **out);
    int (*reader_move)(struct ferry_blob_store *st, struct ferry_blob_reader *r,
                       const struct ferry_blob_ref *ref);
    ssize_t (*read)(struct ferry_blob_store *st, struct ferry_blob_reader *r, int64_t off,
                    const struct iovec *iov, int n);
    int (*may_vanish)(struct ferry_blob_store *st, const struct ferry_blob_ref *ref);
    void (*reader_close)(struct ferry_blob_store *st, struct ferry_blob_reader *r);
    void (*close)(struct ferry_blob_store *st);
};

/* A store is its table first; each implementation extends it. */
struct ferry_blob_store {
    const struct ferry_blob_ops *ops;
};

/*
 * The pack-file store (src/lib/store/blob_pack.c), over a data directory
 * held open as datafd (borrowed; it must outlive the store): chunks in
 * packs/<uid>/<id>.pack, whole files in blobs/<uid>/<hh>/<64 hex>, spools
 * in tmp/, chunk files of the old layout in chunks/. Opening creates the
 * directories and removes spools a crash left behind.
 */
int ferry_blob_pack_open(int datafd, struct ferry_blob_store **out);

/*
 * A store for tests that wraps inner (taking it over, once open) and fails chosen
 * calls (src/lib/store/blob_fault.c). spec is a comma-separated list of
 * OP:N:FAULT: the Nth call (from 1) of OP fails with FAULT. OP is put (a
 * chunk or spool put), write (one write system call of a pack), sync (a
 * batch made durable: it runs, then reports the fault, as a disk whose
 * fsync failed), read or spool; FAULT is eio, enospc or short (a write
 * that stops half way; the next write finds the disk full). -EINVAL
 * for a spec that does not parse.
 */
int ferry_blob_fault_open(struct ferry_blob_store *inner, const char *spec,
                          struct ferry_blob_store **out);

/* The references of a chunk's row and of whole-file content cid of uid. */
void ferry_blob_ref_chunk(struct ferry_blob_ref *ref, int64_t uid, const uint8_t hash[static 32],
                          int64_t loc, int64_t off, int64_t size);
int ferry_blob_ref_file(struct ferry_blob_ref *ref, int64_t uid, const char *cid, int64_t size);
/* Whether a and b name the same stored bytes. */
int ferry_blob_ref_same(const struct ferry_blob_ref *a, const struct ferry_blob_ref *b);

/* A new spool for an upload; sp->fd is then the caller's to write. */
int ferry_blob_spool_open(struct ferry_blob_store *st, struct ferry_blob_spool *sp);
/* Closes and removes a spool not put; nothing for one already put or dropped. */
void ferry_blob_spool_drop(struct ferry_blob_store *st, struct ferry_blob_spool *sp);

/*
 * A batch of puts, whose store bookkeeping goes into m (the metadata
 * connection of the commit, within its transaction at ferry_blob_record).
 */
int ferry_blob_batch_begin(struct ferry_blob_store *st, struct ferry_meta *m,
                           struct ferry_blob_batch **out);
/*
 * Puts a chunk's len bytes into the batch. buf is FERRY_PACK_ALIGN-aligned
 * with room to the next multiple of it (the store may pad it in place).
 * Fills *ref; *status is 0 now and gets the put's outcome when the batch
 * is made durable, so both must live until then. buf too must stay.
 */
int ferry_blob_put_chunk(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                         const uint8_t hash[static 32], uint8_t *buf, size_t len,
                         struct ferry_blob_ref *ref, int *status);
/* Puts a spool as whole-file content cid of uid; the spool is the store's from now on. */
int ferry_blob_put_spool(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                         const char *cid, struct ferry_blob_spool *sp, struct ferry_blob_ref *ref,
                         int *status);
/*
 * Writes what the batch holds and makes it durable. A put that failed has
 * its status set; a failure to make the batch durable is returned and is
 * fatal for every put of the batch (R-STORE-5).
 */
int ferry_blob_durable(struct ferry_blob_store *st, struct ferry_blob_batch *b);
/*
 * Records the store's bookkeeping in the metadata transaction; only for a
 * batch ferry_blob_durable made durable (of another, nothing may count).
 */
int ferry_blob_record(struct ferry_blob_store *st, struct ferry_blob_batch *b);
/* Ends a batch, committed or not. */
void ferry_blob_batch_end(struct ferry_blob_store *st, struct ferry_blob_batch *b);
/* Reports to fn, as garbage, the space of a put whose bytes no row will point at. */
int ferry_blob_unused(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                      ferry_meta_gc_fn fn, void *arg);
/* Frees the garbage a committed transaction reported (R-CHUNK-11); may reorder g. */
void ferry_blob_free(struct ferry_blob_store *st, struct ferry_blob_garbage *g, size_t n);

/* A reader of stored content, for downloads. */
int ferry_blob_reader_open(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                           struct ferry_blob_reader **out);
/* Points r at other content, reusing what it holds open where it can. */
int ferry_blob_reader_move(struct ferry_blob_store *st, struct ferry_blob_reader *r,
                           const struct ferry_blob_ref *ref);
/* Reads from off (within the content) into iov; the bytes read, or < 0. */
ssize_t ferry_blob_read(struct ferry_blob_store *st, struct ferry_blob_reader *r, int64_t off,
                        const struct iovec *iov, int n);
/*
 * 1 when the bytes of ref may become unreadable (a hole) while a reader
 * holds them, once a commit deletes its row: a reader must then check the
 * row again after each read. 0 when an open reader keeps them.
 */
int ferry_blob_may_vanish(struct ferry_blob_store *st, const struct ferry_blob_ref *ref);
void ferry_blob_reader_close(struct ferry_blob_store *st, struct ferry_blob_reader *r);

void ferry_blob_close(struct ferry_blob_store *st);

#endif
