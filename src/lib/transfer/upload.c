/*
 * The upload job (ferry/upload.h): items in order over a hub's session.
 * This file holds the job's life cycle, the session's events, folders
 * (Mkdir) and plain Uploads (R-XFER-2), whose bytes are read and hashed
 * in pool tasks, a block at a time, and laid out as data frames on the
 * loop once the link has room. Chunked files are upload_chunked.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/manifest.h"
#include "ferry/net.h"
#include "upload_int.h"

/* One plain Upload: owned by a pool task while it reads, else by the loop. */
struct up_read {
    struct ferry_upload *u;
    struct up_read *next; /* on the ready list */
    size_t idx;
    uint32_t gen;
    int fd;
    int opened;     /* Upload was sent */
    int err;        /* the read's error (-errno), or FERRY_ECANCELED: it changed */
    int last;       /* this block ends the file */
    int changed;    /* the file changed while it was read */
    int big;        /* planned as a stream of several blocks: one at a time */
    uint64_t ahead; /* what it counts in u->read_bytes */
    struct stat st;
    uint64_t off; /* bytes laid out before buf */
    uint8_t *buf;
    size_t len;
    struct ferry_sha256 sha;
    int sha_on;
    char cid[FERRY_CID_LEN + 1];
};

/* Small files read and hashed by one pool task, handed back together. */
struct up_fbatch {
    struct ferry_upload *u;
    size_t n;
    uint64_t bytes;
    struct up_read *r[UP_FBATCH_FILES];
    int rc[UP_FBATCH_FILES]; /* each file's own result: one that failed spoils no other */
};

/* A Mkdir in flight: the job forgets it when freed, the reply then frees it alone. */
struct up_call {
    struct ferry_upload *u;
    struct up_call *next, *prev;
    size_t idx;
};

static void dispatch(struct ferry_upload *u);

static void up_finish(struct ferry_upload *u, int rc)
{
    if (u->finished)
        return;
    u->finished = 1;
    up_slots_drop(u);
    up_links_close(u);
    if (u->bw_waiting) {
        uv_timer_stop(&u->bw_timer);
        u->bw_waiting = 0;
    }
    if (u->ops.on_done != NULL)
        u->ops.on_done(u->arg, rc);
}

/* --- folders --- */

static int mkdir_reply(struct ferry_session *s, int rc, const struct ferry_cmd *m, void *arg)
{
    struct up_call *c = arg;
    struct ferry_upload *u = c->u;
    const char *msg;

    (void)s;
    if (u != NULL) {
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            u->calls = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
    }
    /* A lost link (FERRY_ECANCELED) requeues the folder in on_down. */
    if (u != NULL && !u->finished && rc != FERRY_ECANCELED) {
        struct up_item *it = &u->v[c->idx];
        if (rc == 0) {
            up_resolve(u, it);
        } else {
            msg = m != NULL ? json_string_value(json_object_get(m->body, "message")) : NULL;
            up_fail(u, it, rc, msg != NULL ? msg : ferry_strerror(rc));
        }
        up_pump(u);
    }
    ferry_free(c);
    return 0;
}

static int send_mkdir(struct ferry_upload *u, size_t idx)
{
    struct up_item *it = &u->v[idx];
    struct up_call *c = ferry_calloc(1, sizeof(*c));
    int rc;

    if (c == NULL)
        return -ENOMEM;
    c->u = u;
    c->idx = idx;
    it->state = IT_SENT;
    rc = ferry_session_call(
        ferry_hub_session(u->hub), FERRY_MSG_MKDIR,
        json_pack("{s:s, s:I}", "path", it->remote, "mtime", (json_int_t)it->mtime), mkdir_reply,
        c);
    if (rc != 0) {
        ferry_free(c);
        it->state = IT_QUEUED;
        return rc;
    }
    c->next = u->calls;
    if (u->calls != NULL)
        u->calls->prev = c;
    u->calls = c;
    return 0;
}

/* --- plain Uploads --- */

static void read_free(struct up_read *r)
{
    if (r->fd >= 0)
        close(r->fd);
    if (r->sha_on)
        ferry_sha256_cleanup(&r->sha);
    ferry_free(r->buf);
    ferry_free(r);
}

/* The read is over, whichever way: its place and, for a stream, the turn go to the next. */
static void read_end(struct ferry_upload *u, struct up_read *r)
{
    u->reads--;
    u->read_bytes -= r->ahead;
    if (r->big)
        u->stream_busy = 0;
    read_free(r);
}

/* A worker reads the next block and hashes it; the last one checks that nothing changed. */
static int read_work(void *arg)
{
    struct up_read *r = arg;
    struct stat after;
    uint64_t size, want;
    ssize_t n;
    size_t got = 0;

    if (r->fd < 0) {
        /* O_NONBLOCK: a FIFO put in the file's place must not hold the worker. */
        r->fd = open(r->u->v[r->idx].local, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (r->fd < 0)
            return -errno;
        if (fstat(r->fd, &r->st) != 0 || !S_ISREG(r->st.st_mode))
            return FERRY_EISDIR;
        posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (ferry_sha256_init(&r->sha) != 0)
            return -ENOMEM;
        r->sha_on = 1;
    }
    size = (uint64_t)r->st.st_size;
    r->off += r->len;
    r->len = 0;
    want = size - r->off > UP_READ_BLOCK ? UP_READ_BLOCK : size - r->off;
    /* A small file gets a buffer its size, a stream one block reused block after block. */
    if (want > 0 && r->buf == NULL && (r->buf = ferry_malloc((size_t)want)) == NULL)
        return -ENOMEM;
    while (got < want) {
        n = pread(r->fd, r->buf + got, (size_t)(want - got), (off_t)(r->off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    r->len = got;
    ferry_sha256_update(&r->sha, r->buf, got);
    if (got < want) {
        r->changed = 1; /* shrank */
        r->last = 1;
        return 0;
    }
    if (r->off + got < size)
        return 0;
    r->last = 1;
    /* A file that changed while it was read is not sent half old, half new. */
    if (fstat(r->fd, &after) != 0 || after.st_size != r->st.st_size ||
        after.st_mtim.tv_sec != r->st.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != r->st.st_mtim.tv_nsec ||
        after.st_ctim.tv_sec != r->st.st_ctim.tv_sec ||
        after.st_ctim.tv_nsec != r->st.st_ctim.tv_nsec)
        r->changed = 1; /* ctime too: an mtime put back does not hide a rewrite */
    else if (ferry_sha256_final_cid(&r->sha, r->cid) != 0)
        return FERRY_EINTERNAL;
    return 0;
}

/* A read's task is over: the block waits its turn to go out, or the file failed alone. */
static void read_over(struct ferry_upload *u, struct up_read *r, int status)
{
    struct up_item *it;

    if (u->freeing || r->gen != u->gen || u->finished) {
        /* A lost link requeued the item already; the job freed is past caring. */
        if (r->gen != u->gen && r->big)
            r->big = 0; /* the turn was given back when the link was lost */
        read_end(u, r);
        return;
    }
    it = &u->v[r->idx];
    if (status != 0) {
        if (r->opened)
            up_send_cancel(u, it);
        up_fail(u, it, status,
                status == FERRY_EISDIR ? "not a regular file" : ferry_strerror(status));
        read_end(u, r);
        return;
    }
    r->err = 0;
    r->next = NULL;
    if (u->ready_tail != NULL)
        u->ready_tail->next = r;
    else
        u->ready_head = r;
    u->ready_tail = r;
}

static void read_done(void *arg, int status)
{
    struct up_read *r = arg;
    struct ferry_upload *u = r->u;

    read_over(u, r, status);
    if (!u->freeing)
        up_pump(u);
}

static int submit_read(struct ferry_upload *u, struct up_read *r)
{
    r->gen = u->gen;
    return ferry_pool_submit(u->pool, read_work, read_done, r, NULL);
}

static struct up_read *read_new(struct ferry_upload *u, size_t idx, int big)
{
    struct up_read *r = ferry_calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->u = u;
    r->idx = idx;
    r->fd = -1;
    r->big = big;
    r->gen = u->gen;
    r->ahead = big || u->v[idx].size > UP_READ_BLOCK ? UP_READ_BLOCK : u->v[idx].size;
    u->v[idx].state = IT_BUSY;
    u->reads++;
    u->read_bytes += r->ahead;
    return r;
}

/* A stream (a big file to a 1.0 server): one task per block, in order. */
static int start_stream(struct ferry_upload *u, size_t idx)
{
    struct up_read *r = read_new(u, idx, 1);
    int rc;

    if (r == NULL)
        return -ENOMEM;
    if ((rc = submit_read(u, r)) != 0) {
        read_end(u, r);
        u->v[idx].state = IT_QUEUED;
        return rc;
    }
    u->stream_busy = 1;
    return 0;
}

/* A worker reads and hashes every file of the batch; each keeps its own result. */
static int fbatch_work(void *arg)
{
    struct up_fbatch *b = arg;
    size_t i;

    for (i = 0; i < b->n; i++) {
        b->rc[i] = read_work(b->r[i]);
        /* Its fd is done with: a batch of 64 holds none open on the loop. */
        if (b->r[i]->last && b->r[i]->fd >= 0) {
            close(b->r[i]->fd);
            b->r[i]->fd = -1;
        }
    }
    return 0;
}

static void fbatch_done(void *arg, int status)
{
    struct up_fbatch *b = arg;
    struct ferry_upload *u = b->u;
    size_t i;

    u->fbatches--;
    /* In plan order; a file that vanished or cannot be read fails alone. */
    for (i = 0; i < b->n; i++)
        read_over(u, b->r[i], status != 0 ? status : b->rc[i]);
    ferry_free(b);
    if (!u->freeing)
        up_pump(u);
}

static int fbatch_submit(struct ferry_upload *u, struct up_fbatch *b)
{
    size_t i;
    int rc;

    if ((rc = ferry_pool_submit(u->pool, fbatch_work, fbatch_done, b, NULL)) == 0) {
        u->fbatches++;
        return 0;
    }
    for (i = 0; i < b->n; i++) {
        u->v[b->r[i]->idx].state = IT_QUEUED;
        read_end(u, b->r[i]);
    }
    ferry_free(b);
    return rc;
}

/*
 * Lays out one ready block: Upload first, the data, and after the last
 * block TransferComplete (or TransferCancel when the file changed).
 * 1 when the link has no room (try again on drain), 0 done, < 0 for the job.
 */
static int lay_read(struct ferry_upload *u, struct up_read *r)
{
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(u->hub));
    struct up_item *it = &u->v[r->idx];
    int rc;

    if (c == NULL || ferry_conn_pending(c) >= UP_OUT_HIGH || up_bw_wait(u))
        return 1;
    if (!r->opened) {
        it->size = (uint64_t)r->st.st_size;
        it->mtime = (int64_t)r->st.st_mtim.tv_sec * 1000000000 + r->st.st_mtim.tv_nsec;
        /* No place among the hub's open uploads now: the hub wakes the job once there is. */
        if (up_slot_take(u, it) != 0)
            return 1;
        if ((rc = up_send_open(u, it, FERRY_MSG_UPLOAD)) != 0)
            return rc;
        r->opened = 1;
        u->cur_name = it->local;
        u->prog.name = it->local;
    }
    /* The server refused it meanwhile (R-XFER-4 3.): stop, and say so. */
    if (it->state == IT_FAILED && !r->last) {
        r->changed = 1;
        r->last = 1;
        r->len = 0;
    }
    if (r->len > 0 && !r->changed) {
        if ((rc = up_lay_data(c, it->tid, r->off, r->buf, r->len)) != 0)
            return rc;
        u->bytes_read += r->len;
        up_bw_sent(u, r->len);
        up_progress(u, it, r->len, 0);
    }
    if (r->last) {
        if (r->changed) {
            rc = up_send_cancel(u, it);
            up_fail(u, it, FERRY_ECANCELED, "changed while being read; run the upload again");
        } else {
            rc = up_send_complete(u, it, r->cid);
        }
    }
    up_report(u);
    return rc;
}

/* Lays out what is ready, in order, while the link has room. */
static int lay_ready(struct ferry_upload *u)
{
    struct up_read *r;
    int rc;

    while ((r = u->ready_head) != NULL) {
        if ((rc = lay_read(u, r)) == 1)
            return 0;
        u->ready_head = r->next;
        if (u->ready_head == NULL)
            u->ready_tail = NULL;
        if (rc == 0 && !r->last) {
            /* The next block of the same file: one task at a time keeps the hash in order. */
            if ((rc = submit_read(u, r)) == 0)
                continue;
        }
        read_end(u, r);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --- the job's motor --- */

/* Everything not confirmed goes back to the queue: the link it was sent on is gone. */
static void requeue(struct ferry_upload *u)
{
    struct up_read *r;
    size_t k;

    u->gen++;
    up_cf_drop(u);
    while ((r = u->ready_head) != NULL) {
        u->ready_head = r->next;
        read_end(u, r);
    }
    u->ready_tail = NULL;
    /* A stream still in a task gives its turn back now; its done drops it. */
    u->stream_busy = 0;
    for (k = u->first_open; k < u->n; k++) {
        struct up_item *it = &u->v[k];
        if (it->state == IT_BUSY || it->state == IT_SENT) {
            it->state = IT_QUEUED;
            u->prog.bytes_done -= it->counted;
            u->prog.bytes_skipped -= it->skipped;
            it->counted = it->skipped = 0;
        }
        if (it->has_tid)
            ferry_hub_release_tid(u->port, it->tid);
        it->has_tid = 0;
        it->open = UP_SLOT_NONE; /* the hub counts from 0 on the next link */
    }
    u->cursor = u->first_open;
}

/*
 * Adds the small file idx to the batch being gathered (*bp, made if NULL),
 * and submits the batch once it is full. 1 when read-ahead is at its
 * bound (the file stays queued), 0 taken, < 0 for the job.
 */
static int fbatch_add(struct ferry_upload *u, struct up_fbatch **bp, size_t idx)
{
    struct up_fbatch *b = *bp;
    struct up_read *r;

    if (u->reads >= UP_READS_MAX || u->read_bytes >= UP_READ_AHEAD_MAX ||
        (b == NULL && u->fbatches >= UP_FBATCHES_MAX))
        return 1;
    if (b == NULL && (b = *bp = ferry_calloc(1, sizeof(*b))) == NULL)
        return -ENOMEM;
    b->u = u;
    if ((r = read_new(u, idx, 0)) == NULL)
        return -ENOMEM;
    b->r[b->n++] = r;
    b->bytes += r->ahead;
    if (b->n < UP_FBATCH_FILES && b->bytes < UP_FBATCH_BYTES)
        return 0;
    *bp = NULL;
    return fbatch_submit(u, b);
}

/* Starts what the cursor reaches while there is room; items move in order. */
static int advance(struct ferry_upload *u)
{
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(u->hub));
    struct up_fbatch *b = NULL;
    int rc = 0, rc2;

    while (u->cursor < u->n && c != NULL && ferry_conn_pending(c) < UP_OUT_HIGH) {
        struct up_item *it = &u->v[u->cursor];
        int big = it->kind == UP_FILE && it->size >= FERRY_UPLOAD_CHUNKED_MIN;

        if (it->state != IT_QUEUED) {
            u->cursor++;
            continue;
        }
        /* A big file goes alone: one chunked file or one long stream at a time. */
        if (u->cf != NULL || u->stream_busy)
            break;
        if (it->kind == UP_FILE && !big) {
            if ((rc = fbatch_add(u, &b, u->cursor)) != 0)
                break;
            u->cursor++;
            continue;
        }
        /* What was gathered goes first: a batch holds only files next to each other. */
        if (b != NULL) {
            rc = fbatch_submit(u, b);
            b = NULL;
            if (rc != 0)
                break;
        }
        if (it->kind == UP_DIR) {
            rc = send_mkdir(u, u->cursor);
        } else if (u->minor >= 1) {
            /* Its place is taken before the open task, so the ChunkedUpload never waits. */
            if ((rc = up_slot_take(u, it)) != 0)
                break;
            if ((rc = up_cf_start(u, u->cursor)) != 0)
                up_slot_give(u, it);
        } else {
            if (u->reads > 0)
                break;
            rc = start_stream(u, u->cursor);
        }
        if (rc != 0)
            break;
        u->cursor++;
    }
    /* A batch not full goes now: more files would wait for room, this one need not. */
    if (b != NULL && b->n > 0 && (rc2 = fbatch_submit(u, b)) != 0 && rc >= 0)
        rc = rc2;
    else if (b != NULL && b->n == 0)
        ferry_free(b);
    return rc > 0 ? 0 : rc;
}

static void check_done(struct ferry_upload *u)
{
    while (u->first_open < u->n &&
           (u->v[u->first_open].state == IT_DONE || u->v[u->first_open].state == IT_FAILED))
        u->first_open++;
    if (u->first_open == u->n) {
        u->prog.name = NULL;
        u->prog.state = NULL;
        up_finish(u, 0);
        return;
    }
    if (u->cursor == u->n && u->cf == NULL && u->reads == 0) {
        /* Everything went out: the server makes it durable. */
        u->prog.name = NULL;
        u->prog.state = "verifying";
    }
}

static void dispatch(struct ferry_upload *u)
{
    int rc;

    if ((rc = lay_ready(u)) == 0) {
        up_cf_pump(u);
        rc = advance(u);
    }
    if (rc == 0)
        rc = lay_ready(u);
    up_flush(ferry_session_conn(ferry_hub_session(u->hub)));
    if (rc != 0 && rc != FERRY_ETOOBIG && !up_link_going(rc)) {
        up_finish(u, rc);
        return;
    }
    check_done(u);
}

void up_pump(struct ferry_upload *u)
{
    if (u->freeing || u->finished || !u->planned || !u->up)
        return;
    if (u->in_pump) {
        u->pump_again = 1;
        return;
    }
    u->in_pump = 1;
    do {
        u->pump_again = 0;
        dispatch(u);
    } while (u->pump_again && !u->finished && u->up);
    u->in_pump = 0;
    up_report(u);
}

/* --- the hub's events --- */

static void port_up(void *arg, const struct ferry_session_info *info)
{
    struct ferry_upload *u = arg;

    u->up = 1;
    /* Section 15: chunks and extra links only for a server that said 1.1 or later. */
    u->minor = info->minor;
    if (u->planned)
        up_links_open(u);
    up_pump(u);
}

static void port_down(void *arg, int rc)
{
    struct ferry_upload *u = arg;

    (void)rc;
    u->up = 0;
    up_links_close(u);
    requeue(u);
}

static void port_drain(void *arg)
{
    up_pump(arg);
}

static void port_close(void *arg, int rc)
{
    struct ferry_upload *u = arg;

    u->up = 0;
    /* The session is over for good: what is not confirmed stays so. */
    up_links_close(u);
    up_finish(u, rc != 0 ? rc : -ECONNRESET);
}

static struct up_item *by_tid(struct ferry_upload *u, const uint8_t tid[static FERRY_TID_LEN])
{
    size_t i;

    for (i = u->first_open; i < u->n; i++)
        if (u->v[i].has_tid && memcmp(u->v[i].tid, tid, FERRY_TID_LEN) == 0)
            return &u->v[i];
    return NULL;
}

static int port_frame(void *arg, const struct ferry_frame *f, const struct ferry_cmd *m)
{
    struct ferry_upload *u = arg;
    uint8_t tid[FERRY_TID_LEN];
    const char *ts, *msg;
    struct up_item *it;
    json_t *tids, *t;
    size_t i;
    int code;

    (void)f;
    if (m == NULL || u->finished)
        return 0; /* no data comes to an upload */
    if (m->type == FERRY_MSG_COMMITTED) {
        tids = json_object_get(m->body, "tids");
        json_array_foreach(tids, i, t)
        {
            if (json_is_string(t) &&
                ferry_hex_decode(json_string_value(t), tid, FERRY_TID_LEN) == 0 &&
                (it = by_tid(u, tid)) != NULL)
                up_resolve(u, it);
        }
        up_pump(u);
        return 0;
    }
    ts = json_string_value(json_object_get(m->body, "tid"));
    if (ts == NULL || ferry_hex_decode(ts, tid, FERRY_TID_LEN) != 0) {
        if (m->type == FERRY_MSG_ERROR) {
            /* The server speaks of the connection: the job cannot go on as it was. */
            msg = json_string_value(json_object_get(m->body, "message"));
            code = ferry_err_from_wire((int)json_integer_value(json_object_get(m->body, "code")));
            if (u->ops.on_item != NULL)
                u->ops.on_item(u->arg, "server", code, msg != NULL ? msg : "error");
            up_finish(u, code);
        }
        return 0;
    }
    if (m->type == FERRY_MSG_CHUNK_NEED || m->type == FERRY_MSG_CHUNK_STORED)
        return up_cf_frame(u, m, tid);
    if (m->type != FERRY_MSG_ERROR || (it = by_tid(u, tid)) == NULL)
        return 0;
    json_int_t wire = json_integer_value(json_object_get(m->body, "code"));
    code = ferry_err_from_wire(wire >= 0 && wire <= 1000 ? (int)wire : 10);
    msg = json_string_value(json_object_get(m->body, "message"));
    if (msg == NULL)
        msg = ferry_strerror(code);
    if (up_cf_owns(u, it)) {
        up_fail(u, it, code,
                code == FERRY_EHASH && json_object_get(m->body, "index")
                    ? "changed while being read; run the upload again"
                    : msg);
        up_cf_failed(u);
    } else if (code == FERRY_ENOTFOUND && it->state == IT_SENT &&
               ++it->attempts < FERRY_UPLOAD_CHUNK_ATTEMPTS) {
        /* R-CHUNK-8: a chunk went missing before the commit: ask again. */
        it->state = IT_QUEUED;
        u->prog.bytes_done -= it->counted;
        u->prog.bytes_skipped -= it->skipped;
        it->counted = it->skipped = 0;
        ferry_hub_release_tid(u->port, it->tid);
        it->has_tid = 0;
        if (u->cursor > (size_t)(it - u->v))
            u->cursor = (size_t)(it - u->v);
    } else {
        up_fail(u, it, code,
                code == FERRY_EHASH && json_object_get(m->body, "index")
                    ? "changed while being read; run the upload again"
                    : msg);
    }
    up_pump(u);
    return 0;
}

static const struct ferry_hub_port_ops port_ops = {
    .on_up = port_up,
    .on_down = port_down,
    .on_drain = port_drain,
    .on_close = port_close,
    .on_frame = port_frame,
};

/* --- life cycle --- */

static void plan_done(void *arg, int status)
{
    struct up_plan *p = arg;
    struct ferry_upload *u = p->u;
    size_t i;

    if (u->freeing || u->finished) {
        up_plan_free(p);
        return;
    }
    /* What planning found, in the order it found it. */
    for (i = 0; i < p->nmsgs && !u->finished; i++) {
        struct up_msg *m = &p->msgs[i];
        if (m->kind == MSG_ITEM && u->ops.on_item != NULL)
            u->ops.on_item(u->arg, m->label, m->rc, m->text);
        else if (m->kind == MSG_NOTE && u->ops.on_note != NULL)
            u->ops.on_note(u->arg, m->text);
    }
    u->plan_failed = p->failed;
    if (status != 0) {
        up_plan_free(p);
        up_finish(u, status);
        return;
    }
    u->v = p->v;
    u->n = p->n;
    p->v = NULL;
    p->n = 0;
    up_plan_free(p);
    for (i = 0; i < u->n; i++) {
        if (u->v[i].kind == UP_FILE) {
            u->prog.bytes_total += u->v[i].size;
            u->prog.files_total++;
        }
    }
    u->planned = 1;
    up_report(u);
    if (u->up)
        up_links_open(u);
    up_pump(u);
    if (u->n == 0)
        up_finish(u, 0);
}

static char *dup_opt(const char *s, int *bad)
{
    char *d;

    if (s == NULL)
        return NULL;
    if ((d = ferry_strdup(s)) == NULL)
        *bad = 1;
    return d;
}

int ferry_upload_new(struct ferry_hub *hub, const struct ferry_upload_spec *spec,
                     const struct ferry_job_ops *ops, void *arg, struct ferry_upload **out)
{
    struct ferry_upload *u;
    struct ferry_session_cfg *lc;
    size_t i;
    int rc, bad = 0;

    *out = NULL;
    if (hub == NULL || spec == NULL || spec->dest == NULL || spec->dest[0] == '\0' ||
        (spec->nsources > 0 && spec->sources == NULL) ||
        spec->connections > FERRY_UPLOAD_CONNECTIONS_MAX)
        return FERRY_EUSAGE;
    if ((u = ferry_calloc(1, sizeof(*u))) == NULL)
        return -ENOMEM;
    u->hub = hub;
    u->pump = up_pump;
    u->finish = up_finish;
    if (ops != NULL)
        u->ops = *ops;
    u->arg = arg;
    u->into = spec->into;
    u->recursive = spec->recursive;
    u->bwlimit = spec->bwlimit;
    u->state = spec->state;
    u->connections = spec->connections ? spec->connections : FERRY_UPLOAD_CONNECTIONS_DEFAULT;
    u->dest = dup_opt(spec->dest, &bad);
    if ((u->sources = ferry_calloc(spec->nsources + 1, sizeof(char *))) == NULL)
        bad = 1;
    for (i = 0; !bad && i < spec->nsources; i++)
        u->sources[i] = dup_opt(spec->sources[i], &bad);
    u->nsources = spec->nsources;
    if (spec->link_cfg != NULL) {
        lc = &u->link_cfg;
        *lc = *spec->link_cfg;
        u->l_host = dup_opt(lc->host, &bad);
        u->l_port = dup_opt(lc->port, &bad);
        u->l_from = dup_opt(lc->from, &bad);
        u->l_pin = dup_opt(lc->pin, &bad);
        u->l_token = dup_opt(lc->token, &bad);
        u->l_client = dup_opt(lc->client, &bad);
        lc->host = u->l_host;
        lc->port = u->l_port;
        lc->from = u->l_from;
        lc->pin = u->l_pin;
        lc->token = u->l_token;
        lc->client = u->l_client;
        /* An extra link that is lost stays lost: the hub's session carries on. */
        lc->retry_for_ms = 0;
        lc->need_user = 1;
        u->has_link_cfg = 1;
        u->nlinks = u->connections - 1;
    }
    for (i = 0; i < FERRY_UPLOAD_CONNECTIONS_MAX - 1; i++) {
        u->links[i].u = u;
        u->links[i].k = (int)i + 1;
    }
    if (bad) {
        rc = -ENOMEM;
        goto fail;
    }
    u->loop = spec->loop;
    if (u->loop == NULL) {
        rc = FERRY_EUSAGE;
        goto fail;
    }
    if ((rc = ferry_pool_new(u->loop, UP_POOL_MAX, &u->pool)) != 0)
        goto fail;
    uv_timer_init(u->loop, &u->bw_timer);
    u->bw_timer.data = u;
    u->handles = 2;
    if ((rc = ferry_hub_port_open(hub, &port_ops, u, &u->port)) != 0) {
        ferry_upload_free(u);
        return rc;
    }
    *out = u;
    return 0;
fail:
    u->handles = 0;
    u->freeing = 1;
    ferry_upload_free(u);
    return rc;
}

int ferry_upload_start(struct ferry_upload *u)
{
    struct up_plan *p;
    int rc;

    if (u->started)
        return FERRY_EUSAGE;
    if ((p = ferry_calloc(1, sizeof(*p))) == NULL)
        return -ENOMEM;
    p->u = u;
    if ((rc = ferry_pool_submit(u->pool, up_plan_work, plan_done, p, NULL)) != 0) {
        ferry_free(p);
        return rc;
    }
    u->started = 1;
    u->up = ferry_hub_is_up(u->hub);
    u->minor = ferry_hub_minor(u->hub);
    return 0;
}

void ferry_upload_cancel(struct ferry_upload *u)
{
    if (u == NULL || u->finished)
        return;
    u->cancelled = 1;
    up_links_close(u);
    up_cf_drop(u);
    up_finish(u, FERRY_ECANCELED);
}

void ferry_upload_stats(const struct ferry_upload *u, struct ferry_upload_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->job.files_done = u->prog.files_done;
    st->job.files_failed = u->n_failed + u->plan_failed;
    st->job.bytes_total = u->prog.bytes_total;
    st->job.bytes_moved = u->prog.bytes_done - u->prog.bytes_skipped;
    st->job.bytes_resumed = u->prog.bytes_skipped;
    st->items_done = u->n_done;
    st->items_failed = u->n_failed + u->plan_failed;
    st->items_left = u->n - u->n_done - u->n_failed;
    st->bytes_read = u->bytes_read;
    st->wire_sent = u->wire_sent;
    st->wire_received = u->wire_received;
}

static void release(struct ferry_upload *u)
{
    size_t i;

    for (i = 0; i < u->n; i++) {
        ferry_free(u->v[i].local);
        ferry_free(u->v[i].remote);
    }
    ferry_free(u->v);
    for (i = 0; i < u->nspare; i++)
        ferry_free(u->spare[i]);
    for (i = 0; u->sources != NULL && i < u->nsources; i++)
        ferry_free(u->sources[i]);
    ferry_free(u->sources);
    ferry_free(u->dest);
    ferry_free(u->l_host);
    ferry_free(u->l_port);
    ferry_free(u->l_from);
    ferry_free(u->l_pin);
    if (u->l_token != NULL)
        sodium_memzero(u->l_token, strlen(u->l_token));
    ferry_free(u->l_token);
    ferry_free(u->l_client);
    ferry_free(u);
}

static void handle_gone(struct ferry_upload *u)
{
    if (--u->handles == 0)
        release(u);
}

static void pool_closed(void *arg)
{
    handle_gone(arg);
}

static void timer_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

void ferry_upload_free(struct ferry_upload *u)
{
    struct up_read *r;
    struct up_call *c;

    if (u == NULL)
        return;
    /* Freed before on_done: cancelled, without a word to an owner who left. */
    u->finished = 1;
    u->freeing = 1;
    up_slots_drop(u);
    up_links_close(u);
    up_cf_drop(u);
    while ((r = u->ready_head) != NULL) {
        u->ready_head = r->next;
        read_free(r);
    }
    for (c = u->calls; c != NULL; c = c->next)
        c->u = NULL;
    u->calls = NULL;
    ferry_hub_port_close(u->port);
    u->port = NULL;
    if (u->handles == 0) {
        if (u->pool != NULL)
            ferry_pool_close(u->pool, NULL, NULL);
        release(u);
        return;
    }
    /* Tasks in flight end first (their done sees freeing); then the memory goes. */
    ferry_pool_close(u->pool, pool_closed, u);
    uv_close((uv_handle_t *)&u->bw_timer, timer_closed);
}
