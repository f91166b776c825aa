/*
 * Writer threads per transfer stream, a pipeline off the receiving thread:
 * one hashes each buffer (SHA-256, or the chunk list of R-CHUNK-10), one
 * writes it (write(2), O_DIRECT where it can), and one makes the bytes
 * written so far durable every sync_every bytes (fdatasync). On one thread
 * the three ran one after the other: the disk waited for the hash, the hash
 * for the disk, and both for every fdatasync (15-30 ms each 32 MiB).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/core.h"
#include "ferry/manifest.h"
#include "ferry/writer.h"

struct item {
    uint8_t *buf;
    size_t len;
};

struct ferry_writer {
    pthread_t th;      /* hashes */
    pthread_t th_io;   /* writes */
    pthread_t th_sync; /* fdatasyncs; started by the first ferry_writer_sync_every */
    int sync_thread;   /* th_sync runs */
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* the hashing thread waits for items */
    pthread_cond_t cv_io;   /* the writing thread waits for hashed items */
    pthread_cond_t cv_sync; /* the syncing thread waits for a step's worth of bytes */
    pthread_cond_t cv_done; /* the caller waits for free buffers or the end */
    uint8_t *pool[FERRY_WRITER_NBUF];
    uint8_t *free_bufs[FERRY_WRITER_NBUF];
    int nfree;
    struct item q[FERRY_WRITER_NBUF]; /* to hash */
    int qhead;
    int qlen;
    struct item wq[FERRY_WRITER_NBUF]; /* hashed, to write */
    int wqhead;
    int wqlen;
    int busy_item; /* the hashing thread holds an item outside the queues */
    int busy_io;   /* the writing thread holds one */
    int busy_sync; /* the syncing thread is in fdatasync */
    int active;    /* a file is in progress */
    int quit;
    int fd;
    int direct; /* the file is open with O_DIRECT: no page-cache copy */
    int err;
    uint64_t written; /* the writing thread's own count */
    uint64_t synced;  /* writeback started up to here (sync_file_range) */
    /* Durable steps taken by the syncing thread, so the receiver never waits on them. */
    uint64_t sync_every; /* 0: only ferry_writer_sync makes bytes durable */
    uint64_t wpub;       /* written, published under mu */
    uint64_t asked;      /* wpub when the last step's fdatasync began (or was waived) */
    uint64_t dsynced;    /* bytes durable: covered by a finished fdatasync */
    uint64_t durable;    /* dsynced, published under mu */
    struct ferry_sha256 sha;
    /* R-CHUNK-10: chunked content is verified by its chunk list's hash. */
    int chunked;
    struct ferry_cdc_stream *cdc;
    /* Told (on a writer thread) when a buffer frees or the queues drain. */
    void (*notify)(void *arg);
    void *notify_arg;
    /* Told (on the syncing thread, unlocked) what each durable step made durable. */
    void (*on_durable)(void *arg, uint64_t durable);
    void *on_durable_arg;
    /*
     * Test only (FERRY_TEST_WRITER_GATE, read once at creation): while a
     * file exists at this path, the writing thread holds each buffer before
     * writing it: a disk that stalls, so tests can see that the receiver
     * stops reading instead of waiting.
     */
    char *gate;
};

/*
 * Test only: the owner found the writer full or busy (it would have had to
 * wait); "<gate>.waited" tells a test that the moment has come.
 */
static void gate_mark(const struct ferry_writer *w)
{
    char path[PATH_MAX];
    int fd;

    if (w->gate == NULL || snprintf(path, sizeof(path), "%s.waited", w->gate) >= (int)sizeof(path))
        return;
    if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0)
        close(fd);
}

/* A waiter on the loop thread learns that it may go on. Called with mu held. */
static void wake_owner(struct ferry_writer *w)
{
    pthread_cond_broadcast(&w->cv_done);
    if (w->notify != NULL)
        w->notify(w->notify_arg);
}

/* Each chunk's entry goes into the list hash as the chunker finds it. */
static int on_chunk(void *arg, uint64_t offset, const struct ferry_chunk_ent *e)
{
    struct ferry_writer *w = arg;
    uint8_t ent[FERRY_CHUNK_ENT_LEN];

    (void)offset;
    ferry_chunk_ent_encode(ent, e);
    return ferry_sha256_update(&w->sha, ent, sizeof(ent));
}

/* Turns O_DIRECT off for the rest of the file (a tail, or a file system without it). */
static void drop_direct(struct ferry_writer *w)
{
    int fl = fcntl(w->fd, F_GETFL);

    if (fl >= 0)
        fcntl(w->fd, F_SETFL, fl & ~O_DIRECT);
    w->direct = 0;
}

/*
 * Hashes one item, on the hashing thread without the lock: it touches only
 * the file's hash, which the caller reads only after drain_locked(). The
 * error is returned, never stored here: the caller reads err under the
 * lock at any time (issue 9 item 8).
 */
static int hash_item(struct ferry_writer *w, const struct item *it)
{
    if (it->len == 0)
        return 0;
    if ((w->chunked ? ferry_cdc_stream_feed(w->cdc, it->buf, it->len)
                    : ferry_sha256_update(&w->sha, it->buf, it->len)) != 0)
        return FERRY_EINTERNAL;
    return 0;
}

/* Writes one item, on the writing thread without the lock (fd, direct, counters). */
static int write_item(struct ferry_writer *w, const struct item *it)
{
    const uint8_t *p = it->buf;
    size_t n = it->len;
    ssize_t r;

    if (n == 0)
        return 0;
    while (w->gate != NULL && access(w->gate, F_OK) == 0)
        usleep(10000);
    /* O_DIRECT needs whole blocks; a short last buffer goes through the cache. */
    if (w->direct && n % FERRY_WRITER_ALIGN != 0)
        drop_direct(w);
    while (n > 0) {
        r = write(w->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EINVAL && w->direct) {
            drop_direct(w);
            continue;
        }
        if (r < 0)
            return -errno;
        p += r;
        n -= (size_t)r;
        w->written += (uint64_t)r;
    }
    if (!w->direct && w->written - w->synced >= FERRY_WRITER_SYNC_STEP) {
        sync_file_range(w->fd, (off_t)w->synced, (off_t)(w->written - w->synced),
                        SYNC_FILE_RANGE_WRITE);
        w->synced = w->written;
    }
    return 0;
}

/* Whether a durable step is due and not yet begun. Called with mu held. */
static int sync_due(const struct ferry_writer *w)
{
    return w->active && w->err == 0 && w->sync_every > 0 && w->wpub - w->asked >= w->sync_every;
}

/*
 * Takes one durable step: bytes written when an fdatasync begins are
 * durable when it returns, so only those count. Called with mu held, which
 * it drops across the fdatasync.
 */
static void sync_step(struct ferry_writer *w)
{
    uint64_t target = w->wpub;
    int fd = w->fd, rc;

    void (*fn)(void *arg, uint64_t durable) = w->on_durable;
    void *fn_arg = w->on_durable_arg;

    w->asked = target;
    w->busy_sync = 1;
    pthread_mutex_unlock(&w->mu);
    rc = fdatasync(fd) != 0 ? -errno : 0;
    /*
     * Told while still busy: the file's end waits for it, so what it
     * records of the file is done before the file is closed or placed.
     */
    if (rc == 0 && fn != NULL)
        fn(fn_arg, target);
    pthread_mutex_lock(&w->mu);
    w->busy_sync = 0;
    if (rc != 0 && w->err == 0)
        w->err = rc; /* an fsync error is fatal for the file */
    if (rc == 0 && target > w->dsynced)
        w->dsynced = w->durable = target;
    wake_owner(w);
}

static void *thread_main(void *arg)
{
    struct ferry_writer *w = arg;
    struct item it;
    int failed, rc;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->qlen == 0 && !w->quit)
            pthread_cond_wait(&w->cv_work, &w->mu);
        if (w->qlen == 0 && w->quit)
            break;
        it = w->q[w->qhead];
        w->qhead = (w->qhead + 1) % FERRY_WRITER_NBUF;
        w->qlen--;
        w->busy_item = 1;
        /* A failed file's later items are dropped unhashed and unwritten. */
        failed = w->err != 0;
        /* No lock is held across the hashing. */
        pthread_mutex_unlock(&w->mu);
        rc = failed ? 0 : hash_item(w, &it);
        pthread_mutex_lock(&w->mu);
        if (rc != 0 && w->err == 0)
            w->err = rc;
        w->busy_item = 0;
        /* The queues hold at most every buffer: there is always room. */
        w->wq[(w->wqhead + w->wqlen) % FERRY_WRITER_NBUF] = it;
        w->wqlen++;
        pthread_cond_signal(&w->cv_io);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void *io_main(void *arg)
{
    struct ferry_writer *w = arg;
    struct item it;
    int failed, rc;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->wqlen == 0 && !w->quit)
            pthread_cond_wait(&w->cv_io, &w->mu);
        if (w->wqlen == 0 && w->quit)
            break;
        it = w->wq[w->wqhead];
        w->wqhead = (w->wqhead + 1) % FERRY_WRITER_NBUF;
        w->wqlen--;
        w->busy_io = 1;
        failed = w->err != 0;
        /* No lock is held across the I/O. */
        pthread_mutex_unlock(&w->mu);
        rc = failed ? 0 : write_item(w, &it);
        pthread_mutex_lock(&w->mu);
        if (rc != 0 && w->err == 0)
            w->err = rc;
        w->busy_io = 0;
        w->wpub = w->written;
        if (sync_due(w) && w->sync_thread)
            pthread_cond_signal(&w->cv_sync);
        else if (sync_due(w))
            sync_step(w); /* no syncing thread could start: the step waits here */
        w->free_bufs[w->nfree++] = it.buf;
        wake_owner(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* The syncing thread: takes each step while the others hash and write. */
static void *sync_main(void *arg)
{
    struct ferry_writer *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->quit && !sync_due(w))
            pthread_cond_wait(&w->cv_sync, &w->mu);
        if (w->quit)
            break;
        sync_step(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Tells the first n threads (hashing, writing, syncing) to quit and joins them. */
static void stop_threads(struct ferry_writer *w, int n)
{
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv_work);
    pthread_cond_broadcast(&w->cv_io);
    pthread_cond_broadcast(&w->cv_sync);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    if (n > 1)
        pthread_join(w->th_io, NULL);
    if (n > 2 && w->sync_thread)
        pthread_join(w->th_sync, NULL);
}

int ferry_writer_new(struct ferry_writer **out)
{
    struct ferry_writer *w = ferry_calloc(1, sizeof(*w));
    int i;

    *out = NULL;
    if (w == NULL)
        return -ENOMEM;
    for (i = 0; i < FERRY_WRITER_NBUF; i++) {
        void *b = NULL;
        /* Block-aligned, so whole buffers can be written with O_DIRECT. */
        if (posix_memalign(&b, FERRY_WRITER_ALIGN, FERRY_WRITER_BUF) != 0)
            goto nomem;
        w->pool[i] = b;
        w->free_bufs[w->nfree++] = w->pool[i];
    }
    if (getenv("FERRY_TEST_WRITER_GATE") != NULL &&
        (w->gate = ferry_strdup(getenv("FERRY_TEST_WRITER_GATE"))) == NULL)
        goto nomem;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv_work, NULL);
    pthread_cond_init(&w->cv_io, NULL);
    pthread_cond_init(&w->cv_sync, NULL);
    pthread_cond_init(&w->cv_done, NULL);
    w->fd = -1;
    if (pthread_create(&w->th, NULL, thread_main, w) != 0)
        goto nothread;
    if (pthread_create(&w->th_io, NULL, io_main, w) != 0) {
        stop_threads(w, 1);
        goto nothread;
    }
    *out = w;
    return 0;
nothread:
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_io);
    pthread_cond_destroy(&w->cv_sync);
    pthread_cond_destroy(&w->cv_done);
nomem:
    for (i = 0; i < FERRY_WRITER_NBUF; i++)
        free(w->pool[i]);
    ferry_free(w->gate);
    ferry_free(w);
    return -ENOMEM;
}

/*
 * Waits until every queued item is hashed and written and no fdatasync is
 * running, so the caller may use or change the file. A step that is due but
 * not begun is waived: it would have made nothing durable that a caller's
 * own fdatasync does not. Called with mu held.
 */
static void drain_locked(struct ferry_writer *w)
{
    for (;;) {
        w->asked = w->wpub;
        if (w->qlen == 0 && !w->busy_item && w->wqlen == 0 && !w->busy_io && !w->busy_sync)
            break;
        gate_mark(w);
        pthread_cond_wait(&w->cv_done, &w->mu);
    }
}

void ferry_writer_free(struct ferry_writer *w)
{
    int i;

    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    drain_locked(w);
    pthread_mutex_unlock(&w->mu);
    stop_threads(w, 3);
    ferry_sha256_cleanup(&w->sha);
    ferry_cdc_stream_free(w->cdc);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv_work);
    pthread_cond_destroy(&w->cv_io);
    pthread_cond_destroy(&w->cv_sync);
    pthread_cond_destroy(&w->cv_done);
    for (i = 0; i < FERRY_WRITER_NBUF; i++)
        free(w->pool[i]);
    ferry_free(w->gate);
    ferry_free(w);
}

int ferry_writer_begin_chunked(struct ferry_writer *w, int fd)
{
    int rc;

    if (w->cdc == NULL && (rc = ferry_cdc_stream_new(on_chunk, w, &w->cdc)) != 0)
        return rc;
    if ((rc = ferry_writer_begin(w, fd)) != 0)
        return rc;
    pthread_mutex_lock(&w->mu);
    ferry_cdc_stream_reset(w->cdc);
    w->chunked = 1;
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int ferry_writer_begin(struct ferry_writer *w, int fd)
{
    int rc;

    pthread_mutex_lock(&w->mu);
    drain_locked(w);
    w->chunked = 0;
    ferry_sha256_cleanup(&w->sha);
    rc = ferry_sha256_init(&w->sha);
    w->fd = fd;
    w->err = rc;
    w->written = w->synced = 0;
    w->sync_every = w->wpub = w->asked = w->dsynced = w->durable = 0;
    /*
     * Big files skip the page cache: filling fresh cache pages costs more CPU
     * than the transfer itself on small machines, and the data has to reach
     * the disk before the file counts as durable anyway.
     */
    {
        int fl = fcntl(fd, F_GETFL);
        w->direct = fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0;
    }
    w->active = rc == 0;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int ferry_writer_resume(struct ferry_writer *w, uint64_t prefix)
{
    uint8_t *buf = NULL;
    uint64_t off = 0;
    ssize_t n;
    int rc = 0;

    pthread_mutex_lock(&w->mu);
    drain_locked(w);
    if (w->err != 0 || !w->active) {
        rc = w->err != 0 ? w->err : FERRY_EUSAGE;
        goto out;
    }
    /* Unaligned reads and an unaligned start: the rest goes through the cache. */
    if (w->direct)
        drop_direct(w);
    /* The kept bytes enter the hash as if they had just arrived. */
    if ((buf = ferry_malloc(FERRY_WRITER_BUF)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    while (off < prefix) {
        size_t want = prefix - off > FERRY_WRITER_BUF ? FERRY_WRITER_BUF : (size_t)(prefix - off);
        n = pread(w->fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : FERRY_ECANCELED;
            goto out;
        }
        if ((w->chunked ? ferry_cdc_stream_feed(w->cdc, buf, (size_t)n)
                        : ferry_sha256_update(&w->sha, buf, (size_t)n)) != 0) {
            rc = FERRY_EINTERNAL;
            goto out;
        }
        off += (uint64_t)n;
    }
    if (lseek(w->fd, (off_t)prefix, SEEK_SET) < 0) {
        rc = -errno;
        goto out;
    }
    w->written = w->synced = w->wpub = w->asked = w->dsynced = w->durable = prefix;
out:
    if (rc != 0 && w->err == 0)
        w->err = rc;
    pthread_mutex_unlock(&w->mu);
    ferry_free(buf);
    return rc;
}

int ferry_writer_sync(struct ferry_writer *w, uint64_t *durable)
{
    int rc;

    pthread_mutex_lock(&w->mu);
    drain_locked(w);
    rc = w->err;
    if (rc == 0 && fdatasync(w->fd) != 0)
        rc = w->err = -errno; /* an fsync error is fatal for the file */
    if (rc == 0)
        w->dsynced = w->durable = w->asked = w->written;
    *durable = rc == 0 ? w->written : 0;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void ferry_writer_sync_every(struct ferry_writer *w, uint64_t bytes)
{
    pthread_mutex_lock(&w->mu);
    /* Only downloads take steps: a writer that never does has no such thread. */
    if (bytes > 0 && !w->sync_thread && pthread_create(&w->th_sync, NULL, sync_main, w) == 0)
        w->sync_thread = 1;
    w->sync_every = bytes;
    if (sync_due(w) && w->sync_thread)
        pthread_cond_signal(&w->cv_sync);
    pthread_mutex_unlock(&w->mu);
}

uint64_t ferry_writer_durable(struct ferry_writer *w)
{
    uint64_t d;

    pthread_mutex_lock(&w->mu);
    d = w->err == 0 ? w->durable : 0;
    pthread_mutex_unlock(&w->mu);
    return d;
}

int ferry_writer_busy(const struct ferry_writer *w)
{
    /* Only the caller's thread writes active (begin, end): no lock needed. */
    return w->active;
}

void ferry_writer_set_on_durable(struct ferry_writer *w, void (*fn)(void *arg, uint64_t durable),
                                 void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->on_durable = fn;
    w->on_durable_arg = arg;
    pthread_mutex_unlock(&w->mu);
}

void ferry_writer_set_notify(struct ferry_writer *w, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->notify = fn;
    w->notify_arg = arg;
    pthread_mutex_unlock(&w->mu);
}

int ferry_writer_ready(struct ferry_writer *w)
{
    int ready;

    /* Only the caller takes buffers, so a free one stays free until it does. */
    pthread_mutex_lock(&w->mu);
    ready = w->nfree > 0;
    pthread_mutex_unlock(&w->mu);
    if (!ready)
        gate_mark(w);
    return ready;
}

int ferry_writer_idle(struct ferry_writer *w)
{
    int idle;

    pthread_mutex_lock(&w->mu);
    idle = w->qlen == 0 && !w->busy_item && w->wqlen == 0 && !w->busy_io && !w->busy_sync;
    pthread_mutex_unlock(&w->mu);
    if (!idle)
        gate_mark(w);
    return idle;
}

uint8_t *ferry_writer_buf(struct ferry_writer *w)
{
    uint8_t *b = NULL;

    pthread_mutex_lock(&w->mu);
    if (w->nfree == 0)
        gate_mark(w);
    while (w->nfree == 0)
        pthread_cond_wait(&w->cv_done, &w->mu);
    if (w->err == 0)
        b = w->free_bufs[--w->nfree];
    pthread_mutex_unlock(&w->mu);
    return b;
}

void ferry_writer_submit(struct ferry_writer *w, uint8_t *buf, size_t len)
{
    pthread_mutex_lock(&w->mu);
    w->q[(w->qhead + w->qlen) % FERRY_WRITER_NBUF] = (struct item){.buf = buf, .len = len};
    w->qlen++;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
}

int ferry_writer_end(struct ferry_writer *w, char cid[static 72])
{
    int rc;

    pthread_mutex_lock(&w->mu);
    drain_locked(w);
    /* Issue 9 item 2: a second end would finalise a hash already freed. */
    if (!w->active) {
        pthread_mutex_unlock(&w->mu);
        return FERRY_EUSAGE;
    }
    rc = w->err;
    if (rc == 0 && w->chunked && ferry_cdc_stream_finish(w->cdc) != 0)
        rc = FERRY_EINTERNAL;
    if (rc == 0)
        rc = ferry_sha256_final_cid(&w->sha, cid);
    else
        ferry_sha256_cleanup(&w->sha);
    /* Same length as "sha256:": only the scheme prefix differs (R-CHUNK-3). */
    if (rc == 0 && w->chunked)
        memcpy(cid, FERRY_CID_CHUNKS_PREFIX, 7);
    w->active = 0;
    w->fd = -1;
    pthread_mutex_unlock(&w->mu);
    return rc;
}
