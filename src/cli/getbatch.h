/*
 * Verified downloads made durable together (R-RECV-4, R-RECV-5), and the
 * destination folders they land in, kept open between two batches.
 */
#ifndef FERRY_CLI_GETBATCH_H
#define FERRY_CLI_GETBATCH_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/crypto.h"
#include "ferry/part.h"
#include "ferry/wire.h"

/*
 * R-RECV-4, group commit: a batch goes to the flusher thread once it holds
 * CLI_BATCH_MIN files and the flusher is idle, so a slow disk makes batches
 * larger rather than the wait longer, up to CLI_BATCH_FILES (three quarters
 * of the window of R-RECV-5 against a server that remembers 64
 * acknowledgements, the rest stays requested meanwhile), CLI_BATCH_FILES_MAX
 * against one that remembers 1024 (two batches and 64 requests fit), or
 * 64 MiB (the dirty bytes one flush writes back). Fewer than 16 files a
 * flush cost more CPU in syncs than they saved in waiting.
 */
#define CLI_BATCH_FILES     48
#define CLI_BATCH_FILES_MAX 448
#define CLI_BATCH_MIN       16
#define CLI_BATCH_BYTES     (64u << 20)
/* R-RECV-4: from this many files, one syncfs per file system beats an fdatasync each. */
#define CLI_BATCH_SYNCFS_MIN 8
/* Destination folders kept open at once. */
#define CLI_DIRCACHE_SLOTS 8

struct cli_dir {
    int rootfd;
    char *rel; /* "" for rootfd itself */
    int fd;
    uint64_t dev, ino;
};

struct cli_dircache {
    struct cli_dir e[CLI_DIRCACHE_SLOTS];
    size_t next; /* the slot reused next */
};

/*
 * The folder rel beneath rootfd (R-PATH-4: no symlink followed), created
 * with its parents when create is set, from the cache or opened into it.
 * Returns 0 and a borrowed entry (valid until the next call), or -errno.
 */
int cli_dircache_get(struct cli_dircache *c, int rootfd, const char *rel, int create,
                     const struct cli_dir **out);
/* Closes every folder (after a batch, so that a folder replaced meanwhile is seen). */
void cli_dircache_clear(struct cli_dircache *c);

struct cli_batch_ent {
    void *arg; /* the caller's item */
    int fd;    /* the verified part file, owned */
    size_t dir;
    char part[FERRY_PART_NAME_LEN];
    char *name; /* its final name in the folder, owned */
    char cid[FERRY_CID_LEN + 1];
    uint8_t tid[FERRY_TID_LEN];
    uint64_t seq; /* the caller's number for it (R-RECV-5) */
    uint64_t size;
    int recorded; /* it may have resume records to forget once placed */
    /* Set by cli_batch_sync: */
    int renamed;       /* it has its final name */
    const char *stage; /* the step that failed, if one did */
};

struct cli_batch_dir {
    int fd; /* owned */
    uint64_t dev, ino;
    int renamed; /* a rename into it awaits its fsync */
};

struct cli_batch {
    struct cli_batch_ent *e;    /* cap of them */
    struct cli_batch_dir *dirs; /* cap of them: a folder per file at most */
    int *rc;                    /* each file's result, set by cli_batch_sync */
    size_t n, ndirs;
    size_t cap; /* allocated */
    size_t max; /* files that fill it, at most cap (CLI_BATCH_FILES by default) */
    uint64_t bytes;
};

/* Room for cap files; 0 or -ENOMEM. */
int cli_batch_init(struct cli_batch *b, size_t cap);
void cli_batch_cleanup(struct cli_batch *b);
/* R-RECV-4, R-RECV-5: the files a batch may hold against a server remembering acks. */
size_t cli_batch_files(int acks);

/*
 * Adds a verified part file (mode and mtime set) to the batch, taking fd.
 * The caller flushes first when cli_batch_full(). 0, or -errno with fd
 * closed and nothing added.
 */
int cli_batch_add(struct cli_batch *b, const struct cli_dir *dir, int fd, const char *part,
                  const char *name, const char *cid, const uint8_t tid[static FERRY_TID_LEN],
                  uint64_t seq, uint64_t size, int recorded, void *arg);
/* Whether the batch must be flushed before another file joins it. */
int cli_batch_full(const struct cli_batch *b);

/*
 * Called once per file after a flush: rc 0, the file is durable in place;
 * else -errno and `stage` says which step failed (its part file is gone,
 * unless only its folder's fsync failed).
 */
typedef void (*cli_batch_done_cb)(void *ctx, struct cli_batch_ent *e, int rc, const char *stage);

/*
 * R-RECV-4: makes every file of the batch durable (one syncfs per file
 * system from CLI_BATCH_SYNCFS_MIN files, else an fdatasync each), renames
 * each into place and fsyncs each folder once. System calls only, on b
 * only: it may run on another thread (cli_flusher).
 */
void cli_batch_sync(struct cli_batch *b);
/*
 * After cli_batch_sync, on the thread that owns the state database:
 * forgets the records of part files gone, reports every file to done, in
 * order, and empties the batch.
 */
void cli_batch_done(struct cli_batch *b, cli_batch_done_cb done, void *ctx);

/* A thread that runs cli_batch_sync while the caller receives the next batch. */
struct cli_flusher;
int cli_flusher_new(struct cli_flusher **out);
/* Waits for a batch being synced, then stops the thread. */
void cli_flusher_free(struct cli_flusher *f);
/* Starts cli_batch_sync(b); b is the thread's until cli_flusher_ready says 1. */
void cli_flusher_start(struct cli_flusher *f, struct cli_batch *b);
/*
 * 1 once the batch last started is synced (then cli_batch_done is the
 * caller's to run), 0 while it is not or when none was started; with wait,
 * blocks until it is.
 */
int cli_flusher_ready(struct cli_flusher *f, int wait);

#endif
