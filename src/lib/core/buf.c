/* Capped growable byte buffer: every buffer is born with its limit. */
#include <errno.h>
#include <string.h>

#include "ferry/core.h"

void ferry_buf_init(struct ferry_buf *b, size_t limit)
{
    *b = (struct ferry_buf){.limit = limit};
}

void ferry_buf_cleanup(struct ferry_buf *b)
{
    ferry_free(b->data);
    *b = (struct ferry_buf){.limit = b->limit};
}

int ferry_buf_reserve(struct ferry_buf *b, size_t extra)
{
    size_t used = b->len - b->off;
    size_t want, ncap;
    uint8_t *p;

    if (b->limit - used < extra || used > b->limit)
        return FERRY_ETOOBIG;
    /*
     * Consumed space is reused by sliding the live bytes down, but only when
     * that moves no more bytes than it reclaims, or when growing cannot make
     * room: so each byte is moved about once at most. Sliding whenever the
     * end was reached moved a sender's whole 4 MiB backlog for every few
     * frames queued, a tenth of an upload's CPU.
     */
    if (b->off > 0 && b->cap - b->len < extra &&
        (used <= b->off || b->len + extra > b->limit || b->cap >= b->limit)) {
        memmove(b->data, b->data + b->off, used);
        b->off = 0;
        b->len = used;
    }
    if (b->cap - b->len >= extra)
        return 0;
    want = b->len + extra;
    ncap = b->cap ? b->cap : 4096;
    while (ncap < want)
        ncap = ncap > b->limit / 2 ? b->limit : ncap * 2;
    if (ncap > b->limit)
        ncap = b->limit;
    p = ferry_realloc(b->data, ncap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int ferry_buf_append(struct ferry_buf *b, const void *p, size_t n)
{
    int rc;

    if ((rc = ferry_buf_reserve(b, n)) != 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void ferry_buf_grow(struct ferry_buf *b, size_t n)
{
    b->len += n;
}

void ferry_buf_consume(struct ferry_buf *b, size_t n)
{
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0;
}

void ferry_buf_reset(struct ferry_buf *b)
{
    b->off = b->len = 0;
}

uint8_t *ferry_buf_take(struct ferry_buf *b, size_t *len)
{
    uint8_t *p = b->data;

    *len = b->len - b->off;
    if (p != NULL && b->off > 0)
        memmove(p, p + b->off, *len);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
    return p;
}
