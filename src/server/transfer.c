/* ferry serve: uploads streamed to temp files (downloads: download.c). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ferry/manifest.h"
#include "ferry/path.h"
#include "server.h"

static int fault(struct sess *s, const char *ref, int rc, const char *msg)
{
    srv_log_fault(s, msg);
    srv_send_error(s, ref, rc, msg);
    return rc < 0 ? rc : FERRY_EPROTO;
}

/* Frees an upload's list and gives its bytes back. */
static void list_release(struct srv *srv, struct upload *u)
{
    srv_list_uncharge(srv, u->uid, u->list_cap);
    ferry_free(u->list);
    u->list = NULL;
    u->list_cap = 0;
}

static struct upload *find_upload(struct sess *s, const uint8_t tid[static FERRY_TID_LEN],
                                  struct upload ***link)
{
    struct upload **pp;

    for (pp = &s->uploads; *pp != NULL; pp = &(*pp)->next) {
        if (memcmp((*pp)->tid, tid, FERRY_TID_LEN) == 0) {
            if (link != NULL)
                *link = pp;
            return *pp;
        }
    }
    return NULL;
}

/* On a writer thread: only signals the loop (uv_async_send is safe from any thread). */
static void writer_notify(void *arg)
{
    uv_async_send(arg);
}

/* The disk work a frame waited for is done: the frame left unread is read again. */
static void writer_wake(struct sess *s)
{
    if (s == NULL || !s->writer_wait || s->closed)
        return;
    s->writer_wait = 0;
    /* Other holds re-check themselves when their frame comes again; these do not. */
    if (s->listing == NULL && s->unacked < s->srv->cfg.max_unacked)
        ferry_conn_resume(s->conn);
}

/* On the loop: the writer has room or is done. */
static void writer_woken(uv_async_t *a)
{
    writer_wake(a->data);
}

static void writer_wake_closed(uv_handle_t *h)
{
    ferry_free(h);
}

/* The session's writer, made at its first large upload, and the handle that wakes it. */
static int writer_start(struct sess *s)
{
    uv_async_t *a = ferry_calloc(1, sizeof(*a));
    int rc;

    if (a == NULL)
        return -ENOMEM;
    if ((rc = uv_async_init(s->srv->loop, a, writer_woken)) != 0) {
        ferry_free(a);
        return rc;
    }
    a->data = s;
    if ((rc = ferry_writer_new(&s->writer)) != 0) {
        uv_close((uv_handle_t *)a, writer_wake_closed);
        return rc;
    }
    s->writer_wake = a;
    ferry_writer_set_notify(s->writer, writer_notify, a);
    return 0;
}

/*
 * Whether the frame in hand must wait for the writer: it is then left
 * unread (the caller returns 1) and read again once the writer wakes us.
 */
static int writer_hold(struct sess *s, int ready)
{
    if (ready)
        return 0;
    /*
     * No wake is lost: the writer signals every buffer it frees, and the
     * handle's callback runs on this thread, after the flag is set.
     */
    s->writer_wait = 1;
    ferry_conn_pause(s->conn);
    return 1;
}

/* Frees the session's writer, then the handle its threads signal. */
static void writer_free(struct sess *s)
{
    ferry_writer_free(s->writer);
    s->writer = NULL;
    if (s->writer_wake != NULL) {
        s->writer_wake->data = NULL;
        uv_close((uv_handle_t *)s->writer_wake, writer_wake_closed);
        s->writer_wake = NULL;
    }
}

struct writer_end {
    uv_work_t w;
    struct sess *s;
};

static void writer_end_work(uv_work_t *w)
{
    struct writer_end *e = w->data;
    char cid[FERRY_CID_LEN + 1];

    ferry_writer_end(e->s->writer, cid); /* a dropped upload: its hash is not wanted */
}

static void writer_end_done(uv_work_t *w, int status)
{
    struct writer_end *e = w->data;
    struct sess *s = e->s;

    (void)status;
    s->writer_ending = 0;
    if (s->writer_free_pending) {
        s->writer_free_pending = 0;
        writer_free(s);
    }
    ferry_free(e);
    srv_sess_unref(s);
}

/*
 * Ends the writer of a dropped upload. Idle, at once; else on the pool,
 * for draining its queued buffers waits for the disk (a cancel or a lost
 * link in the middle of a large upload); here only if the pool refuses.
 */
static void writer_end_dropped(struct sess *s, struct upload *u)
{
    struct writer_end *e;
    char cid[FERRY_CID_LEN + 1];

    if (u->wb != NULL)
        ferry_writer_submit(u->wr, u->wb, 0);
    u->wb = NULL;
    if (!ferry_writer_idle(u->wr) && (e = ferry_calloc(1, sizeof(*e))) != NULL) {
        e->s = s;
        e->w.data = e;
        if (uv_queue_work(s->srv->loop, &e->w, writer_end_work, writer_end_done) == 0) {
            srv_sess_ref(s);
            s->writer_ending = 1;
            return;
        }
        ferry_free(e);
    }
    ferry_writer_end(u->wr, cid);
}

/* The last of an upload: its spool file (if never committed), its hash, its memory. */
static void upload_release(struct srv *srv, struct upload *u)
{
    ferry_blob_spool_drop(srv->blobs, &u->spool);
    ferry_sha256_cleanup(&u->sha);
    ferry_free(u);
}

/*
 * A megabyte of a plain upload on its way to the spool file: hashed and
 * written on the thread pool, so the loop never waits for the disk, in
 * order, one per upload at a time, and at most SRV_FLUSHES_MAX server-wide
 * (the rest wait their turn in srv's list). It holds a reference to its
 * session; the upload stays until it is done, even if dropped meanwhile.
 */
struct flush {
    uv_work_t w;
    struct sess *s;
    struct upload *u;
    struct flush *next; /* waiting for a turn */
    uint8_t *buf;
    size_t n;
    size_t written; /* bytes of buf that reached the file */
    int rc;
    int running; /* queued on the pool: counts in srv->flushes */
};

static void flush_work(uv_work_t *w)
{
    struct flush *f = w->data;
    struct upload *u = f->u;
    const uint8_t *p = f->buf;
    ssize_t k;

    if (ferry_sha256_update(&u->sha, p, f->n) != 0) {
        f->rc = FERRY_EINTERNAL;
        return;
    }
    while (f->written < f->n) {
        k = write(u->spool.fd, p + f->written, f->n - f->written);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            f->rc = errno == ENOSPC || errno == EDQUOT ? FERRY_ENOSPACE : FERRY_EINTERNAL;
            return;
        }
        f->written += (size_t)k;
    }
    /* Start writeback early so the commit's fdatasync finds little left. */
    if (u->written + f->written - u->synced >= SRV_WRITEBACK_STEP)
        sync_file_range(u->spool.fd, (off_t)u->synced, (off_t)(u->written + f->written - u->synced),
                        SYNC_FILE_RANGE_WRITE);
}

static void flush_done(uv_work_t *w, int status);

/* Starts waiting flushes while the server has room for them. */
static void flush_start(struct srv *srv)
{
    struct flush *f;

    while (srv->flushes < SRV_FLUSHES_MAX && (f = srv->flush_head) != NULL) {
        srv->flush_head = f->next;
        if (srv->flush_head == NULL)
            srv->flush_tail = NULL;
        f->next = NULL;
        /* A frame held for room in the queue is read again. */
        f->s->flush_waiting--;
        writer_wake(f->s);
        f->w.data = f;
        /* uv_queue_work refuses only a request without work: it cannot fail here. */
        if (uv_queue_work(srv->loop, &f->w, flush_work, flush_done) == 0) {
            f->running = 1;
            srv->flushes++;
        } else {
            f->rc = FERRY_EINTERNAL;
            flush_done(&f->w, 0);
        }
    }
}

static void flush_done(uv_work_t *w, int status)
{
    struct flush *f = w->data;
    struct upload *u = f->u;
    struct sess *s = f->s;
    struct srv *srv = s->srv;

    if (f->running)
        srv->flushes--;
    u->flush = NULL;
    if (u->dropped) {
        s->lingering--;
        upload_release(srv, u);
    } else {
        u->written += f->written;
        if (u->written - u->synced >= SRV_WRITEBACK_STEP)
            u->synced = u->written;
        if (u->rc == 0)
            u->rc = status != 0 ? FERRY_EINTERNAL : f->rc;
    }
    /* The frame left unread for this flush, or for a lingering one, is read again. */
    writer_wake(s);
    ferry_free(f->buf);
    ferry_free(f);
    srv_sess_unref(s);
    flush_start(srv);
}

/*
 * Sends the bytes gathered in u->wbuf to the pool. Only when no flush of u
 * is in flight (the callers hold their frame until then); on failure u->rc
 * says why.
 */
static void upload_flush(struct sess *s, struct upload *u)
{
    struct srv *srv = s->srv;
    struct flush *f;

    if (u->is_inline || u->rc != 0 || u->flush != NULL || ferry_buf_used(&u->wbuf) == 0)
        return;
    if ((f = ferry_calloc(1, sizeof(*f))) == NULL) {
        u->rc = -ENOMEM;
        return;
    }
    f->buf = ferry_buf_take(&u->wbuf, &f->n);
    /* The next megabyte gathers in a buffer of its full size at once, not by doubling. */
    if (ferry_buf_reserve(&u->wbuf, SRV_WRITE_CHUNK) != 0)
        u->rc = -ENOMEM;
    f->s = s;
    f->u = u;
    srv_sess_ref(s);
    u->flush = f;
    s->flush_waiting++;
    if (srv->flush_tail != NULL)
        srv->flush_tail->next = f;
    else
        srv->flush_head = f;
    srv->flush_tail = f;
    flush_start(srv);
}

static void upload_free(struct sess *s, struct upload *u)
{
    /* R-LOG-5: an accepted upload that never reached its commit. */
    if (u->path != NULL)
        srv_log_transfer(s, "upload", u->path, 0, u->size, u->chunked ? u->size : u->received,
                         u->t0_ms, u->rc, u->rc != 0 ? "failed" : "cancelled");
    if (u->wr != NULL)
        writer_end_dropped(s, u);
    if (u->gprev != NULL) {
        *u->gprev = u->gnext;
        if (u->gnext != NULL)
            u->gnext->gprev = u->gprev;
    }
    /*
     * Chunks of it begun on this connection go too (R-XFER-4: nothing more
     * for a cancelled tid); those on other connections finish (R-CHUNK-13).
     */
    for (int i = 0; i < s->nrx;) {
        if (memcmp(s->rx[i].tid, u->tid, FERRY_TID_LEN) == 0) {
            ferry_free(s->rx[i].buf);
            s->rx[i] = s->rx[--s->nrx];
        } else {
            i++;
        }
    }
    list_release(s->srv, u);
    ferry_buf_cleanup(&u->wbuf);
    ferry_free(u->path);
    u->path = NULL;
    /* A flush still writing into the spool file ends the upload when it is done. */
    if (u->flush != NULL) {
        u->dropped = 1;
        s->lingering++;
        return;
    }
    upload_release(s->srv, u);
}

static int send_upload_error_msg(struct sess *s, struct upload *u, int rc, const char *msg)
{
    char tid[33];
    json_t *e;

    u->reported = 1;
    ferry_hex_encode(u->tid, FERRY_TID_LEN, tid);
    e = json_pack("{s:s, s:s, s:i, s:s}", "ref", u->ref, "tid", tid, "code", ferry_err_to_wire(rc),
                  "message", msg != NULL ? msg : ferry_strerror(rc));
    return srv_send(s, FERRY_MSG_ERROR, e);
}

static int send_upload_error(struct sess *s, struct upload *u, int rc)
{
    return send_upload_error_msg(s, u, rc, NULL);
}

/* R-CHUNK-30: what the client is told when a list cannot be held. */
static const char *list_refusal(int rc)
{
    return rc == FERRY_EBUSY ? "server busy: too many chunk lists held, try again later"
                             : "chunk list longer than the server holds";
}

/*
 * R-CHUNK-30: the upload is refused because its list cannot be held. The
 * list goes now; the rest of it is still read and checked, then dropped.
 */
static int list_refuse(struct sess *s, struct upload *u, int rc)
{
    list_release(s->srv, u);
    u->rc = rc;
    return send_upload_error_msg(s, u, rc, list_refusal(rc));
}

/*
 * Makes room for want bytes of u's list, doubling so a list costs few
 * copies, but never past the room the caps leave. A list that cannot fit
 * refuses its upload (0 returned); only a failed allocation is an error.
 */
static int list_grow(struct sess *s, struct upload *u, size_t want)
{
    struct srv *srv = s->srv;
    size_t ncap = u->list_cap ? u->list_cap * 2 : 64 * FERRY_CHUNK_ENT_LEN;
    uint64_t room;
    uint8_t *nl;
    int rc;

    if (want <= u->list_cap)
        return 0;
    if ((rc = srv_list_fits(srv, u->uid, u->list_cap, want)) != 0)
        return list_refuse(s, u, rc);
    while (ncap < want)
        ncap *= 2;
    room = srv_list_room(srv, u->uid);
    if (ncap - u->list_cap > room)
        ncap = u->list_cap + (size_t)room;
    if ((nl = ferry_realloc(u->list, ncap)) == NULL)
        return -ENOMEM;
    if ((rc = srv_list_charge(srv, u->uid, ncap - u->list_cap)) != 0) {
        u->list = nl;
        return rc;
    }
    u->list = nl;
    u->list_cap = ncap;
    return 0;
}

static int disk_has_room(struct srv *srv, uint64_t size)
{
    struct statvfs sv;

    if (fstatvfs(srv->datafd, &sv) != 0)
        return 1; /* unknown: the writes will tell */
    /* Free space is kept in reserve so metadata commits still fit (--min-free). */
    return (uint64_t)sv.f_bavail * sv.f_frsize >= size + srv->cfg.min_free;
}

int srv_upload_open(struct sess *s, const struct ferry_cmd *cmd)
{
    struct srv *srv = s->srv;
    const char *path = NULL;
    char norm[FERRY_PATH_MAX + 1];
    uint8_t tid[FERRY_TID_LEN];
    uint64_t size = 0;
    int64_t mtime = 0;
    int exec = 0, rc;
    struct upload *u;

    uint64_t used = 0;
    int chunked = cmd->type == FERRY_MSG_CHUNKED_UPLOAD;
    const char *msg = NULL;

    if ((rc = ferry_msg_tid(cmd->body, "tid", tid)) != 0 ||
        (rc = ferry_msg_str(cmd->body, "path", FERRY_PATH_MAX + 2, &path)) != 0 ||
        (rc = ferry_msg_u64(cmd->body, "size", INT64_MAX, &size)) != 0 ||
        (rc = ferry_msg_i64_opt(cmd->body, "mtime", INT64_MIN, INT64_MAX, 0, &mtime)) != 0 ||
        (rc = ferry_msg_bool_opt(cmd->body, "exec", 0, &exec)) != 0)
        return fault(s, cmd->id, FERRY_EPROTO,
                     chunked ? "malformed ChunkedUpload" : "malformed Upload");
    if (find_upload(s, tid, NULL) != NULL)
        return fault(s, cmd->id, FERRY_EPROTO, "transfer id already open");
    if (s->nuploads >= s->srv->cfg.max_open_uploads)
        return fault(s, cmd->id, FERRY_EBUSY, "too many open uploads");
    /* Places still taken by the flushes of gone uploads free soon: wait for them. */
    if (s->nuploads + s->lingering >= s->srv->cfg.max_open_uploads)
        return writer_hold(s, 0);
    if ((u = ferry_calloc(1, sizeof(*u))) == NULL)
        return -ENOMEM;
    memcpy(u->tid, tid, FERRY_TID_LEN);
    snprintf(u->ref, sizeof(u->ref), "%s", cmd->id);
    u->spool.fd = -1;
    u->t0_ms = ferry_now_ms();
    u->size = size;
    u->mtime = mtime;
    u->exec = exec;
    u->chunked = chunked;
    u->uid = s->uid;
    u->list_done = chunked && size == 0; /* an empty file has an empty list */
    if (chunked) {
        u->owner = s;
        u->gnext = srv->chunked;
        u->gprev = &srv->chunked;
        if (srv->chunked != NULL)
            srv->chunked->gprev = &u->gnext;
        srv->chunked = u;
    }
    ferry_buf_init(&u->wbuf, SRV_WRITE_CHUNK);
    u->next = s->uploads;
    s->uploads = u;
    s->nuploads++;
    /*
     * A refused upload stays registered in a failed state: data already in
     * flight for it is read and dropped instead of tearing the connection.
     */
    if ((rc = ferry_path_normalize(path, strlen(path), norm, sizeof(norm))) != 0 ||
        norm[0] == '\0') {
        u->rc = FERRY_EPATH;
    } else if (size > srv->cfg.max_file_size) {
        u->rc = FERRY_ETOOBIG; /* declared sizes are refused before any allocation */
    } else if (chunked &&
               (u->rc = srv_list_fits(srv, s->uid, 0,
                                      (size / FERRY_CHUNK_MAX + (size % FERRY_CHUNK_MAX != 0)) *
                                          FERRY_CHUNK_ENT_LEN)) != 0) {
        /* R-CHUNK-30: the shortest list the size allows must fit, before anything is held. */
        msg = list_refusal(u->rc);
    } else if (srv->cfg.quota > 0 &&
               (ferry_meta_used(srv->rdb, s->uid, &used) != 0 || used + size > srv->cfg.quota)) {
        /* R-CHUNK-9: refused before anything is allocated; the commit checks again. */
        u->rc = FERRY_EQUOTA;
    } else if (!disk_has_room(srv, size)) {
        u->rc = FERRY_ENOSPACE;
    } else if ((u->path = ferry_strdup(norm)) == NULL || ferry_sha256_init(&u->sha) != 0) {
        u->rc = -ENOMEM;
    } else if (chunked) {
        /* Chunks are gathered in memory and written by the commit job (R-CHUNK-7). */
    } else if (size <= SRV_INLINE_MAX) {
        u->is_inline = 1; /* R-STORE-9: gathered in memory, committed in the database */
    } else if ((rc = ferry_blob_spool_open(srv->blobs, &u->spool)) != 0) {
        u->rc = rc == -ENOSPC ? FERRY_ENOSPACE : FERRY_EINTERNAL;
    } else {
        if (!s->writer_ending && (s->writer != NULL || writer_start(s) == 0) &&
            !ferry_writer_busy(s->writer) && ferry_writer_begin(s->writer, u->spool.fd) == 0) {
            /* Hashing and writing overlap with decryption on the loop thread. */
            u->wr = s->writer;
        }
    }
    if (u->rc != 0)
        return send_upload_error_msg(s, u, u->rc, msg);
    return 0;
}

/*
 * R-CHUNK-5: small first groups, so the first chunks go out after a few MiB
 * of the file are chunked, not 64 MiB (a tenth of a second of a first
 * upload during which only the client's scanner worked); then larger ones,
 * so a big file costs few answers; and never more than 8 MiB of chunks, so
 * a client can keep the chunks it cut until it hears which to send.
 */
static int need_group_full(const struct upload *u)
{
    uint32_t n = u->nent - u->answered, group;

    group = u->answered < FERRY_NEED_FIRST   ? FERRY_NEED_FIRST
            : u->answered < FERRY_NEED_GROUP ? u->answered
                                             : FERRY_NEED_GROUP;
    return n == group || u->unanswered_bytes >= FERRY_NEED_GROUP_BYTES;
}

static int send_need(struct sess *s, struct upload *u)
{
    struct ferry_chunk_ent e;
    json_t *need = json_array();
    char tid[33];
    uint32_t i;
    int rc = 0, has;

    if (need == NULL)
        return -ENOMEM;
    if ((rc = ferry_meta_read_begin(s->srv->rdb)) != 0)
        goto out;
    for (i = u->answered; i < u->nent && rc == 0; i++) {
        ferry_chunk_ent_decode(u->list + (size_t)i * FERRY_CHUNK_ENT_LEN, &e);
        if ((has = ferry_meta_chunk_has(s->srv->rdb, s->uid, e.hash)) < 0)
            rc = has;
        else if (has == 0)
            rc = json_array_append_new(need, json_integer(i)) == 0 ? 0 : -ENOMEM;
    }
    ferry_meta_read_end(s->srv->rdb);
    if (rc != 0)
        goto out;
    ferry_hex_encode(u->tid, FERRY_TID_LEN, tid);
    rc = srv_send(s, FERRY_MSG_CHUNK_NEED,
                  json_pack("{s:s, s:s, s:I, s:I, s:O}", "ref", u->ref, "tid", tid, "first",
                            (json_int_t)u->answered, "count", (json_int_t)(u->nent - u->answered),
                            "need", need));
    u->answered = u->nent;
    u->unanswered_bytes = 0;
out:
    json_decref(need);
    return rc;
}

/*
 * R-CHUNK-4: the list arrives as data frames; each entry is judged as it
 * completes, gathered in carry when a frame splits it. A refused upload's
 * entries are judged the same and not kept (R-CHUNK-30).
 */
static int list_data(struct sess *s, struct upload *u, const struct ferry_data *d)
{
    struct ferry_chunk_ent e;
    const uint8_t *p = d->bytes;
    size_t n = d->len, k;
    int rc;

    if (d->offset != u->list_len)
        return fault(s, u->ref, FERRY_EPROTO, "chunk list offset out of order");
    if (u->list_done)
        return fault(s, u->ref, FERRY_ETOOBIG, "data beyond the chunk list");
    /* Room for every entry this frame may complete, or the upload is refused. */
    if (u->rc == 0 && (rc = list_grow(s, u, u->list_len + n)) != 0)
        return rc;
    while (n > 0) {
        k = FERRY_CHUNK_ENT_LEN - u->carry_len < n ? FERRY_CHUNK_ENT_LEN - u->carry_len : n;
        memcpy(u->carry + u->carry_len, p, k);
        u->carry_len += k;
        u->list_len += k;
        p += k;
        n -= k;
        if (u->carry_len < FERRY_CHUNK_ENT_LEN)
            break;
        u->carry_len = 0;
        ferry_chunk_ent_decode(u->carry, &e);
        /* R-CHUNK-2, checked entry by entry so a bad list costs nothing more. */
        if (e.len == 0 || e.len > FERRY_CHUNK_MAX)
            return fault(s, u->ref, FERRY_EPROTO, "chunk length out of range");
        if (e.len > u->size - u->list_sum)
            return fault(s, u->ref, FERRY_EPROTO, "chunk list longer than the file");
        if (u->rc == 0)
            memcpy(u->list + (size_t)u->nent * FERRY_CHUNK_ENT_LEN, u->carry, FERRY_CHUNK_ENT_LEN);
        u->list_sum += e.len;
        u->unanswered_bytes += e.len;
        u->nent++;
        if (u->list_sum < u->size && e.len < FERRY_CHUNK_MIN)
            return fault(s, u->ref, FERRY_EPROTO, "chunk shorter than the minimum");
        if (u->list_sum == u->size) {
            u->list_done = 1;
            if (n > 0)
                return fault(s, u->ref, FERRY_ETOOBIG, "data beyond the chunk list");
        }
        if (u->rc == 0 && (need_group_full(u) || u->list_done) && (rc = send_need(s, u)) != 0)
            return rc;
    }
    return 0;
}

static void upload_track_unacked(struct sess *s, uint64_t n)
{
    s->unacked += n;
    s->srv->unacked += n; /* R-STORE-11: checked at the next write (srv_op_admit) */
    /* R-STORE-3: stop reading while too much awaits its commit. */
    if (s->unacked >= s->srv->cfg.max_unacked)
        ferry_conn_pause(s->conn);
}

/*
 * R-CHUNK-13: a chunk may travel on any connection of the same user; a tid
 * of another user's upload is as unknown as one never opened.
 */
static struct upload *find_chunked(struct sess *s, const uint8_t tid[static FERRY_TID_LEN])
{
    struct upload *u = find_upload(s, tid, NULL);

    if (u != NULL)
        return u->chunked ? u : NULL;
    for (u = s->srv->chunked; u != NULL; u = u->gnext)
        if (u->owner->uid == s->uid && u->owner->authed && memcmp(u->tid, tid, FERRY_TID_LEN) == 0)
            return u;
    return NULL;
}

/*
 * R-CHUNK-7: a complete chunk's SHA-256 is checked on the thread pool, off
 * the loop thread and while its bytes are still in cache, chunks of one or
 * many connections in parallel. The commit job then only writes, so a
 * batch's last chunks wait for one write, not for hashing and writing
 * hundreds of MiB in turn. Checks finish out of order; a TransferComplete
 * behind them waits until they have joined the queue (session.c), so the
 * batch still sees the file's chunks first. A mismatch answers through the
 * batch, in queue order.
 */
static void check_work(uv_work_t *w)
{
    struct op *op = w->data;
    uint8_t h[32];

    ferry_sha256_buf(op->data, (size_t)op->size, h);
    if (memcmp(h, op->hash, 32) != 0)
        op->rc = FERRY_EHASH;
}

static void check_done(uv_work_t *w, int status)
{
    struct op *op = w->data;
    struct sess *s = op->s;

    if (status != 0 && op->rc == 0)
        op->rc = FERRY_EINTERNAL;
    s->checking--;
    /*
     * Resuming redelivers a held TransferComplete at once, so the op joins
     * the queue first; s is alive there, as its connection is open. On the
     * other path s is not touched after the submit, which may finish the op
     * (and drop its reference to s) at once while the server stops.
     */
    if (s->check_wait && s->checking == 0) {
        s->check_wait = 0;
        if (!s->closed && !s->barrier && s->unacked < s->srv->cfg.max_unacked) {
            srv_op_submit(s->srv, op);
            ferry_conn_resume(s->conn);
            return;
        }
    }
    srv_op_submit(s->srv, op);
}

int srv_chunk_data(struct sess *s, const struct ferry_chunk_frame *f)
{
    struct ferry_chunk_ent e;
    struct chunk_rx *rx = NULL;
    struct upload *u;
    struct op *op;
    int i;

    for (i = 0; i < s->nrx; i++)
        if (s->rx[i].index == f->index && memcmp(s->rx[i].tid, f->tid, FERRY_TID_LEN) == 0)
            rx = &s->rx[i];
    if (rx == NULL) {
        /* R-CHUNK-6: only chunked uploads of this user, and indices the list announced. */
        if ((u = find_chunked(s, f->tid)) == NULL)
            return fault(s, NULL, FERRY_ENOTFOUND, "chunk for an unknown transfer");
        if (f->index >= u->nent)
            return fault(s, u->ref, FERRY_EPROTO, "chunk index not in the list");
        /*
         * R-CHUNK-30: a refused upload keeps no list, so nothing to check a
         * new chunk's frames against: they are dropped (R-XFER-4).
         */
        if (u->rc != 0)
            return 0;
        if (f->offset != 0)
            return fault(s, u->ref, FERRY_EPROTO, "chunk offset out of order");
        if (s->nrx >= SRV_CHUNKS_OPEN_MAX)
            return fault(s, u->ref, FERRY_EPROTO, "too many chunks begun");
        /* R-PIPE-4: a chunk becomes a write; admitted before its buffer exists. */
        if (srv_op_admit(s) != 0)
            return 1;
        if (u->owner != s)
            ferry_log(FERRY_LOG_DEBUG,
                      "chunk index=%u of an upload opened on another connection ip=%s",
                      (unsigned)f->index, ferry_conn_peer_ip(s->conn));
        ferry_chunk_ent_decode(u->list + (size_t)f->index * FERRY_CHUNK_ENT_LEN, &e);
        rx = &s->rx[s->nrx];
        *rx = (struct chunk_rx){.index = f->index, .len = e.len};
        memcpy(rx->tid, f->tid, FERRY_TID_LEN);
        memcpy(rx->hash, e.hash, 32);
        memcpy(rx->ref, u->ref, sizeof(rx->ref));
        /*
         * Block-aligned, with room for the zeros that pad it to whole
         * blocks: the commit job appends it to a pack with O_DIRECT.
         */
        if ((rx->buf = ferry_malloc_aligned(FERRY_PACK_ALIGN, (size_t)FERRY_PACK_ROUND(e.len))) ==
            NULL)
            return -ENOMEM;
        s->nrx++;
    }
    if (f->offset != rx->got)
        return fault(s, rx->ref, FERRY_EPROTO, "chunk offset out of order");
    if (f->len > rx->len - rx->got)
        return fault(s, rx->ref, FERRY_ETOOBIG, "chunk bytes beyond its length");
    if (rx->buf != NULL)
        memcpy(rx->buf + rx->got, f->bytes, f->len);
    rx->got += (uint32_t)f->len;
    if (rx->got < rx->len)
        return 0;
    /* Complete: hand it to its check and the write queue, and forget it here. */
    op = NULL;
    if (rx->buf != NULL && (op = srv_op_new(s, &srv_op_chunk, rx->ref)) == NULL) {
        ferry_free(rx->buf);
        rx->buf = NULL;
    }
    if (op != NULL) {
        op->uid = s->uid;
        op->size = rx->len;
        op->index = rx->index;
        memcpy(op->hash, rx->hash, 32);
        memcpy(op->tid, rx->tid, FERRY_TID_LEN);
        op->data = rx->buf;
        rx->buf = NULL;
    }
    *rx = s->rx[--s->nrx];
    if (op != NULL) {
        op->staged = (uint64_t)op->size;
        upload_track_unacked(s, op->staged);
        /* If the pool cannot take it, check it here: slower, never skipped. */
        op->check.data = op;
        s->checking++;
        if (uv_queue_work(s->srv->loop, &op->check, check_work, check_done) != 0) {
            check_work(&op->check);
            check_done(&op->check, 0);
        }
    }
    return 0;
}

int srv_upload_data(struct sess *s, const struct ferry_data *d)
{
    struct upload *u = find_upload(s, d->tid, NULL);

    /* R-DATA-3: only transfers this connection opened. */
    if (u == NULL)
        return fault(s, NULL, FERRY_ENOTFOUND, "data for an unknown transfer");
    if (u->chunked)
        return list_data(s, u, d);
    /* R-DATA-2: protocol 1 sends each transfer in order. */
    if (d->offset != u->received)
        return fault(s, u->ref, FERRY_EPROTO, "data offset out of order");
    /* R-DATA-4: never more than declared. */
    if (d->len > u->size - u->received)
        return fault(s, u->ref, FERRY_ETOOBIG, "data beyond the declared size");
    /*
     * A frame that needs a fresh buffer while all 8 are in flight waits,
     * unread, for the writer (the backpressure of a slow disk): a frame
     * never spans more than one buffer boundary, as it is far smaller.
     */
    if (u->rc == 0 && u->wr != NULL && d->len > 0 &&
        (u->wb == NULL || FERRY_WRITER_BUF - u->wlen < d->len) &&
        writer_hold(s, ferry_writer_ready(u->wr)))
        return 1;
    /* Without a writer, a megabyte at a time goes to the pool, one in flight. */
    if (u->rc == 0 && u->wr == NULL && u->flush != NULL && d->len > 0 &&
        ferry_buf_used(&u->wbuf) + d->len > SRV_WRITE_CHUNK)
        return writer_hold(s, 0);
    /* And one that would queue a flush waits while the connection has enough queued. */
    if (u->rc == 0 && u->wr == NULL && d->len > 0 &&
        ferry_buf_used(&u->wbuf) + d->len >= SRV_WRITE_CHUNK &&
        s->flush_waiting >= SRV_SESS_FLUSH_WAIT)
        return writer_hold(s, 0);
    u->received += d->len;
    if (u->rc != 0)
        return 0;
    if (u->wr != NULL) {
        const uint8_t *p = d->bytes;
        size_t n = d->len, k;

        while (n > 0) {
            if (u->wb == NULL && (u->wb = ferry_writer_buf(u->wr)) == NULL) {
                u->rc = FERRY_EINTERNAL; /* the real cause comes from ferry_writer_end */
                return 0;
            }
            k = FERRY_WRITER_BUF - u->wlen < n ? FERRY_WRITER_BUF - u->wlen : n;
            memcpy(u->wb + u->wlen, p, k);
            u->wlen += k;
            p += k;
            n -= k;
            if (u->wlen == FERRY_WRITER_BUF) {
                ferry_writer_submit(u->wr, u->wb, u->wlen);
                u->wb = NULL;
                u->wlen = 0;
            }
        }
        return 0;
    }
    if (ferry_buf_append(&u->wbuf, d->bytes, d->len) != 0) {
        /* Only past the megabyte, and then no flush is in flight (above). */
        upload_flush(s, u);
        if (u->rc == 0 && ferry_buf_append(&u->wbuf, d->bytes, d->len) != 0)
            u->rc = -ENOMEM;
    }
    /* A full megabyte goes now, unless one is in flight: the next frame waits for it. */
    if (ferry_buf_used(&u->wbuf) >= SRV_WRITE_CHUNK)
        upload_flush(s, u);
    return 0;
}

/* R-XFER-3: whether tid is a finished download still remembered, newest first. */
static int done_find(const struct sess *s, const uint8_t tid[static FERRY_TID_LEN])
{
    uint64_t k, n = s->done_next < SRV_DONE_TIDS ? s->done_next : SRV_DONE_TIDS;

    if (s->done_tids == NULL)
        return 0;
    for (k = 1; k <= n; k++)
        if (memcmp(s->done_tids[(s->done_next - k) % SRV_DONE_TIDS], tid, FERRY_TID_LEN) == 0)
            return 1;
    return 0;
}

/* R-XFER-6: acknowledgements of many downloads, each checked as a single one is. */
static int acks_many(struct sess *s, const struct ferry_cmd *cmd, const json_t *tids)
{
    uint8_t t[FERRY_ACK_TIDS_MAX][FERRY_TID_LEN];
    size_t n, i;

    if (json_object_get(cmd->body, "tid") != NULL ||
        ferry_msg_tids(tids, FERRY_ACK_TIDS_MAX, t, &n) != 0)
        return fault(s, cmd->id, FERRY_EPROTO, "malformed TransferComplete");
    for (i = 0; i < n; i++)
        if (!done_find(s, t[i]))
            return fault(s, cmd->id, FERRY_ENOTFOUND, "TransferComplete for an unknown transfer");
    return 0;
}

int srv_upload_complete(struct sess *s, const struct ferry_cmd *cmd)
{
    struct upload *u, **link = NULL;
    const char *hash = NULL;
    char cid[FERRY_CID_LEN + 1];
    uint8_t tid[FERRY_TID_LEN];
    struct op *op;
    const json_t *tids = json_object_get(cmd->body, "tids");
    int rc;

    if (tids != NULL)
        return acks_many(s, cmd, tids);
    if ((rc = ferry_msg_tid(cmd->body, "tid", tid)) != 0)
        return fault(s, cmd->id, FERRY_EPROTO, "malformed TransferComplete");
    if ((u = find_upload(s, tid, &link)) == NULL) {
        /* Seed 000: the receiver of a download acknowledges it after its check. */
        if (done_find(s, tid))
            return 0;
        return fault(s, cmd->id, FERRY_ENOTFOUND, "TransferComplete for an unknown transfer");
    }
    if ((rc = ferry_msg_str(cmd->body, "hash", FERRY_CID_LEN, &hash)) != 0)
        return fault(s, cmd->id, FERRY_EPROTO, "malformed TransferComplete");
    if (u->chunked ? !u->list_done : u->received != u->size)
        return fault(s, cmd->id, FERRY_EPROTO, "TransferComplete before all data");
    /*
     * A large upload's last bytes may still be on their way to the disk:
     * the TransferComplete waits, unread, until its writer is done.
     */
    if (!u->chunked && u->wr != NULL) {
        if (u->wb != NULL)
            ferry_writer_submit(u->wr, u->wb, u->wlen);
        u->wb = NULL;
        u->wlen = 0;
        if (writer_hold(s, ferry_writer_idle(u->wr)))
            return 1;
    }
    /* Without a writer, the last bytes go to the pool as well, and it waits for them. */
    if (!u->chunked && u->wr == NULL && !u->is_inline && u->rc == 0) {
        if (u->flush == NULL)
            upload_flush(s, u);
        if (u->flush != NULL)
            return writer_hold(s, 0);
    }
    /* R-PIPE-4: an upload that may commit becomes a write; wait for room first. */
    if (u->rc == 0 && srv_op_admit(s) != 0)
        return 1;
    *link = u->next;
    s->nuploads--;
    if (u->chunked) {
        /* R-CHUNK-8: the list must be the one the hash names; chunks are checked at commit. */
        if (u->rc == 0 && ferry_chunk_list_cid(u->list, u->list_len, cid) != 0)
            u->rc = FERRY_EINTERNAL;
        if (u->rc == 0 && strcmp(hash, cid) != 0)
            u->rc = FERRY_EHASH;
        if (u->rc != 0) {
            if (!u->reported)
                send_upload_error(s, u, u->rc);
            goto out;
        }
        goto commit;
    }
    if (u->wr != NULL) {
        int wrc;

        if (u->wb != NULL)
            ferry_writer_submit(u->wr, u->wb, u->wlen);
        u->wb = NULL;
        wrc = ferry_writer_end(u->wr, cid);
        u->wr = NULL;
        if (u->rc == 0 && wrc != 0)
            u->rc = wrc == -ENOSPC || wrc == -EDQUOT ? FERRY_ENOSPACE : FERRY_EINTERNAL;
        if (u->rc == 0 && (!ferry_cid_valid(hash) || strcmp(hash, cid) != 0))
            u->rc = FERRY_EHASH;
        if (u->rc != 0) {
            send_upload_error(s, u, u->rc);
            goto out;
        }
        goto commit;
    }
    if (u->rc != 0) {
        /* Refusals were answered at once; write failures are answered now. */
        if (!u->reported)
            send_upload_error(s, u, u->rc);
        goto out;
    }
    if (u->is_inline && u->rc == 0 &&
        ferry_sha256_update(&u->sha, ferry_buf_peek(&u->wbuf), ferry_buf_used(&u->wbuf)) != 0)
        u->rc = FERRY_EINTERNAL;
    if (u->rc == 0 && ferry_sha256_final_cid(&u->sha, cid) != 0)
        u->rc = FERRY_EINTERNAL;
    /* The receiver checks the hash before anything becomes visible. */
    if (u->rc == 0 && (!ferry_cid_valid(hash) || strcmp(hash, cid) != 0))
        u->rc = FERRY_EHASH;
    if (u->rc != 0) {
        send_upload_error(s, u, u->rc);
        goto out;
    }
commit:
    if ((op = srv_op_new(s, &srv_op_upload, u->ref)) == NULL) {
        send_upload_error(s, u, -ENOMEM);
        goto out;
    }
    op->uid = s->uid;
    op->t0_ms = u->t0_ms;
    op->path = u->path;
    u->path = NULL;
    op->size = (int64_t)u->size;
    op->mtime = u->mtime;
    op->flag = u->exec;
    memcpy(op->tid, u->tid, FERRY_TID_LEN);
    memcpy(op->cid, cid, sizeof(cid));
    op->spool = u->spool;
    u->spool.fd = -1;
    u->spool.name[0] = '\0';
    if (u->chunked) {
        /* An empty file has an empty list, which is still a list, not a blob. */
        if (u->list == NULL && (u->list = ferry_malloc(1)) == NULL) {
            send_upload_error(s, u, -ENOMEM);
            op->rc = -ENOMEM;
        }
        /* The list moves to the op, still charged to its user until the commit (R-CHUNK-30). */
        op->list = u->list;
        op->list_len = u->list_len;
        op->list_uid = u->uid;
        op->list_charged = u->list_cap;
        u->list = NULL;
        u->list_cap = 0;
        srv_op_submit(s->srv, op);
        goto out;
    }
    if (u->is_inline) {
        size_t n;
        uint8_t *fit;
        /* The received bytes move to the op as they are: no copy per small file. */
        if ((op->data = ferry_buf_take(&u->wbuf, &n)) == NULL &&
            (op->data = ferry_malloc(1)) == NULL) {
            send_upload_error(s, u, -ENOMEM);
            op->rc = -ENOMEM;
        } else if (n > 0 && (fit = ferry_realloc(op->data, n)) != NULL) {
            op->data = fit; /* held until the commit: as much as --max-unacked counts */
        }
    }
    op->staged = u->size;
    srv_op_submit(s->srv, op);
    upload_track_unacked(s, op->staged);
out:
    upload_free(s, u);
    return 0;
}

int srv_transfer_cancel(struct sess *s, const struct ferry_cmd *cmd)
{
    struct upload *u, **link = NULL;
    uint8_t tid[FERRY_TID_LEN];

    if (ferry_msg_tid(cmd->body, "tid", tid) != 0)
        return fault(s, cmd->id, FERRY_EPROTO, "malformed TransferCancel");
    if ((u = find_upload(s, tid, &link)) != NULL) {
        *link = u->next;
        s->nuploads--;
        upload_free(s, u);
        return 0;
    }
    srv_download_cancel(s, tid);
    return 0;
}

void srv_transfer_cleanup(struct sess *s)
{
    struct upload *u;
    int i;

    srv_op_unwait(s);
    for (i = 0; i < s->nrx; i++)
        ferry_free(s->rx[i].buf);
    s->nrx = 0;
    while ((u = s->uploads) != NULL) {
        s->uploads = u->next;
        upload_free(s, u);
    }
    s->nuploads = 0;
    srv_download_cleanup(s);
    ferry_free(s->done_tids);
    s->done_tids = NULL;
    /* The writer's threads are gone before the handle they signal. */
    if (s->writer_ending)
        s->writer_free_pending = 1; /* writer_end_done frees it */
    else
        writer_free(s);
}
