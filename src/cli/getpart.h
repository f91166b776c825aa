/*
 * Part files of downloads (R-RECV): their names, confined opening, the
 * identity their resume records are bound to, and the free-space check.
 */
#ifndef FERRY_CLI_GETPART_H
#define FERRY_CLI_GETPART_H

#include <stdint.h>

struct sqlite3;
struct sqlite3_stmt;

/* ".ferry-<16 hex>.part" and its NUL, with room to spare. */
#define CLI_PART_NAME_LEN 48

/*
 * R-RECV-6: room a download leaves free on the destination's file system:
 * this much, or 1/32 of a file system too small for it (so that a small
 * file still fits on a small disk).
 */
#define CLI_FREE_MARGIN (16u << 20)

/*
 * R-RECV-2: which inode a part file is. The birth time (statx) tells a
 * file re-created at the same name, even with a recycled inode number;
 * where the file system has none, the inode generation does.
 */
struct cli_part_id {
    uint64_t dev;
    uint64_t ino;
    int64_t born;
};

/* R-CHUNK-14: the part file's name, from the content id and the destination. */
void cli_part_name(const char *cid, const char *rel, char out[static CLI_PART_NAME_LEN]);
/*
 * R-RECV-1: opens (creating, 0600) the part file in dirfd without following
 * a link, and fills *id. Returns the fd, -EPERM when the name is taken by
 * something that is not a plain file of ours with one link (planted), or
 * another -errno.
 */
int cli_part_open(int dirfd, const char *name, struct cli_part_id *id);
/*
 * The identity, size and allocated bytes of an existing part file, without
 * creating it: 0, -ENOENT, or -EPERM as for cli_part_open.
 */
int cli_part_stat(int dirfd, const char *name, struct cli_part_id *id, uint64_t *size,
                  uint64_t *allocated);
/* The identity of an open part file. */
int cli_part_identify(int fd, struct cli_part_id *id);
int cli_part_same(const struct cli_part_id *a, const struct cli_part_id *b);

/* The state store's handle (cli_state_db), or NULL when it cannot be opened. */
/*
 * Runs a prepared INSERT of a resume record, committed without a sync of
 * its own (R-RECV-2: a lost record costs a refetch, never a wrong file).
 * 0, or FERRY_EINTERNAL.
 */
int cli_part_step_record(struct sqlite3_stmt *st);
struct sqlite3 *cli_part_db(void);
/*
 * R-RECV-2: the durable prefix recorded for part file `part` of content cid
 * (R-CHUNK-14), 0 if none. A record of another identity than *id is
 * deleted, with the chunk record of R-CHUNK-16, and counts as none.
 */
uint64_t cli_part_durable(int dirfd, const char *part, const char *cid,
                          const struct cli_part_id *id);
/* Records the durable prefix of a part file (durable > 0). */
void cli_part_record(int dirfd, const char *part, const char *cid, const struct cli_part_id *id,
                     uint64_t durable);
/* R-RECV-2: forgets every record of a part file (removed, placed or not trusted). */
void cli_part_forget(int dirfd, const char *part);
/* The folder's identity, the first half of a record's key. */
int cli_part_key(int dirfd, uint64_t *dev, uint64_t *ino);
/* Prepares sql with ?1 ?2 ?3 bound to a part file's key; 0 or FERRY_EINTERNAL. */
struct sqlite3_stmt;
int cli_part_stmt(int dirfd, const char *part, const char *sql, struct sqlite3_stmt **st);

/*
 * R-RECV-1, R-RECV-3: creates the part file of a download verified in
 * memory, with its final mode (after the umask), in dirfd and without
 * following a link. A new name costs one openat; a name already taken
 * goes the careful way of cli_part_open (-EPERM when planted), and the
 * file is emptied and given the mode. *fresh is 1 when the file is new,
 * 0 when it was there (and may have records to forget). Returns the fd
 * or -errno.
 */
int cli_part_create(int dirfd, const char *name, unsigned mode, int *fresh);

/*
 * R-RECV-6: 0 when `need` more bytes fit in dirfd's file system with the
 * margin left free, else -ENOSPC (or -errno); *avail is the free space.
 */
int cli_space_check(int dirfd, uint64_t need, uint64_t *avail);
/*
 * R-RECV-6 for many files: the free space of one file system as last read
 * (statvfs), less the bytes admitted since. It is read again once 8 MiB
 * were admitted since (CLI_SPACE_RECHECK), for another file system, and
 * before a refusal, so a file is refused only on a fresh reading; 10,000
 * small files cost a few statvfs instead of one each.
 */
#define CLI_SPACE_RECHECK (8u << 20)
struct cli_space {
    int valid;
    uint64_t dev;
    uint64_t avail, total; /* at the last reading */
    uint64_t since;        /* bytes admitted since it */
};
/*
 * Admits `need` bytes about to be written beneath dirfd (file system dev):
 * 0 and counts them, or -ENOSPC (or -errno from the reading) with *avail
 * the free space left.
 */
int cli_space_reserve(struct cli_space *sp, int dirfd, uint64_t dev, uint64_t need,
                      uint64_t *avail);
/* The rule itself: need bytes on a file system of total bytes with avail free. */
int cli_space_fits(uint64_t need, uint64_t avail, uint64_t total);

#endif
