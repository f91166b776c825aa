/*
 * Durable placement of verified downloads in batches (R-RECV-4, R-RECV-5).
 * One fdatasync, rename and folder fsync per file made `get -r` of small
 * files twenty times slower than `put -r`: here many files are written,
 * made durable together, renamed, and each folder is fsync'd once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/batch.h"
#include "ferry/core.h"
#include "ferry/hub.h"
#include "ferry/part.h"
#include "ferry/path.h"

int ferry_dircache_get(struct ferry_dircache *c, int rootfd, const char *rel, int create,
                       const struct ferry_dir **out)
{
    struct ferry_dir *d;
    uint64_t dev, ino;
    size_t i;
    char *copy;
    int fd, rc;

    *out = NULL;
    for (i = 0; i < FERRY_DIRCACHE_SLOTS; i++) {
        d = &c->e[i];
        if (d->rel != NULL && d->rootfd == rootfd && strcmp(d->rel, rel) == 0) {
            *out = d;
            return 0;
        }
    }
    if (rel[0] == '\0')
        fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
    else if (create)
        fd = ferry_mkdirs_beneath(rootfd, rel);
    else
        fd = ferry_open_beneath(rootfd, rel, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return rel[0] == '\0' ? -errno : fd;
    if ((rc = ferry_part_key(fd, &dev, &ino)) != 0 || (copy = ferry_strdup(rel)) == NULL) {
        close(fd);
        return rc != 0 ? rc : -ENOMEM;
    }
    d = &c->e[c->next];
    c->next = (c->next + 1) % FERRY_DIRCACHE_SLOTS;
    if (d->rel != NULL) {
        close(d->fd);
        ferry_free(d->rel);
    }
    *d = (struct ferry_dir){.rootfd = rootfd, .rel = copy, .fd = fd, .dev = dev, .ino = ino};
    *out = d;
    return 0;
}

void ferry_dircache_clear(struct ferry_dircache *c)
{
    size_t i;

    for (i = 0; i < FERRY_DIRCACHE_SLOTS; i++) {
        if (c->e[i].rel != NULL) {
            close(c->e[i].fd);
            ferry_free(c->e[i].rel);
        }
        c->e[i] = (struct ferry_dir){.fd = -1};
    }
    c->next = 0;
}

int ferry_batch_init(struct ferry_batch *b, size_t cap, size_t held_cap)
{
    *b = (struct ferry_batch){
        .cap = cap, .max = cap < FERRY_BATCH_FILES ? cap : FERRY_BATCH_FILES, .bufcap = held_cap};
    b->e = ferry_calloc(cap, sizeof(*b->e));
    b->dirs = ferry_calloc(cap, sizeof(*b->dirs));
    b->rc = ferry_calloc(cap, sizeof(*b->rc));
    if (b->e == NULL || b->dirs == NULL || b->rc == NULL) {
        ferry_batch_cleanup(b);
        return -ENOMEM;
    }
    return 0;
}

void ferry_batch_cleanup(struct ferry_batch *b)
{
    ferry_free(b->e);
    ferry_free(b->dirs);
    ferry_free(b->rc);
    ferry_free(b->buf);
    *b = (struct ferry_batch){0};
}

size_t ferry_batch_files(int acks)
{
    size_t m = acks > FERRY_HUB_DOWNLOADS_MAX ? (size_t)(acks - FERRY_HUB_DOWNLOADS_MAX) / 2 : 0;

    return m < FERRY_BATCH_FILES       ? FERRY_BATCH_FILES
           : m > FERRY_BATCH_FILES_MAX ? FERRY_BATCH_FILES_MAX
                                       : m;
}

int ferry_batch_full(const struct ferry_batch *b)
{
    return b->n >= b->max || b->bytes >= FERRY_BATCH_BYTES || b->buflen >= FERRY_BATCH_HELD;
}

/* The next entry, with its folder; NULL (*rc set) when there is no room or no memory. */
static struct ferry_batch_ent *add_ent(struct ferry_batch *b, const struct ferry_dir *dir,
                                       const char *part, const char *name, const char *cid,
                                       const uint8_t tid[static FERRY_TID_LEN], int *rc)
{
    struct ferry_batch_ent *e;
    size_t k;

    /* Past its mark while the batch before it is being made durable; never past its room. */
    if (b->n >= b->cap) {
        *rc = -ENOBUFS; /* the caller flushes first */
        return NULL;
    }
    /* Each folder once: it is fsync'd once, after every rename into it. */
    for (k = 0; k < b->ndirs; k++)
        if (b->dirs[k].dev == dir->dev && b->dirs[k].ino == dir->ino)
            break;
    if (k == b->ndirs) {
        int dfd = fcntl(dir->fd, F_DUPFD_CLOEXEC, 0);
        if (dfd < 0) {
            *rc = -errno;
            return NULL;
        }
        b->dirs[k].fd = dfd;
        b->dirs[k].dev = dir->dev;
        b->dirs[k].ino = dir->ino;
        b->dirs[k].renamed = 0;
        b->ndirs++;
    }
    e = &b->e[b->n];
    *e = (struct ferry_batch_ent){.fd = -1, .dir = k};
    if ((e->name = ferry_strdup(name)) == NULL) {
        *rc = -ENOMEM;
        return NULL;
    }
    snprintf(e->part, sizeof(e->part), "%s", part);
    snprintf(e->cid, sizeof(e->cid), "%s", cid);
    memcpy(e->tid, tid, FERRY_TID_LEN);
    return e;
}

int ferry_batch_add(struct ferry_batch *b, const struct ferry_dir *dir, int fd, const char *part,
                    const char *name, const char *cid, const uint8_t tid[static FERRY_TID_LEN],
                    uint64_t seq, uint64_t size, unsigned mode, int64_t mtime_ns, int recorded,
                    void *arg)
{
    struct ferry_batch_ent *e;
    int rc = 0;

    if ((e = add_ent(b, dir, part, name, cid, tid, &rc)) == NULL) {
        close(fd);
        return rc;
    }
    e->arg = arg;
    e->fd = fd;
    e->seq = seq;
    e->size = size;
    e->mode = mode;
    e->mtime = mtime_ns;
    e->recorded = recorded;
    b->n++;
    b->bytes += size;
    return 0;
}

int ferry_batch_add_held(struct ferry_batch *b, const struct ferry_dir *dir, const char *part,
                         const char *name, const char *cid, const uint8_t tid[static FERRY_TID_LEN],
                         uint64_t seq, const uint8_t *bytes, size_t len, unsigned mode,
                         int64_t mtime_ns, void *arg)
{
    struct ferry_batch_ent *e;
    int rc = 0;

    /*
     * Room first, so a failure leaves nothing behind. The buffer is never
     * moved (ferry_batch_write_slice reads it on another thread while files
     * are added): it is allocated at its full size, of which only the pages
     * used take memory, and kept from one use of the batch to the next.
     */
    if (len > b->bufcap - b->buflen)
        return -ENOBUFS;
    if (b->buf == NULL && (b->buf = ferry_malloc(b->bufcap > 0 ? b->bufcap : 1)) == NULL)
        return -ENOMEM;
    if ((e = add_ent(b, dir, part, name, cid, tid, &rc)) == NULL)
        return rc;
    e->arg = arg;
    e->seq = seq;
    e->size = len;
    e->held = 1;
    e->bytes = b->buf + b->buflen;
    e->mode = mode;
    e->mtime = mtime_ns;
    if (len > 0)
        memcpy(b->buf + b->buflen, bytes, len);
    b->buflen += len;
    if (b->unwritten != NULL)
        atomic_fetch_add(b->unwritten, (uint64_t)len);
    b->n++;
    b->bytes += len;
    return 0;
}

static void mtime_ts(int64_t ns, struct timespec ts[2])
{
    ts[0].tv_sec = ts[1].tv_sec = (time_t)(ns / 1000000000);
    /* Before 1970 only whole seconds: a negative nanosecond part is invalid. */
    ts[0].tv_nsec = ts[1].tv_nsec = ns < 0 ? 0 : (long)(ns % 1000000000);
}

/*
 * A held file's part file: made new with its final mode (R-RECV-1), written
 * with one write(2), timed. 0, or -errno with e->stage set and nothing left.
 */
static int write_held(const struct ferry_batch_dir *dirs, struct ferry_batch_ent *e)
{
    int dfd = dirs[e->dir].fd, fresh, rc = 0;
    struct timespec ts[2];
    size_t off = 0;
    ssize_t n;

    e->fd = ferry_part_create(dfd, e->part, e->mode, &fresh);
    if (e->fd < 0) {
        rc = e->fd;
        e->fd = -1;
        e->said = rc == -EPERM;
        e->stage = rc == -EPERM ? "cannot create its temporary file (a foreign file in the way?)"
                                : "cannot create its temporary file";
        return rc;
    }
    /* A part file that was there may have records: they go once it is placed. */
    e->recorded = !fresh;
    e->stage = "cannot write it";
    while (rc == 0 && off < e->size) {
        n = write(e->fd, e->bytes + off, (size_t)e->size - off);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n > 0)
            off += (size_t)n;
    }
    mtime_ts(e->mtime, ts);
    if (rc == 0 && futimens(e->fd, ts) != 0) {
        rc = -errno;
        e->stage = "cannot set its mode and time";
    }
    if (rc != 0) {
        close(e->fd);
        e->fd = -1;
        unlinkat(dfd, e->part, 0);
    }
    return rc;
}

/* A written file's mode and time; 0, or -errno with e->stage set and the file gone. */
static int set_attrs(const struct ferry_batch_dir *dirs, struct ferry_batch_ent *e)
{
    struct timespec ts[2];
    int rc = 0;

    mtime_ts(e->mtime, ts);
    if (fchmod(e->fd, (mode_t)e->mode) != 0 || futimens(e->fd, ts) != 0) {
        rc = -errno;
        e->stage = "cannot set its mode and time";
        close(e->fd);
        e->fd = -1;
        unlinkat(dirs[e->dir].fd, e->part, 0);
    }
    return rc;
}

/* Entries [lo, hi): held files made and written, every file's mode and time set. */
static void write_range(struct ferry_batch_ent *e, const struct ferry_batch_dir *dirs, int *rc,
                        size_t lo, size_t hi, _Atomic uint64_t *unwritten)
{
    size_t i;

    for (i = lo; i < hi; i++) {
        e[i].renamed = 0;
        e[i].stage = NULL;
        if (!e[i].held) {
            rc[i] = set_attrs(dirs, &e[i]);
            continue;
        }
        rc[i] = write_held(dirs, &e[i]);
        /* On disk now, or never: the next reading of the free space shows which. */
        if (unwritten != NULL)
            atomic_fetch_sub(unwritten, e[i].size);
    }
}

void ferry_batch_take_slice(struct ferry_batch *b, struct ferry_batch_slice *s)
{
    *s = (struct ferry_batch_slice){.e = b->e,
                                    .dirs = b->dirs,
                                    .rc = b->rc,
                                    .lo = b->written,
                                    .hi = b->n,
                                    .unwritten = b->unwritten};
    b->written = b->n;
}

void ferry_batch_write_slice(const struct ferry_batch_slice *s)
{
    write_range(s->e, s->dirs, s->rc, s->lo, s->hi, s->unwritten);
}

/*
 * R-RECV-4: the bytes first; one syncfs per file system covers every file
 * on it. Only files with rc[i] == 0 (written) take part.
 */
static void make_durable(struct ferry_batch *b, int *rc)
{
    uint8_t *in;
    size_t i, j, k;
    int r, pass;

    if (b->n < FERRY_BATCH_SYNCFS_MIN || (in = ferry_calloc(b->n, 1)) == NULL) {
        for (i = 0; i < b->n; i++)
            if (rc[i] == 0)
                rc[i] = fdatasync(b->e[i].fd) != 0 ? -errno : 0;
        return;
    }
    for (i = 0; i < b->n; i++)
        in[i] = rc[i] == 0;
    /*
     * syncfs reports the writeback errors of the file system since its
     * descriptor was opened, so it is called on the descriptor opened
     * first. Files written before they joined were opened in the order they
     * joined, held files were made in theirs, after they joined: the first
     * of each kind on a file system is synced (the second call finds little
     * left to write), and an error of either is every file's there.
     */
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < b->n; i++) {
            uint64_t dev = b->dirs[b->e[i].dir].dev;
            if (!in[i] || b->e[i].held != pass)
                continue;
            for (k = 0; k < i; k++)
                if (in[k] && b->e[k].held == pass && b->dirs[b->e[k].dir].dev == dev)
                    break;
            if (k < i)
                continue; /* not the first of its kind there */
            r = syncfs(b->e[i].fd) != 0 ? -errno : 0;
            for (j = 0; r != 0 && j < b->n; j++)
                if (in[j] && b->dirs[b->e[j].dir].dev == dev && rc[j] == 0)
                    rc[j] = r;
        }
    }
    ferry_free(in);
}

void ferry_batch_sync(struct ferry_batch *b, struct ferry_state *st)
{
    size_t i, k;
    int r;

    /* What no slice wrote yet. */
    write_range(b->e, b->dirs, b->rc, b->written, b->n, b->unwritten);
    make_durable(b, b->rc);
    for (i = 0; i < b->n; i++) {
        struct ferry_batch_ent *e = &b->e[i];
        int dfd = b->dirs[e->dir].fd;

        if (e->fd < 0)
            continue; /* never made: write_held said why */
        e->stage = "cannot make it durable";
        if (b->rc[i] == 0) {
            /* Only verified, durable bytes get the final name (R-STORE-6). */
            e->stage = "cannot put it in place";
            b->rc[i] = renameat(dfd, e->part, dfd, e->name) != 0 ? -errno : 0;
        }
        if (b->rc[i] == 0) {
            b->dirs[e->dir].renamed = e->renamed = 1;
            continue;
        }
        unlinkat(dfd, e->part, 0);
    }
    /* Each folder once, after every rename into it: the renames are durable with it. */
    for (k = 0; k < b->ndirs; k++) {
        if (!b->dirs[k].renamed || fsync(b->dirs[k].fd) == 0)
            continue;
        r = -errno;
        for (i = 0; i < b->n; i++) {
            if (b->e[i].dir == k && b->rc[i] == 0) {
                b->rc[i] = r;
                b->e[i].stage = "its folder could not be made durable";
            }
        }
    }
    /* Closed here, off the receiving thread, which has a file per call less to make. */
    for (i = 0; i < b->n; i++) {
        struct ferry_batch_ent *e = &b->e[i];
        if (e->fd >= 0)
            close(e->fd);
        e->fd = -1;
        /*
         * R-RECV-2: a part file removed, or whose name is the destination's
         * now, takes its records with it.
         */
        if (e->recorded || (b->rc[i] != 0 && !e->renamed))
            ferry_part_forget(st, b->dirs[e->dir].fd, e->part);
    }
}

void ferry_batch_done(struct ferry_batch *b, ferry_batch_done_cb done, void *ctx)
{
    size_t i, k;

    for (i = 0; i < b->n; i++) {
        struct ferry_batch_ent *e = &b->e[i];
        done(ctx, e, b->rc[i], e->stage);
        ferry_free(e->name);
        e->name = NULL;
    }
    for (k = 0; k < b->ndirs; k++)
        close(b->dirs[k].fd);
    b->n = b->ndirs = 0;
    b->bytes = 0;
    b->written = 0;
    /* The pages of a buffer filled past the mark (files of 1 MiB, maybe) are not kept. */
    if (b->buflen > FERRY_BATCH_HELD) {
        ferry_free(b->buf);
        b->buf = NULL;
    }
    b->buflen = 0;
}
