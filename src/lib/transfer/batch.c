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

int ferry_batch_init(struct ferry_batch *b, size_t cap)
{
    *b = (struct ferry_batch){.cap = cap, .max = cap < FERRY_BATCH_FILES ? cap : FERRY_BATCH_FILES};
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
    return b->n >= b->max || b->bytes >= FERRY_BATCH_BYTES;
}

int ferry_batch_add(struct ferry_batch *b, const struct ferry_dir *dir, int fd, const char *part,
                    const char *name, const char *cid, const uint8_t tid[static FERRY_TID_LEN],
                    uint64_t seq, uint64_t size, int recorded, void *arg)
{
    struct ferry_batch_ent *e;
    size_t k;
    int rc = 0;

    /* Past its mark while the batch before it is being made durable; never past its room. */
    if (b->n >= b->cap) {
        rc = -ENOBUFS; /* the caller flushes first */
        goto fail;
    }
    /* Each folder once: it is fsync'd once, after every rename into it. */
    for (k = 0; k < b->ndirs; k++)
        if (b->dirs[k].dev == dir->dev && b->dirs[k].ino == dir->ino)
            break;
    if (k == b->ndirs) {
        int dfd = fcntl(dir->fd, F_DUPFD_CLOEXEC, 0);
        if (dfd < 0) {
            rc = -errno;
            goto fail;
        }
        b->dirs[k].fd = dfd;
        b->dirs[k].dev = dir->dev;
        b->dirs[k].ino = dir->ino;
        b->dirs[k].renamed = 0;
        b->ndirs++;
    }
    e = &b->e[b->n];
    *e = (struct ferry_batch_ent){
        .arg = arg, .fd = fd, .dir = k, .seq = seq, .size = size, .recorded = recorded};
    if ((e->name = ferry_strdup(name)) == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    snprintf(e->part, sizeof(e->part), "%s", part);
    snprintf(e->cid, sizeof(e->cid), "%s", cid);
    memcpy(e->tid, tid, FERRY_TID_LEN);
    b->n++;
    b->bytes += size;
    return 0;
fail:
    close(fd);
    return rc;
}

/* R-RECV-4: the bytes first; one syncfs per file system covers every file on it. */
static void make_durable(struct ferry_batch *b, int *rc)
{
    size_t i, j;
    int r;

    if (b->n < FERRY_BATCH_SYNCFS_MIN) {
        for (i = 0; i < b->n; i++)
            rc[i] = fdatasync(b->e[i].fd) != 0 ? -errno : 0;
        return;
    }
    for (i = 0; i < b->n; i++)
        rc[i] = 1; /* not yet synced */
    for (i = 0; i < b->n; i++) {
        if (rc[i] != 1)
            continue;
        /*
         * The first file's descriptor was opened before any byte of the
         * batch was written, so syncfs reports every writeback error of
         * the file system since then, the batch's included.
         */
        r = syncfs(b->e[i].fd) != 0 ? -errno : 0;
        for (j = i; j < b->n; j++)
            if (rc[j] == 1 && b->dirs[b->e[j].dir].dev == b->dirs[b->e[i].dir].dev)
                rc[j] = r;
    }
}

void ferry_batch_sync(struct ferry_batch *b)
{
    size_t i, k;
    int r;

    make_durable(b, b->rc);
    for (i = 0; i < b->n; i++) {
        struct ferry_batch_ent *e = &b->e[i];
        int dfd = b->dirs[e->dir].fd;

        e->stage = "cannot make it durable";
        e->renamed = 0;
        if (b->rc[i] == 0) {
            /* Only verified, durable bytes get the final name (R-STORE-6). */
            e->stage = "cannot put it in place";
            b->rc[i] = renameat(dfd, e->part, dfd, e->name) != 0 ? -errno : 0;
        }
        if (b->rc[i] == 0) {
            b->dirs[e->dir].renamed = e->renamed = 1;
            continue;
        }
        /* Its records go in ferry_batch_done, on the thread that owns the state database. */
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
        close(b->e[i].fd);
        b->e[i].fd = -1;
    }
}

void ferry_batch_done(struct ferry_batch *b, struct ferry_state *st, ferry_batch_done_cb done,
                      void *ctx)
{
    size_t i, k;

    for (i = 0; i < b->n; i++) {
        struct ferry_batch_ent *e = &b->e[i];
        /*
         * R-RECV-2: a part file removed, or whose name is the destination's
         * now, takes its records with it.
         */
        if (e->recorded || (b->rc[i] != 0 && !e->renamed))
            ferry_part_forget(st, b->dirs[e->dir].fd, e->part);
        done(ctx, e, b->rc[i], e->stage);
        ferry_free(e->name);
        e->name = NULL;
    }
    for (k = 0; k < b->ndirs; k++)
        close(b->dirs[k].fd);
    b->n = b->ndirs = 0;
    b->bytes = 0;
}
