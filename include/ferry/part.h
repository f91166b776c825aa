/*
 * Part files of downloads (docs/protocol.md 7.2, R-RECV): where a download
 * is written before it is verified and placed, the identity its resume
 * records are bound to, those records, and whether a download fits on the
 * disk at all.
 *
 * Owner: the caller owns every fd these calls return and the state store
 * (ferry/state.h) it passes in; a NULL state store means no records: none
 * is read (every lookup finds nothing) and none is written, which costs a
 * rerun its resume, never a wrong file. The calls block (file system,
 * SQLite): a program with an event loop runs them on pool threads.
 */
#ifndef FERRY_PART_H
#define FERRY_PART_H

#include <stdint.h>

struct ferry_state;

/* ".ferry-<16 hex>.part" and its NUL, with room to spare. */
#define FERRY_PART_NAME_LEN 48

/*
 * R-RECV-6: room a download leaves free on the destination's file system:
 * this much, or 1/32 of a file system too small for it (so that a small
 * file still fits on a small disk).
 */
#define FERRY_PART_FREE_MARGIN (16u << 20)

/*
 * R-RECV-2: which inode a part file is. The birth time (statx) tells a
 * file re-created at the same name, even with a recycled inode number;
 * where the file system has none, the inode generation does.
 */
struct ferry_part_id {
    uint64_t dev;
    uint64_t ino;
    int64_t born;
};

/* R-CHUNK-14: the part file's name, from the content id and the destination. */
void ferry_part_name(const char *cid, const char *rel, char out[static FERRY_PART_NAME_LEN]);
/*
 * R-RECV-1: opens (creating, 0600) the part file in dirfd without following
 * a link, and fills *id. Returns the fd, -EPERM when the name is taken by
 * something that is not a plain file of ours with one link (planted), or
 * another -errno.
 */
int ferry_part_open(int dirfd, const char *name, struct ferry_part_id *id);
/*
 * R-RECV-1, R-RECV-3: creates the part file of a download verified in
 * memory, with its final mode (after the umask), in dirfd and without
 * following a link. A new name costs one openat; a name already taken
 * goes the careful way of ferry_part_open (-EPERM when planted), and the
 * file is emptied and given the mode. *fresh is 1 when the file is new,
 * 0 when it was there (and may have records to forget). Returns the fd
 * (write only) or -errno.
 */
int ferry_part_create(int dirfd, const char *name, unsigned mode, int *fresh);
/*
 * The identity, size and allocated bytes of an existing part file, without
 * creating it: 0, -ENOENT, or -EPERM as for ferry_part_open.
 */
int ferry_part_stat(int dirfd, const char *name, struct ferry_part_id *id, uint64_t *size,
                    uint64_t *allocated);
/* The identity of an open part file: 0 or -errno. */
int ferry_part_identify(int fd, struct ferry_part_id *id);
int ferry_part_same(const struct ferry_part_id *a, const struct ferry_part_id *b);
/* The folder's identity, the first half of a record's key: 0 or -errno. */
int ferry_part_key(int dirfd, uint64_t *dev, uint64_t *ino);

/*
 * R-RECV-2: the durable prefix recorded for part file `part` of content cid
 * (R-CHUNK-14), 0 if none. A record of another identity than *id is
 * deleted and counts as none.
 */
uint64_t ferry_part_durable(struct ferry_state *st, int dirfd, const char *part, const char *cid,
                            const struct ferry_part_id *id);
/*
 * R-RECV-2: records the durable prefix of a part file (durable > 0), bound
 * to its identity, after the bytes it names were made durable. Committed
 * without a sync of its own; 0 or FERRY_EINTERNAL (a lost record costs a
 * refetch only).
 */
int ferry_part_record(struct ferry_state *st, int dirfd, const char *part, const char *cid,
                      const struct ferry_part_id *id, uint64_t durable);
/* R-RECV-2: forgets every record of a part file (removed, placed or not trusted). */
void ferry_part_forget(struct ferry_state *st, int dirfd, const char *part);

/*
 * R-RECV-6: 0 when `need` more bytes fit in dirfd's file system with the
 * margin left free, else -ENOSPC (or -errno); *avail is the free space.
 */
int ferry_part_space_check(int dirfd, uint64_t need, uint64_t *avail);
/* The rule itself: need bytes on a file system of total bytes with avail free. */
int ferry_part_space_fits(uint64_t need, uint64_t avail, uint64_t total);
/*
 * R-RECV-6 for many files: the free space of one file system as last read
 * (statvfs), less the bytes admitted since. It is read again once 8 MiB
 * were admitted since (FERRY_PART_SPACE_RECHECK), for another file system,
 * and before a refusal, so a file is refused only on a fresh reading;
 * 10,000 small files cost a few statvfs instead of one each. The caller
 * zeroes it before the first use.
 */
#define FERRY_PART_SPACE_RECHECK (8u << 20)
struct ferry_part_space {
    int valid;
    uint64_t dev;
    uint64_t avail, total; /* at the last reading */
    uint64_t since;        /* bytes admitted since it */
    /*
     * Bytes admitted before it but not written yet (small files held in
     * memory until their batch is flushed): a fresh reading does not show
     * them, so it counts them. The caller keeps it current.
     */
    uint64_t unwritten;
};
/*
 * Admits `need` bytes about to be written beneath dirfd (file system dev):
 * 0 and counts them, or -ENOSPC (or -errno from the reading) with *avail
 * the free space left.
 */
int ferry_part_space_reserve(struct ferry_part_space *sp, int dirfd, uint64_t dev, uint64_t need,
                             uint64_t *avail);

#endif
