/*
 * The upload job's chunked files (R-CHUNK-4..8, R-CHUNK-12, R-CHUNK-13):
 * one at a time per job, pipelined with the rest. The list comes from the
 * local index or is cut and hashed in pool tasks, a step at a time, and
 * goes out as it grows; the server answers which chunks it lacks; those are
 * read in pool tasks, a batch at a time, and laid out on whichever link
 * (the hub's or one of the job's extra links) has the least output queued.
 * TransferComplete follows once every chunk went out and those of extra
 * links are stored.
 *
 * Read once: with a 1.5 server, whose answers cover at most 8 MiB of the
 * list (R-CHUNK-5), the scan keeps the chunks it cuts, laid out as frames,
 * until their answer comes; the needed ones go out from memory and the
 * others are dropped. The scan waits while CF_HOLD_MAX bytes are kept and
 * an answer is due; when none can come before more of the list is sent it
 * goes on without keeping. Reading a file's bytes a second time, from the
 * page cache, cost a tenth of a put's CPU. A file of which the server
 * lacks fewer than half the chunks of the last answer is not kept: those
 * few are read again, as before.
 *
 * A chunked file is shared with the pool tasks working on it: each holds a
 * reference, and a file dropped (a lost link, cancel) is freed when the
 * last of them is over. A worker touches only what its task owns: the fd
 * (read-only), the chunker (one scan task at a time) and its own buffers.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "ferry/index.h"
#include "ferry/manifest.h"
#include "ferry/net.h"
#include "upload_int.h"

/* File bytes one scan task reads and chunks. */
#define CF_SCAN_STEP (8u << 20)
/* Bytes per read of a scan task. */
#define CF_SCAN_READ (1u << 20)
/* The chunks one read task may hold (UP_BATCH_BYTES of them at most). */
#define CF_BATCH_BYTES  UP_BATCH_BYTES
#define CF_BATCH_CHUNKS (CF_BATCH_BYTES / FERRY_CHUNK_MIN)
/* Read tasks in flight or waiting for room, per job: chunk read-ahead is at most 4 MiB. */
#define CF_BATCHES_MAX 2
/* Chunk bytes the scan keeps (cut, hashed and not yet answered or sent) before it waits. */
#define CF_HOLD_MAX (16u << 20)
/* Write buffers lent to a keeping scan task; it allocates more itself. */
#define CF_SCAN_LEND 6

struct up_batch {
    struct up_cfile *cf;
    struct up_batch *next;
    uint32_t n, k; /* chunks, and those laid out */
    int err;
    int kept;     /* cut by the scan (consecutive indices): only the wanted go out */
    size_t bytes; /* chunk bytes */
    size_t fused; /* framed bytes of buf in use */
    uint8_t
        tid[FERRY_TID_LEN]; /* the worker's copy: the item's may change once the file is dropped */
    uint8_t *buf;           /* UP_BATCH_BUF: the chunks as frames, one after the other */
    uint32_t idx[CF_BATCH_CHUNKS];
    uint32_t len[CF_BATCH_CHUNKS];
    uint32_t flen[CF_BATCH_CHUNKS]; /* framed */
    uint64_t foff[CF_BATCH_CHUNKS];
    uint8_t want[CF_BATCH_CHUNKS]; /* kept: the server lacks it */
};

struct up_cfile {
    struct ferry_upload *u;
    size_t idx;
    int refs; /* the job's, and one per task in flight */
    int dead; /* dropped: tasks only let go */
    int fd;
    struct stat st;
    struct ferry_index_id fid;
    int64_t recorded; /* wall clock before the file was read (the racy rule) */
    int indexed;      /* the list came from the local index: nothing was read */
    uint8_t *ilist;   /* the index's list, from the open task */
    size_t ilen;
    int opening, opened, scanning, list_done, failed, finishing;
    int changed; /* the finish task found the file changed */
    char cid[FERRY_CID_LEN + 1];
    /* The chunker and the entries of the scan task in flight: the worker's while it runs. */
    struct ferry_cdc_stream *cdc;
    uint64_t scan_off;
    int scan_err;
    struct ferry_chunk_ent *sents;
    uint64_t *soffs;
    size_t sn, scap;
    /* Keeping: what the scan task in flight kept (the worker's while it runs). */
    int scan_keep;
    uint32_t scan_base; /* the list index of its first entry */
    uint8_t scan_tid[FERRY_TID_LEN];
    struct up_batch *sfill, *skept_head, *skept_tail;
    uint8_t *slend[CF_SCAN_LEND];
    unsigned nslend;
    /* Kept batches not yet answered, by index (loop only), and the bytes of all kept ones. */
    int may_keep, keep;
    struct up_batch *kept_head, *kept_tail;
    uint64_t kept_bytes;
    unsigned kept_ready; /* kept batches among the ready ones */
    /* The list so far (loop only). */
    uint8_t *list;
    size_t list_cap;
    uint64_t *offs;
    size_t offs_cap;
    uint32_t nent;     /* entries known */
    uint32_t sent;     /* entries sent */
    uint32_t answered; /* entries covered by ChunkNeed */
    uint32_t *need;    /* indices still to send, need[need_head..need_n) */
    size_t need_n, need_head, need_cap;
    /* R-CHUNK-13: per entry, the extra link that carries it until stored (0: none). */
    uint8_t *via;
    size_t via_cap;
    uint32_t pending_x;
    unsigned batches; /* read tasks in flight or ready */
    struct up_batch *ready_head, *ready_tail;
};

/* Appends b to a list of batches. */
static void batch_queue(struct up_batch **head, struct up_batch **tail, struct up_batch *b)
{
    b->next = NULL;
    if (*tail != NULL)
        (*tail)->next = b;
    else
        *head = b;
    *tail = b;
}

static void batches_free(struct ferry_upload *u, struct up_batch *b)
{
    struct up_batch *next;

    for (; b != NULL; b = next) {
        next = b->next;
        up_buf_put(u, b->buf);
        ferry_free(b);
    }
}

static void cf_unref(struct up_cfile *cf)
{
    unsigned i;

    if (--cf->refs > 0)
        return;
    batches_free(cf->u, cf->ready_head);
    batches_free(cf->u, cf->kept_head);
    batches_free(cf->u, cf->skept_head);
    batches_free(cf->u, cf->sfill);
    for (i = 0; i < cf->nslend; i++)
        ferry_free(cf->slend[i]);
    if (cf->fd >= 0)
        close(cf->fd);
    ferry_cdc_stream_free(cf->cdc);
    ferry_free(cf->ilist);
    ferry_free(cf->sents);
    ferry_free(cf->soffs);
    ferry_free(cf->list);
    ferry_free(cf->offs);
    ferry_free(cf->need);
    ferry_free(cf->via);
    ferry_free(cf);
}

static uint32_t ent_len(const struct up_cfile *cf, uint32_t i)
{
    return ferry_get_be32(cf->list + (size_t)i * FERRY_CHUNK_ENT_LEN);
}

static struct up_item *cf_item(const struct up_cfile *cf)
{
    return &cf->u->v[cf->idx];
}

static int cf_append(struct up_cfile *cf, const struct ferry_chunk_ent *e, uint64_t off)
{
    if ((size_t)(cf->nent + 1) * FERRY_CHUNK_ENT_LEN > cf->list_cap) {
        size_t ncap = cf->list_cap ? cf->list_cap * 2 : 1024 * FERRY_CHUNK_ENT_LEN;
        uint8_t *nl = ferry_realloc(cf->list, ncap);
        if (nl == NULL)
            return -ENOMEM;
        cf->list = nl;
        cf->list_cap = ncap;
    }
    if (cf->nent + 1u > cf->offs_cap) {
        size_t ncap = cf->offs_cap ? cf->offs_cap * 2 : 1024;
        uint64_t *no = ferry_realloc(cf->offs, ncap * sizeof(*no));
        if (no == NULL)
            return -ENOMEM;
        cf->offs = no;
        cf->offs_cap = ncap;
    }
    ferry_chunk_ent_encode(cf->list + (size_t)cf->nent * FERRY_CHUNK_ENT_LEN, e);
    cf->offs[cf->nent++] = off;
    return 0;
}

static int need_reserve(struct up_cfile *cf, size_t more)
{
    uint32_t *nv;
    size_t ncap;

    if (cf->need_n + more <= cf->need_cap)
        return 0;
    ncap = cf->need_cap ? cf->need_cap : 1024;
    while (ncap < cf->need_n + more)
        ncap *= 2;
    if ((nv = ferry_realloc(cf->need, ncap * sizeof(*nv))) == NULL)
        return -ENOMEM;
    cf->need = nv;
    cf->need_cap = ncap;
    return 0;
}

/* The list grows while the scan runs; via must cover every entry sent. */
static int via_reserve(struct up_cfile *cf)
{
    size_t ncap;
    uint8_t *nv;

    if (cf->via != NULL && cf->via_cap >= cf->nent)
        return 0;
    ncap = cf->via_cap ? cf->via_cap : 1024;
    while (ncap < cf->nent)
        ncap *= 2;
    if ((nv = ferry_realloc(cf->via, ncap)) == NULL)
        return -ENOMEM;
    memset(nv + cf->via_cap, 0, ncap - cf->via_cap);
    cf->via = nv;
    cf->via_cap = ncap;
    return 0;
}

/* Chunks an extra link carried and had not had stored go back to the queue (R-CHUNK-13). */
static void requeue_via(struct ferry_upload *u, int k)
{
    struct up_cfile *cf = u->cf;
    uint32_t i;

    if (cf == NULL || cf->via == NULL)
        return;
    for (i = 0; i < cf->via_cap && i < cf->nent; i++) {
        if (cf->via[i] != k)
            continue;
        cf->via[i] = 0;
        cf->pending_x--;
        if (need_reserve(cf, 1) == 0) {
            cf->need[cf->need_n++] = i;
            up_uncount(u, cf_item(cf), ent_len(cf, i));
        } else {
            cf->failed = 1;
        }
    }
}

/* --- pool tasks --- */

/* Opens the file and asks the local index for its list. */
static int open_work(void *arg)
{
    struct up_cfile *cf = arg;
    struct timespec now;

    /* O_NONBLOCK: a FIFO put in the file's place must not hold the worker. */
    cf->fd = open(cf_item(cf)->local, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (cf->fd < 0)
        return -errno;
    if (fstat(cf->fd, &cf->st) != 0 || !S_ISREG(cf->st.st_mode))
        return FERRY_EISDIR;
    clock_gettime(CLOCK_REALTIME, &now);
    cf->recorded = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    ferry_index_id_from_stat(&cf->fid, &cf->st);
    if (ferry_index_get(cf->u->state, &cf->fid, &cf->ilist, &cf->ilen) == 0 &&
        ferry_chunk_list_check(cf->ilist, cf->ilen, (uint64_t)cf->st.st_size) != 0) {
        ferry_free(cf->ilist);
        cf->ilist = NULL;
        cf->ilen = 0;
    }
    (void)posix_fadvise(cf->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return 0;
}

/* The worker's: the batch it fills goes to the list of those it filled. */
static void keep_close(struct up_cfile *cf)
{
    struct up_batch *b = cf->sfill;

    if (b == NULL)
        return;
    cf->sfill = NULL;
    batch_queue(&cf->skept_head, &cf->skept_tail, b);
}

/*
 * The worker's: copies the chunk just cut, as chunk frames, into the batch
 * it fills. Memory it cannot get only ends the keeping: the chunk is read
 * again if the server wants it.
 */
static void keep_chunk(struct up_cfile *cf, const struct ferry_chunk_ent *e)
{
    const uint8_t *src = ferry_cdc_stream_bytes(cf->cdc);
    struct up_batch *b = cf->sfill;
    uint32_t off = 0, piece;
    uint8_t *w;

    if (src == NULL || e->len == 0 || e->len > FERRY_CHUNK_MAX) {
        cf->scan_keep = 0;
        return;
    }
    if (b != NULL && (b->n == CF_BATCH_CHUNKS || b->bytes + e->len > CF_BATCH_BYTES)) {
        keep_close(cf);
        b = NULL;
    }
    if (b == NULL) {
        if ((b = ferry_calloc(1, sizeof(*b))) == NULL) {
            cf->scan_keep = 0;
            return;
        }
        b->buf = cf->nslend > 0 ? cf->slend[--cf->nslend] : ferry_malloc(UP_BATCH_BUF);
        if (b->buf == NULL) {
            ferry_free(b);
            cf->scan_keep = 0;
            return;
        }
        b->cf = cf;
        b->kept = 1;
        memcpy(b->tid, cf->scan_tid, FERRY_TID_LEN);
        cf->sfill = b;
    }
    w = b->buf + b->fused;
    b->idx[b->n] = cf->scan_base + (uint32_t)cf->sn;
    while (off < e->len) {
        piece = e->len - off > FERRY_DATA_MAX ? FERRY_DATA_MAX : e->len - off;
        ferry_frame_header_encode(w, FERRY_FRAME_CHUNK, (uint32_t)(FERRY_CHUNK_HDR_LEN + piece));
        ferry_chunk_frame_header_encode(w + FERRY_FRAME_HDR_LEN, b->tid, b->idx[b->n], off);
        memcpy(w + UP_FRAME_OVERHEAD, src + off, piece);
        w += UP_FRAME_OVERHEAD + piece;
        off += piece;
    }
    b->len[b->n] = e->len;
    b->flen[b->n] = (uint32_t)(w - (b->buf + b->fused));
    b->fused += b->flen[b->n];
    b->bytes += e->len;
    b->n++;
}

static int scan_push(void *arg, uint64_t offset, const struct ferry_chunk_ent *e)
{
    struct up_cfile *cf = arg;

    if (cf->scan_keep)
        keep_chunk(cf, e);
    if (cf->sn == cf->scap) {
        size_t ncap = cf->scap ? cf->scap * 2 : 64;
        struct ferry_chunk_ent *ne = ferry_realloc(cf->sents, ncap * sizeof(*ne));
        uint64_t *no;
        if (ne == NULL)
            return -ENOMEM;
        cf->sents = ne;
        if ((no = ferry_realloc(cf->soffs, ncap * sizeof(*no))) == NULL)
            return -ENOMEM;
        cf->soffs = no;
        cf->scap = ncap;
    }
    cf->sents[cf->sn] = *e;
    cf->soffs[cf->sn++] = offset;
    return 0;
}

/* Reads, cuts and hashes the next step of the file (R-CHUNK-1). */
static int scan_work(void *arg)
{
    struct up_cfile *cf = arg;
    uint64_t size = (uint64_t)cf->st.st_size, end;
    size_t want, room;
    uint8_t *w;
    ssize_t n;
    int rc = 0;

    end = size - cf->scan_off > CF_SCAN_STEP ? cf->scan_off + CF_SCAN_STEP : size;
    while (cf->scan_off < end) {
        if ((w = ferry_cdc_stream_space(cf->cdc, &room)) == NULL)
            return FERRY_EINTERNAL; /* cannot happen: errors end the scan */
        want = end - cf->scan_off > CF_SCAN_READ ? CF_SCAN_READ : (size_t)(end - cf->scan_off);
        if (want > room)
            want = room;
        n = pread(cf->fd, w, want, (off_t)cf->scan_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return FERRY_ECANCELED; /* shorter than its size: it changed */
        if ((rc = ferry_cdc_stream_commit(cf->cdc, (size_t)n)) != 0)
            return rc;
        cf->scan_off += (uint64_t)n;
    }
    if (cf->scan_off == size)
        rc = ferry_cdc_stream_finish(cf->cdc);
    keep_close(cf);
    return rc;
}

/*
 * Lays chunk i of b out at w as chunk frames and reads its bytes into
 * their places with one preadv: the loop then sends them as they are.
 */
static int read_framed(struct up_batch *b, uint32_t i, uint8_t *w)
{
    struct iovec iov[FERRY_CHUNK_MAX / FERRY_DATA_MAX + 1];
    uint32_t len = b->len[i], off = 0, piece;
    int niov = 0, k = 0;
    uint64_t at = b->foff[i];
    uint8_t *p = w;
    ssize_t n;

    if (len == 0 || len > FERRY_CHUNK_MAX)
        return FERRY_EUSAGE;
    while (off < len) {
        piece = len - off > FERRY_DATA_MAX ? FERRY_DATA_MAX : len - off;
        ferry_frame_header_encode(p, FERRY_FRAME_CHUNK, (uint32_t)(FERRY_CHUNK_HDR_LEN + piece));
        ferry_chunk_frame_header_encode(p + FERRY_FRAME_HDR_LEN, b->tid, b->idx[i], off);
        iov[niov].iov_base = p + UP_FRAME_OVERHEAD;
        iov[niov++].iov_len = piece;
        p += UP_FRAME_OVERHEAD + piece;
        off += piece;
    }
    b->flen[i] = (uint32_t)(p - w);
    while (k < niov) {
        n = preadv(b->cf->fd, iov + k, niov - k, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return FERRY_ECANCELED; /* it shrank since it was chunked */
        at += (uint64_t)n;
        /* A short read: go on from where it stopped. */
        while (k < niov && (size_t)n >= iov[k].iov_len) {
            n -= (ssize_t)iov[k].iov_len;
            k++;
        }
        if (k < niov && n > 0) {
            iov[k].iov_base = (uint8_t *)iov[k].iov_base + n;
            iov[k].iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int batch_work(void *arg)
{
    struct up_batch *b = arg;
    size_t pos = 0;
    uint32_t i;
    int rc;

    for (i = 0; i < b->n; i++) {
        if ((rc = read_framed(b, i, b->buf + pos)) != 0)
            return rc;
        pos += b->flen[i];
    }
    return 0;
}

/* The last look: unchanged since it was read? Then its id, and the index learns the list. */
static int finish_work(void *arg)
{
    struct up_cfile *cf = arg;
    struct stat after;
    int rc;

    if (fstat(cf->fd, &after) != 0 || after.st_size != cf->st.st_size ||
        after.st_mtim.tv_sec != cf->st.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != cf->st.st_mtim.tv_nsec ||
        after.st_ctim.tv_sec != cf->st.st_ctim.tv_sec ||
        after.st_ctim.tv_nsec != cf->st.st_ctim.tv_nsec) {
        cf->changed = 1;
        return 0;
    }
    if ((rc = ferry_chunk_list_cid(cf->list, (size_t)cf->nent * FERRY_CHUNK_ENT_LEN, cf->cid)) != 0)
        return rc;
    /* The index is a cache of what the bytes were: right even if the upload fails. */
    if (!cf->indexed && cf->u->state != NULL)
        ferry_index_put(cf->u->state, &cf->fid, cf->recorded, cf->list,
                        (size_t)cf->nent * FERRY_CHUNK_ENT_LEN);
    return 0;
}

static void cf_release(struct ferry_upload *u)
{
    struct up_cfile *cf = u->cf;

    if (cf == NULL)
        return;
    u->cf = NULL;
    cf->dead = 1;
    cf_unref(cf);
}

static int cf_submit(struct up_cfile *cf, ferry_pool_work_fn work, ferry_pool_done_fn done,
                     void *arg)
{
    int rc = ferry_pool_submit(cf->u->pool, work, done, arg, NULL);

    if (rc == 0)
        cf->refs++;
    return rc;
}

static void scan_done(void *arg, int status);

static int start_scan(struct up_cfile *cf, int keep)
{
    struct ferry_upload *u = cf->u;
    int rc;

    cf->sn = 0;
    cf->scanning = 1;
    cf->scan_keep = keep;
    cf->scan_base = cf->nent;
    memcpy(cf->scan_tid, cf_item(cf)->tid, FERRY_TID_LEN);
    /* Spare buffers only: the worker allocates what else it needs. */
    while (keep && cf->nslend < CF_SCAN_LEND && u->nspare > 0)
        cf->slend[cf->nslend++] = up_buf_get(u);
    if ((rc = cf_submit(cf, scan_work, scan_done, cf)) != 0)
        cf->scanning = 0;
    return rc;
}

static void fail_cf(struct ferry_upload *u, int rc, const char *why)
{
    up_fail(u, cf_item(u->cf), rc, why);
    u->cf->failed = 1;
}

/*
 * A task is over: it lets go of the file. 1 when the job still carries the
 * file on (the task's result is for it), 0 when it was dropped or the job
 * is being freed.
 */
static int cf_task_over(struct up_cfile *cf)
{
    int live = !cf->dead && !cf->u->freeing;

    /* The job holds its own reference while live: this never frees a live file. */
    cf_unref(cf);
    return live;
}

static void open_done(void *arg, int status)
{
    struct up_cfile *cf = arg;
    struct ferry_upload *u = cf->u;
    struct up_item *it;
    size_t i;
    int rc;

    cf->opening = 0;
    if (!cf_task_over(cf))
        return;
    it = cf_item(cf);
    if (status != 0) {
        up_fail(u, it, status,
                status == FERRY_EISDIR ? "not a regular file" : ferry_strerror(status));
        up_slot_give(u, it); /* taken for a ChunkedUpload never sent */
        cf_release(u);
        up_kick(u);
        return;
    }
    it->size = (uint64_t)cf->st.st_size;
    it->mtime = cf->fid.mtime;
    if ((rc = up_send_open(u, it, FERRY_MSG_CHUNKED_UPLOAD)) != 0) {
        /* Down meanwhile: on_down requeued the item; else the job cannot go on. */
        if (!up_link_going(rc))
            up_end(u, rc);
        return;
    }
    cf->opened = 1;
    if (cf->ilist != NULL) {
        /* Unchanged since it was indexed: not a byte of it is read. */
        struct ferry_chunk_ent e;
        uint64_t off = 0;

        for (i = 0; i + FERRY_CHUNK_ENT_LEN <= cf->ilen && rc == 0; i += FERRY_CHUNK_ENT_LEN) {
            ferry_chunk_ent_decode(cf->ilist + i, &e);
            rc = cf_append(cf, &e, off);
            off += e.len;
        }
        cf->indexed = 1;
        cf->list_done = 1;
    } else if (it->size == 0) {
        cf->list_done = 1;
    } else if ((rc = ferry_cdc_stream_new(scan_push, cf, &cf->cdc)) == 0) {
        /* R-CHUNK-5: only a 1.5 server's answers are sure to come within 8 MiB. */
        cf->may_keep = u->minor >= 5;
        cf->keep = cf->may_keep;
        if ((rc = start_scan(cf, cf->keep)) == 0)
            u->bytes_read += it->size;
    }
    if (rc != 0)
        fail_cf(u, rc, ferry_strerror(rc));
    up_kick(u);
}

static void scan_done(void *arg, int status)
{
    struct up_cfile *cf = arg;
    struct ferry_upload *u = cf->u;
    struct up_batch *b;
    size_t i;
    int rc = 0;

    cf->scanning = 0;
    if (!cf_task_over(cf))
        return;
    /* What the task kept joins the kept batches, in index order. */
    keep_close(cf);
    while ((b = cf->skept_head) != NULL) {
        cf->skept_head = b->next;
        cf->kept_bytes += b->bytes;
        batch_queue(&cf->kept_head, &cf->kept_tail, b);
    }
    cf->skept_tail = NULL;
    while (cf->nslend > 0)
        up_buf_put(u, cf->slend[--cf->nslend]);
    for (i = 0; i < cf->sn && rc == 0; i++)
        rc = cf_append(cf, &cf->sents[i], cf->soffs[i]);
    cf->sn = 0;
    if (status == 0 && rc != 0)
        status = rc;
    if (status != 0)
        fail_cf(u, status,
                status == FERRY_ECANCELED ? "changed while being read" : ferry_strerror(status));
    else if (cf->scan_off == (uint64_t)cf->st.st_size)
        cf->list_done = 1;
    /* The next step, if any, starts from the pump: it may have to wait for an answer. */
    up_kick(u);
}

static void batch_done(void *arg, int status)
{
    struct up_batch *b = arg;
    struct up_cfile *cf = b->cf;
    struct ferry_upload *u = cf->u;

    if (cf->dead || u->freeing || status != 0) {
        if (!cf->dead && !u->freeing) {
            cf->batches--;
            /* The file, not the link: it shrank or could not be read. */
            fail_cf(u, status,
                    status == FERRY_ECANCELED ? "changed while being read"
                                              : ferry_strerror(status));
        }
        up_buf_put(u, b->buf);
        ferry_free(b);
        cf_unref(cf);
        if (!u->freeing)
            up_kick(u);
        return;
    }
    batch_queue(&cf->ready_head, &cf->ready_tail, b);
    cf_unref(cf);
    up_kick(u);
}

static void finish_done(void *arg, int status)
{
    struct up_cfile *cf = arg;
    struct ferry_upload *u = cf->u;
    struct up_item *it;
    int rc;

    if (!cf_task_over(cf))
        return;
    it = cf_item(cf);
    if (status != 0) {
        fail_cf(u, status, ferry_strerror(status));
        up_kick(u);
        return;
    }
    if (cf->changed) {
        /* A file that changed while it was read is not committed half old, half new. */
        rc = up_send_cancel(u, it);
        up_fail(u, it, FERRY_ECANCELED, "changed while being read; run the upload again");
    } else {
        rc = up_send_complete(u, it, cf->cid);
    }
    cf_release(u);
    if (rc != 0 && !up_link_going(rc))
        up_end(u, rc);
    else
        up_kick(u);
}

/* --- on the loop --- */

int up_cf_start(struct ferry_upload *u, size_t idx)
{
    struct up_cfile *cf = ferry_calloc(1, sizeof(*cf));
    int rc;

    if (cf == NULL)
        return -ENOMEM;
    cf->u = u;
    cf->idx = idx;
    cf->fd = -1;
    cf->refs = 1;
    u->cf = cf;
    u->v[idx].state = IT_BUSY;
    u->prog.name = u->v[idx].local;
    cf->opening = 1;
    if ((rc = cf_submit(cf, open_work, open_done, cf)) != 0) {
        u->v[idx].state = IT_QUEUED;
        cf_release(u);
        return rc;
    }
    /* Extra links only for a job that has chunks to spread (R-SESS-10 counts them). */
    up_links_open(u);
    return 0;
}

int up_cf_owns(const struct ferry_upload *u, const struct up_item *it)
{
    return u->cf != NULL && cf_item(u->cf) == it;
}

void up_cf_failed(struct ferry_upload *u)
{
    if (u->cf != NULL)
        u->cf->failed = 1;
}

void up_cf_drop(struct ferry_upload *u)
{
    struct up_cfile *cf = u->cf;

    if (cf == NULL)
        return;
    batches_free(u, cf->ready_head);
    cf->ready_head = cf->ready_tail = NULL;
    batches_free(u, cf->kept_head);
    cf->kept_head = cf->kept_tail = NULL;
    cf->kept_bytes = 0;
    cf->kept_ready = 0;
    cf_release(u);
}

/* R-CHUNK-5: the server's answer for one group of the list. */
static int on_need(struct ferry_upload *u, const struct ferry_cmd *m)
{
    struct up_cfile *cf = u->cf;
    json_t *need = json_object_get(m->body, "need"), *v;
    json_int_t first = json_integer_value(json_object_get(m->body, "first"));
    json_int_t count = json_integer_value(json_object_get(m->body, "count"));
    json_int_t prev = first - 1, k;
    size_t i;

    if (first != cf->answered || count < 1 || count > FERRY_NEED_GROUP ||
        first + count > cf->nent || !json_is_array(need) || json_array_size(need) > (size_t)count)
        return FERRY_EPROTO;
    if (need_reserve(cf, (size_t)count) != 0)
        return -ENOMEM;
    json_array_foreach(need, i, v)
    {
        k = json_integer_value(v);
        if (!json_is_integer(v) || k <= prev || k >= first + count)
            return FERRY_EPROTO;
        /* Chunks between two needed ones are on the server already. */
        for (prev++; prev < k; prev++)
            up_progress(u, cf_item(cf), ent_len(cf, (uint32_t)prev), 1);
        cf->need[cf->need_n++] = (uint32_t)k;
    }
    for (prev++; prev < first + count; prev++)
        up_progress(u, cf_item(cf), ent_len(cf, (uint32_t)prev), 1);
    cf->answered = (uint32_t)(first + count);
    /* Keeping pays when most chunks go out; for a file the server mostly holds it costs. */
    cf->keep = cf->may_keep && json_array_size(need) * 2 >= (size_t)count;
    return 0;
}

int up_cf_frame(struct ferry_upload *u, const struct ferry_cmd *m, const uint8_t tid[16])
{
    struct up_cfile *cf = u->cf;
    int rc = 0;

    /* A stale answer, for a file given up on or sent before a lost link, is dropped. */
    if (cf == NULL || !cf->opened || memcmp(tid, cf_item(cf)->tid, FERRY_TID_LEN) != 0)
        return 0;
    if (m->type == FERRY_MSG_CHUNK_NEED)
        rc = on_need(u, m);
    else /* ChunkStored: durable on the server; asking again after a break will say so. */
        ferry_session_progress(ferry_hub_session(u->hub));
    if (rc == 0)
        up_kick(u);
    return rc;
}

/* The link with the least output queued: 0 the hub's, k an extra one. */
static struct ferry_conn *pick(struct ferry_upload *u, int *k, size_t *pending)
{
    struct ferry_conn *best = ferry_session_conn(ferry_hub_session(u->hub)), *c;
    size_t n;
    unsigned i;

    *k = 0;
    *pending = best != NULL ? ferry_conn_pending(best) : SIZE_MAX;
    for (i = 0; i < u->nlinks; i++) {
        if (!u->links[i].up || (c = ferry_session_conn(u->links[i].s)) == NULL)
            continue;
        if ((n = ferry_conn_pending(c)) < *pending) {
            *pending = n;
            best = c;
            *k = u->links[i].k;
        }
    }
    return best;
}

/* Lays out the chunks read, each on the link with most room, while one has room. */
static int lay_batches(struct ferry_upload *u)
{
    struct up_cfile *cf = u->cf;
    struct up_batch *b;
    struct ferry_conn *c, *used[FERRY_UPLOAD_CONNECTIONS_MAX] = {0};
    size_t pending, pos;
    int k, rc = 0;
    uint32_t i;

    if (via_reserve(cf) != 0)
        return -ENOMEM;
    while ((b = cf->ready_head) != NULL && rc == 0 && !cf->failed) {
        for (pos = 0, i = 0; i < b->k; i++)
            pos += b->flen[i];
        while (b->k < b->n) {
            i = b->k;
            if (b->kept && !b->want[i]) {
                pos += b->flen[i]; /* the server holds it (R-CHUNK-5) */
                b->k++;
                continue;
            }
            if ((c = pick(u, &k, &pending)) == NULL || pending >= UP_OUT_HIGH || up_bw_wait(u))
                goto out;
            /* Framed by the read task: TLS takes them from the batch's buffer. */
            rc = ferry_conn_send_direct(c, b->buf + pos, b->flen[i]);
            if (rc == FERRY_ETOOBIG || rc == -ENOMEM || up_link_going(rc)) {
                rc = 0;
                goto out; /* no room after all (on drain), or the link is going (on_down) */
            }
            if (rc != 0)
                goto out;
            used[k] = c;
            if (k > 0) {
                /* Waits for its ChunkStored before TransferComplete (R-CHUNK-13). */
                cf->via[b->idx[i]] = (uint8_t)k;
                cf->pending_x++;
            }
            up_bw_sent(u, b->len[i]);
            if (!b->kept)
                u->bytes_read += b->len[i]; /* read a second time */
            up_progress(u, cf_item(cf), b->len[i], 0);
            pos += b->flen[i];
            b->k++;
        }
        cf->ready_head = b->next;
        if (cf->ready_head == NULL)
            cf->ready_tail = NULL;
        if (b->kept) {
            cf->kept_bytes -= b->bytes;
            cf->kept_ready--;
        } else {
            cf->batches--;
        }
        up_buf_put(u, b->buf);
        ferry_free(b);
    }
out:
    for (k = 1; k < FERRY_UPLOAD_CONNECTIONS_MAX; k++)
        up_flush(used[k]);
    return rc;
}

/* The kept batch that holds chunk idx, if any. */
static struct up_batch *kept_find(const struct up_cfile *cf, uint32_t idx)
{
    struct up_batch *b;

    for (b = cf->kept_head; b != NULL; b = b->next)
        if (idx >= b->idx[0] && idx - b->idx[0] < b->n)
            return b;
    return NULL;
}

/*
 * Kept batches whose every chunk is answered, and whose needed chunks are
 * all marked, go out as they are (or are dropped, none needed). Needs come
 * in index order, one group at a time, so none can be for them later (a
 * chunk an extra link lost is read again).
 */
static void kept_promote(struct ferry_upload *u)
{
    struct up_cfile *cf = u->cf;
    struct up_batch *b;
    uint32_t i, last;
    int wanted;

    while ((b = cf->kept_head) != NULL) {
        last = b->idx[b->n - 1];
        if (last >= cf->answered || (cf->need_head < cf->need_n && cf->need[cf->need_head] <= last))
            break;
        cf->kept_head = b->next;
        if (cf->kept_head == NULL)
            cf->kept_tail = NULL;
        b->next = NULL;
        for (wanted = 0, i = 0; i < b->n; i++)
            wanted |= b->want[i];
        if (!wanted) {
            cf->kept_bytes -= b->bytes;
            up_buf_put(u, b->buf);
            ferry_free(b);
            continue;
        }
        batch_queue(&cf->ready_head, &cf->ready_tail, b);
        cf->kept_ready++;
    }
}

/*
 * R-CHUNK-5: whether an answer is on its way, so a scan that keeps enough
 * may wait for it: the group after the answered entries (the server's
 * rule, 1.5) is all sent.
 */
static int answer_due(const struct up_cfile *cf)
{
    uint32_t group, i;
    uint64_t bytes = 0;

    group = cf->answered < FERRY_NEED_FIRST   ? FERRY_NEED_FIRST
            : cf->answered < FERRY_NEED_GROUP ? cf->answered
                                              : FERRY_NEED_GROUP;
    for (i = cf->answered; i < cf->sent; i++) {
        bytes += ent_len(cf, i);
        if (i + 1 - cf->answered == group || bytes >= FERRY_NEED_GROUP_BYTES)
            return 1;
    }
    return cf->list_done && cf->sent == cf->nent && cf->answered < cf->nent;
}

/*
 * The next step of the scan, unless it keeps enough already and kept
 * bytes will be freed without it: an answer is due, or answered chunks
 * wait for room on the links. Else it goes on without keeping (the group
 * the server answers next needs more of the list).
 */
static int scan_more(struct up_cfile *cf)
{
    int keep;

    if (cf->scanning || cf->list_done || cf->cdc == NULL || cf->failed)
        return 0;
    keep = cf->keep && cf->kept_bytes < CF_HOLD_MAX;
    if (cf->keep && !keep && (cf->kept_ready > 0 || answer_due(cf)))
        return 0;
    return start_scan(cf, keep);
}

/* Marks the needed chunks that are kept; asks the pool for the others, a batch at a time. */
static int read_batches(struct ferry_upload *u)
{
    struct up_cfile *cf = u->cf;
    struct up_batch *b, *kb;
    size_t bytes;
    uint32_t idx;
    int rc;

    while (cf->need_head < cf->need_n && !cf->failed) {
        idx = cf->need[cf->need_head];
        if ((kb = kept_find(cf, idx)) != NULL) {
            kb->want[idx - kb->idx[0]] = 1;
            cf->need_head++;
            continue;
        }
        if (cf->batches >= CF_BATCHES_MAX)
            break;
        if ((b = ferry_calloc(1, sizeof(*b))) == NULL)
            return -ENOMEM;
        b->cf = cf;
        memcpy(b->tid, cf_item(cf)->tid, FERRY_TID_LEN);
        bytes = 0;
        while (cf->need_head < cf->need_n && b->n < CF_BATCH_CHUNKS) {
            uint32_t len;
            idx = cf->need[cf->need_head];
            len = ent_len(cf, idx);
            if ((b->n > 0 && bytes + len > CF_BATCH_BYTES) || kept_find(cf, idx) != NULL)
                break;
            b->idx[b->n] = idx;
            b->len[b->n] = len;
            b->foff[b->n] = cf->offs[idx];
            b->n++;
            bytes += len;
            cf->need_head++;
        }
        if ((b->buf = up_buf_get(u)) == NULL) {
            ferry_free(b);
            return -ENOMEM;
        }
        if ((rc = cf_submit(cf, batch_work, batch_done, b)) != 0) {
            up_buf_put(u, b->buf);
            ferry_free(b);
            return rc;
        }
        cf->batches++;
    }
    return 0;
}

/*
 * R-CHUNK-4: the list as data frames of the tid, in order, 64 entries or
 * more at a time so entries share records; the first FERRY_NEED_FIRST at
 * once, as the server answers them at once (R-CHUNK-5).
 */
static int send_list(struct ferry_upload *u)
{
    struct up_cfile *cf = u->cf;
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(u->hub));
    int rc;

    /* Kept chunks wait for their answer: their entries go out with each step of the scan. */
    if (c == NULL || cf->sent >= cf->nent ||
        (cf->nent - cf->sent < (cf->sent < FERRY_NEED_FIRST ? FERRY_NEED_FIRST : 64) &&
         !cf->list_done && !cf->may_keep))
        return 0;
    rc = up_lay_data(c, cf_item(cf)->tid, (uint64_t)cf->sent * FERRY_CHUNK_ENT_LEN,
                     cf->list + (size_t)cf->sent * FERRY_CHUNK_ENT_LEN,
                     (size_t)(cf->nent - cf->sent) * FERRY_CHUNK_ENT_LEN);
    if (rc == 0)
        cf->sent = cf->nent;
    return rc == FERRY_ETOOBIG || up_link_going(rc) ? 0 : rc;
}

void up_cf_pump(struct ferry_upload *u)
{
    struct up_cfile *cf = u->cf;
    int rc;

    if (cf == NULL || !cf->opened || cf->finishing)
        return;
    if (cf->failed) {
        /* R-XFER-4: a given-up upload ends with TransferCancel, its last word. */
        up_send_cancel(u, cf_item(cf));
        up_fail(u, cf_item(cf), FERRY_ECANCELED, "failed");
        cf_release(u);
        return;
    }
    if ((rc = send_list(u)) == 0 && (rc = read_batches(u)) == 0) {
        kept_promote(u);
        if ((rc = lay_batches(u)) == 0 && (rc = read_batches(u)) == 0)
            rc = scan_more(cf);
    }
    if (rc != 0) {
        if (!up_link_going(rc))
            fail_cf(u, rc, ferry_strerror(rc));
        return;
    }
    /* Done when every chunk went out and those of extra links are stored. */
    if (cf->list_done && cf->sent == cf->nent && cf->answered == cf->nent &&
        cf->need_head == cf->need_n && cf->batches == 0 && cf->pending_x == 0 && !cf->scanning &&
        cf->kept_head == NULL && cf->ready_head == NULL) {
        if ((rc = cf_submit(cf, finish_work, finish_done, cf)) != 0)
            fail_cf(u, rc, ferry_strerror(rc));
        else
            cf->finishing = 1;
    }
}

/* --- extra links (R-CHUNK-13) --- */

static void link_up(struct ferry_session *s, const struct ferry_session_info *info)
{
    struct up_link *l = ferry_session_data(s);

    (void)info;
    l->up = 1;
    up_kick(l->u);
}

/* ChunkStored and the Errors of its chunks. */
static int link_frame(struct ferry_session *s, const struct ferry_frame *f,
                      const struct ferry_cmd *m)
{
    struct up_link *l = ferry_session_data(s);
    struct ferry_upload *u = l->u;
    struct up_cfile *cf = u->cf;
    uint8_t tid[FERRY_TID_LEN];
    const char *ts, *msg;
    json_int_t idx;
    int mine;

    (void)f;
    if (m == NULL)
        return FERRY_EPROTO; /* only commands come on an extra link */
    ts = json_string_value(json_object_get(m->body, "tid"));
    idx = json_integer_value(json_object_get(m->body, "index"));
    mine = ts != NULL && ferry_hex_decode(ts, tid, FERRY_TID_LEN) == 0 && cf != NULL &&
           cf->opened && memcmp(tid, cf_item(cf)->tid, FERRY_TID_LEN) == 0 && idx >= 0 &&
           idx < cf->nent && cf->via != NULL && (size_t)idx < cf->via_cap && cf->via[idx] == l->k;
    if (m->type == FERRY_MSG_CHUNK_STORED && mine) {
        cf->via[idx] = 0;
        cf->pending_x--;
        ferry_session_progress(ferry_hub_session(u->hub));
        up_kick(u);
    } else if (m->type == FERRY_MSG_ERROR && mine) {
        msg = json_string_value(json_object_get(m->body, "message"));
        fail_cf(u, FERRY_EHASH, msg != NULL ? msg : "error");
        up_kick(u);
    } else if (m->type == FERRY_MSG_ERROR && ts == NULL) {
        return FERRY_EPROTO; /* a fault of the link itself: drop it */
    }
    return 0;
}

static void link_drain(struct ferry_session *s)
{
    struct up_link *l = ferry_session_data(s);

    up_kick(l->u);
}

/* What a link carried counts in the job's figures after it is gone. */
static void link_tally(struct ferry_upload *u, struct up_link *l)
{
    uint64_t tx = 0, rx = 0;

    if (l->tallied)
        return;
    l->tallied = 1;
    ferry_session_wire_bytes(l->s, &tx, &rx);
    u->wire_sent += tx;
    u->wire_received += rx;
}

static void link_free(struct ferry_upload *u, struct up_link *l)
{
    link_tally(u, l);
    ferry_session_free(l->s);
    l->s = NULL;
    l->tallied = 0;
}

static void link_close(struct ferry_session *s, int rc)
{
    struct up_link *l = ferry_session_data(s);
    struct ferry_upload *u = l->u;
    char text[200];

    (void)s;
    if (l->up && !l->dropping && u->ops.on_note != NULL && !u->finished) {
        snprintf(text, sizeof(text), "an extra connection was lost (%s); carrying on without it",
                 ferry_strerror(rc != 0 ? rc : -ECONNRESET));
        u->ops.on_note(u->arg, text);
    }
    l->up = 0;
    l->dropping = 0;
    link_free(u, l);
    requeue_via(u, l->k);
    up_kick(u);
}

static const struct ferry_session_ops link_ops = {
    .on_up = link_up,
    .on_frame = link_frame,
    .on_drain = link_drain,
    .on_close = link_close,
};

void up_links_open(struct ferry_upload *u)
{
    unsigned i;

    /* Only a 1.1 server takes chunks on several connections (R-CHUNK-13). */
    if (!u->has_link_cfg || u->minor < 1 || !u->up || u->finished || u->freeing || u->cf == NULL)
        return;
    for (i = 0; i < u->nlinks; i++) {
        struct up_link *l = &u->links[i];
        /* An extra link that cannot be had is no error: the hub's carries on. */
        if (l->s == NULL && ferry_session_open(&u->link_cfg, &link_ops, l, &l->s) != 0)
            l->s = NULL;
    }
}

void up_links_close(struct ferry_upload *u)
{
    unsigned i;

    for (i = 0; i < u->nlinks; i++) {
        struct up_link *l = &u->links[i];
        if (l->s == NULL)
            continue;
        requeue_via(u, l->k);
        l->up = 0;
        if (u->freeing) {
            /* Closed at once, without on_close: nothing of the job remains to hear it. */
            link_free(u, l);
        } else if (!l->dropping) {
            /* Counted now: the owner reads the figures before the close is over. */
            link_tally(u, l);
            l->dropping = 1;
            ferry_session_close(l->s);
        }
    }
}
