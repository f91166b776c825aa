/* The content store's interface: references and the calls through a store's table (ferry/blob.h).
 */
#include <string.h>

#include "ferry/blob.h"
#include "ferry/core.h"

void ferry_blob_ref_chunk(struct ferry_blob_ref *ref, int64_t uid, const uint8_t hash[static 32],
                          int64_t loc, int64_t off, int64_t size)
{
    *ref = (struct ferry_blob_ref){.uid = uid, .loc = loc, .off = off, .size = size};
    memcpy(ref->key, hash, sizeof(ref->key));
}

int ferry_blob_ref_file(struct ferry_blob_ref *ref, int64_t uid, const char *cid, int64_t size)
{
    *ref = (struct ferry_blob_ref){.uid = uid, .size = size, .whole = 1};
    /* Only "sha256:" content has a file of its own; "chunks:" is read chunk by chunk. */
    if (strncmp(cid, "sha256:", 7) != 0 || strlen(cid) != 7 + 64 ||
        ferry_hex_decode(cid + 7, ref->key, sizeof(ref->key)) != 0)
        return FERRY_EPROTO;
    return 0;
}

int ferry_blob_ref_same(const struct ferry_blob_ref *a, const struct ferry_blob_ref *b)
{
    return a->uid == b->uid && a->loc == b->loc && a->off == b->off && a->size == b->size &&
           a->whole == b->whole && memcmp(a->key, b->key, sizeof(a->key)) == 0;
}

int ferry_blob_spool_open(struct ferry_blob_store *st, struct ferry_blob_spool *sp)
{
    return st->ops->spool_open(st, sp);
}

void ferry_blob_spool_drop(struct ferry_blob_store *st, struct ferry_blob_spool *sp)
{
    st->ops->spool_drop(st, sp);
}

int ferry_blob_batch_begin(struct ferry_blob_store *st, struct ferry_meta *m,
                           struct ferry_blob_batch **out)
{
    return st->ops->batch_begin(st, m, out);
}

int ferry_blob_put_chunk(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                         const uint8_t hash[static 32], uint8_t *buf, size_t len,
                         struct ferry_blob_ref *ref, int *status)
{
    return st->ops->put_chunk(st, b, uid, hash, buf, len, ref, status);
}

int ferry_blob_put_spool(struct ferry_blob_store *st, struct ferry_blob_batch *b, int64_t uid,
                         const char *cid, struct ferry_blob_spool *sp, struct ferry_blob_ref *ref,
                         int *status)
{
    return st->ops->put_spool(st, b, uid, cid, sp, ref, status);
}

int ferry_blob_durable(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    return st->ops->durable(st, b);
}

int ferry_blob_record(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    return st->ops->record(st, b);
}

void ferry_blob_batch_end(struct ferry_blob_store *st, struct ferry_blob_batch *b)
{
    if (b != NULL)
        st->ops->batch_end(st, b);
}

int ferry_blob_unused(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                      ferry_meta_gc_fn fn, void *arg)
{
    return st->ops->unused(st, ref, fn, arg);
}

void ferry_blob_free(struct ferry_blob_store *st, struct ferry_blob_garbage *g, size_t n)
{
    if (n > 0)
        st->ops->free(st, g, n);
}

int ferry_blob_reader_open(struct ferry_blob_store *st, const struct ferry_blob_ref *ref,
                           struct ferry_blob_reader **out)
{
    return st->ops->reader_open(st, ref, out);
}

int ferry_blob_reader_move(struct ferry_blob_store *st, struct ferry_blob_reader *r,
                           const struct ferry_blob_ref *ref)
{
    return st->ops->reader_move(st, r, ref);
}

ssize_t ferry_blob_read(struct ferry_blob_store *st, struct ferry_blob_reader *r, int64_t off,
                        const struct iovec *iov, int n)
{
    return st->ops->read(st, r, off, iov, n);
}

int ferry_blob_may_vanish(struct ferry_blob_store *st, const struct ferry_blob_ref *ref)
{
    return st->ops->may_vanish(st, ref);
}

void ferry_blob_reader_close(struct ferry_blob_store *st, struct ferry_blob_reader *r)
{
    if (r != NULL)
        st->ops->reader_close(st, r);
}

void ferry_blob_close(struct ferry_blob_store *st)
{
    if (st != NULL)
        st->ops->close(st);
}
