/*
 * The download job (ferry/download.h): the plan of what to fetch, the
 * requests kept in a window ahead of what is received, and each file
 * received into a temporary name, verified, and placed durably in batches.
 *
 * It runs on the hub's loop and is driven by what arrives: frames the hub
 * routes to its port (by the request ids it sends and the transfer ids the
 * server gives), session events, and the thread pool's completions. A big
 * file's bytes are hashed and written by the writer's thread; when its
 * buffers are all in flight, or a TransferComplete arrives before they are
 * written, the connection is paused and the frame taken again once the
 * writer says so. Batches are made durable on the pool while the next one
 * fills.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "download_int.h"

/* Queued requests and acknowledgements are pushed out from this many bytes (one TLS record). */
#define DL_PUSH_BYTES (16u << 10)
/* R-CHUNK-14: a partial download becomes durable (and resumable) every this many bytes. */
#define DL_DURABLE_STEP (32u << 20)

static void mtime_ts(int64_t ns, struct timespec ts[2])
{
    ts[0].tv_sec = ts[1].tv_sec = (time_t)(ns / 1000000000);
    /* Before 1970 only whole seconds: a negative nanosecond part is invalid. */
    ts[0].tv_nsec = ts[1].tv_nsec = ns < 0 ? 0 : (long)(ns % 1000000000);
}

/* The oldest acknowledgement this job still owes (R-RECV-5), for the hub's window. */
static void hold(struct ferry_download *g)
{
    const struct ferry_batch *b[2] = {g->flushing ? &g->fbatch : NULL, &g->batch};
    uint64_t oldest = ferry__dl_placing_seq(g);
    size_t i, k;

    /* Entries of a lost link owe nothing: the first of this link's is the one. */
    for (k = 0; k < 2; k++) {
        for (i = 0; b[k] != NULL && i < b[k]->n; i++) {
            const struct dl *d = b[k]->e[i].arg;
            if (d->link != g->link)
                continue;
            if (b[k]->e[i].seq < oldest)
                oldest = b[k]->e[i].seq;
            break;
        }
    }
    ferry_hub_port_hold(g->port, oldest);
}

static void end_tid(struct ferry_download *g);
static void keep_current(struct ferry_download *g);
static int dl_flush(struct ferry_download *g);
static void dl_end(struct ferry_download *g, int rc);

/* Hands the filled buffer to the writer thread. */
static void submit(struct ferry_download *g)
{
    if (g->wb != NULL)
        ferry_writer_submit(g->wr, g->wb, g->wlen);
    g->wb = NULL;
    g->wlen = 0;
}

/* Whether n more bytes can be taken now without waiting for a writer buffer. */
static int writer_room(struct ferry_download *g, size_t n)
{
    if (g->inl || !g->active)
        return 1;
    if (g->wb != NULL && FERRY_WRITER_BUF - g->wlen >= n)
        return 1;
    return ferry_writer_ready(g->wr);
}

/* Copies received bytes into writer buffers; < 0 once the file failed. */
static int put_bytes(struct ferry_download *g, const uint8_t *p, size_t n)
{
    size_t k;

    if (g->inl) {
        /* begin() checked the size, and the receive path each frame against it. */
        memcpy(g->ibuf + g->got, p, n);
        return 0;
    }
    while (n > 0) {
        /* writer_room() said a buffer is free: this does not wait. */
        if (g->wb == NULL && (g->wb = ferry_writer_buf(g->wr)) == NULL)
            return FERRY_EINTERNAL;
        k = FERRY_WRITER_BUF - g->wlen < n ? FERRY_WRITER_BUF - g->wlen : n;
        memcpy(g->wb + g->wlen, p, k);
        g->wlen += k;
        p += k;
        n -= k;
        /*
         * R-CHUNK-14: the writer makes the file durable every 32 MiB by
         * itself, and records each step (record_durable) on its own thread.
         */
        if (g->wlen == FERRY_WRITER_BUF)
            submit(g);
    }
    return 0;
}

/*
 * R-CHUNK-14, R-RECV-2: what a durable step of the writer made durable is
 * recorded, bound to the part file's identity. On the writer's syncing
 * thread: the file's names and identity stay as they are until the file
 * ends, which waits for this call.
 */
static void record_durable(void *arg, uint64_t durable)
{
    struct ferry_download *g = arg;

    ferry_part_record(g->st, g->dirfd, g->tmpname, g->hash, &g->part_id, durable);
}

/*
 * Gives up the file being received: its part file is removed with every
 * record of it (R-RECV-2), and it is reported. rc, when not 0, is the local
 * error appended to why.
 */
static void fail_current(struct ferry_download *g, const char *why, int rc)
{
    char cid[FERRY_CID_LEN + 1];

    if (g->cur == NULL)
        return;
    if (g->fd >= 0) {
        submit(g);
        if (!g->inl && ferry_writer_busy(g->wr))
            ferry_writer_end(g->wr, cid);
        close(g->fd);
        unlinkat(g->dirfd, g->tmpname, 0);
        ferry_part_forget(g->st, g->dirfd, g->tmpname);
    }
    if (g->dirfd >= 0)
        close(g->dirfd);
    g->fd = g->dirfd = -1;
    g->active = 0;
    g->cur->state = DL_FAILED;
    if (rc != 0)
        ferry__dl_fail_rc(g, g->cur->label, why, rc);
    else
        ferry__dl_fail(g, g->cur->label, why);
    g->cur = NULL;
}

/* R-XFER-4: stops the server sending a download given up before its data. */
static int cancel_current(struct ferry_download *g)
{
    char tidhex[33];

    ferry_hex_encode(g->tid, FERRY_TID_LEN, tidhex);
    /* No TransferComplete may follow: its window slot frees now. */
    g->have_tid = 0;
    end_tid(g);
    ferry__dl_inflight(g, -1);
    return ferry__dl_send(g, FERRY_MSG_TRANSFER_CANCEL, json_pack("{s:s}", "tid", tidhex));
}

/*
 * The current file's folder (created if missing) and, R-RECV-6, room for
 * what is still to be written, with the margin, before any part file is
 * created or sized: a declared size is only a claim. 0 when admitted; 1 when
 * the folder failed, 2 when the space was refused (said, the file failed).
 */
static int admit(struct ferry_download *g, struct dl *d, const struct ferry_dir **dir)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(d->rel, '/');
    uint64_t avail;
    int rc;

    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - d->rel) : 0, d->rel);
    if ((rc = ferry_dircache_get(&g->dc, d->rootfd, parent, 1, dir)) != 0) {
        fail_current(g, "cannot create its folder", rc);
        return 1;
    }
    g->space.unwritten = atomic_load(&g->unwritten);
    if ((rc = ferry_part_space_reserve(&g->space, (*dir)->fd, (*dir)->dev, g->size - d->resume,
                                       &avail)) != 0) {
        if (rc == -ENOSPC)
            ferry__dl_fail_space(g, d->label, g->size - d->resume, avail);
        else
            ferry__dl_fail_rc(g, d->label, "cannot check the free space", rc);
        d->state = DL_FAILED;
        g->cur = NULL;
        return 2;
    }
    return 0;
}

static void writer_wake_cb(uv_async_t *a)
{
    struct ferry_download *g = a->data;
    struct ferry_conn *c;

    /*
     * The writer freed a buffer or went idle: the frame held back is taken
     * again. Not while a pool task has the writer: its done reads on.
     */
    if (g->paused && !g->writer_task && !g->chunk_task &&
        (c = ferry_session_conn(ferry_hub_session(g->hub))) != NULL) {
        g->paused = 0;
        ferry_conn_resume(c);
    }
}

static void writer_notify(void *arg)
{
    struct ferry_download *g = arg;

    uv_async_send(&g->wake);
}

/* The writer thread, made at the first file too big to check in memory. */
static int need_writer(struct ferry_download *g)
{
    int rc;

    if (g->wr != NULL)
        return 0;
    if ((rc = ferry_writer_new(&g->wr)) != 0)
        return rc;
    ferry_writer_set_notify(g->wr, writer_notify, g);
    ferry_writer_set_on_durable(g->wr, record_durable, g);
    return 0;
}

/*
 * A big file's part file, opened (or made) and sized (R-RECV-1, R-RECV-2),
 * and the writer begun on it; for a resumed file the durable prefix is read
 * back into the hash (R-CHUNK-14, gigabytes maybe). On the pool, the link
 * paused meanwhile: the loop thread does no disk work. On failure
 * g->open_why says what failed, g->open_plain that the code adds nothing.
 */
static int open_work(void *arg)
{
    struct ferry_download *g = arg;
    struct dl *d = g->cur;
    int rc;

    g->open_plain = 0;
    g->open_why = "cannot create its temporary file";
    /* R-RECV-1: no symlink followed, ours alone: a planted temp name cannot redirect us. */
    if ((rc = ferry_part_open(g->dirfd, g->tmpname, &g->part_id)) < 0) {
        if (rc == -EPERM) {
            g->open_why = "cannot create its temporary file (a foreign file in the way?)";
            g->open_plain = 1;
        }
        return rc;
    }
    g->fd = rc;
    /* R-RECV-2: the prefix offered was in a part file that is not this one any more. */
    if (d->resume > 0 && !ferry_part_same(&g->part_id, &d->part_id)) {
        g->open_why = "its partial file changed during the download; run the same command again";
        g->open_plain = 1;
        return FERRY_EINTERNAL;
    }
    g->open_why = "cannot write it";
    if (ftruncate(g->fd, (off_t)d->resume) != 0)
        return -errno;
    /* R-CHUNK-10: a chunked file is checked by re-chunking what arrives. */
    g->open_why = "cannot start writing";
    g->open_plain = 1;
    if ((strncmp(g->hash, FERRY_CID_CHUNKS_PREFIX, 7) == 0
             ? ferry_writer_begin_chunked(g->wr, g->fd)
             : ferry_writer_begin(g->wr, g->fd)) != 0)
        return FERRY_EINTERNAL;
    ferry_writer_sync_every(g->wr, DL_DURABLE_STEP);
    if (d->resume > 0 && (rc = ferry_writer_resume(g->wr, d->resume)) != 0) {
        g->open_plain = rc == FERRY_ECANCELED;
        return rc;
    }
    return 0;
}

static void open_done(void *arg, int rc)
{
    struct ferry_download *g = arg;
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(g->hub));

    g->tasks--;
    g->writer_task = 0;
    if (rc != 0 && g->cur != NULL) {
        /* A local failure: the file fails whether or not the link was lost meanwhile. */
        g->requeue_cur = 0;
        fail_current(g, g->open_why, g->open_plain ? 0 : rc);
    } else if (g->requeue_cur) {
        /* The link was lost meanwhile: the file waits for the next, what is durable kept. */
        g->requeue_cur = 0;
        g->active = 1;
        keep_current(g);
    } else if (g->cur != NULL) {
        g->active = 1;
    }
    if (g->paused && c != NULL) {
        g->paused = 0;
        ferry_conn_resume(c);
    }
    g->pump(g);
}

/* Starts open_work on the pool, the link paused until it is done. */
static int open_part(struct ferry_download *g)
{
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(g->hub));

    if (c == NULL)
        return FERRY_EINTERNAL; /* a Transfer comes only on a live link */
    ferry_conn_pause(c);
    g->paused = 1;
    g->tasks++;
    g->writer_task = 1; /* the writer is the task's: nothing else touches it meanwhile */
    if (ferry_pool_submit(g->pool, open_work, open_done, g, NULL) != 0)
        open_done(g, open_work(g)); /* no pool: here, the loop waiting */
    return 0;
}

static int begin(struct ferry_download *g, struct dl *d, const struct ferry_cmd *m)
{
    const char *tid = json_string_value(json_object_get(m->body, "tid"));
    const char *hash = json_string_value(json_object_get(m->body, "hash"));
    json_t *size = json_object_get(m->body, "size");
    const struct ferry_dir *dir;
    int rc;

    if (tid == NULL || ferry_hex_decode(tid, g->tid, 16) != 0 || hash == NULL ||
        !ferry_cid_valid(hash) || !json_is_integer(size) || json_integer_value(size) < 0)
        return FERRY_EPROTO;
    if ((rc = ferry_hub_claim_tid(g->port, g->tid)) != 0)
        return rc == FERRY_EEXIST ? FERRY_EPROTO : rc;
    g->cur = d;
    g->prog.state = NULL;
    g->prog.name = d->label;
    g->have_tid = 1;
    g->size = (uint64_t)json_integer_value(size);
    g->got = 0;
    g->mtime = json_integer_value(json_object_get(m->body, "mtime"));
    g->exec = json_is_true(json_object_get(m->body, "exec"));
    snprintf(g->hash, sizeof(g->hash), "%s", hash);
    g->fd = g->dirfd = -1;
    /* Resume only what the server agreed to send the rest of (its Transfer's hash). */
    if (d->resume > 0 && (strcmp(d->cid, g->hash) != 0 || d->resume > g->size))
        d->resume = 0;
    if ((rc = admit(g, d, &dir)) != 0)
        return rc == 2 ? cancel_current(g) : 0;
    g->inl = d->resume == 0 && g->size <= DL_INLINE_MAX && strncmp(g->hash, "sha256:", 7) == 0;
    if (g->inl && g->ibuf == NULL && (g->ibuf = ferry_malloc(DL_INLINE_MAX)) == NULL)
        g->inl = 0;
    if (g->inl) {
        /* R-RECV-3: checked in memory; its part file is made once it is verified (place_inline). */
        g->active = 1;
        return 0;
    }
    if ((rc = need_writer(g)) != 0) {
        fail_current(g, "cannot start writing", rc);
        return 0;
    }
    g->dir = *dir;
    g->dir.rel = NULL; /* the cache's: only the identity is kept */
    if ((g->dirfd = fcntl(dir->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        fail_current(g, "cannot open its folder", -errno);
        return 0;
    }
    /* R-CHUNK-14: the part file's name follows from the content and the destination. */
    ferry_part_name(g->hash, d->rel, g->tmpname);
    /* Counted now: keep_finish takes them back if the link is lost before the file ends. */
    g->got = d->resume;
    g->resumed += d->resume;
    g->prog.bytes_done += d->resume;
    g->prog.bytes_skipped += d->resume;
    return open_part(g);
}

/* One file of a flushed batch: received once durable in place, then acknowledged. */
static void placed(void *arg, struct ferry_batch_ent *e, int rc, const char *stage)
{
    struct ferry_download *g = arg;
    struct dl *d = e->arg;
    char tidhex[33];

    if (rc != 0) {
        d->state = DL_FAILED;
        if (e->said)
            ferry__dl_fail(g, d->label, stage);
        else
            ferry__dl_fail_rc(g, d->label, stage, rc);
        return;
    }
    d->state = DL_DONE;
    g->prog.files_done++;
    /* An acknowledgement belongs to the link its download came on (R-XFER-3). */
    if (d->link != g->link || !ferry_hub_is_up(g->hub) || g->ack_rc != 0)
        return;
    /* R-XFER-6: a 1.3 server takes the batch's acknowledgements together (send_acks). */
    if (ferry_hub_minor(g->hub) >= 3 && g->nacks < DL_BATCH_CAP) {
        memcpy(g->acks[g->nacks++], e->tid, FERRY_TID_LEN);
        return;
    }
    /* Seed 000: the receiver acknowledges after its check; R-RECV-4: and once durable. */
    ferry_hex_encode(e->tid, FERRY_TID_LEN, tidhex);
    g->ack_rc = ferry__dl_send(g, FERRY_MSG_TRANSFER_COMPLETE,
                               json_pack("{s:s, s:s}", "tid", tidhex, "hash", e->cid));
}

/* R-XFER-6: the acknowledgements placed() gathered, 256 to a TransferComplete. */
static int send_acks(struct ferry_download *g)
{
    char tidhex[33];
    size_t i = 0, k;
    json_t *a;
    int rc = 0;

    while (rc == 0 && i < g->nacks) {
        if ((a = json_array()) == NULL) {
            rc = -ENOMEM;
            break;
        }
        for (k = 0; k < FERRY_ACK_TIDS_MAX && i < g->nacks; k++, i++) {
            ferry_hex_encode(g->acks[i], FERRY_TID_LEN, tidhex);
            json_array_append_new(a, json_string(tidhex));
        }
        rc = ferry__dl_send(g, FERRY_MSG_TRANSFER_COMPLETE, json_pack("{s:o}", "tids", a));
    }
    g->nacks = 0;
    return rc;
}

/* Reports every file of a batch made durable, then acknowledges them. */
static int report(struct ferry_download *g, struct ferry_batch *b)
{
    int rc;

    g->nacks = 0;
    g->ack_rc = 0;
    ferry_batch_done(b, placed, g);
    rc = send_acks(g);
    hold(g);
    ferry__dl_progress(g);
    return g->ack_rc != 0 ? g->ack_rc : rc;
}

static int flush_work(void *arg)
{
    struct ferry_download *g = arg;

    /* R-RECV-4: system calls on the batch only; the loop fills the other one meanwhile. */
    ferry_batch_sync(&g->fbatch, g->st);
    return 0;
}

static void flush_done(void *arg, int status)
{
    struct ferry_download *g = arg;
    int rc;

    (void)status; /* each file's result is in the batch */
    g->flushing = 0;
    if ((rc = report(g, &g->fbatch)) != 0 && g->fatal == 0)
        g->fatal = rc;
    ferry__dl_pump(g);
}

/*
 * R-RECV-4: hands the batch to a pool thread, once the batch before it is
 * taken back; receiving goes on meanwhile. 0 when handed over or when the
 * pool is busy (the flush that ends starts the next).
 */
static int dl_flush(struct ferry_download *g)
{
    struct ferry_batch empty;
    int rc;

    /* Not while a slice of the batch is being written: its done flushes. */
    if (g->batch.n == 0 || g->flushing || g->slicing)
        return 0;
    /* Folders are opened again for the next batch: one replaced meanwhile is seen. */
    ferry_dircache_clear(&g->dc);
    empty = g->fbatch;
    g->fbatch = g->batch;
    g->batch = empty;
    g->flushing = 1;
    if ((rc = ferry_pool_submit(g->pool, flush_work, flush_done, g, NULL)) != 0) {
        /* Without the pool the batch is made durable here (slower, as safe). */
        ferry_batch_sync(&g->fbatch, g->st);
        g->flushing = 0;
        return report(g, &g->fbatch);
    }
    hold(g);
    return 0;
}

/* A small file is checked in memory, before anything of it is on disk; FERRY_EHASH if wrong. */
static int verify_inline(struct ferry_download *g, char cid[static FERRY_CID_LEN + 1])
{
    uint8_t h[32];

    ferry_sha256_buf(g->ibuf, (size_t)g->got, h);
    memcpy(cid, "sha256:", 7);
    ferry_hex_encode(h, sizeof(h), cid + 7);
    if (g->got != g->size || strcmp(cid, g->hash) != 0)
        return FERRY_EHASH;
    return 0;
}

/* Adds a verified file to the batch, or reports why it cannot be kept; 0 when added. */
static int batch_add(struct ferry_download *g, const struct ferry_dir *dir, int fd,
                     const char *name, const char *cid, int recorded, struct dl *d)
{
    int rc;

    /* finish() flushed a full batch before the folder was taken from the cache. */
    if (g->batch.n >= g->batch.cap) {
        close(fd);
        return -ENOBUFS;
    }
    d->link = g->link;
    rc =
        ferry_batch_add(&g->batch, dir, fd, g->tmpname, name, cid, g->tid, ferry_hub_tc_seq(g->hub),
                        g->size, (g->exec ? 0777 : 0666) & ~g->umask, g->mtime, recorded, d);
    /* Its acknowledgement is owed from now: the window of R-RECV-5 counts from it. */
    hold(g);
    return rc;
}

/*
 * A small file verified in memory (R-RECV-3) joins the batch with its bytes:
 * the flush on the pool makes its part file, new and with its final mode
 * (R-RECV-1), writes and times it. Nothing of it touches the disk here.
 */
static int place_inline(struct ferry_download *g, struct dl *d, const char *name, const char *cid)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(d->rel, '/');
    const struct ferry_dir *dir;
    int rc;

    /* admit() opened it: found in the cache, unless a flush cleared it since. */
    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - d->rel) : 0, d->rel);
    if ((rc = ferry_dircache_get(&g->dc, d->rootfd, parent, 1, &dir)) != 0) {
        fail_current(g, "cannot create its folder", rc);
        return 0;
    }
    ferry_part_name(g->hash, d->rel, g->tmpname);
    /* finish() flushed a full batch before the folder was taken from the cache. */
    rc = g->batch.n < g->batch.cap ? 0 : -ENOBUFS;
    if (rc == 0) {
        d->link = g->link;
        rc = ferry_batch_add_held(&g->batch, dir, g->tmpname, name, cid, g->tid,
                                  ferry_hub_tc_seq(g->hub), g->ibuf, (size_t)g->got,
                                  (g->exec ? 0777 : 0666) & ~g->umask, g->mtime, d);
        /* Its acknowledgement is owed from now: the window of R-RECV-5 counts from it. */
        hold(g);
    }
    if (rc != 0) {
        fail_current(g, "cannot keep it for placing", rc);
        return 0;
    }
    d->state = DL_VERIFIED;
    g->cur = NULL;
    g->active = 0;
    return 0;
}

static int finish(struct ferry_download *g)
{
    const char *name = strrchr(g->cur->rel, '/');
    char cid[FERRY_CID_LEN + 1];
    struct dl *d = g->cur;
    int rc;

    name = name != NULL ? name + 1 : g->cur->rel;
    /*
     * R-RECV-4: a full batch goes to the pool before another file joins it,
     * and before a folder is taken from the cache the flush clears; while
     * one is still being flushed, the batch takes the files of the window
     * beyond its mark (room for them was made, ferry__dl_pump keeps to it).
     */
    if (ferry_batch_full(&g->batch) && !g->flushing && (rc = dl_flush(g)) != 0)
        return rc;
    if (g->inl) {
        rc = verify_inline(g, cid);
    } else {
        submit(g);
        /* dl_frame waited (paused) until the writer was idle: this does not wait. */
        rc = ferry_writer_end(g->wr, cid);
    }
    g->prog.state = NULL;
    if (rc != 0) {
        fail_current(g,
                     rc == FERRY_EHASH ? "content did not match its hash; nothing was written"
                                       : "cannot write it",
                     rc == FERRY_EHASH ? 0 : rc);
        return 0;
    }
    /* Seed 000: the receiver checks the hash before anything is visible. */
    if (g->got != g->size || strcmp(cid, g->hash) != 0) {
        fail_current(g, "content did not match its hash; nothing was written", 0);
        return 0;
    }
    if (g->inl)
        return place_inline(g, d, name, cid);
    g->dir.fd = g->dirfd;
    /* Any records the writer's steps left go once it is placed (on the pool, with the batch). */
    rc = batch_add(g, &g->dir, g->fd, name, cid, 1, d);
    g->fd = -1; /* the batch's now, or closed */
    if (rc != 0) {
        unlinkat(g->dirfd, g->tmpname, 0);
        ferry_part_forget(g->st, g->dirfd, g->tmpname);
        fail_current(g, "cannot keep it for placing", rc);
        return 0;
    }
    close(g->dirfd);
    g->dirfd = -1;
    d->state = DL_VERIFIED;
    g->cur = NULL;
    g->active = 0;
    return 0;
}

/*
 * R-XFER-7, R-FILE-3: a whole small file in one frame, begun as a Transfer
 * begins a small file (R-RECV-6 first), its bytes taken in memory, and
 * finished at once: checked against its hash, then placed in the batch.
 * The server is done with it: nothing is cancelled if it fails here.
 */
static int take_file(struct ferry_download *g, struct dl *d, const struct ferry_file_frame *f)
{
    const struct ferry_dir *dir;

    g->cur = d;
    g->prog.state = NULL;
    g->prog.name = d->label;
    g->have_tid = 0; /* no TransferComplete follows */
    memcpy(g->tid, f->tid, FERRY_TID_LEN);
    g->size = f->len;
    g->got = 0;
    g->mtime = f->mtime;
    g->exec = f->exec;
    memcpy(g->hash, "sha256:", 7);
    ferry_hex_encode(f->sha256, sizeof(f->sha256), g->hash + 7);
    g->fd = g->dirfd = -1;
    d->resume = 0; /* a file frame answers only a Download from byte 0 */
    /* The server is done with it: a refusal here cancels nothing. */
    if (admit(g, d, &dir) != 0)
        return 0;
    if (g->ibuf == NULL && (g->ibuf = ferry_malloc(DL_INLINE_MAX)) == NULL)
        return -ENOMEM;
    memcpy(g->ibuf, f->bytes, f->len);
    g->inl = 1;
    g->active = 1;
    g->got = f->len;
    g->prog.bytes_done += f->len;
    return finish(g);
}

/* The download a request id names, among those asked for and not finished. */
static struct dl *by_ref(struct ferry_download *g, const char *ref)
{
    size_t i;

    for (i = g->first; ref != NULL && i < g->n; i++)
        if (g->v[i].state == DL_REQUESTED && strcmp(g->v[i].id, ref) == 0)
            return &g->v[i];
    return NULL;
}

/* The end of a transfer announced by a Transfer: its tid and request id go back to the hub. */
static void end_tid(struct ferry_download *g)
{
    ferry_hub_release_tid(g->port, g->tid);
    ferry__dl_unclaim(g, g->cur_id);
    g->cur_id[0] = '\0';
}

/* Pauses the link until the writer has room; the hub delivers the frame again then. */
static int wait_writer(struct ferry_download *g)
{
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(g->hub));

    if (c == NULL)
        return FERRY_EINTERNAL; /* frames come only on a live link */
    /*
     * No wake-up of our own: a buffer freed before the check was seen by
     * it, and one freed after sends the writer's wake-up, which runs on
     * this thread after the pause (sending one here spun the loop).
     */
    ferry_conn_pause(c);
    g->paused = 1;
    return 1;
}

static int on_data(struct ferry_download *g, const struct ferry_frame *f)
{
    struct ferry_data d;

    if (ferry_data_decode(f->payload, f->payload_len, &d) != 0)
        return FERRY_EPROTO;
    if (g->cur != NULL && g->cur->phase == 1 && g->cur->piece != NULL &&
        memcmp(d.tid, g->tid, 16) == 0)
        return ferry_piece_list_data(g->cur->piece, d.offset, d.bytes, d.len) != 0 ? FERRY_EPROTO
                                                                                   : 0;
    if (g->cur == NULL || memcmp(d.tid, g->tid, 16) != 0)
        return g->cur == NULL ? 0 : FERRY_EPROTO; /* data of a transfer given up: dropped */
    if (d.offset != g->got || d.len > g->size - g->got)
        return FERRY_EPROTO;
    if (g->active && !writer_room(g, d.len))
        return wait_writer(g);
    if (g->active && put_bytes(g, d.bytes, d.len) != 0) {
        char cid[FERRY_CID_LEN + 1];
        int werr;
        g->got += d.len;
        submit(g);
        werr = ferry_writer_end(g->wr, cid);
        fail_current(g, "cannot write it", werr != 0 ? werr : FERRY_EINTERNAL);
        return 0;
    }
    g->got += d.len;
    g->prog.bytes_done += d.len;
    ferry_session_progress(ferry_hub_session(g->hub));
    ferry__dl_progress(g);
    return 0;
}

static int on_transfer_complete(struct ferry_download *g, const struct ferry_cmd *m)
{
    const char *t = json_string_value(json_object_get(m->body, "tid"));
    uint8_t tid[16];

    if (t == NULL || ferry_hex_decode(t, tid, 16) != 0)
        return FERRY_EPROTO;
    if (memcmp(tid, g->tid, 16) != 0 || !g->have_tid)
        return 0;
    /* A file the writer is still hashing: taken again once it is done, never waited for. */
    if (g->cur != NULL && g->cur->piece == NULL && g->active && !g->inl) {
        submit(g);
        if (!ferry_writer_idle(g->wr)) {
            g->prog.state = "verifying";
            ferry__dl_progress(g);
            return wait_writer(g);
        }
    }
    /* Also for a transfer abandoned locally: its window slot frees now. */
    ferry__dl_inflight(g, -1);
    g->have_tid = 0;
    end_tid(g);
    ferry_session_progress(ferry_hub_session(g->hub));
    if (g->cur != NULL && g->cur->piece != NULL)
        return g->cur->phase == 1 ? ferry__dl_patch_list_done(g) : ferry__dl_patch_chunks_done(g);
    return g->cur != NULL && g->active ? finish(g) : 0;
}

static int on_error(struct ferry_download *g, const struct ferry_cmd *m)
{
    const char *t = json_string_value(json_object_get(m->body, "tid"));
    const char *ref = json_string_value(json_object_get(m->body, "ref"));
    const char *msg = json_string_value(json_object_get(m->body, "message"));
    json_t *code = json_object_get(m->body, "code");
    json_int_t wire = json_is_integer(code) ? json_integer_value(code) : 10;
    int rc = ferry_err_from_wire(wire >= INT_MIN && wire <= INT_MAX ? (int)wire : 10);
    struct dl *x;

    if (msg == NULL)
        msg = "error";
    if (ref != NULL && ferry__dl_plan_error(g, ref, rc, msg))
        return 0;
    x = by_ref(g, ref);
    if (x == NULL) {
        if (t != NULL)
            return 0; /* about a transfer of ours given up */
        /* About the connection as a whole: the server is at fault or going. */
        ferry__dl_fail(g, "server", msg);
        return FERRY_EPROTO;
    }
    ferry__dl_unclaim(g, x->id);
    ferry__dl_inflight(g, -1);
    if (x == g->cur) {
        g->have_tid = 0;
        end_tid(g);
    }
    if (x->piece != NULL) {
        if (x == g->cur)
            g->cur = NULL;
        return ferry__dl_patch_error(g, x, rc, msg);
    }
    if (x == g->cur) {
        fail_current(g, msg, 0);
    } else {
        x->state = DL_FAILED;
        ferry__dl_fail_code(g, x->label, rc, msg);
    }
    return 0;
}

static int on_transfer(struct ferry_download *g, const struct ferry_cmd *m)
{
    struct dl *x = by_ref(g, json_string_value(json_object_get(m->body, "ref")));

    /* One download at a time on a link: not while another's TransferComplete is due. */
    if (x == NULL || g->cur != NULL || g->have_tid)
        return FERRY_EPROTO;
    memcpy(g->cur_id, x->id, sizeof(g->cur_id));
    if (json_object_get(m->body, "list_len") != NULL)
        return ferry__dl_patch_list_begin(g, x, m);
    if (x->phase == 2)
        return ferry__dl_patch_chunks_begin(g, x, m);
    return begin(g, x, m);
}

static int on_file(struct ferry_download *g, const struct ferry_frame *f)
{
    struct ferry_file_frame ff;
    char ref[FERRY_UUID_STR_LEN + 1];
    struct dl *x;

    if (ferry_file_frame_decode(f->payload, f->payload_len, &ff) != 0)
        return FERRY_EPROTO;
    /* R-FILE-3: an answer to one of our Downloads, while no other arrives. */
    ferry_uuid_from_bytes(ff.ref, ref);
    x = by_ref(g, ref);
    if (x == NULL || g->cur != NULL || g->have_tid || x->phase != 0)
        return FERRY_EPROTO;
    ferry__dl_unclaim(g, x->id);
    /* R-RECV-5, R-XFER-7: finished on the server, as a TransferComplete says. */
    ferry__dl_inflight(g, -1);
    ferry_session_progress(ferry_hub_session(g->hub));
    return take_file(g, x, &ff);
}

static int dl_frame(void *arg, const struct ferry_frame *f, const struct ferry_cmd *m)
{
    struct ferry_download *g = arg;
    int rc = 0;

    if (g->over)
        return 0;
    switch (f->type) {
    case FERRY_FRAME_DATA:
        rc = on_data(g, f);
        break;
    case FERRY_FRAME_CHUNK: {
        struct ferry_chunk_frame cf;
        if (ferry_chunk_frame_decode(f->payload, f->payload_len, &cf) != 0)
            return FERRY_EPROTO;
        if (g->cur == NULL)
            break; /* chunks of a transfer given up */
        if (g->cur->phase != 2 || memcmp(cf.tid, g->tid, 16) != 0)
            rc = FERRY_EPROTO;
        else
            rc = ferry__dl_patch_chunk(g, &cf);
        break;
    }
    case FERRY_FRAME_FILE:
        rc = on_file(g, f);
        break;
    case FERRY_FRAME_COMMAND:
        if (m->type == FERRY_MSG_TRANSFER)
            rc = on_transfer(g, m);
        else if (m->type == FERRY_MSG_TRANSFER_COMPLETE)
            rc = on_transfer_complete(g, m);
        else if (m->type == FERRY_MSG_ERROR)
            rc = on_error(g, m);
        else if (m->type == FERRY_MSG_DIRPAGE)
            rc = ferry__dl_plan_reply(g, m);
        break;
    default:
        break;
    }
    if (rc == 1)
        return 1; /* paused: the same frame comes again */
    if (rc < 0) {
        /* The session ends for this fault; the job reports its own error, not the session's. */
        if (g->fatal == 0)
            g->fatal = rc;
        return rc;
    }
    ferry__dl_pump(g);
    return 0;
}

static int slice_work(void *arg)
{
    struct ferry_download *g = arg;

    ferry_batch_write_slice(&g->slice);
    return 0;
}

static void slice_done(void *arg, int status)
{
    struct ferry_download *g = arg;

    (void)status; /* each file's result is in the batch */
    g->slicing = 0;
    g->tasks--;
    ferry__dl_pump(g);
}

/*
 * The files that joined the batch since its last slice are written (the
 * small ones' part files made) by a pool task while the batch before is
 * made durable by the other: the flush is left its syncs and renames.
 */
static void write_slice(struct ferry_download *g)
{
    if (g->slicing || g->batch.n - g->batch.written < FERRY_BATCH_MIN)
        return;
    ferry_batch_take_slice(&g->batch, &g->slice);
    g->slicing = 1;
    g->tasks++;
    if (ferry_pool_submit(g->pool, slice_work, slice_done, g, NULL) != 0) {
        /* Without the pool the flush writes them, as it would have. */
        g->batch.written = g->slice.lo;
        g->slicing = 0;
        g->tasks--;
    }
}

/* R-RECV-4: whether the batch should go to the pool now. */
static int flush_due(const struct ferry_download *g)
{
    if (g->batch.n == 0 || g->flushing)
        return 0;
    /*
     * Group commit: a batch of FERRY_BATCH_MIN files goes as soon as the
     * pool is idle (a slow disk makes batches larger rather than the wait
     * longer), any batch when nothing requested is on its way, and a full
     * one at once.
     */
    return g->batch.n >= FERRY_BATCH_MIN || g->inflight == 0 || ferry_batch_full(&g->batch);
}

/* Sends the next Download (or list request); 0 or < 0. */
static int request(struct ferry_download *g, struct dl *x)
{
    json_t *req;

    /* R-CHUNK-16: a piece that holds its list asks for its missing chunks. */
    if (x->piece != NULL)
        return ferry__dl_patch_request(g, x);
    /* R-CHUNK-15: local bytes to build on: ask for the list first. */
    if (ferry_hub_minor(g->hub) >= 1 && ferry__dl_has_local(g, x))
        return ferry__dl_ask_list(g, x);
    x->state = DL_REQUESTED;
    ferry__dl_inflight(g, +1);
    req = json_pack("{s:I}", "file_id", (json_int_t)x->file_id);
    x->resume = 0;
    if (req != NULL)
        ferry__dl_offer_resume(g, x, req);
    return ferry__dl_request(g, x->id, FERRY_MSG_DOWNLOAD, req);
}

/*
 * New requests and acknowledgements go out now, without waiting for the
 * input in hand to be handled, once the server's queue runs low or 16 KiB
 * gathered: the connection writes only when no whole frame is left to
 * read, so with small files the server sat idle while this side worked
 * through a full input buffer, and then the other way round.
 */
static void push(struct ferry_download *g)
{
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(g->hub));
    size_t queued;

    if (c == NULL || !ferry_conn_in_input(c) || (queued = ferry_conn_queued(c)) == 0)
        return;
    if (g->inflight < FERRY_HUB_DOWNLOADS_MAX / 2 || queued >= DL_PUSH_BYTES)
        ferry_conn_flush(c);
}

void ferry__dl_pump(struct ferry_download *g)
{
    int rc = 0;

    if (g->over || g->pumping)
        return;
    g->pumping = 1;
    if (g->fatal != 0 || g->cancelled) {
        dl_end(g, g->fatal != 0 ? g->fatal : FERRY_ECANCELED);
        goto out;
    }
    if (!g->planned || !ferry_hub_is_up(g->hub))
        goto out;
    hold(g);
    if (flush_due(g) && (rc = dl_flush(g)) != 0)
        goto fail;
    write_slice(g);
    /*
     * Keep a window of requests ahead of the one being received (R-PIPE-1,
     * R-RECV-5), and room in the batch for every file on its way: while a
     * batch is being made durable the next one fills, and a file verified
     * must never wait for the disk.
     */
    while (g->next < g->n && g->batch.n + g->inflight < g->batch.cap &&
           g->batch.buflen < FERRY_BATCH_HELD && !g->writer_task && !g->requeue_cur &&
           ferry_hub_may_download(g->hub)) {
        struct dl *x = &g->v[g->next++];
        if (x->state != DL_QUEUED)
            continue; /* received (or failed) on an earlier link */
        if ((rc = request(g, x)) != 0)
            goto fail;
    }
    push(g);
    while (g->first < g->n && g->v[g->first].state >= DL_DONE)
        g->first++;
    /* Everything answered: what waits in the batch becomes durable, and that is all. */
    if (g->first == g->n && g->cur == NULL && !g->flushing && g->tasks == 0) {
        if (g->batch.n > 0)
            rc = dl_flush(g);
        else
            dl_end(g, 0);
    }
fail:
    if (rc != 0 && g->fatal == 0) {
        g->fatal = rc;
        dl_end(g, rc);
    }
out:
    g->pumping = 0;
}

/* A download cut by a lost link goes back to the queue, what is durable of it kept. */
/*
 * The file being received is given up for now: what the writer wrote is
 * made durable and recorded for a rerun (R-CHUNK-14), and its progress is
 * taken back. A small file is all in memory, without a part file.
 */
/* The file given up for now is closed, what is durable of it recorded (R-CHUNK-14, R-RECV-2). */
static void keep_finish(struct ferry_download *g)
{
    if (g->fd >= 0)
        close(g->fd);
    if (g->dirfd >= 0)
        close(g->dirfd);
    g->fd = g->dirfd = -1;
    g->active = 0;
    if (g->cur != NULL && g->cur->piece == NULL) {
        uint64_t r = g->cur->resume;
        g->prog.bytes_done -= g->got < g->prog.bytes_done ? g->got : g->prog.bytes_done;
        /* The resumed prefix counts again when the rerun resumes it. */
        g->prog.bytes_skipped -= r < g->prog.bytes_skipped ? r : g->prog.bytes_skipped;
        g->resumed -= r < g->resumed ? r : g->resumed;
    }
    g->cur = NULL;
}

static int keep_work(void *arg)
{
    struct ferry_download *g = arg;
    char cid[FERRY_CID_LEN + 1];
    uint64_t durable = 0;

    if (ferry_writer_sync(g->wr, &durable) == 0 && durable > 0)
        ferry_part_record(g->st, g->dirfd, g->tmpname, g->hash, &g->part_id, durable);
    ferry_writer_end(g->wr, cid);
    return 0;
}

static void keep_done(void *arg, int status)
{
    struct ferry_download *g = arg;

    (void)status;
    g->tasks--;
    g->writer_task = 0;
    g->requeue_cur = 0; /* a second loss meanwhile: this keeping was all it asked */
    keep_finish(g);
    g->pump(g);
}

/*
 * The file being received is given up for now (a lost link, a cancel):
 * what the writer wrote is made durable and recorded for a rerun
 * (R-CHUNK-14) on the pool, and its progress taken back. A small file is
 * all in memory, without a part file.
 */
static void keep_current(struct ferry_download *g)
{
    if (g->cur == NULL || g->writer_task)
        return;
    if (g->fd < 0 || g->inl) {
        keep_finish(g);
        return;
    }
    submit(g);
    /*
     * The writer is the task's: frames of this file that still come (a
     * cancel leaves the link up) are counted and dropped, as for a file
     * given up, and its TransferComplete only frees its window slot.
     */
    g->active = 0;
    g->tasks++;
    g->writer_task = 1; /* no request goes out meanwhile */
    if (ferry_pool_submit(g->pool, keep_work, keep_done, g, NULL) != 0)
        keep_done(g, keep_work(g)); /* no pool: here, the loop waiting */
}

/* A lost link: every download not finished goes back to the queue, what is durable kept. */
static void requeue_all(struct ferry_download *g)
{
    size_t k;

    if (g->writer_task)
        g->requeue_cur = 1; /* the writer is the pool's: prefix_done keeps it */
    else
        keep_current(g);
    if (g->have_tid)
        end_tid(g);
    g->have_tid = 0;
    for (k = 0; k < g->n; k++) {
        struct dl *x = &g->v[k];
        /* A piece on the pool is its task's: its done requeues it (next_request). */
        if (x->state != DL_REQUESTED || x->busy)
            continue;
        ferry__dl_unclaim(g, x->id);
        x->state = DL_QUEUED;
        /* R-CHUNK-16: what is written becomes durable and recorded for the retry. */
        if (x->piece != NULL) {
            ferry_piece_sync(x->piece);
            ferry_piece_free(x->piece);
            x->piece = NULL;
        }
        x->phase = 0;
        g->prog.bytes_done -= x->counted;
        g->prog.bytes_skipped -=
            x->counted < g->prog.bytes_skipped ? x->counted : g->prog.bytes_skipped;
        x->counted = 0;
    }
    g->inflight = 0;
    g->next = g->first;
}

static void dl_down(void *arg, int rc)
{
    struct ferry_download *g = arg;

    (void)rc;
    if (g->over)
        return;
    /* Files verified on the lost link are placed, but nobody is left to acknowledge them to. */
    g->link++;
    g->paused = 0;
    if (!g->planned) {
        ferry__dl_plan_reset(g);
        return;
    }
    requeue_all(g);
}

static void dl_up(void *arg, const struct ferry_session_info *info)
{
    struct ferry_download *g = arg;

    (void)info;
    if (g->over || !g->started)
        return;
    g->batch.max = g->fbatch.max = ferry_batch_files(ferry_hub_acks(g->hub));
    if (!g->planned)
        ferry__dl_plan_start(g);
    ferry__dl_pump(g);
}

static void dl_closed(void *arg, int rc)
{
    struct ferry_download *g = arg;

    if (g->over)
        return;
    if (g->fatal == 0)
        g->fatal = rc != 0 ? rc : -ECONNRESET;
    dl_down(g, g->fatal);
    dl_end(g, g->fatal);
}

static const struct ferry_hub_port_ops dl_port_ops = {
    .on_up = dl_up,
    .on_down = dl_down,
    .on_close = dl_closed,
    .on_frame = dl_frame,
};

/* Folder times last, deepest first: writing files into them changed them. */
static void set_dir_times(struct ferry_download *g)
{
    size_t k;

    for (k = g->ndirs; k-- > 0;) {
        struct timespec ts[2];
        int fd = g->dirs[k].rel[0] ? ferry_open_beneath(g->dirs[k].rootfd, g->dirs[k].rel,
                                                        O_RDONLY | O_DIRECTORY, 0)
                                   : fcntl(g->dirs[k].rootfd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            continue;
        mtime_ts(g->dirs[k].mtime, ts);
        futimens(fd, ts);
        close(fd);
    }
}

static void dl_end(struct ferry_download *g, int rc)
{
    if (g->over)
        return;
    if (g->ending == 0)
        g->ending = rc != 0 ? rc : 1;
    if (rc != 0) {
        /* No acknowledgement after a failure: the link may be gone or at fault. */
        g->link++;
        if (g->cur != NULL && !g->writer_task) {
            /*
             * R-CHUNK-14: what is durable of a big file stays for a rerun. A
             * cancelled job leaves its requests to the hub, which drops their
             * answers once its port closes (requeueing would free them now).
             */
            if (g->fd >= 0 && !g->inl && g->cancelled)
                keep_current(g); /* before the lost-link test, which FERRY_ECANCELED passes */
            else if (g->fd >= 0 && !g->inl && ferry_conn_lost(rc))
                requeue_all(g);
            else
                fail_current(g, "interrupted", 0);
        }
    }
    /* Verified files are placed before the end, with or without acknowledgement. */
    if (g->flushing || g->tasks > 0)
        return; /* flush_done and the tasks' done come back here through ferry__dl_pump */
    if (g->batch.n > 0) {
        if (dl_flush(g) == 0 && g->flushing)
            return;
    }
    rc = g->ending == 1 ? 0 : g->ending;
    g->over = 1;
    /* A link this job paused for its writer is the other jobs' too: it reads on. */
    if (g->paused) {
        struct ferry_conn *c = ferry_session_conn(ferry_hub_session(g->hub));
        g->paused = 0;
        if (c != NULL)
            ferry_conn_resume(c);
    }
    ferry_dircache_clear(&g->dc);
    if (rc == 0)
        set_dir_times(g);
    g->prog.name = NULL;
    g->prog.state = NULL;
    ferry__dl_progress(g);
    ferry_hub_port_hold(g->port, FERRY_HUB_NO_SEQ);
    if (g->ops->on_done != NULL)
        g->ops->on_done(g->arg, rc);
}

int ferry_download_new(struct ferry_hub *hub, uv_loop_t *loop,
                       const struct ferry_download_spec *spec, const struct ferry_job_ops *ops,
                       void *arg, struct ferry_download **out)
{
    static const struct ferry_job_ops none;
    struct ferry_download *g;
    int i, rc = -ENOMEM;

    *out = NULL;
    if (spec->nsrc < 1 || spec->srcs == NULL || spec->dest == NULL)
        return FERRY_EUSAGE;
    if ((g = ferry_calloc(1, sizeof(*g))) == NULL)
        return -ENOMEM;
    g->hub = hub;
    g->loop = loop;
    g->pump = ferry__dl_pump;
    g->ops = ops != NULL ? ops : &none;
    g->arg = arg;
    g->st = spec->state;
    g->umask = spec->umask;
    g->dest_dir = spec->dest_dir;
    g->rec = spec->recursive;
    g->fd = g->dirfd = -1;
    g->nsrc = spec->nsrc;
    if ((g->srcs = ferry_calloc((size_t)spec->nsrc, sizeof(*g->srcs))) == NULL ||
        (g->dest = ferry_strdup(spec->dest)) == NULL)
        goto fail;
    for (i = 0; i < spec->nsrc; i++)
        if ((g->srcs[i] = ferry_strdup(spec->srcs[i])) == NULL)
            goto fail;
    if (ferry_batch_init(&g->batch, DL_BATCH_CAP, DL_HELD_CAP) != 0 ||
        ferry_batch_init(&g->fbatch, DL_BATCH_CAP, DL_HELD_CAP) != 0 ||
        (g->acks = ferry_calloc(DL_BATCH_CAP, sizeof(*g->acks))) == NULL)
        goto fail;
    g->batch.unwritten = g->fbatch.unwritten = &g->unwritten;
    if ((rc = ferry_pool_new(loop, 2, &g->pool)) != 0)
        goto fail;
    if ((rc = uv_async_init(loop, &g->wake, writer_wake_cb)) != 0)
        goto fail;
    g->wake.data = g;
    g->wake_open = 1;
    if ((rc = ferry_hub_port_open(hub, &dl_port_ops, g, &g->port)) != 0)
        goto fail;
    *out = g;
    return 0;
fail:
    ferry_download_free(g);
    return rc;
}

int ferry_download_start(struct ferry_download *g)
{
    if (g->started)
        return FERRY_EUSAGE;
    g->started = 1;
    if (ferry_hub_is_up(g->hub)) {
        g->batch.max = g->fbatch.max = ferry_batch_files(ferry_hub_acks(g->hub));
        ferry__dl_plan_start(g);
        ferry__dl_pump(g);
    }
    return 0;
}

void ferry_download_cancel(struct ferry_download *g)
{
    if (g->over)
        return;
    g->cancelled = 1;
    if (!g->pumping)
        dl_end(g, FERRY_ECANCELED);
}

void ferry_download_stats(const struct ferry_download *g, struct ferry_download_stats *out)
{
    size_t k;

    memset(out, 0, sizeof(*out));
    out->job.files_failed = g->failed;
    out->job.bytes_total = g->prog.bytes_total;
    out->job.bytes_moved = g->prog.bytes_done - g->prog.bytes_skipped;
    out->job.bytes_resumed = g->resumed;
    out->job.bytes_reused = g->reused;
    for (k = 0; k < g->n; k++) {
        if (g->v[k].state == DL_DONE)
            out->job.files_done++;
        else if (g->v[k].state < DL_DONE || g->v[k].state == DL_VERIFIED)
            out->files_left++;
    }
}

static void wake_closed(uv_handle_t *h)
{
    ferry_free(h->data);
}

void ferry_download_free(struct ferry_download *g)
{
    size_t k;
    int i;

    if (g == NULL)
        return;
    /*
     * Downloads still asked for are answered into the void now (the hub
     * drops what its closed port claimed); the server may take more from
     * the link's other jobs meanwhile, and stops reading past 64 (R-PIPE-1).
     */
    if (g->port != NULL && g->inflight > 0)
        ferry_hub_downloads(g->hub, -(int)g->inflight);
    ferry_hub_port_close(g->port);
    if (g->cur != NULL && g->fd >= 0)
        close(g->fd);
    if (g->dirfd >= 0)
        close(g->dirfd);
    ferry__dl_plan_free(g);
    for (k = 0; k < g->n; k++) {
        ferry_free(g->v[k].rel);
        ferry_free(g->v[k].label);
        if (g->v[k].piece != NULL)
            ferry_piece_sync(g->v[k].piece); /* what arrived stays for a rerun */
        ferry_piece_free(g->v[k].piece);
    }
    ferry_free(g->v);
    ferry_dircache_clear(&g->dc);
    ferry_writer_free(g->wr);
    ferry_batch_cleanup(&g->batch);
    ferry_batch_cleanup(&g->fbatch);
    ferry_free(g->acks);
    ferry_free(g->ibuf);
    for (i = 0; g->srcs != NULL && i < g->nsrc; i++)
        ferry_free(g->srcs[i]);
    ferry_free(g->srcs);
    ferry_free(g->dest);
    if (g->pool != NULL)
        ferry_pool_close(g->pool, NULL, NULL);
    if (g->wake_open) {
        /* The handle's memory is the job's: freed once the loop has closed it. */
        g->wake.data = g;
        uv_close((uv_handle_t *)&g->wake, wake_closed);
        return;
    }
    ferry_free(g);
}
