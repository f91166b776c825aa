/* Chunk lists (R-CHUNK-2, R-CHUNK-3) and the streaming chunker over FastCDC (R-CHUNK-1). */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/manifest.h"

/*
 * The list comes from a peer, so nothing in it is trusted: lengths are
 * subtracted from what size still allows instead of being summed, which
 * cannot overflow however many entries there are.
 */
int ferry_chunk_list_check(const uint8_t *list, size_t n_bytes, uint64_t size)
{
    uint64_t left = size; /* bytes of size not yet covered by an entry */
    size_t off;

    if (n_bytes % FERRY_CHUNK_ENT_LEN != 0)
        return FERRY_EPROTO;
    for (off = 0; off < n_bytes; off += FERRY_CHUNK_ENT_LEN) {
        uint32_t len = ferry_get_be32(list + off);

        /* R-CHUNK-2: every length in 1..FERRY_CHUNK_MAX. */
        if (len == 0 || len > FERRY_CHUNK_MAX)
            return FERRY_EPROTO;
        /* R-CHUNK-2: every entry but the last at least FERRY_CHUNK_MIN. */
        if (n_bytes - off > FERRY_CHUNK_ENT_LEN && len < FERRY_CHUNK_MIN)
            return FERRY_EPROTO;
        /* R-CHUNK-2: the lengths never pass size... */
        if (len > left)
            return FERRY_EPROTO;
        left -= len;
    }
    /* ...and reach it exactly (an empty list only for an empty file). */
    return left == 0 ? 0 : FERRY_EPROTO;
}

/*
 * Returns 0, FERRY_EPROTO when n_bytes is not a whole number of entries, or
 * FERRY_EINTERNAL when hashing fails; on error cid is the empty string. The
 * streaming SHA-256 is used rather than ferry_sha256_buf because it reports
 * failures; it writes a "sha256:" id, whose prefix has the same length as
 * "chunks:" and is replaced.
 */
int ferry_chunk_list_cid(const uint8_t *list, size_t n_bytes, char cid[static 72])
{
    struct ferry_sha256 h = {0};
    int rc;

    cid[0] = '\0';
    if (n_bytes % FERRY_CHUNK_ENT_LEN != 0)
        return FERRY_EPROTO;
    if ((rc = ferry_sha256_init(&h)) != 0)
        goto out;
    if (n_bytes > 0 && (rc = ferry_sha256_update(&h, list, n_bytes)) != 0)
        goto out;
    /* final_cid frees the context whatever it returns. */
    if ((rc = ferry_sha256_final_cid(&h, cid)) != 0) {
        cid[0] = '\0';
        goto out;
    }
    memcpy(cid, FERRY_CID_CHUNKS_PREFIX, sizeof(FERRY_CID_CHUNKS_PREFIX) - 1);
out:
    ferry_sha256_cleanup(&h);
    return rc;
}

/*
 * ferry_cdc_init fails only for bad parameters (these are fixed and valid)
 * or when the GEAR table could not be built (no MD5 in OpenSSL). The header
 * gives this function no return value, so a failure leaves *c zeroed, which
 * callers detect by c->max == 0; ferry_cdc_stream_new does so.
 */
void ferry_cdc_default(struct ferry_cdc *c)
{
    *c = (struct ferry_cdc){0};
    if (ferry_cdc_init(c, FERRY_CHUNK_MIN, FERRY_CHUNK_AVG, FERRY_CHUNK_MAX) != 0)
        *c = (struct ferry_cdc){0};
}

/*
 * The stream keeps the bytes not yet cut in buf[start, end). ferry_cdc_next
 * gives the boundaries of one-shot chunking only when it sees the rest of
 * the stream or at least max bytes, so a chunk is cut only while at least
 * FERRY_CHUNK_MAX bytes are held, or at finish. The buffer is several times
 * that: when it is full, the rest (under FERRY_CHUNK_MAX bytes) moves down
 * once for every few MiB cut. With a buffer of just FERRY_CHUNK_MAX the
 * rest moved after every chunk, three times the data for 256 KiB chunks,
 * and that memmove was a fifth of a download's client CPU.
 */
#define CDC_STREAM_BUF (8 * FERRY_CHUNK_MAX)

/*
 * How a stream is fed, fixed by its first call after a reset: space and
 * commit hold the bytes (so fn may read the chunk), feed holds none.
 */
enum { CDC_FED_NONE, CDC_FED_HELD, CDC_FED_PASS };

struct ferry_cdc_stream {
    struct ferry_cdc cdc;
    ferry_chunk_fn fn;
    void *arg;
    uint8_t *buf;    /* CDC_STREAM_BUF bytes, allocated once (untouched when fed) */
    size_t start;    /* first byte not yet in a chunk */
    size_t end;      /* bytes of buf in use */
    uint64_t offset; /* stream offset of buf[start], or of the chunk being fed */
    int err;         /* first non-zero value of fn: sticky until reset */
    int finished;
    int fed; /* CDC_FED_* */
    /* Feed: the chunk in progress, hashed as its pieces pass. */
    size_t pos;     /* its bytes so far */
    uint64_t gear;  /* the rolling hash after them */
    EVP_MD_CTX *md; /* SHA-256 of them */
    EVP_MD *sha256;
};

int ferry_cdc_stream_new(ferry_chunk_fn fn, void *arg, struct ferry_cdc_stream **out)
{
    struct ferry_cdc_stream *s = NULL;
    int rc;

    *out = NULL;
    if (fn == NULL)
        return FERRY_EUSAGE;
    if ((s = ferry_calloc(1, sizeof(*s))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    ferry_cdc_default(&s->cdc);
    if (s->cdc.max == 0) {
        rc = FERRY_EINTERNAL; /* no GEAR table: see ferry_cdc_default */
        goto out;
    }
    if ((s->buf = ferry_malloc(CDC_STREAM_BUF)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    /* Fetched once: an implicit fetch on every chunk's init would cost a lookup each. */
    if ((s->md = EVP_MD_CTX_new()) == NULL ||
        (s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
        rc = FERRY_EINTERNAL;
        goto out;
    }
    s->fn = fn;
    s->arg = arg;
    *out = s;
    s = NULL;
    rc = 0;
out:
    ferry_cdc_stream_free(s);
    return rc;
}

void ferry_cdc_stream_free(struct ferry_cdc_stream *s)
{
    if (s == NULL)
        return;
    EVP_MD_CTX_free(s->md);
    EVP_MD_free(s->sha256);
    ferry_free(s->buf);
    ferry_free(s);
}

const uint8_t *ferry_cdc_stream_bytes(const struct ferry_cdc_stream *s)
{
    return s->fed == CDC_FED_HELD ? s->buf + s->start : NULL;
}

void ferry_cdc_stream_reset(struct ferry_cdc_stream *s)
{
    s->start = 0;
    s->end = 0;
    s->offset = 0;
    s->err = 0;
    s->finished = 0;
    s->fed = CDC_FED_NONE;
    s->pos = 0;
    s->gear = 0;
}

/* Cuts one chunk from the avail bytes at buf[start], hashes it and reports it. */
static int cut_one(struct ferry_cdc_stream *s, size_t avail)
{
    struct ferry_chunk_ent e;
    uint64_t gear;
    size_t len;
    int rc;

    len = ferry_cdc_next(&s->cdc, s->buf + s->start, avail, &gear);
    /* ferry_cdc_next returns 1..max bytes for avail > 0; anything else would loop. */
    if (len == 0 || len > avail)
        return FERRY_EINTERNAL;
    e.len = (uint32_t)len;
    ferry_sha256_buf(s->buf + s->start, len, e.hash);
    rc = s->fn(s->arg, s->offset, &e);
    s->start += len;
    s->offset += len;
    if (s->start == s->end) {
        s->start = 0;
        s->end = 0;
    }
    return rc;
}

/*
 * Room for the next bytes, at least FERRY_CHUNK_MAX of it, so a reader can
 * read straight into the stream with no copy. The bytes not yet cut (under
 * FERRY_CHUNK_MAX once commit has cut) move down only when the room left is
 * under FERRY_CHUNK_MAX: less than one move per 7 MiB.
 */
uint8_t *ferry_cdc_stream_space(struct ferry_cdc_stream *s, size_t *room)
{
    /* A dead or finished stream takes nothing: the bytes held may not have been cut. */
    if (s->err != 0 || s->finished || s->fed == CDC_FED_PASS) {
        *room = 0;
        return NULL;
    }
    s->fed = CDC_FED_HELD;
    if (CDC_STREAM_BUF - s->end < FERRY_CHUNK_MAX && s->start > 0) {
        memmove(s->buf, s->buf + s->start, s->end - s->start);
        s->end -= s->start;
        s->start = 0;
    }
    *room = CDC_STREAM_BUF - s->end;
    return s->buf + s->end;
}

/*
 * Returns 0 or the first non-zero value fn returned. After a non-zero return
 * the stream is dead: every later call returns the same value until
 * ferry_cdc_stream_reset. n must fit the room ferry_cdc_stream_space gave;
 * more, or a commit after finish, is FERRY_EUSAGE.
 */
int ferry_cdc_stream_commit(struct ferry_cdc_stream *s, size_t n)
{
    int rc = 0;

    if (s->err != 0)
        return s->err;
    if (s->finished || s->fed == CDC_FED_PASS || n > CDC_STREAM_BUF - s->end)
        return FERRY_EUSAGE;
    s->fed = CDC_FED_HELD;
    s->end += n;
    /* Cut while max bytes are held, so entries flow without waiting for more input. */
    while (s->end - s->start >= FERRY_CHUNK_MAX)
        if ((rc = cut_one(s, FERRY_CHUNK_MAX)) != 0)
            break;
    s->err = rc;
    return rc;
}

/* Ends the chunk being fed after its pos bytes and reports it. */
static int pass_cut(struct ferry_cdc_stream *s)
{
    struct ferry_chunk_ent e;
    unsigned len = 0;
    int rc;

    if (EVP_DigestFinal_ex(s->md, e.hash, &len) != 1 || len != sizeof(e.hash))
        return FERRY_EINTERNAL;
    e.len = (uint32_t)s->pos;
    rc = s->fn(s->arg, s->offset, &e);
    s->offset += s->pos;
    s->pos = 0;
    s->gear = 0;
    return rc;
}

/*
 * As ferry_cdc_stream_commit, from the caller's bytes, but without holding
 * them: each piece goes through the cut rule and into the chunk's SHA-256
 * where it lies, so a verifier copies nothing (the copy into a held buffer
 * was a fifth of a download's hashing thread). A chunk is reported as soon
 * as it ends; its bytes are not available to fn.
 */
int ferry_cdc_stream_feed(struct ferry_cdc_stream *s, const uint8_t *p, size_t n)
{
    size_t r;
    int cut, rc = 0;

    if (s->err != 0)
        return s->err;
    if (s->finished || s->fed == CDC_FED_HELD)
        return FERRY_EUSAGE;
    s->fed = CDC_FED_PASS;
    while (n > 0) {
        if (s->pos == 0 && EVP_DigestInit_ex(s->md, s->sha256, NULL) != 1) {
            rc = FERRY_EINTERNAL;
            break;
        }
        r = ferry_cdc_roll(&s->cdc, p, s->pos, n, &s->gear, &cut);
        if (r > 0 && EVP_DigestUpdate(s->md, p, r) != 1) {
            rc = FERRY_EINTERNAL;
            break;
        }
        s->pos += r;
        p += r;
        n -= r;
        if (cut && (rc = pass_cut(s)) != 0)
            break;
    }
    s->err = rc;
    return rc;
}

int ferry_cdc_stream_finish(struct ferry_cdc_stream *s)
{
    int rc = 0;

    if (s->err != 0)
        return s->err;
    /* Fed: what is left of the last chunk is all of it. */
    if (s->fed == CDC_FED_PASS && s->pos > 0 && (rc = pass_cut(s)) != 0)
        goto out;
    /* The rest of the stream is all here, so ferry_cdc_next may see less than max. */
    while (s->end > s->start) {
        if ((rc = cut_one(s, s->end - s->start)) != 0)
            goto out;
    }
    s->finished = 1;
out:
    s->err = rc;
    return rc;
}
