/*
 * The piece store (ferry/piece.h): a file received by chunks (R-CHUNK-15,
 * R-CHUNK-16). It takes what is already on the local disk, checks every
 * chunk that arrives before writing it, remembers which chunks are durable
 * so that a rerun after a kill fetches only what is missing, hands held
 * chunks to another reader re-verified, and places the file only once
 * every byte of the part file was read back and checked (R-RECV-3).
 *
 * The local index (ferry/index.h) is called here directly rather than
 * through a function the caller passes in: it is records in the same state
 * store the piece store already holds for its bitmap, every caller would
 * pass the same lookups, and the upload side needs them from the library
 * too. The state store is the one handle both go through.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/err.h"
#include "ferry/index.h"
#include "ferry/manifest.h"
#include "ferry/part.h"
#include "ferry/piece.h"
#include "part_int.h"

/* Chunks kept at most: 8 MiB of 64 KiB ones, and short last chunks besides. */
#define PIECE_STAGE_CHUNKS 256

/* A chunk of the old file, found by its hash. */
struct have {
    uint8_t hash[32];
    uint64_t off;
    uint32_t len;
};

struct ferry_piece {
    struct ferry_state *st; /* borrowed: bitmap and prefix records, the local index */
    char cid[FERRY_CID_LEN + 1];
    uint64_t size;
    uint8_t *list; /* the encoded list, list_len bytes once complete */
    size_t list_len, list_got;
    size_t nent;
    uint64_t *offs;                 /* each entry's offset in the file */
    uint8_t *done;                  /* one byte per entry: 0 missing, 1 written, 2 durable */
    size_t ndone;                   /* entries with done != 0 */
    int dirfd;                      /* the destination's folder (owned) */
    char part[FERRY_PART_NAME_LEN]; /* the part file's name there */
    int fd;                         /* the part file */
    struct ferry_part_id id;        /* its identity, which its bitmap record is bound to */
    /* The chunk frames being received: the next index expected and its bytes. */
    uint32_t (*want)[2];
    size_t nwant, wi;
    uint32_t cur, cur_pos;
    uint8_t *buf; /* FERRY_CHUNK_MAX bytes */
    /* ferry_piece_stage: verified chunks kept for ferry_piece_write, in order. */
    int staging;
    uint8_t *stage; /* FERRY_PIECE_STAGE bytes */
    size_t stage_len;
    uint32_t sidx[PIECE_STAGE_CHUNKS];
    size_t nstaged;
    uint64_t unsynced;
    uint64_t kept;   /* bytes a partial download already held */
    uint64_t reused; /* bytes taken from the old file */
    uint64_t need;   /* bytes the part file still had to take (R-RECV-6) */
    uint64_t avail;  /* free space seen when that was checked */
};

/* Entry i's length; i < nent, or below list_got / 36 before the plan. */
static uint32_t ent_len(const struct ferry_piece *p, size_t i)
{
    struct ferry_chunk_ent e;

    ferry_chunk_ent_decode(p->list + i * FERRY_CHUNK_ENT_LEN, &e);
    return e.len;
}

/* Entry i's SHA-256 in the list. */
static const uint8_t *ent_hash(const struct ferry_piece *p, size_t i)
{
    return p->list + i * FERRY_CHUNK_ENT_LEN + 4;
}

/* The atime and mtime pair futimens(2) wants for a file time in ns. */
static void mtime_ts(int64_t ns, struct timespec ts[2])
{
    ts[0].tv_sec = ts[1].tv_sec = (time_t)(ns / 1000000000);
    /* Before 1970 only whole seconds: a negative nanosecond part is invalid. */
    ts[0].tv_nsec = ts[1].tv_nsec = ns < 0 ? 0 : (long)(ns % 1000000000);
}

int ferry_piece_new(struct ferry_state *st, const char *cid, uint64_t size, uint64_t list_len,
                    struct ferry_piece **out)
{
    struct ferry_piece *p;

    *out = NULL;
    /* R-CHUNK-15: the list's length is checked against its cap before any allocation. */
    if (list_len > FERRY_CHUNK_LIST_MAX || list_len % FERRY_CHUNK_ENT_LEN != 0 ||
        strncmp(cid, FERRY_CID_CHUNKS_PREFIX, 7) != 0)
        return FERRY_EPROTO;
    if ((p = ferry_calloc(1, sizeof(*p))) == NULL)
        return -ENOMEM;
    p->st = st;
    p->dirfd = p->fd = -1;
    snprintf(p->cid, sizeof(p->cid), "%s", cid);
    p->size = size;
    p->list_len = (size_t)list_len;
    if ((p->list = ferry_malloc(p->list_len > 0 ? p->list_len : 1)) == NULL) {
        ferry_free(p);
        return -ENOMEM;
    }
    *out = p;
    return 0;
}

void ferry_piece_free(struct ferry_piece *p)
{
    if (p == NULL)
        return;
    if (p->fd >= 0)
        close(p->fd);
    if (p->dirfd >= 0)
        close(p->dirfd);
    ferry_free(p->list);
    ferry_free(p->offs);
    ferry_free(p->done);
    ferry_free(p->want);
    ferry_free(p->buf);
    ferry_free(p->stage);
    ferry_free(p);
}

static int sync_written(struct ferry_piece *p);

void ferry_piece_stage(struct ferry_piece *p)
{
    p->staging = 1;
}

/*
 * Writes the chunks kept by ferry_piece_chunk. On an error the chunks not
 * written are missing again, so no sync marks them durable.
 */
static int write_stage(struct ferry_piece *p)
{
    size_t i, off = 0;
    ssize_t n;
    int rc = 0;

    for (i = 0; i < p->nstaged; i++) {
        uint32_t k = p->sidx[i], len = ent_len(p, k);
        if (rc == 0) {
            do {
                n = pwrite(p->fd, p->stage + off, len, (off_t)p->offs[k]);
            } while (n < 0 && errno == EINTR);
            if (n != (ssize_t)len)
                rc = n < 0 ? -errno : -EIO;
        }
        if (rc != 0 && p->done[k] == FERRY_PIECE_WRITTEN) {
            p->done[k] = FERRY_PIECE_MISSING;
            p->ndone--;
        }
        off += len;
    }
    p->stage_len = p->nstaged = 0;
    return rc;
}

int ferry_piece_write(struct ferry_piece *p)
{
    int rc;

    if ((rc = write_stage(p)) != 0)
        return rc;
    /* A downloaded chunk counts as done only once fdatasync'd (R-CHUNK-16). */
    if (p->unsynced >= FERRY_PIECE_SYNC_STEP)
        return sync_written(p);
    return 0;
}

int ferry_piece_list_data(struct ferry_piece *p, uint64_t off, const uint8_t *b, size_t n)
{
    if (off != p->list_got || n > p->list_len - p->list_got)
        return FERRY_EPROTO;
    if (n > 0)
        memcpy(p->list + p->list_got, b, n);
    p->list_got += n;
    return 0;
}

uint64_t ferry_piece_reused(const struct ferry_piece *p, uint64_t *kept)
{
    *kept = p->kept;
    return p->reused;
}

int ferry_piece_fd(const struct ferry_piece *p)
{
    return p->fd;
}

/* Records which chunks are durable; called only right after an fdatasync. */
static int bitmap_save(struct ferry_piece *p)
{
    static const char sql[] =
        "INSERT OR REPLACE INTO partial_chunks(dev, ino, name, cid, bitmap, fino, fborn)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    sqlite3_stmt *st = NULL;
    uint8_t *bits = NULL;
    size_t i, nb = (p->nent + 7) / 8;
    int rc = FERRY_EINTERNAL;

    if ((bits = ferry_calloc(nb > 0 ? nb : 1, 1)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < p->nent; i++)
        if (p->done[i] == FERRY_PIECE_DURABLE)
            bits[i / 8] |= (uint8_t)(1u << (i % 8));
    if (ferry__part_stmt(p->st, p->dirfd, p->part, sql, &st) != 0)
        goto out;
    sqlite3_bind_text(st, 4, p->cid, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, bits, (int)nb, SQLITE_STATIC);
    /* R-RECV-2: bound to this inode; a part file deleted or re-created loses it. */
    sqlite3_bind_int64(st, 6, (sqlite3_int64)p->id.ino);
    sqlite3_bind_int64(st, 7, p->id.born);
    rc = ferry__part_step_record(st);
out:
    sqlite3_finalize(st);
    ferry_free(bits);
    return rc;
}

/*
 * Marks the chunks a saved bitmap of this content calls durable, if the
 * bitmap is this part file's (R-RECV-2): one recorded for an inode that is
 * gone (the part file deleted, replaced, or re-created after a crash) is
 * deleted, since the chunks it names are not in this file.
 */
static void bitmap_load(struct ferry_piece *p)
{
    static const char sql[] = "SELECT bitmap, fino, fborn FROM partial_chunks"
                              " WHERE dev = ?1 AND ino = ?2 AND name = ?3 AND cid = ?4";
    static const char sql_del[] =
        "DELETE FROM partial_chunks WHERE dev = ?1 AND ino = ?2 AND name = ?3";
    sqlite3_stmt *st = NULL;
    const uint8_t *bits;
    size_t i, nb;
    int stale = 0;

    if (ferry__part_stmt(p->st, p->dirfd, p->part, sql, &st) != 0)
        goto out;
    sqlite3_bind_text(st, 4, p->cid, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        goto out;
    if ((uint64_t)sqlite3_column_int64(st, 1) != p->id.ino ||
        sqlite3_column_int64(st, 2) != p->id.born) {
        stale = 1;
        goto out;
    }
    bits = sqlite3_column_blob(st, 0);
    nb = (size_t)sqlite3_column_bytes(st, 0);
    /* A bitmap of another length is not this list's: ignore it. */
    if (bits == NULL || nb != (p->nent + 7) / 8)
        goto out;
    for (i = 0; i < p->nent; i++)
        if ((bits[i / 8] >> (i % 8)) & 1) {
            p->done[i] = FERRY_PIECE_DURABLE;
            p->ndone++;
            p->kept += ent_len(p, i);
        }
out:
    sqlite3_finalize(st);
    if (stale && ferry__part_stmt(p->st, p->dirfd, p->part, sql_del, &st) == 0)
        sqlite3_step(st);
    if (stale)
        sqlite3_finalize(st);
}

int ferry_piece_has_bitmap(struct ferry_state *state, int dirfd, const char *part, const char *cid,
                           const struct ferry_part_id *id)
{
    static const char sql[] = "SELECT fino, fborn FROM partial_chunks"
                              " WHERE dev = ?1 AND ino = ?2 AND name = ?3 AND cid = ?4";
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (ferry__part_stmt(state, dirfd, part, sql, &st) == 0) {
        sqlite3_bind_text(st, 4, cid, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW &&
                (uint64_t)sqlite3_column_int64(st, 0) == id->ino &&
                sqlite3_column_int64(st, 1) == id->born;
    }
    sqlite3_finalize(st);
    return found;
}

/* Makes every written chunk durable, then records it so (R-CHUNK-16). */
static int sync_written(struct ferry_piece *p)
{
    size_t i;
    int any = 0, rc;

    /* What is kept in memory is written first: the sync covers it. */
    if (p->nstaged > 0 && (rc = write_stage(p)) != 0)
        return rc;

    for (i = 0; i < p->nent; i++)
        any |= p->done[i] == FERRY_PIECE_WRITTEN;
    p->unsynced = 0;
    if (!any)
        return 0;
    if (fdatasync(p->fd) != 0)
        return -errno; /* an fsync error is fatal for this write */
    for (i = 0; i < p->nent; i++)
        if (p->done[i] == FERRY_PIECE_WRITTEN)
            p->done[i] = FERRY_PIECE_DURABLE;
    /* The bitmap is a cache of durable facts: losing it costs a refetch only. */
    bitmap_save(p);
    return 0;
}

/* Reads len bytes at off, checks them against hash, writes them at dst. */
static int copy_chunk(struct ferry_piece *p, int from, uint64_t off, uint32_t len,
                      const uint8_t hash[32], uint64_t dst)
{
    uint8_t h[32];
    ssize_t n;

    do {
        n = pread(from, p->buf, len, (off_t)off);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len)
        return 0; /* shorter than it was: not a source after all */
    ferry_sha256_buf(p->buf, len, h);
    if (memcmp(h, hash, 32) != 0)
        return 0;
    if (from == p->fd && off == dst)
        return 1; /* already in place */
    do {
        n = pwrite(p->fd, p->buf, len, (off_t)dst);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 1 : -(n < 0 ? errno : EIO);
}

static int have_cmp(const void *a, const void *b)
{
    return memcmp(((const struct have *)a)->hash, ((const struct have *)b)->hash, 32);
}

struct cut {
    struct have *v;
    size_t n, cap;
    /* While the old file is cut: its chunks go straight to where the new list wants them. */
    struct ferry_piece *p;
    struct ferry_cdc_stream *cs;
    struct have *need; /* the missing entries by hash; off is the entry's index */
    size_t nneed;
};

/*
 * Writes a chunk just cut from the old file to every missing entry with its
 * hash: the bytes were hashed a moment ago, so they need no second read.
 */
static int place_cut(struct cut *c, const struct ferry_chunk_ent *e)
{
    struct ferry_piece *p = c->p;
    const uint8_t *bytes = ferry_cdc_stream_bytes(c->cs);
    struct have key, *h;
    size_t i, idx;
    ssize_t n;

    memcpy(key.hash, e->hash, 32);
    if ((h = bsearch(&key, c->need, c->nneed, sizeof(*c->need), have_cmp)) == NULL)
        return 0;
    for (i = (size_t)(h - c->need); i > 0 && have_cmp(&c->need[i - 1], &key) == 0; i--)
        ;
    for (; i < c->nneed && have_cmp(&c->need[i], &key) == 0; i++) {
        idx = (size_t)c->need[i].off;
        if (p->done[idx] || c->need[i].len != e->len)
            continue;
        do {
            n = pwrite(p->fd, bytes, e->len, (off_t)p->offs[idx]);
        } while (n < 0 && errno == EINTR);
        if (n != (ssize_t)e->len)
            return n < 0 ? -errno : -EIO;
        p->done[idx] = FERRY_PIECE_WRITTEN;
        p->ndone++;
        p->reused += e->len;
    }
    return 0;
}

static int cut_one(void *arg, uint64_t off, const struct ferry_chunk_ent *e)
{
    struct cut *c = arg;
    struct have *nv;
    int rc;

    if (c->cs != NULL && c->nneed > 0 && (rc = place_cut(c, e)) != 0)
        return rc;

    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 256;
        if ((nv = ferry_realloc(c->v, ncap * sizeof(*nv))) == NULL)
            return -ENOMEM;
        c->v = nv;
        c->cap = ncap;
    }
    memcpy(c->v[c->n].hash, e->hash, 32);
    c->v[c->n].off = off;
    c->v[c->n].len = e->len;
    c->n++;
    return 0;
}

/*
 * The old file's chunks: from the local index when its identity is known
 * (no read), else by cutting it with R-CHUNK-1, recording the result.
 */
static int old_chunks(int fd, const struct stat *st, struct cut *c)
{
    struct ferry_index_id id;
    struct ferry_cdc_stream *cs = NULL;
    struct ferry_chunk_ent e;
    struct timespec now;
    uint8_t *list = NULL;
    size_t len = 0, i;
    uint64_t off = 0;
    int64_t recorded;
    ssize_t n;
    int rc;

    ferry_index_id_from_stat(&id, st);
    if (ferry_index_get(c->p->st, &id, &list, &len) == 0) {
        for (i = 0; i + FERRY_CHUNK_ENT_LEN <= len; i += FERRY_CHUNK_ENT_LEN) {
            ferry_chunk_ent_decode(list + i, &e);
            if ((rc = cut_one(c, off, &e)) != 0)
                break;
            off += e.len;
        }
        ferry_free(list);
        return 0;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    recorded = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    if ((rc = ferry_cdc_stream_new(cut_one, c, &cs)) != 0)
        return rc;
    c->cs = cs;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        size_t room;
        uint8_t *w = ferry_cdc_stream_space(cs, &room);

        /* Straight into the chunker; a live stream has room for a chunk at least. */
        if (w == NULL) {
            rc = FERRY_EINTERNAL;
            goto out;
        }
        do {
            n = pread(fd, w, room < FERRY_CHUNK_MAX ? room : FERRY_CHUNK_MAX, (off_t)off);
        } while (n < 0 && errno == EINTR);
        if (n <= 0)
            break;
        if ((rc = ferry_cdc_stream_commit(cs, (size_t)n)) != 0)
            goto out;
        off += (uint64_t)n;
    }
    if (n < 0 || (rc = ferry_cdc_stream_finish(cs)) != 0) {
        rc = n < 0 ? -errno : rc;
        goto out;
    }
    /* Worth keeping: the next put or get of this file reads nothing. */
    if (off == (uint64_t)st->st_size &&
        (list = ferry_malloc(c->n * FERRY_CHUNK_ENT_LEN + 1)) != NULL) {
        for (i = 0; i < c->n; i++) {
            memcpy(e.hash, c->v[i].hash, 32);
            e.len = c->v[i].len;
            ferry_chunk_ent_encode(list + i * FERRY_CHUNK_ENT_LEN, &e);
        }
        ferry_index_put(c->p->st, &id, recorded, list, c->n * FERRY_CHUNK_ENT_LEN);
        ferry_free(list);
    }
    rc = 0;
out:
    c->cs = NULL;
    ferry_cdc_stream_free(cs);
    return rc;
}

/* Copies every missing chunk the old file holds into the part file. */
static int take_old(struct ferry_piece *p, const char *name)
{
    struct cut c = {0};
    struct have key, *h;
    struct stat st;
    size_t i;
    int fd, rc = 0, r;

    fd = openat(p->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0; /* no old file, or not one we may read: nothing to reuse */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)FERRY_CHUNK_MIN)
        goto out;
    /* The missing entries, by hash, for chunks to land as the old file is cut. */
    if ((c.need = ferry_malloc((p->nent + 1) * sizeof(*c.need))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < p->nent; i++) {
        if (p->done[i])
            continue;
        memcpy(c.need[c.nneed].hash, ent_hash(p, i), 32);
        c.need[c.nneed].off = i;
        c.need[c.nneed].len = ent_len(p, i);
        c.nneed++;
    }
    qsort(c.need, c.nneed, sizeof(*c.need), have_cmp);
    c.p = p;
    if ((rc = old_chunks(fd, &st, &c)) != 0 || c.n == 0)
        goto out;
    qsort(c.v, c.n, sizeof(*c.v), have_cmp);
    for (i = 0; i < p->nent && rc == 0; i++) {
        if (p->done[i])
            continue;
        memcpy(key.hash, ent_hash(p, i), 32);
        if ((h = bsearch(&key, c.v, c.n, sizeof(*c.v), have_cmp)) == NULL ||
            h->len != ent_len(p, i))
            continue;
        /* Each copied chunk is hashed again: the old file may be changing. */
        if ((r = copy_chunk(p, fd, h->off, h->len, key.hash, p->offs[i])) < 0) {
            rc = r;
        } else if (r == 1) {
            p->done[i] = FERRY_PIECE_WRITTEN;
            p->ndone++;
            p->reused += h->len;
        }
    }
out:
    ferry_free(c.need);
    ferry_free(c.v);
    close(fd);
    return rc;
}

/* Chunks inside the durable prefix a streamed download left (R-CHUNK-14). */
static int take_prefix(struct ferry_piece *p, uint64_t durable)
{
    size_t i;
    int r;

    for (i = 0; i < p->nent && p->offs[i] + ent_len(p, i) <= durable; i++) {
        if (p->done[i])
            continue;
        if ((r = copy_chunk(p, p->fd, p->offs[i], ent_len(p, i), ent_hash(p, i), p->offs[i])) < 0)
            return r;
        if (r == 1) {
            p->done[i] = FERRY_PIECE_WRITTEN;
            p->ndone++;
            p->kept += ent_len(p, i);
        }
    }
    return 0;
}

/*
 * Whether the old file already is this content, by the local index alone:
 * same identity as when indexed (not racy) and the same list. Then its mode
 * and mtime are set and nothing is read or written.
 */
static int already_here(struct ferry_piece *p, int dirfd, const char *name, mode_t mode,
                        int64_t mtime_ns)
{
    struct timespec ts[2];
    struct ferry_index_id id;
    struct stat st;
    uint8_t *list = NULL;
    size_t len = 0;
    int fd, same = 0;

    fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == p->size) {
        ferry_index_id_from_stat(&id, &st);
        same = ferry_index_get(p->st, &id, &list, &len) == 0 && len == p->list_len &&
               memcmp(list, p->list, len) == 0;
    }
    ferry_free(list);
    if (same) {
        mtime_ts(mtime_ns, ts);
        if ((st.st_mode & 07777) != mode && fchmod(fd, mode) != 0)
            same = 0;
        if (same && futimens(fd, ts) != 0)
            same = 0;
        /* New attributes change ctime: index the file again so the next run still knows it. */
        if (same && fstat(fd, &st) == 0) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            ferry_index_id_from_stat(&id, &st);
            ferry_index_put(p->st, &id, (int64_t)now.tv_sec * 1000000000 + now.tv_nsec, p->list,
                            p->list_len);
        }
    }
    close(fd);
    return same;
}

int ferry_piece_plan(struct ferry_piece *p, int dirfd, const char *name, const char *part,
                     mode_t mode, int64_t mtime_ns)
{
    struct ferry_part_id old;
    struct stat st;
    uint64_t off = 0, psize, palloc, durable_prefix;
    size_t i;
    int rc;

    if (p->list_got != p->list_len || ferry_chunk_list_check(p->list, p->list_len, p->size) != 0)
        return FERRY_EPROTO;
    {
        char cid[FERRY_CID_LEN + 1];
        if (ferry_chunk_list_cid(p->list, p->list_len, cid) != 0 || strcmp(cid, p->cid) != 0)
            return FERRY_EPROTO; /* R-CHUNK-15: the list must be the one the id names */
    }
    p->nent = p->list_len / FERRY_CHUNK_ENT_LEN;
    if (already_here(p, dirfd, name, mode, mtime_ns))
        return FERRY_PIECE_ALREADY;
    /*
     * R-RECV-6: what the part file does not hold yet must fit, before the
     * part file is created or sized (the old file stays until the rename).
     */
    if (ferry_part_stat(dirfd, part, &old, &psize, &palloc) != 0)
        palloc = 0;
    p->need = p->size - (palloc < p->size ? palloc : p->size);
    if ((rc = ferry_part_space_check(dirfd, p->need, &p->avail)) != 0)
        return rc;
    if ((p->offs = ferry_calloc(p->nent + 1, sizeof(*p->offs))) == NULL ||
        (p->done = ferry_calloc(p->nent + 1, 1)) == NULL ||
        (p->buf = ferry_malloc(FERRY_CHUNK_MAX)) == NULL)
        return -ENOMEM;
    for (i = 0; i < p->nent; i++) {
        p->offs[i] = off;
        off += ent_len(p, i);
    }
    if ((p->dirfd = dup(dirfd)) < 0)
        return -errno;
    snprintf(p->part, sizeof(p->part), "%s", part);
    /* R-RECV-1: no symlink followed, ours alone: a planted part name cannot redirect us. */
    if ((p->fd = ferry_part_open(p->dirfd, part, &p->id)) < 0)
        return p->fd;
    if (fstat(p->fd, &st) != 0)
        return -errno;
    /* R-RECV-2: a streamed download's durable prefix counts only if recorded for this inode. */
    durable_prefix = ferry_part_durable(p->st, p->dirfd, part, p->cid, &p->id);
    if ((uint64_t)st.st_size < durable_prefix)
        durable_prefix = (uint64_t)st.st_size;
    if ((uint64_t)st.st_size != p->size && ftruncate(p->fd, (off_t)p->size) != 0)
        return -errno;
    bitmap_load(p);
    if ((rc = take_prefix(p, durable_prefix)) != 0 || (rc = take_old(p, name)) != 0)
        return rc;
    /* The chunk buffer is needed again only when chunks arrive. */
    ferry_free(p->buf);
    p->buf = NULL;
    return sync_written(p);
}

uint64_t ferry_piece_need(const struct ferry_piece *p, uint64_t *avail)
{
    *avail = p->avail;
    return p->need;
}

int ferry_piece_complete(const struct ferry_piece *p)
{
    return p->ndone == p->nent;
}

json_t *ferry_piece_ranges(struct ferry_piece *p)
{
    json_t *a = json_array(), *r;
    size_t i = 0, first, n = 0, nent = p->done != NULL ? p->nent : 0;

    ferry_free(p->want);
    p->want = NULL;
    p->nwant = p->wi = 0;
    if (a == NULL || (p->want = ferry_calloc(FERRY_DL_RANGES_MAX, sizeof(*p->want))) == NULL) {
        json_decref(a);
        return NULL;
    }
    /* At most FERRY_DL_RANGES_MAX runs per request; the rest in the next one. */
    while (i < nent && n < FERRY_DL_RANGES_MAX) {
        if (p->done[i]) {
            i++;
            continue;
        }
        for (first = i; i < nent && !p->done[i]; i++)
            ;
        p->want[n][0] = (uint32_t)first;
        p->want[n][1] = (uint32_t)(i - first);
        r = json_pack("[I, I]", (json_int_t)first, (json_int_t)(i - first));
        if (r == NULL || json_array_append_new(a, r) != 0) {
            json_decref(a);
            return NULL;
        }
        n++;
    }
    p->nwant = n;
    if (n > 0) {
        p->cur = p->want[0][0];
        p->cur_pos = 0;
    }
    return a;
}

int ferry_piece_chunk(struct ferry_piece *p, const struct ferry_chunk_frame *f, uint64_t *fresh)
{
    uint32_t len;
    uint8_t h[32];
    ssize_t n;
    int rc;

    *fresh = 0;
    /* R-CHUNK-16: chunks come in the order asked, each from offset 0. */
    if (p->wi >= p->nwant || f->index != p->cur || f->offset != p->cur_pos)
        return FERRY_EPROTO;
    if (p->buf == NULL && (p->buf = ferry_malloc(FERRY_CHUNK_MAX)) == NULL)
        return -ENOMEM;
    len = ent_len(p, p->cur);
    if (f->len > len - p->cur_pos)
        return FERRY_EPROTO;
    memcpy(p->buf + p->cur_pos, f->bytes, f->len);
    p->cur_pos += (uint32_t)f->len;
    if (p->cur_pos < len)
        return 0;
    ferry_sha256_buf(p->buf, len, h);
    if (memcmp(h, ent_hash(p, p->cur), 32) != 0)
        return FERRY_EHASH;
    if (!p->done[p->cur] && p->staging) {
        /* Kept: ferry_piece_write writes it, off the receiving thread. */
        if (p->stage == NULL && (p->stage = ferry_malloc(FERRY_PIECE_STAGE)) == NULL)
            return -ENOMEM;
        memcpy(p->stage + p->stage_len, p->buf, len);
        p->stage_len += len;
        p->sidx[p->nstaged++] = p->cur;
    } else if (!p->done[p->cur]) {
        do {
            n = pwrite(p->fd, p->buf, len, (off_t)p->offs[p->cur]);
        } while (n < 0 && errno == EINTR);
        if (n != (ssize_t)len)
            return n < 0 ? -errno : -EIO;
    }
    if (!p->done[p->cur]) {
        p->done[p->cur] = FERRY_PIECE_WRITTEN;
        p->ndone++;
        p->unsynced += len;
        *fresh = len;
    }
    /* Next: the following index of this run, or the next run's first. */
    p->cur_pos = 0;
    if (++p->cur == p->want[p->wi][0] + p->want[p->wi][1] && ++p->wi < p->nwant)
        p->cur = p->want[p->wi][0];
    if (p->staging)
        return p->unsynced >= FERRY_PIECE_SYNC_STEP || p->nstaged == PIECE_STAGE_CHUNKS ||
                       FERRY_PIECE_STAGE - p->stage_len < FERRY_CHUNK_MAX
                   ? FERRY_PIECE_FLUSH
                   : 0;
    /* A downloaded chunk counts as done only once fdatasync'd (R-CHUNK-16). */
    if (p->unsynced >= FERRY_PIECE_SYNC_STEP && (rc = sync_written(p)) != 0)
        return rc;
    return 0;
}

int ferry_piece_sync(struct ferry_piece *p)
{
    return sync_written(p);
}

/*
 * R-RECV-3: reads the part file back and hashes every chunk against the
 * list, which was checked against the content id: the bytes the rename is
 * about to publish are then the content, whatever a record claimed, a
 * concurrent writer did, or a bitmap outlived.
 */
static int verify_all(struct ferry_piece *p)
{
    uint8_t h[32];
    size_t i;
    ssize_t n;
    uint32_t len;

    if (p->buf == NULL && (p->buf = ferry_malloc(FERRY_CHUNK_MAX)) == NULL)
        return -ENOMEM;
    posix_fadvise(p->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (i = 0; i < p->nent; i++) {
        len = ent_len(p, i);
        do {
            n = pread(p->fd, p->buf, len, (off_t)p->offs[i]);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            return -errno;
        if (n != (ssize_t)len)
            return FERRY_EHASH; /* shorter than the list says: not the content */
        ferry_sha256_buf(p->buf, len, h);
        if (memcmp(h, ent_hash(p, i), 32) != 0)
            return FERRY_EHASH;
    }
    return 0;
}

int ferry_piece_place(struct ferry_piece *p, const char *name, mode_t mode, int64_t mtime_ns)
{
    struct timespec ts[2], now;
    struct ferry_index_id id;
    struct stat st;
    int64_t recorded;
    int rc;

    if (p->fd < 0 || p->done == NULL || p->ndone != p->nent)
        return FERRY_EINTERNAL;
    if ((rc = write_stage(p)) != 0)
        return rc;
    mtime_ts(mtime_ns, ts);
    if (fchmod(p->fd, mode) != 0 || futimens(p->fd, ts) != 0 || fdatasync(p->fd) != 0)
        return -errno;
    if ((rc = verify_all(p)) != 0)
        return rc;
    /* Every chunk on disk matched the list and the list matched the content id: it is the file. */
    if (renameat(p->dirfd, p->part, p->dirfd, name) != 0)
        return -errno;
    /* The rename is durable with the folder; without it a crash brings back the part file. */
    if (fsync(p->dirfd) != 0)
        return -errno;
    ferry_part_forget(p->st, p->dirfd, p->part);
    /* Indexed now, the next put or get of this file reads nothing (R-CHUNK-2's list). */
    clock_gettime(CLOCK_REALTIME, &now);
    recorded = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    if (fstat(p->fd, &st) == 0) {
        ferry_index_id_from_stat(&id, &st);
        ferry_index_put(p->st, &id, recorded, p->list, p->list_len);
    }
    return 0;
}

void ferry_piece_discard(struct ferry_piece *p)
{
    if (p->dirfd >= 0 && p->part[0] != '\0') {
        unlinkat(p->dirfd, p->part, 0);
        ferry_part_forget(p->st, p->dirfd, p->part);
    }
}

uint64_t ferry_piece_size(const struct ferry_piece *p)
{
    return p->size;
}

size_t ferry_piece_count(const struct ferry_piece *p)
{
    return p->done != NULL ? p->nent : 0;
}

size_t ferry_piece_held(const struct ferry_piece *p)
{
    return p->ndone;
}

int ferry_piece_state(const struct ferry_piece *p, size_t i)
{
    return i < ferry_piece_count(p) ? p->done[i] : FERRY_PIECE_MISSING;
}

int ferry_piece_has(const struct ferry_piece *p, size_t i)
{
    return ferry_piece_state(p, i) != FERRY_PIECE_MISSING;
}

uint32_t ferry_piece_len(const struct ferry_piece *p, size_t i)
{
    return i < ferry_piece_count(p) ? ent_len(p, i) : 0;
}

uint64_t ferry_piece_off(const struct ferry_piece *p, size_t i)
{
    return i < ferry_piece_count(p) ? p->offs[i] : 0;
}

ssize_t ferry_piece_read(struct ferry_piece *p, size_t i, uint8_t *buf, size_t cap)
{
    uint8_t h[32];
    uint32_t len;
    ssize_t n;
    int was;

    /* Only held chunks: a missing one may hold zeros or a stale run's bytes. */
    if (!ferry_piece_has(p, i))
        return FERRY_ENOTFOUND;
    len = ent_len(p, i);
    if (cap < len)
        return FERRY_ETOOBIG;
    /* Into the caller's buffer: p->buf may hold a chunk still arriving in frames. */
    do {
        n = pread(p->fd, buf, len, (off_t)p->offs[i]);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    /*
     * R-RECV-3's rule for another reader: the bytes were checked when they
     * were written, but the disk, or another writer of the part file, may
     * have changed them since. A reader gets only bytes that hash right
     * now; a chunk that does not is missing again, so the file asks for it
     * once more and its bitmap stops claiming it.
     */
    if (n == (ssize_t)len) {
        ferry_sha256_buf(buf, len, h);
        if (memcmp(h, ent_hash(p, i), 32) == 0)
            return (ssize_t)len;
    }
    was = p->done[i];
    p->done[i] = FERRY_PIECE_MISSING;
    p->ndone--;
    /* Fewer claims than before is always safe to record, synced or not. */
    if (was == FERRY_PIECE_DURABLE)
        bitmap_save(p);
    return FERRY_EHASH;
}
