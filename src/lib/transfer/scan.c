/* A scanner thread: pread, FastCDC and SHA-256 of a file off the sending thread. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "ferry/core.h"
#include "ferry/manifest.h"
#include "scan.h"

/* Bytes per pread(2), straight into the chunker's buffer: large enough to stream. */
#define SCAN_READ (1u << 20)
/*
 * Entries queued ahead of the caller. 4096 entries of 48 bytes are 192 KiB
 * and cover about 1 GiB of file at the average chunk size, so the thread
 * rarely waits, yet memory stays bounded whatever the file size. Tests
 * ask for a small queue (ferry__scan_new) to exercise a full one.
 */
#define SCAN_QUEUE 4096

struct scan_item {
    uint64_t offset;
    struct ferry_chunk_ent e;
};

struct ferry_scan {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* one condition, as in reader.c: changes are rare and cheap to recheck */
    struct ferry_cdc_stream *cdc; /* touched only by the thread while busy */
    struct scan_item *q;          /* qcap entries, a ring */
    size_t qcap;
    size_t qhead;
    size_t qlen;
    int fd;
    uint64_t size;
    int running; /* a file is begun and not yet ended */
    int work;    /* the thread has yet to pick up the file */
    int busy;    /* the thread is reading the file */
    int done;    /* every entry of the file is queued, or err is set */
    int err;     /* the file's result once done: 0 or < 0 */
    int stop;    /* the caller ended the file early */
    int quit;
};

/* The stream's callback, on the thread: queues an entry, waiting while the queue is full. */
static int push(void *arg, uint64_t offset, const struct ferry_chunk_ent *e)
{
    struct ferry_scan *s = arg;
    int rc = 0;

    pthread_mutex_lock(&s->mu);
    while (!s->stop && !s->quit && s->qlen == s->qcap)
        pthread_cond_wait(&s->cv, &s->mu);
    if (s->stop || s->quit) {
        rc = FERRY_ECANCELED;
        goto out;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = (struct scan_item){offset, *e};
    s->qlen++;
    pthread_cond_broadcast(&s->cv);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int stopping(struct ferry_scan *s)
{
    int r;

    pthread_mutex_lock(&s->mu);
    r = s->stop || s->quit;
    pthread_mutex_unlock(&s->mu);
    return r;
}

/*
 * Reads and chunks size bytes of fd without the lock held. Returns 0 once
 * the last entry is queued, -errno on a read error, FERRY_ECANCELED if the
 * file ends before size (it changed under us) or the caller stopped it.
 */
static int scan_file(struct ferry_scan *s, int fd, uint64_t size)
{
    uint64_t off = 0;
    size_t want, room;
    uint8_t *w;
    ssize_t n;
    int rc = 0;

    ferry_cdc_stream_reset(s->cdc);
    /* Only a hint for a bigger read-ahead; the scan is correct without it. */
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    while (off < size) {
        if (stopping(s)) {
            rc = FERRY_ECANCELED;
            goto out;
        }
        if ((w = ferry_cdc_stream_space(s->cdc, &room)) == NULL) {
            rc = FERRY_EINTERNAL; /* cannot happen: errors end the loop */
            goto out;
        }
        want = size - off > SCAN_READ ? SCAN_READ : (size_t)(size - off);
        if (want > room)
            want = room;
        n = pread(fd, w, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if (n == 0) {
            rc = FERRY_ECANCELED; /* shorter than its size: it changed */
            goto out;
        }
        if ((rc = ferry_cdc_stream_commit(s->cdc, (size_t)n)) != 0)
            goto out;
        off += (uint64_t)n;
    }
    rc = ferry_cdc_stream_finish(s->cdc);
out:
    return rc;
}

static void *thread_main(void *arg)
{
    struct ferry_scan *s = arg;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        uint64_t size;
        int fd, rc;

        while (!s->quit && !s->work)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->quit)
            break;
        s->work = 0;
        s->busy = 1;
        fd = s->fd;
        size = s->size;
        pthread_mutex_unlock(&s->mu);
        /* No lock is held across the I/O and the hashing. */
        rc = scan_file(s, fd, size);
        pthread_mutex_lock(&s->mu);
        /* After a stop, ferry_scan_end owns the result: the file is being dropped. */
        if (!s->stop)
            s->err = rc;
        s->done = 1;
        s->busy = 0;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Frees what ferry_scan_new allocated; the thread must not be running. */
static void scan_destroy(struct ferry_scan *s)
{
    ferry_cdc_stream_free(s->cdc);
    ferry_free(s->q);
    ferry_free(s);
}

/* Starts the thread and allocates its buffers once; reused file after file. */
int ferry_scan_new(struct ferry_scan **out)
{
    return ferry__scan_new(SCAN_QUEUE, out);
}

int ferry__scan_new(size_t queue, struct ferry_scan **out)
{
    struct ferry_scan *s = NULL;
    int rc, locks = 0;

    *out = NULL;
    if ((s = ferry_calloc(1, sizeof(*s))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = ferry_cdc_stream_new(push, s, &s->cdc)) != 0)
        goto out;
    s->qcap = queue;
    s->q = queue > 0 ? ferry_calloc(queue, sizeof(*s->q)) : NULL;
    if (s->q == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = pthread_mutex_init(&s->mu, NULL)) != 0) {
        rc = -rc;
        goto out;
    }
    if ((rc = pthread_cond_init(&s->cv, NULL)) != 0) {
        pthread_mutex_destroy(&s->mu);
        rc = -rc;
        goto out;
    }
    locks = 1;
    s->fd = -1;
    if ((rc = pthread_create(&s->th, NULL, thread_main, s)) != 0) {
        rc = -rc;
        goto out;
    }
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (s != NULL) {
        if (locks) {
            pthread_cond_destroy(&s->cv);
            pthread_mutex_destroy(&s->mu);
        }
        scan_destroy(s);
    }
    return rc;
}

void ferry_scan_free(struct ferry_scan *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->quit = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    scan_destroy(s);
}

/*
 * Returns 0, or FERRY_EUSAGE if a file is still begun (call ferry_scan_end
 * first) or fd is negative. The caller keeps fd open until ferry_scan_end.
 * A size of 0 needs no reading: the next call returns 0 at once.
 */
int ferry_scan_begin(struct ferry_scan *s, int fd, uint64_t size)
{
    int rc = 0;

    pthread_mutex_lock(&s->mu);
    if (s->running || fd < 0) {
        rc = FERRY_EUSAGE;
        goto out;
    }
    s->fd = fd;
    s->size = size;
    s->qhead = 0;
    s->qlen = 0;
    s->err = 0;
    s->stop = 0;
    s->running = 1;
    s->done = size == 0;
    s->work = size > 0;
    pthread_cond_broadcast(&s->cv);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Takes the next entry, or says why there is none; called with the lock held. */
static int take(struct ferry_scan *s, struct ferry_chunk_ent *e, uint64_t *offset)
{
    if (s->qlen > 0) {
        *e = s->q[s->qhead].e;
        *offset = s->q[s->qhead].offset;
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
        /* The thread may be waiting for room. */
        pthread_cond_broadcast(&s->cv);
        return 1;
    }
    *e = (struct ferry_chunk_ent){0};
    *offset = 0;
    if (!s->running)
        return FERRY_EUSAGE; /* no file begun, or it was ended */
    return s->done ? s->err : FERRY_EBUSY;
}

/*
 * Entries come first: after a read error or a short file, the entries of the
 * bytes already read are still returned, then the error, as ferry_reader_next
 * does. A call with no file begun (or after ferry_scan_end) is FERRY_EUSAGE.
 */
int ferry_scan_next(struct ferry_scan *s, struct ferry_chunk_ent *e, uint64_t *offset)
{
    int rc;

    pthread_mutex_lock(&s->mu);
    while ((rc = take(s, e, offset)) == FERRY_EBUSY)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int ferry_scan_poll(struct ferry_scan *s, struct ferry_chunk_ent *e, uint64_t *offset)
{
    int rc;

    pthread_mutex_lock(&s->mu);
    rc = take(s, e, offset);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/*
 * Waits until the thread has let go of the file, at most the rest of one
 * pread and one chunk's hashing away, and drops what is queued. Safe with no
 * file begun and safe twice. Afterwards fd is no longer used.
 */
void ferry_scan_end(struct ferry_scan *s)
{
    pthread_mutex_lock(&s->mu);
    if (!s->running)
        goto out;
    s->stop = 1;
    s->work = 0; /* not picked up yet: the thread never starts it */
    pthread_cond_broadcast(&s->cv);
    while (s->busy)
        pthread_cond_wait(&s->cv, &s->mu);
    s->qhead = 0;
    s->qlen = 0;
    s->running = 0;
    s->done = 0;
    s->err = 0;
    s->stop = 0;
    s->fd = -1;
out:
    pthread_mutex_unlock(&s->mu);
}

void ferry__scan_wait_full(struct ferry_scan *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->qlen < s->qcap)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}
