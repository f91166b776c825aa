/*
 * Verified downloads made durable together (R-RECV-4, R-RECV-5), and the
 * destination folders they land in, kept open between two batches.
 */
#ifndef FERRY_BATCH_H
#define FERRY_BATCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/crypto.h"
#include "ferry/part.h"
#include "ferry/wire.h"

/*
 * R-RECV-4, group commit: a batch goes to the flusher thread once it holds
 * FERRY_BATCH_MIN files and the flusher is idle, so a slow disk makes batches
 * larger rather than the wait longer, up to FERRY_BATCH_FILES (three quarters
 * of the window of R-RECV-5 against a server that remembers 64
 * acknowledgements, the rest stays requested meanwhile), FERRY_BATCH_FILES_MAX
 * against one that remembers 1024 (two batches and 64 requests fit), or
 * 64 MiB (the dirty bytes one flush writes back). Fewer than 16 files a
 * flush cost more CPU in syncs than they saved in waiting.
 */
#define FERRY_BATCH_FILES     48
#define FERRY_BATCH_FILES_MAX 448
#define FERRY_BATCH_MIN       16
#define FERRY_BATCH_BYTES     (64u << 20)
/*
 * Bytes of small files a batch holds in memory until they are written
 * (ferry_batch_add_held): past this the batch is full, and its owner asks
 * for no more files, so what waits in memory stays bounded whatever their
 * sizes (held_cap, ferry_batch_init, is the hard limit).
 */
#define FERRY_BATCH_HELD (16u << 20)
/* R-RECV-4: from this many files, one syncfs per file system beats an fdatasync each. */
#define FERRY_BATCH_SYNCFS_MIN 8
/* Destination folders kept open at once. */
#define FERRY_DIRCACHE_SLOTS 8

struct ferry_dir {
    int rootfd;
    char *rel; /* "" for rootfd itself */
    int fd;
    uint64_t dev, ino;
};

struct ferry_dircache {
    struct ferry_dir e[FERRY_DIRCACHE_SLOTS];
    size_t next; /* the slot reused next */
};

/*
 * The folder rel beneath rootfd (R-PATH-4: no symlink followed), created
 * with its parents when create is set, from the cache or opened into it.
 * Returns 0 and a borrowed entry (valid until the next call), or -errno.
 */
int ferry_dircache_get(struct ferry_dircache *c, int rootfd, const char *rel, int create,
                       const struct ferry_dir **out);
/* Closes every folder (after a batch, so that a folder replaced meanwhile is seen). */
void ferry_dircache_clear(struct ferry_dircache *c);

struct ferry_batch_ent {
    void *arg; /* the caller's item */
    int fd;    /* the verified part file, owned; -1 while its bytes are held */
    /* Held: its bytes in the batch's buffer, its part file made by the flush or a slice. */
    int held;
    const uint8_t *bytes;
    unsigned mode; /* given by the flush */
    int64_t mtime; /* ns, given by the flush */
    size_t dir;
    char part[FERRY_PART_NAME_LEN];
    char *name; /* its final name in the folder, owned */
    char cid[FERRY_CID_LEN + 1];
    uint8_t tid[FERRY_TID_LEN];
    uint64_t seq; /* the caller's number for it (R-RECV-5) */
    uint64_t size;
    int recorded; /* it may have resume records to forget once placed */
    /* Set by ferry_batch_sync: */
    int renamed;       /* it has its final name */
    const char *stage; /* the step that failed, if one did */
    int said;          /* stage says it all: the error code adds nothing */
};

struct ferry_batch_dir {
    int fd; /* owned */
    uint64_t dev, ino;
    int renamed; /* a rename into it awaits its fsync */
};

struct ferry_batch {
    struct ferry_batch_ent *e;    /* cap of them */
    struct ferry_batch_dir *dirs; /* cap of them: a folder per file at most */
    int *rc;                      /* each file's result, set by ferry_batch_sync */
    size_t n, ndirs;
    size_t cap; /* allocated */
    size_t max; /* files that fill it, at most cap (FERRY_BATCH_FILES by default) */
    uint64_t bytes;
    uint8_t *buf; /* the held bytes, bufcap at most; never moved while in use */
    size_t buflen, bufcap;
    size_t written; /* entries before it were written by a slice */
    /*
     * The owner's count of held bytes not yet written (R-RECV-6), or NULL:
     * ferry_batch_add_held adds to it, the flush takes each file off once
     * written or given up.
     */
    _Atomic uint64_t *unwritten;
};

/* Room for cap files, and held_cap bytes of held files; 0 or -ENOMEM. */
int ferry_batch_init(struct ferry_batch *b, size_t cap, size_t held_cap);
void ferry_batch_cleanup(struct ferry_batch *b);
/* R-RECV-4, R-RECV-5: the files a batch may hold against a server remembering acks. */
size_t ferry_batch_files(int acks);

/*
 * Adds a verified part file to the batch, taking fd; the flush gives it
 * mode and mtime_ns before it is made durable.
 * The caller flushes when ferry_batch_full() says so and it can; while the
 * batch before is still being made durable, this one takes files past its
 * mark, up to the room it was made with (-ENOBUFS beyond). 0, or -errno
 * with fd closed and nothing added.
 */
int ferry_batch_add(struct ferry_batch *b, const struct ferry_dir *dir, int fd, const char *part,
                    const char *name, const char *cid, const uint8_t tid[static FERRY_TID_LEN],
                    uint64_t seq, uint64_t size, unsigned mode, int64_t mtime_ns, int recorded,
                    void *arg);
/*
 * R-RECV-3: adds a small file verified in memory without a part file yet:
 * its len bytes are copied into the batch, and ferry_batch_sync creates the
 * part file `part` (new, with mode, R-RECV-1), writes them and sets mtime_ns,
 * so the receiving thread makes no system call for it. Room as for
 * ferry_batch_add; 0 or -errno with nothing added.
 */
int ferry_batch_add_held(struct ferry_batch *b, const struct ferry_dir *dir, const char *part,
                         const char *name, const char *cid, const uint8_t tid[static FERRY_TID_LEN],
                         uint64_t seq, const uint8_t *bytes, size_t len, unsigned mode,
                         int64_t mtime_ns, void *arg);
/*
 * The files added since the last slice, to be written (held files made,
 * modes and times set) by ferry_batch_write_slice on another thread while
 * files are still added: it touches those entries and nothing else of the
 * batch. The batch is not synced before the slice is written.
 */
struct ferry_batch_slice {
    struct ferry_batch_ent *e;
    const struct ferry_batch_dir *dirs;
    int *rc;
    size_t lo, hi;
    _Atomic uint64_t *unwritten;
};
void ferry_batch_take_slice(struct ferry_batch *b, struct ferry_batch_slice *s);
void ferry_batch_write_slice(const struct ferry_batch_slice *s);
/* Whether the batch must be flushed before another file joins it. */
int ferry_batch_full(const struct ferry_batch *b);

/*
 * Called once per file after a flush: rc 0, the file is durable in place;
 * else -errno and `stage` says which step failed (its part file is gone,
 * unless only its folder's fsync failed).
 */
typedef void (*ferry_batch_done_cb)(void *ctx, struct ferry_batch_ent *e, int rc,
                                    const char *stage);

/*
 * R-RECV-4: writes the held files, makes every file of the batch durable
 * (one syncfs per file system from FERRY_BATCH_SYNCFS_MIN files, else an
 * fdatasync each), renames each into place, fsyncs each folder once, and
 * forgets in st the records of part files gone (R-RECV-2). On b and st only:
 * it runs on a pool thread while the loop receives the next batch (the
 * state store's handle is serialized, safe from any thread).
 */
void ferry_batch_sync(struct ferry_batch *b, struct ferry_state *st);
/*
 * After ferry_batch_sync, back on the loop thread: reports every file to
 * done, in order, and empties the batch. No system call but close.
 */
void ferry_batch_done(struct ferry_batch *b, ferry_batch_done_cb done, void *ctx);

#endif
