/* ferry serve: the single-writer queue and its group commits (R-STORE-1, R-STORE-2). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/manifest.h"
#include "ferry/path.h"
#include "server.h"

struct batch {
    uv_work_t work;
    struct srv *srv;
    struct op *ops;
    /* Space to free once the commit is durable (ferry_blob_free). */
    struct ferry_blob_garbage *gc;
    size_t ngc;
    size_t capgc;
};

struct op *srv_op_new(struct sess *s, const struct op_type *type, const char *ref)
{
    struct op *op = ferry_calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    op->type = type;
    op->s = s;
    op->spool.fd = -1;
    op->now = srv_now_ns();
    snprintf(op->ref, sizeof(op->ref), "%s", ref != NULL ? ref : "");
    srv_sess_ref(s);
    s->outstanding++;
    /* R-PIPE-4: counted until its batch is done, whatever admitted it. */
    s->nops++;
    s->srv->nops++;
    return op;
}

/* R-PIPE-4, R-STORE-11: whether the server as a whole can take another write. */
static int room_in_all(const struct srv *srv)
{
    return srv->nops < srv->cfg.max_ops && srv->unacked < srv->cfg.max_unacked_total;
}

int srv_op_admit(struct sess *s)
{
    struct srv *srv = s->srv;

    /* Resumed by srv_sess_op_done as the connection's own operations commit. */
    if (s->nops >= srv->cfg.max_ops_conn) {
        ferry_conn_pause(s->conn);
        return 1;
    }
    if (room_in_all(srv)) {
        /* Admitted another way (its own commits resumed it): no longer waiting. */
        srv_op_unwait(s);
        return 0;
    }
    /* Resumed in turn by wake_waiters once a commit frees room. */
    if (!s->opw_waiting) {
        s->opw_waiting = 1;
        s->opw_next = NULL;
        if (srv->opw_tail != NULL)
            srv->opw_tail->opw_next = s;
        else
            srv->opw_head = s;
        srv->opw_tail = s;
    }
    ferry_conn_pause(s->conn);
    return 1;
}

void srv_op_unwait(struct sess *s)
{
    struct srv *srv = s->srv;
    struct sess **pp, *prev = NULL;

    if (!s->opw_waiting)
        return;
    for (pp = &srv->opw_head; *pp != NULL; prev = *pp, pp = &(*pp)->opw_next) {
        if (*pp != s)
            continue;
        *pp = s->opw_next;
        if (srv->opw_tail == s)
            srv->opw_tail = prev;
        break;
    }
    s->opw_waiting = 0;
    s->opw_next = NULL;
}

/*
 * Whether a connection stopped at a cap of R-PIPE-4 may be read again: the
 * stops that are not checked again when their frame is redelivered must be
 * over (R-STORE-3's staged bytes, an ordering barrier, a listing being
 * sent, R-PAGE-1).
 */
static int may_resume(const struct sess *s)
{
    return !s->closed && !s->barrier && s->unacked < s->srv->cfg.max_unacked && s->listing == NULL;
}

/*
 * Resumes, first come first served, the connections that stopped for room in
 * all, while there is room. Each one resumed takes its write at once (its
 * frame is redelivered now), so the room goes to them before the
 * connections that commits resume afterwards (srv_sess_op_done): those could
 * otherwise take every freed place each time and starve the waiters.
 */
static void wake_waiters(struct srv *srv)
{
    struct sess *s;

    while ((s = srv->opw_head) != NULL && room_in_all(srv)) {
        srv->opw_head = s->opw_next;
        if (srv->opw_head == NULL)
            srv->opw_tail = NULL;
        s->opw_waiting = 0;
        s->opw_next = NULL;
        /* One that cannot go now is resumed by its own commits later. */
        if (may_resume(s))
            ferry_conn_resume(s->conn);
    }
}

void srv_op_free(struct srv *srv, struct op *op)
{
    ferry_blob_spool_drop(srv->blobs, &op->spool);
    ferry_free(op->path);
    ferry_free(op->path2);
    ferry_free(op->data);
    ferry_free(op->list);
    sodium_memzero(op->token, sizeof(op->token));
    sodium_memzero(op->pwhash, sizeof(op->pwhash));
    sodium_memzero(op->verified, sizeof(op->verified));
    ferry_free(op);
}

static void start_job(struct srv *srv);

void srv_op_submit(struct srv *srv, struct op *op)
{
    if (srv->q_tail != NULL)
        srv->q_tail->next = op;
    else
        srv->q_head = op;
    srv->q_tail = op;
    srv->q_len++;
    /*
     * Start on the next loop turn, so one read's worth of frames share a
     * batch; once stopping, the timer is closed (serve.c), and a chunk whose
     * check finished late starts its job at once.
     */
    if (srv->stopping)
        start_job(srv);
    else if (!srv->job_running && !uv_is_active((uv_handle_t *)&srv->kick))
        uv_timer_start(&srv->kick, srv_kick_cb, 0, 0);
}

int srv_io_rc(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT ? FERRY_ENOSPACE : FERRY_EINTERNAL;
}

/*
 * Lets each operation with content put it into the store's batch (R-STORE-2).
 * Nothing put is read before its row commits. Returns how many put.
 */
static int put_blobs(struct batch *b, struct ferry_blob_batch *bb)
{
    struct op *op;
    int rc, n = 0;

    for (op = b->ops; op != NULL; op = op->next) {
        if (op->rc != 0 || op->type->put == NULL)
            continue;
        if ((rc = op->type->put(b->srv, op, bb)) < 0)
            op->rc = rc;
        else
            n += rc;
    }
    return n;
}

/*
 * Makes the batch's puts durable. A put the store could not write fails
 * its operation; R-STORE-5: a failure to make the batch durable is fatal
 * for every upload it covered.
 */
static int durable(struct batch *b, struct ferry_blob_batch *bb)
{
    struct op *op;
    int rc = ferry_blob_durable(b->srv->blobs, bb);

    for (op = b->ops; op != NULL; op = op->next) {
        if (op->type->put == NULL)
            continue;
        if (op->rc == 0 && op->bstatus != 0)
            op->rc = srv_io_rc(op->bstatus);
        if (rc != 0 && op->rc == 0)
            op->rc = srv_io_rc(rc);
        if (op->rc != 0 || rc != 0)
            op->stored = 0;
    }
    return rc;
}

static void gc_collect(void *arg, const char *rel, int64_t off, int64_t len)
{
    struct batch *b = arg;
    struct ferry_blob_garbage *v;

    if (b->ngc == b->capgc) {
        size_t ncap = b->capgc ? b->capgc * 2 : 16;
        if ((v = ferry_realloc(b->gc, ncap * sizeof(*v))) == NULL)
            return; /* left as garbage */
        b->gc = v;
        b->capgc = ncap;
    }
    if ((b->gc[b->ngc].name = ferry_strdup(rel)) != NULL) {
        b->gc[b->ngc].off = off;
        b->gc[b->ngc].len = len;
        b->ngc++;
    }
}

/* Runs on the thread pool; the only code that writes the database. */
static void batch_work(uv_work_t *w)
{
    struct batch *b = w->data;
    struct srv *srv = b->srv;
    struct ferry_blob_batch *bb = NULL;
    struct op *op;
    int rc, drc;

    if ((rc = ferry_blob_batch_begin(srv->blobs, srv->wdb, &bb)) != 0) {
        rc = srv_io_rc(rc);
        goto fail;
    }
    /* A batch of only metadata (accounts, folders, small files) has nothing to sync here. */
    drc = put_blobs(b, bb) > 0 ? durable(b, bb) : 0;
    if ((rc = ferry_meta_begin(srv->wdb)) != 0)
        goto fail;
    /* The store's own records first (a pack's new end): the chunk rows count themselves in. */
    if (drc == 0 && (rc = ferry_blob_record(srv->blobs, bb)) != 0)
        goto fail_tx;
    for (op = b->ops; op != NULL; op = op->next) {
        if (op->rc != 0)
            continue;
        if ((rc = ferry_meta_savepoint(srv->wdb)) != 0)
            goto fail_tx;
        op->rc = op->type->apply(srv, op);
        if (op->rc != 0)
            ferry_meta_rollback_to(srv->wdb);
        else if ((rc = ferry_meta_release(srv->wdb)) != 0)
            goto fail_tx;
    }
    /* Stored bytes no row points at are freed with the rest. */
    for (op = b->ops; op != NULL; op = op->next)
        if (op->stored && (op->rc != 0 || op->unused))
            ferry_blob_unused(srv->blobs, &op->bref, gc_collect, b);
    if ((rc = ferry_meta_gc(srv->wdb, srv_now_ns(), srv->cfg.partial_ttl_ns, gc_collect, b)) != 0)
        goto fail_tx;
    /* synchronous=FULL: once COMMIT returns, the batch survives power loss. */
    if ((rc = ferry_meta_commit(srv->wdb)) != 0)
        goto fail_tx;
    ferry_blob_batch_end(srv->blobs, bb);
    /* R-CHUNK-11: what the committed batch no longer refers to. */
    ferry_blob_free(srv->blobs, b->gc, b->ngc);
    return;
fail_tx:
    ferry_meta_rollback(srv->wdb);
fail:
    ferry_blob_batch_end(srv->blobs, bb);
    for (op = b->ops; op != NULL; op = op->next)
        if (op->rc == 0)
            op->rc = rc;
}

json_t *srv_op_error_body(const struct op *op)
{
    return json_pack("{s:s, s:i, s:s}", "ref", op->ref, "code", ferry_err_to_wire(op->rc),
                     "message", ferry_strerror(op->rc));
}

void srv_op_reply(struct op *op, json_t **committed)
{
    (void)committed;
    if (op->s->closed)
        return;
    if (op->rc != 0)
        srv_send(op->s, FERRY_MSG_ERROR, srv_op_error_body(op));
    else
        srv_send(op->s, FERRY_MSG_OK, json_pack("{s:s}", "ref", op->ref));
}

static void batch_done(uv_work_t *w, int status)
{
    struct batch *b = w->data;
    struct srv *srv = b->srv;
    struct op *op, *next;
    size_t i;

    (void)status;
    srv->job_running = 0;
    /* One Committed per connection per batch (R-STORE-2), sent before any
     * connection is resumed so replies keep their order. */
    for (op = b->ops; op != NULL; op = op->next) {
        json_t *committed = NULL;
        struct op *o;

        if (op->replied)
            continue;
        for (o = op; o != NULL; o = o->next) {
            if (o->s != op->s || o->replied)
                continue;
            o->replied = 1;
            o->type->done(o, &committed);
            o->s->unacked -= o->staged;
            srv->unacked -= o->staged;
            /* Keep each Committed inside one frame. */
            if (committed != NULL && json_array_size(committed) >= SRV_COMMITTED_TIDS_MAX) {
                srv_send(op->s, FERRY_MSG_COMMITTED, json_pack("{s:o}", "tids", committed));
                committed = NULL;
            }
        }
        if (committed != NULL)
            srv_send(op->s, FERRY_MSG_COMMITTED, json_pack("{s:o}", "tids", committed));
    }
    /* R-PIPE-4: the batch's room goes first to the connections waiting for it. */
    for (op = b->ops; op != NULL; op = op->next) {
        op->s->nops--;
        srv->nops--;
    }
    wake_waiters(srv);
    for (op = b->ops; op != NULL; op = op->next) {
        if (op->type->finish != NULL)
            op->type->finish(op);
        srv_sess_op_done(op->s);
        srv_sess_unref(op->s);
        op->s = NULL;
    }
    for (op = b->ops; op != NULL; op = next) {
        next = op->next;
        srv_op_free(srv, op);
    }
    for (i = 0; i < b->ngc; i++)
        ferry_free(b->gc[i].name);
    ferry_free(b->gc);
    ferry_free(b);
    start_job(srv);
}

static void start_job(struct srv *srv)
{
    struct batch *b;
    struct op *op, **tail;
    uint64_t bytes = 0;
    int n = 0;

    if (srv->job_running || srv->q_head == NULL)
        return;
    if ((b = ferry_calloc(1, sizeof(*b))) == NULL) {
        uv_timer_start(&srv->kick, srv_kick_cb, 10, 0);
        return;
    }
    b->srv = srv;
    tail = &b->ops;
    /* R-STORE-2: a batch is bounded by count and bytes. */
    while ((op = srv->q_head) != NULL && n < SRV_BATCH_OPS &&
           (n == 0 || bytes + op->staged <= SRV_BATCH_BYTES)) {
        srv->q_head = op->next;
        op->next = NULL;
        *tail = op;
        tail = &op->next;
        bytes += op->staged;
        n++;
        srv->q_len--;
    }
    if (srv->q_head == NULL)
        srv->q_tail = NULL;
    srv->job_running = 1;
    b->work.data = b;
    if (uv_queue_work(srv->loop, &b->work, batch_work, batch_done) != 0) {
        for (op = b->ops; op != NULL; op = op->next)
            op->rc = FERRY_EINTERNAL;
        batch_done(&b->work, -1);
    }
}

void srv_kick_cb(uv_timer_t *t)
{
    start_job(t->data);
}
