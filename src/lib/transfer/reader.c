/* A reader thread per upload stream: read(2) and SHA-256 off the sending thread. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "ferry/core.h"
#include "ferry/reader.h"

struct filled {
    uint8_t *buf;
    size_t len;
};

struct ferry_reader {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* one condition: state changes are rare and cheap to recheck */
    uint8_t *pool[FERRY_READER_NBUF];
    uint8_t *free_bufs[FERRY_READER_NBUF];
    int nfree;
    struct filled q[FERRY_READER_NBUF];
    int qhead;
    int qlen;
    int fd;
    uint64_t left; /* bytes still to read for this file */
    int running;   /* the thread is working on a file */
    int eof;       /* the thread has queued the file's last buffer */
    int err;
    int stop; /* the caller ended the file early */
    int quit;
    struct ferry_sha256 sha;
};

static void *thread_main(void *arg)
{
    struct ferry_reader *r = arg;
    uint8_t *b;
    size_t want, got;
    ssize_t n;
    int err;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->quit && (!r->running || r->eof || r->stop || r->nfree == 0))
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->quit)
            break;
        b = r->free_bufs[--r->nfree];
        want = r->left > FERRY_READER_BUF ? FERRY_READER_BUF : (size_t)r->left;
        pthread_mutex_unlock(&r->mu);
        /* No lock is held across the I/O. */
        got = 0;
        err = 0;
        while (got < want) {
            n = read(r->fd, b + got, want - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                err = -errno;
                break;
            }
            if (n == 0) {
                err = FERRY_ECANCELED; /* shorter than its size: it changed */
                break;
            }
            got += (size_t)n;
        }
        if (err == 0 && got > 0 && ferry_sha256_update(&r->sha, b, got) != 0)
            err = FERRY_EINTERNAL;
        pthread_mutex_lock(&r->mu);
        if (r->stop) {
            r->free_bufs[r->nfree++] = b;
        } else if (err != 0) {
            r->err = err;
            r->eof = 1;
            r->free_bufs[r->nfree++] = b;
        } else {
            r->q[(r->qhead + r->qlen) % FERRY_READER_NBUF] = (struct filled){b, got};
            r->qlen++;
            r->left -= got;
            if (r->left == 0)
                r->eof = 1;
        }
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int ferry_reader_new(struct ferry_reader **out)
{
    struct ferry_reader *r = ferry_calloc(1, sizeof(*r));
    int i;

    *out = NULL;
    if (r == NULL)
        return -ENOMEM;
    for (i = 0; i < FERRY_READER_NBUF; i++) {
        if ((r->pool[i] = ferry_malloc(FERRY_READER_BUF)) == NULL)
            goto nomem;
        r->free_bufs[r->nfree++] = r->pool[i];
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->fd = -1;
    if (pthread_create(&r->th, NULL, thread_main, r) != 0) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        goto nomem;
    }
    *out = r;
    return 0;
nomem:
    for (i = 0; i < FERRY_READER_NBUF; i++)
        ferry_free(r->pool[i]);
    ferry_free(r);
    return -ENOMEM;
}

void ferry_reader_free(struct ferry_reader *r)
{
    int i;

    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->quit = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    ferry_sha256_cleanup(&r->sha);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    for (i = 0; i < FERRY_READER_NBUF; i++)
        ferry_free(r->pool[i]);
    ferry_free(r);
}

int ferry_reader_begin(struct ferry_reader *r, int fd, uint64_t size)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    ferry_sha256_cleanup(&r->sha);
    rc = ferry_sha256_init(&r->sha);
    r->fd = fd;
    r->left = size;
    r->err = rc;
    r->eof = size == 0 || rc != 0;
    r->stop = 0;
    r->running = rc == 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int ferry_reader_next(struct ferry_reader *r, const uint8_t **buf, size_t *len)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    while (r->qlen == 0 && !r->eof)
        pthread_cond_wait(&r->cv, &r->mu);
    if (r->qlen > 0) {
        *buf = r->q[r->qhead].buf;
        *len = r->q[r->qhead].len;
        r->qhead = (r->qhead + 1) % FERRY_READER_NBUF;
        r->qlen--;
        rc = 1;
    } else {
        rc = r->err;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void ferry_reader_release(struct ferry_reader *r, const uint8_t *buf)
{
    int i;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < FERRY_READER_NBUF; i++) {
        if (r->pool[i] == buf) {
            r->free_bufs[r->nfree++] = r->pool[i];
            break;
        }
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

int ferry_reader_end(struct ferry_reader *r, char cid[static 72])
{
    int rc;

    pthread_mutex_lock(&r->mu);
    /* Stop early if the caller gave up: the thread finishes its current read. */
    if (!r->eof) {
        r->stop = 1;
        if (r->err == 0)
            r->err = FERRY_ECANCELED;
    }
    while (r->nfree + r->qlen < FERRY_READER_NBUF)
        pthread_cond_wait(&r->cv, &r->mu);
    while (r->qlen > 0) {
        r->free_bufs[r->nfree++] = r->q[r->qhead].buf;
        r->qhead = (r->qhead + 1) % FERRY_READER_NBUF;
        r->qlen--;
    }
    rc = r->err;
    if (rc == 0)
        rc = ferry_sha256_final_cid(&r->sha, cid);
    r->running = 0;
    r->fd = -1;
    pthread_mutex_unlock(&r->mu);
    return rc;
}
