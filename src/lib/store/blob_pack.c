/*
 * The pack-file content store (ferry/blob.h): chunks appended to per-user
 * packs (R-CHUNK-7), whole files renamed from their spool to
 * blobs/<uid>/<hh>/<64 hex>, chunk files of the old layout read where they
 * are. The on-disk layout is the one store.h describes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/core.h"
#include "ferry/path.h"
#include "ferry/store.h"

#include "blob_int.h"

struct pack_store {
    struct ferry_blob_store base;
    int datafd; /* borrowed */
    int tmpfd;
    ferry_pwritev_fn pwritev; /* NULL: pwritev(2) */
    void *pwritev_arg;
};

/* One pack a batch appends to: the chunks of one user (R-CHUNK-7). */
struct pack_w {
    int64_t uid;
    int64_t pack;
    int64_t start; /* the pack's committed end, where this batch's bytes begin */
    int64_t end;   /* past this batch's bytes */
    int fresh;     /* a new file: its directory entry must be made durable too */
    int fd;
    int rc;
    struct iovec *iov;
    int **status; /* of each piece's put */
    int niov;
    int capiov;
};

/* A whole file renamed into place: its file and directory, until made durable. */
struct placed {
    int64_t uid;
    int fd;
    int dirfd;
};

struct ferry_blob_batch {
    struct ferry_meta *m;
    struct pack_w *pw;
    int npw;
    struct placed *pl;
    size_t npl;
    size_t cappl;
    int durable; /* ferry_blob_durable succeeded */
};

struct ferry_blob_reader {
    int fd;
    int64_t uid;
    int64_t loc;
    int64_t base;
};

static const struct ferry_blob_ops pack_ops;

static struct pack_store *pst(struct ferry_blob_store *st)
{
    return (struct pack_store *)st;
}

static int spool_open(struct ferry_blob_store *st, struct ferry_blob_spool *sp)
{
    uint8_t rnd[16];
    char hex[33];

    ferry_random(rnd, sizeof(rnd));
    ferry_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(sp->name, sizeof(sp->name), "up-%s", hex);
    sp->fd = openat(pst(st)->tmpfd, sp->name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
    if (sp->fd < 0) {
        int rc = -errno;

        sp->name[0] = '\0';
        return rc;
    }
    return 0;
}

static void spool_drop(struct ferry_blob_store *st, struct ferry_blob_spool *sp)
{
    if (sp->fd >= 0)
        close(sp->fd);
    if (sp->name[0] != '\0')
        unlinkat(pst(st)->tmpfd, sp->name, 0);
    sp->fd = -1;
    sp->name[0] = '\0';
}

static int batch_begin(struct ferry_blob_store *st, struct ferry_meta *m,
                       struct ferry_blob_batch **out)
{
    struct ferry_blob_batch *b = ferry_calloc(1, sizeof(*b));

    (void)st;
    if (b == NULL)
        return -ENOMEM;
    b->m = m;
    *out = b;
    return 0;
}

/* The pack uid's new chunks go to in this batch, opened on first use. */
static struct pack_w *pack_for(struct pack_store *ps, struct ferry_blob_batch *b, int64_t uid,
                               int *rc)
{
    struct pack_w *w, *nv;
    struct stat st;
    int i;

    for (i = 0; i < b->npw; i++) {
        if (b->pw[i].uid != uid)
            continue;
        *rc = b->pw[i].rc;
        return *rc == 0 ? &b->pw[i] : NULL;
    }
    if ((nv = ferry_realloc(b->pw, (size_t)(b->npw + 1) * sizeof(*nv))) == NULL) {
        *rc = -ENOMEM;
        return NULL;
    }
    b->pw = nv;
    w = &b->pw[b->npw++];
    *w = (struct pack_w){.uid = uid, .fd = -1};
    if ((w->rc = ferry_meta_pack_next(b->m, uid, &w->pack, &w->start, &w->fresh)) == 0 &&
        (w->fd = ferry_pack_open(ps->datafd, uid, w->pack, w->fresh)) < 0)
        w->rc = w->fd;
    /* Bytes past the end, of a batch that never committed, are dropped. */
    if (w->rc == 0 && !w->fresh && fstat(w->fd, &st) == 0 && st.st_size > w->start &&
        ftruncate(w->fd, (off_t)w->start) != 0)
        w->rc = -errno;
    w->end = w->start;
    if (w->rc != 0) {
        *rc = w->rc;
        return NULL;
    }
    return w;
}

static int put_chunk(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                     const uint8_t hash[static 32], uint8_t *buf, size_t len,
                     struct ferry_blob_ref *ref, int *status)
{
    size_t padded = (size_t)FERRY_PACK_ROUND((int64_t)len);
    struct pack_w *w;
    int rc = 0;

    *status = 0;
    if ((w = pack_for(pst(st), b, uid, &rc)) == NULL)
        goto out;
    if (w->niov == w->capiov) {
        int ncap = w->capiov ? w->capiov * 2 : 64;
        struct iovec *nv = ferry_realloc(w->iov, (size_t)ncap * sizeof(*nv));
        int **ns;

        if (nv == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        w->iov = nv;
        if ((ns = ferry_realloc(w->status, (size_t)ncap * sizeof(*ns))) == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        w->status = ns;
        w->capiov = ncap;
    }
    /* Whole blocks: the caller's buffer has room for the padding. */
    memset(buf + len, 0, padded - len);
    w->iov[w->niov] = (struct iovec){.iov_base = buf, .iov_len = padded};
    w->status[w->niov++] = status;
    ferry_blob_ref_chunk(ref, uid, hash, w->pack, w->end, (int64_t)len);
    w->end += (int64_t)padded;
out:
    *status = rc;
    return rc;
}

/* Makes blobs/<uid>/<hh> beneath the data dir without following symlinks. */
static int blob_dir(struct pack_store *ps, int64_t uid, const char *cid)
{
    char rel[128];

    snprintf(rel, sizeof(rel), "blobs/%lld/%.2s", (long long)uid, cid + 7);
    return ferry_mkdirs_beneath(ps->datafd, rel);
}

/* Moves the spool to its blob name (not yet durable); a failed one is dropped. */
static int put_spool(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                     const char *cid, struct ferry_blob_spool *sp, struct ferry_blob_ref *ref,
                     int *status)
{
    struct pack_store *ps = pst(st);
    struct placed *nv;
    int dfd = -1, rc;

    if ((rc = ferry_blob_ref_file(ref, uid, cid, 0)) != 0)
        goto out;
    if (b->npl == b->cappl) {
        size_t ncap = b->cappl ? b->cappl * 2 : 16;

        if ((nv = ferry_realloc(b->pl, ncap * sizeof(*nv))) == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        b->pl = nv;
        b->cappl = ncap;
    }
    if ((dfd = blob_dir(ps, uid, cid)) < 0) {
        rc = dfd;
        goto out;
    }
    if (renameat(ps->tmpfd, sp->name, dfd, cid + 7) != 0) {
        rc = -errno;
        close(dfd);
        goto out;
    }
    /* Small batches fsync each file and its directory; big ones use syncfs. */
    b->pl[b->npl++] = (struct placed){.uid = uid, .fd = sp->fd, .dirfd = dfd};
    sp->fd = -1;
    sp->name[0] = '\0';
out:
    spool_drop(st, sp);
    *status = rc;
    return rc;
}

/* fsyncs a directory beneath the data dir (its entries become durable). */
static int fsync_dir(struct pack_store *ps, const char *rel)
{
    int fd = ferry_open_beneath(ps->datafd, rel, O_RDONLY | O_DIRECTORY, 0), rc = 0;

    if (fd < 0)
        return fd;
    if (fsync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* One fdatasync per pack (and its directories when it is new). */
static int packs_durable(struct pack_store *ps, struct ferry_blob_batch *b)
{
    char rel[64];
    struct pack_w *w;
    int i, rc = 0, fresh = 0;

    for (i = 0; i < b->npw && rc == 0; i++) {
        w = &b->pw[i];
        if (w->rc != 0 || w->niov == 0)
            continue;
        if (fdatasync(w->fd) != 0) {
            rc = -errno;
            break;
        }
        if (w->fresh) {
            snprintf(rel, sizeof(rel), "packs/%lld", (long long)w->uid);
            rc = fsync_dir(ps, rel);
            fresh = 1;
        }
    }
    if (rc == 0 && fresh)
        rc = fsync_dir(ps, "packs");
    return rc;
}

/*
 * R-CHUNK-7: each user's new chunks in one write per pack; then the
 * placed files (one syncfs from 8 of them, else an fdatasync each and an
 * fsync of each directory that may be new) and the packs made durable.
 */
static int durable(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    struct pack_store *ps = pst(st);
    char rel[64];
    struct pack_w *w;
    int64_t last_uid = -1;
    size_t k;
    int rc = 0, prc, i, j;

    for (i = 0; i < b->npw; i++) {
        w = &b->pw[i];
        if (w->rc == 0 && w->niov > 0)
            w->rc = ferry_pack_write_via(w->fd, w->start, w->iov, w->niov, ps->pwritev,
                                         ps->pwritev_arg);
        /* A pack that could not be written fails its chunks. */
        for (j = 0; w->rc != 0 && j < w->niov; j++)
            *w->status[j] = w->rc;
    }
    if (b->npl >= 8) {
        if (syncfs(ps->datafd) != 0)
            rc = -errno;
        /*
         * syncfs reports a write error of the whole file system once, to
         * whichever batch syncs first: maybe one whose files are sound,
         * while the file that lost pages commits later with a clean
         * syncfs. Each file's own error is asked of it: with the pages
         * written already this waits for nothing and flushes no cache.
         */
        for (k = 0; k < b->npl && rc == 0; k++)
            if (sync_file_range(b->pl[k].fd, 0, 0,
                                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                    SYNC_FILE_RANGE_WAIT_AFTER) != 0)
                rc = -errno;
    } else if (b->npl > 0) {
        /* Each file, its blobs/<uid>/<hh>, and the ones above it: blobs/<uid>, blobs. */
        for (k = 0; k < b->npl && rc == 0; k++) {
            if (fdatasync(b->pl[k].fd) != 0 || fsync(b->pl[k].dirfd) != 0) {
                rc = -errno;
                break;
            }
            if (b->pl[k].uid != last_uid) {
                snprintf(rel, sizeof(rel), "blobs/%lld", (long long)b->pl[k].uid);
                rc = fsync_dir(ps, rel);
                last_uid = b->pl[k].uid;
            }
        }
        if (rc == 0)
            rc = fsync_dir(ps, "blobs");
    }
    if ((prc = packs_durable(ps, b)) != 0 && rc == 0)
        rc = prc;
    b->durable = rc == 0;
    return rc;
}

/* The packs' new ends, before the chunk rows that count themselves into them. */
static int record(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    int i, rc;

    (void)st;
    /* Bytes of a batch that is not durable stay past the recorded end, to be overwritten. */
    if (!b->durable)
        return 0;
    for (i = 0; i < b->npw; i++)
        if (b->pw[i].rc == 0 && b->pw[i].niov > 0 &&
            (rc = ferry_meta_pack_grow(b->m, b->pw[i].uid, b->pw[i].pack, b->pw[i].end)) != 0)
            return rc;
    return 0;
}

static void batch_end(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    size_t k;
    int i;

    (void)st;
    for (i = 0; i < b->npw; i++) {
        if (b->pw[i].fd >= 0)
            close(b->pw[i].fd);
        ferry_free(b->pw[i].iov);
        ferry_free(b->pw[i].status);
    }
    for (k = 0; k < b->npl; k++) {
        close(b->pl[k].fd);
        close(b->pl[k].dirfd);
    }
    ferry_free(b->pw);
    ferry_free(b->pl);
    ferry_free(b);
}

static int unused(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                  ferry_meta_gc_fn fn, void *arg)
{
    char rel[FERRY_BLOB_RELPATH_MAX];
    int rc;

    (void)st;
    /* A whole file placed for nothing is rewritten by the next upload of it, as a stray. */
    if (ref->whole || ref->loc == 0)
        return 0;
    if ((rc = ferry_pack_relpath(ref->uid, ref->loc, rel, sizeof(rel))) != 0)
        return rc;
    fn(arg, rel, ref->off, FERRY_PACK_ROUND(ref->size));
    return 0;
}

/* By file, an unlink before the ranges of the same file, then by offset. */
static int garbage_cmp(const void *pa, const void *pb)
{
    const struct ferry_blob_garbage *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);

    if (c != 0)
        return c;
    if ((a->len == 0) != (b->len == 0))
        return a->len == 0 ? -1 : 1;
    return a->off < b->off ? -1 : a->off > b->off;
}

/*
 * R-CHUNK-11: files are unlinked; chunk ranges of packs become holes,
 * adjacent ones merged, one open per pack. A crash before this leaves the
 * space as garbage.
 */
static void blob_free(struct ferry_blob_store *st, struct ferry_blob_garbage *g, size_t n)
{
    struct pack_store *ps = pst(st);
    size_t i = 0, j;
    int64_t off, end;
    int fd, rc;

    qsort(g, n, sizeof(*g), garbage_cmp);
    while (i < n) {
        for (j = i + 1; j < n && strcmp(g[j].name, g[i].name) == 0; j++)
            ;
        if (g[i].len == 0) {
            unlinkat(ps->datafd, g[i].name, 0);
            i = j;
            continue;
        }
        if ((fd = ferry_open_beneath(ps->datafd, g[i].name, O_WRONLY, 0)) < 0) {
            ferry_log(FERRY_LOG_WARN, "gc open path=%s rc=%d", g[i].name, fd);
            i = j;
            continue;
        }
        while (i < j) {
            off = g[i].off;
            end = off + g[i].len;
            for (i++; i < j && g[i].off <= end; i++)
                if (g[i].off + g[i].len > end)
                    end = g[i].off + g[i].len;
            if ((rc = ferry_pack_punch(fd, off, end - off)) != 0)
                ferry_log(FERRY_LOG_WARN, "gc punch path=%s rc=%d", g[i - 1].name, rc);
        }
        close(fd);
    }
}

/* Opens what holds ref: its pack, its whole file, or its chunk file of the old layout. */
static int reader_target(struct pack_store *ps, struct ferry_blob_reader *r,
                         const struct ferry_blob_ref *ref)
{
    char rel[FERRY_BLOB_RELPATH_MAX], cid[FERRY_CID_LEN + 1];
    int rc;

    if (r->fd >= 0 && (ref->whole || ref->loc == 0 || ref->loc != r->loc || ref->uid != r->uid)) {
        close(r->fd);
        r->fd = -1;
    }
    if (r->fd < 0) {
        if (ref->whole) {
            memcpy(cid, "sha256:", 7);
            ferry_hex_encode(ref->key, sizeof(ref->key), cid + 7);
            rc = ferry_blob_relpath(ref->uid, cid, rel, sizeof(rel));
        } else if (ref->loc != 0) {
            rc = ferry_pack_relpath(ref->uid, ref->loc, rel, sizeof(rel));
        } else {
            rc = ferry_chunk_relpath(ref->uid, ref->key, rel, sizeof(rel));
        }
        /* R-PATH-4: even our own blob names are opened without following links. */
        if (rc != 0 || (r->fd = ferry_open_beneath(ps->datafd, rel, O_RDONLY, 0)) < 0)
            return FERRY_EINTERNAL;
        if (ref->whole)
            posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    r->uid = ref->uid;
    r->loc = ref->whole ? 0 : ref->loc;
    r->base = ref->off;
    return 0;
}

static int reader_open(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                       struct ferry_blob_reader **out)
{
    struct ferry_blob_reader *r = ferry_calloc(1, sizeof(*r));
    int rc;

    if (r == NULL)
        return -ENOMEM;
    r->fd = -1;
    if ((rc = reader_target(pst(st), r, ref)) != 0) {
        ferry_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int reader_move(struct ferry_blob_store *st, struct ferry_blob_reader *r,
                       const struct ferry_blob_ref *ref)
{
    return reader_target(pst(st), r, ref);
}

static ssize_t blob_read(struct ferry_blob_store *st, struct ferry_blob_reader *r, int64_t off,
                         const struct iovec *iov, int n)
{
    ssize_t got;

    (void)st;
    do {
        got = preadv(r->fd, iov, n, (off_t)(r->base + off));
    } while (got < 0 && errno == EINTR);
    return got < 0 ? -errno : got;
}

/*
 * A pack range becomes a hole once its row is deleted (and pack ids and
 * offsets are never reused); an open file of its own stays readable.
 */
static int may_vanish(struct ferry_blob_store *st, const struct ferry_blob_ref *ref)
{
    (void)st;
    return !ref->whole && ref->loc != 0;
}

static void reader_close(struct ferry_blob_store *st, struct ferry_blob_reader *r)
{
    (void)st;
    if (r->fd >= 0)
        close(r->fd);
    ferry_free(r);
}

static void store_close(struct ferry_blob_store *st)
{
    struct pack_store *ps = pst(st);

    if (ps->tmpfd >= 0)
        close(ps->tmpfd);
    ferry_free(ps);
}

/* Leftover spools are uploads a crash interrupted: never visible, removed. */
static void sweep_tmp(int tmpfd)
{
    int fd = dup(tmpfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;

    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "up-", 3) == 0 || strncmp(e->d_name, "ck-", 3) == 0)
            unlinkat(tmpfd, e->d_name, 0);
    closedir(d);
}

int ferry_blob_pack_open(int datafd, struct ferry_blob_store **out)
{
    struct pack_store *ps;
    int fd, rc = 0;

    if ((ps = ferry_calloc(1, sizeof(*ps))) == NULL)
        return -ENOMEM;
    ps->base.ops = &pack_ops;
    ps->datafd = datafd;
    mkdirat(datafd, "tmp", 0700);
    mkdirat(datafd, "blobs", 0700);
    mkdirat(datafd, "packs", 0700);
    /* The commit fsyncs what it adds beneath these; their own names are made durable here. */
    fsync(datafd);
    if ((ps->tmpfd = ferry_open_beneath(datafd, "tmp", O_RDONLY | O_DIRECTORY, 0)) < 0 ||
        (fd = ferry_open_beneath(datafd, "blobs", O_RDONLY | O_DIRECTORY, 0)) < 0) {
        rc = FERRY_EPATH;
        goto out;
    }
    close(fd);
    sweep_tmp(ps->tmpfd);
    *out = &ps->base;
    ps = NULL;
out:
    if (ps != NULL)
        store_close(&ps->base);
    return rc;
}

int ferry_blob_pack_hook(struct ferry_blob_store *st, ferry_pwritev_fn fn, void *arg)
{
    if (st->ops != &pack_ops)
        return -EINVAL;
    pst(st)->pwritev = fn;
    pst(st)->pwritev_arg = arg;
    return 0;
}

static const struct ferry_blob_ops pack_ops = {
    .name = "pack",
    .spool_open = spool_open,
    .spool_drop = spool_drop,
    .batch_begin = batch_begin,
    .put_chunk = put_chunk,
    .put_spool = put_spool,
    .durable = durable,
    .record = record,
    .batch_end = batch_end,
    .unused = unused,
    .free = blob_free,
    .reader_open = reader_open,
    .reader_move = reader_move,
    .read = blob_read,
    .may_vanish = may_vanish,
    .reader_close = reader_close,
    .close = store_close,
};
