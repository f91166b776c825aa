/*
 * A content store for tests (ferry/blob.h): the pack-file store with
 * chosen calls failing, as a disk does (EIO, ENOSPC, a write that stops
 * short), so the group commit's promise can be tested: nothing
 * acknowledged is lost, nothing half-written is seen.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/core.h"

#include "blob_int.h"

/* Operations whose calls are counted, as named in a spec. */
enum fault_op { F_PUT, F_WRITE, F_SYNC, F_READ, F_SPOOL, F_OPS };
static const char *const fault_op_names[F_OPS] = {"put", "write", "sync", "read", "spool"};

enum fault_kind { F_EIO, F_ENOSPC, F_SHORT };

/* Rules a spec may give. */
#define FAULT_RULES_MAX 16

struct fault_rule {
    enum fault_op op;
    long nth;
    enum fault_kind kind;
};

struct fault_store {
    struct ferry_blob_store base;
    struct ferry_blob_store *inner;
    struct fault_rule rules[FAULT_RULES_MAX];
    int nrules;
    /*
     * Calls so far of each operation. Reads run on the thread pool, several
     * at once for different downloads, so every count is atomic.
     */
    _Atomic long calls[F_OPS];
    int disk_full; /* a short write happened: the next write finds no room */
};

static const struct ferry_blob_ops fault_ops;

static struct fault_store *fst(struct ferry_blob_store *st)
{
    return (struct fault_store *)st;
}

/* Counts a call of op; 1 and its kind if a rule fails this one. */
static int fault_hit(struct fault_store *fs, enum fault_op op, enum fault_kind *kind)
{
    long n = ++fs->calls[op]; /* atomic: one number per call */
    int i;

    for (i = 0; i < fs->nrules; i++) {
        if (fs->rules[i].op == op && fs->rules[i].nth == n) {
            *kind = fs->rules[i].kind;
            return 1;
        }
    }
    return 0;
}

static int kind_errno(enum fault_kind k)
{
    return k == F_EIO ? EIO : ENOSPC;
}

/* The pack store's write system call, failed or cut short when a rule says so. */
static ssize_t fault_pwritev(void *arg, int fd, const struct iovec *iov, int n, off_t off)
{
    struct fault_store *fs = arg;
    struct iovec v[64];
    size_t total = 0, half, left;
    enum fault_kind k;
    int i, m = 0;

    if (fs->disk_full) {
        fs->disk_full = 0;
        errno = ENOSPC;
        return -1;
    }
    if (!fault_hit(fs, F_WRITE, &k))
        return pwritev(fd, iov, n, off);
    if (k != F_SHORT) {
        errno = kind_errno(k);
        return -1;
    }
    /* Half of it, in whole blocks (the file may be open with O_DIRECT). */
    for (i = 0; i < n; i++)
        total += iov[i].iov_len;
    half = (total / 2) & ~(size_t)(FERRY_PACK_ALIGN - 1);
    if (half == 0 || n > 64) {
        errno = ENOSPC;
        return -1;
    }
    for (left = half, i = 0; i < n && left > 0; i++) {
        v[m] = iov[i];
        if (v[m].iov_len > left)
            v[m].iov_len = left;
        left -= v[m++].iov_len;
    }
    fs->disk_full = 1;
    return pwritev(fd, v, m, off);
}

static int spool_open(struct ferry_blob_store *st, struct ferry_blob_spool *sp)
{
    struct fault_store *fs = fst(st);
    enum fault_kind k;

    if (fault_hit(fs, F_SPOOL, &k)) {
        sp->fd = -1;
        sp->name[0] = '\0';
        return -kind_errno(k);
    }
    return ferry_blob_spool_open(fs->inner, sp);
}

static void spool_drop(struct ferry_blob_store *st, struct ferry_blob_spool *sp)
{
    ferry_blob_spool_drop(fst(st)->inner, sp);
}

static int batch_begin(struct ferry_blob_store *st, struct ferry_meta *m,
                       struct ferry_blob_batch **out)
{
    return ferry_blob_batch_begin(fst(st)->inner, m, out);
}

static int put_chunk(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                     const uint8_t hash[static 32], uint8_t *buf, size_t len,
                     struct ferry_blob_ref *ref, int *status)
{
    struct fault_store *fs = fst(st);
    enum fault_kind k;

    if (fault_hit(fs, F_PUT, &k)) {
        memset(ref, 0, sizeof(*ref));
        return *status = -kind_errno(k);
    }
    return ferry_blob_put_chunk(fs->inner, b, uid, hash, buf, len, ref, status);
}

static int put_spool(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                     const char *cid, struct ferry_blob_spool *sp, struct ferry_blob_ref *ref,
                     int *status)
{
    struct fault_store *fs = fst(st);
    enum fault_kind k;

    if (fault_hit(fs, F_PUT, &k)) {
        /* The spool was the store's to keep: a failed put drops it. */
        ferry_blob_spool_drop(fs->inner, sp);
        memset(ref, 0, sizeof(*ref));
        return *status = -kind_errno(k);
    }
    return ferry_blob_put_spool(fs->inner, b, uid, cid, sp, ref, status);
}

/* The batch is written and synced; a rule then reports the sync as failed. */
static int durable(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    struct fault_store *fs = fst(st);
    enum fault_kind k;
    int rc = ferry_blob_durable(fs->inner, b);

    /* The bytes are on disk, but as with a failed fsync nothing may count on them. */
    if (fault_hit(fs, F_SYNC, &k) && rc == 0)
        return k == F_ENOSPC ? -ENOSPC : -EIO;
    return rc;
}

static int record(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    return ferry_blob_record(fst(st)->inner, b);
}

static void batch_end(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    ferry_blob_batch_end(fst(st)->inner, b);
}

static int unused(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                  ferry_meta_gc_fn fn, void *arg)
{
    return ferry_blob_unused(fst(st)->inner, ref, fn, arg);
}

static void blob_free(struct ferry_blob_store *st, struct ferry_blob_garbage *g, size_t n)
{
    ferry_blob_free(fst(st)->inner, g, n);
}

static int reader_open(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                       struct ferry_blob_reader **out)
{
    return ferry_blob_reader_open(fst(st)->inner, ref, out);
}

static int reader_move(struct ferry_blob_store *st, struct ferry_blob_reader *r,
                       const struct ferry_blob_ref *ref)
{
    return ferry_blob_reader_move(fst(st)->inner, r, ref);
}

static ssize_t blob_read(struct ferry_blob_store *st, struct ferry_blob_reader *r, int64_t off,
                         const struct iovec *iov, int n)
{
    struct fault_store *fs = fst(st);
    enum fault_kind k;
    struct iovec one;

    if (!fault_hit(fs, F_READ, &k))
        return ferry_blob_read(fs->inner, r, off, iov, n);
    if (k != F_SHORT || n < 1 || iov[0].iov_len < 2)
        return -kind_errno(k);
    /* Half of the first piece: fewer bytes than asked for. */
    one = (struct iovec){.iov_base = iov[0].iov_base, .iov_len = iov[0].iov_len / 2};
    return ferry_blob_read(fs->inner, r, off, &one, 1);
}

static int may_vanish(struct ferry_blob_store *st, const struct ferry_blob_ref *ref)
{
    return ferry_blob_may_vanish(fst(st)->inner, ref);
}

static void reader_close(struct ferry_blob_store *st, struct ferry_blob_reader *r)
{
    ferry_blob_reader_close(fst(st)->inner, r);
}

static void store_close(struct ferry_blob_store *st)
{
    struct fault_store *fs = fst(st);

    ferry_blob_close(fs->inner);
    ferry_free(fs);
}

/* One OP:N:FAULT rule; 0, or -EINVAL. */
static int parse_rule(const char *s, size_t len, struct fault_rule *r)
{
    char buf[64], *op, *nth, *kind, *end, *save = NULL;
    int i;

    if (len == 0 || len >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if ((op = strtok_r(buf, ":", &save)) == NULL || (nth = strtok_r(NULL, ":", &save)) == NULL ||
        (kind = strtok_r(NULL, ":", &save)) == NULL || strtok_r(NULL, ":", &save) != NULL)
        return -EINVAL;
    for (i = 0; i < F_OPS && strcmp(op, fault_op_names[i]) != 0; i++)
        ;
    if (i == F_OPS)
        return -EINVAL;
    r->op = (enum fault_op)i;
    errno = 0;
    r->nth = strtol(nth, &end, 10);
    if (errno != 0 || *end != '\0' || r->nth < 1)
        return -EINVAL;
    if (strcmp(kind, "eio") == 0)
        r->kind = F_EIO;
    else if (strcmp(kind, "enospc") == 0)
        r->kind = F_ENOSPC;
    else if (strcmp(kind, "short") == 0)
        r->kind = F_SHORT;
    else
        return -EINVAL;
    return 0;
}

int ferry_blob_fault_open(struct ferry_blob_store *inner, const char *spec,
                          struct ferry_blob_store **out)
{
    struct fault_store *fs;
    const char *p = spec, *comma;
    int rc = 0;

    if ((fs = ferry_calloc(1, sizeof(*fs))) == NULL)
        return -ENOMEM;
    fs->base.ops = &fault_ops;
    for (;;) {
        comma = strchr(p, ',');
        if (fs->nrules == FAULT_RULES_MAX) {
            rc = -EINVAL;
            goto out;
        }
        if ((rc = parse_rule(p, comma != NULL ? (size_t)(comma - p) : strlen(p),
                             &fs->rules[fs->nrules++])) != 0)
            goto out;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if ((rc = ferry_blob_pack_hook(inner, fault_pwritev, fs)) != 0)
        goto out;
    fs->inner = inner;
    *out = &fs->base;
    fs = NULL;
out:
    ferry_free(fs);
    return rc;
}

static const struct ferry_blob_ops fault_ops = {
    .name = "fault",
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
