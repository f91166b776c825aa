/*
 * Part files of downloads (R-RECV-1, R-RECV-2, R-RECV-6): where a download
 * is written before it is verified and placed, what a rerun may trust of
 * it, and whether it fits on the disk at all (ferry/part.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/err.h"
#include "ferry/part.h"
#include "ferry/state.h"
#include "part_int.h"

void ferry_part_name(const char *cid, const char *rel, char out[static FERRY_PART_NAME_LEN])
{
    struct ferry_sha256 h;
    char full[FERRY_CID_LEN + 1];

    /* A slash-free digest: the part file sits beside the destination. */
    if (ferry_sha256_init(&h) == 0 && ferry_sha256_update(&h, cid, strlen(cid) + 1) == 0 &&
        ferry_sha256_update(&h, rel, strlen(rel)) == 0 && ferry_sha256_final_cid(&h, full) == 0) {
        snprintf(out, FERRY_PART_NAME_LEN, ".ferry-%.16s.part", full + 7);
        return;
    }
    snprintf(out, FERRY_PART_NAME_LEN, ".ferry-0000000000000000.part");
}

int ferry_part_identify(int fd, struct ferry_part_id *id)
{
    struct statx sx;
    unsigned int gen = 0;

    *id = (struct ferry_part_id){0};
    if (statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &sx) != 0)
        return -errno;
    id->dev = (uint64_t)makedev(sx.stx_dev_major, sx.stx_dev_minor);
    id->ino = sx.stx_ino;
    if (sx.stx_mask & STATX_BTIME)
        id->born = (int64_t)sx.stx_btime.tv_sec * 1000000000 + sx.stx_btime.tv_nsec;
    else if (ioctl(fd, FS_IOC_GETVERSION, &gen) == 0)
        id->born = gen;
    return 0;
}

int ferry_part_same(const struct ferry_part_id *a, const struct ferry_part_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->born == b->born;
}

/* R-RECV-1: a plain file of ours with one link, or a planted name. */
static int part_check(int fd, struct stat *st)
{
    if (fstat(fd, st) != 0)
        return -errno;
    if (!S_ISREG(st->st_mode) || st->st_uid != geteuid() || st->st_nlink != 1)
        return -EPERM;
    return 0;
}

int ferry_part_open(int dirfd, const char *name, struct ferry_part_id *id)
{
    struct stat st;
    int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    int rc;

    if (fd < 0)
        return errno == ELOOP ? -EPERM : -errno; /* ELOOP: a symlink in our place */
    if ((rc = part_check(fd, &st)) != 0 || (rc = ferry_part_identify(fd, id)) != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int ferry_part_create(int dirfd, const char *name, unsigned mode, int *fresh)
{
    struct ferry_part_id id;
    int fd;

    *fresh = 1;
    /* O_EXCL: a new inode of ours, one link, nothing planted (a symlink is EEXIST too). */
    fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    if (fd >= 0 || errno != EEXIST)
        return fd >= 0 ? fd : -errno;
    *fresh = 0;
    /* Left by an earlier run, or planted: checked as any part file is. */
    if ((fd = ferry_part_open(dirfd, name, &id)) < 0)
        return fd;
    if (ftruncate(fd, 0) != 0 || fchmod(fd, (mode_t)mode) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int ferry_part_stat(int dirfd, const char *name, struct ferry_part_id *id, uint64_t *size,
                    uint64_t *allocated)
{
    struct stat st;
    int fd, rc;

    *size = *allocated = 0;
    /* Opened, not stat'ed by name, so the identity is taken as ferry_part_open takes it. */
    fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? -EPERM : -errno;
    if ((rc = part_check(fd, &st)) == 0 && (rc = ferry_part_identify(fd, id)) == 0) {
        *size = (uint64_t)st.st_size;
        *allocated = (uint64_t)st.st_blocks * 512;
    }
    close(fd);
    return rc;
}

int ferry_part_key(int dirfd, uint64_t *dev, uint64_t *ino)
{
    struct stat ds;

    if (fstat(dirfd, &ds) != 0)
        return -errno;
    *dev = (uint64_t)ds.st_dev;
    *ino = (uint64_t)ds.st_ino;
    return 0;
}

/* R-RECV-2: the resume records live in the state store (schema in src/lib/store/state.c). */
int ferry__part_stmt(struct ferry_state *state, int dirfd, const char *part, const char *sql,
                     sqlite3_stmt **st)
{
    sqlite3 *db = ferry_state_db(state);
    uint64_t dev, ino;

    *st = NULL;
    if (db == NULL || ferry_part_key(dirfd, &dev, &ino) != 0 ||
        sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        sqlite3_finalize(*st);
        *st = NULL;
        return FERRY_EINTERNAL;
    }
    sqlite3_bind_int64(*st, 1, (sqlite3_int64)dev);
    sqlite3_bind_int64(*st, 2, (sqlite3_int64)ino);
    sqlite3_bind_text(*st, 3, part, -1, SQLITE_TRANSIENT);
    return 0;
}

uint64_t ferry_part_durable(struct ferry_state *state, int dirfd, const char *part, const char *cid,
                            const struct ferry_part_id *id)
{
    static const char sql[] = "SELECT cid, durable, fino, fborn FROM partials"
                              " WHERE dev = ?1 AND ino = ?2 AND name = ?3";
    static const char sql_del[] = "DELETE FROM partials WHERE dev = ?1 AND ino = ?2 AND name = ?3";
    sqlite3_stmt *st = NULL;
    uint64_t v = 0;
    int stale = 0;

    if (ferry__part_stmt(state, dirfd, part, sql, &st) != 0 || sqlite3_step(st) != SQLITE_ROW)
        goto out;
    /* R-RECV-2: a record of another inode than the part file now there is not its record. */
    if ((uint64_t)sqlite3_column_int64(st, 2) != id->ino ||
        sqlite3_column_int64(st, 3) != id->born) {
        stale = 1;
        goto out;
    }
    if (sqlite3_column_int64(st, 1) > 0 &&
        strcmp((const char *)sqlite3_column_text(st, 0), cid) == 0)
        v = (uint64_t)sqlite3_column_int64(st, 1);
out:
    sqlite3_finalize(st);
    /* Only this record: a chunk bitmap of the same name has its own binding to check. */
    if (stale && ferry__part_stmt(state, dirfd, part, sql_del, &st) == 0)
        sqlite3_step(st);
    if (stale)
        sqlite3_finalize(st);
    return v;
}

int ferry__part_step_record(sqlite3_stmt *st)
{
    sqlite3 *db = sqlite3_db_handle(st);
    int rc;

    /*
     * R-RECV-2: a resume record is evidence to check again, never the
     * truth, and is written only after the bytes it names are durable, so
     * losing the newest one to a power failure costs only fetching those
     * bytes again. It is committed without a sync of its own (durable with
     * the next full commit or checkpoint): the sync took the receiving
     * thread 10 ms for every 32 MiB step of a download. The setting is
     * the handle's: the span keeps other threads' commits out of it.
     */
    ferry_state_enter(db);
    sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : FERRY_EINTERNAL;
    sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    ferry_state_leave(db);
    return rc;
}

int ferry_part_record(struct ferry_state *state, int dirfd, const char *part, const char *cid,
                      const struct ferry_part_id *id, uint64_t durable)
{
    static const char sql[] = "INSERT OR REPLACE INTO partials(dev, ino, name, cid, durable, fino,"
                              " fborn) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = ferry__part_stmt(state, dirfd, part, sql, &st)) == 0) {
        sqlite3_bind_text(st, 4, cid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)durable);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)id->ino);
        sqlite3_bind_int64(st, 7, id->born);
        rc = ferry__part_step_record(st);
    }
    sqlite3_finalize(st);
    return rc;
}

void ferry_part_forget(struct ferry_state *state, int dirfd, const char *part)
{
    static const char *const sql[] = {
        "DELETE FROM partials WHERE dev = ?1 AND ino = ?2 AND name = ?3",
        "DELETE FROM partial_chunks WHERE dev = ?1 AND ino = ?2 AND name = ?3",
    };
    sqlite3_stmt *st;
    size_t i;

    for (i = 0; i < sizeof(sql) / sizeof(sql[0]); i++) {
        if (ferry__part_stmt(state, dirfd, part, sql[i], &st) == 0)
            sqlite3_step(st);
        sqlite3_finalize(st);
    }
}

int ferry_part_space_fits(uint64_t need, uint64_t avail, uint64_t total)
{
    uint64_t margin = total / 32 < FERRY_PART_FREE_MARGIN ? total / 32 : FERRY_PART_FREE_MARGIN;

    if (avail < margin || need > avail - margin)
        return -ENOSPC;
    return 0;
}

int ferry_part_space_reserve(struct ferry_part_space *sp, int dirfd, uint64_t dev, uint64_t need,
                             uint64_t *avail)
{
    struct statvfs sv;
    uint64_t left;
    int fresh = 0;

    *avail = 0;
    for (;;) {
        if (!sp->valid || sp->dev != dev || sp->since >= FERRY_PART_SPACE_RECHECK ||
            need > FERRY_PART_SPACE_RECHECK - sp->since || fresh) {
            if (fstatvfs(dirfd, &sv) != 0) {
                sp->valid = 0;
                return -errno;
            }
            sp->valid = 1;
            sp->dev = dev;
            sp->avail = (uint64_t)sv.f_bavail * sv.f_frsize;
            sp->avail = sp->avail > sp->unwritten ? sp->avail - sp->unwritten : 0;
            sp->total = (uint64_t)sv.f_blocks * sv.f_frsize;
            sp->since = 0;
            fresh = 1;
        }
        left = sp->avail > sp->since ? sp->avail - sp->since : 0;
        *avail = left;
        if (ferry_part_space_fits(need, left, sp->total) == 0) {
            sp->since += need;
            return 0;
        }
        /* Refused only on a fresh reading: space may have been freed meanwhile. */
        if (fresh)
            return -ENOSPC;
        fresh = 1;
    }
}

int ferry_part_space_check(int dirfd, uint64_t need, uint64_t *avail)
{
    struct statvfs sv;

    *avail = 0;
    if (fstatvfs(dirfd, &sv) != 0)
        return -errno;
    /* f_bavail: what an unprivileged writer may use, the reserve for root left out. */
    *avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    return ferry_part_space_fits(need, *avail, (uint64_t)sv.f_blocks * sv.f_frsize);
}
