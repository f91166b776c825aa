/* ferry serve: the single-writer queue and its group commits (R-STORE-1, R-STORE-2). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/manifest.h"
#include "ferry/path.h"
#include "server.h"

struct batch {
    uv_work_t work;
    struct srv *srv;
    struct op *ops;
    char **gc; /* blob paths to unlink once the commit is durable */
    size_t ngc;
    size_t capgc;
};

struct op *srv_op_new(struct sess *s, enum op_kind kind, const char *ref)
{
    struct op *op = ferry_calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    op->kind = kind;
    op->s = s;
    op->tmpfd = -1;
    op->now = srv_now_ns();
    snprintf(op->ref, sizeof(op->ref), "%s", ref != NULL ? ref : "");
    srv_sess_ref(s);
    s->outstanding++;
    return op;
}

void srv_op_free(struct op *op)
{
    if (op->tmpfd >= 0)
        close(op->tmpfd);
    ferry_free(op->path);
    ferry_free(op->path2);
    ferry_free(op->data);
    ferry_free(op->list);
    sodium_memzero(op->token, sizeof(op->token));
    sodium_memzero(op->pwhash, sizeof(op->pwhash));
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
    /* Start on the next loop turn, so one read's worth of frames share a batch. */
    if (!srv->job_running && !uv_is_active((uv_handle_t *)&srv->kick))
        uv_timer_start(&srv->kick, srv_kick_cb, 0, 0);
}

/* Makes blobs/<uid>/<hh> beneath the data dir without following symlinks. */
static int blob_dir(struct srv *srv, int64_t uid, const char *cid)
{
    char rel[128];

    snprintf(rel, sizeof(rel), "blobs/%lld/%.2s", (long long)uid, cid + 7);
    return ferry_mkdirs_beneath(srv->datafd, rel);
}

/* Moves each verified upload's temp file to its blob name (not yet durable). */
static int place_blobs(struct batch *b, int *nplaced)
{
    struct srv *srv = b->srv;
    struct op *op;
    int dfd, rc, n = 0;

    for (op = b->ops; op != NULL; op = op->next) {
        if (op->kind != OP_UPLOAD || op->rc != 0 || op->data != NULL || op->list != NULL)
            continue;
        /* Rows, not files, say what exists: a stray file is rewritten. */
        rc = ferry_meta_content_has(srv->wdb, op->uid, op->cid);
        if (rc < 0) {
            op->rc = rc;
            continue;
        }
        if (rc == 1) {
            unlinkat(srv->tmpfd, op->tmpname, 0);
            op->tmpname[0] = '\0';
            continue;
        }
        if ((dfd = blob_dir(srv, op->uid, op->cid)) < 0) {
            op->rc = dfd == -ENOSPC ? FERRY_ENOSPACE : FERRY_EINTERNAL;
            continue;
        }
        if (renameat(srv->tmpfd, op->tmpname, dfd, op->cid + 7) != 0) {
            op->rc = errno == ENOSPC ? FERRY_ENOSPACE : FERRY_EINTERNAL;
            close(dfd);
            continue;
        }
        op->tmpname[0] = '\0';
        /* Small batches fsync each file and its directory; big ones use syncfs. */
        op->flag2 = dfd;
        op->top = "blobs";
        n++;
    }
    *nplaced += n;
    return 0;
}

/* Writes all of buf to fd. */
static int write_all(int fd, const uint8_t *p, size_t n)
{
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Writes a chunk's whole blocks with O_DIRECT (the buffer is block-aligned,
 * R-CHUNK-7): filling page-cache pages costs more CPU on this class of
 * machine than hashing them, and the bytes must reach the disk anyway. The
 * tail, or a file system without O_DIRECT, goes through the cache.
 */
static int write_chunk(int fd, const uint8_t *p, size_t n)
{
    size_t whole = n - n % FERRY_WRITER_ALIGN;
    int fl = fcntl(fd, F_GETFL), rc;

    if (whole > 0 && fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0) {
        rc = write_all(fd, p, whole);
        fcntl(fd, F_SETFL, fl);
        if (rc == 0) {
            p += whole;
            n -= whole;
        } else if (rc != -EINVAL) {
            return rc;
        } else if (lseek(fd, 0, SEEK_SET) != 0 || ftruncate(fd, 0) != 0) {
            return -errno; /* O_DIRECT refused after all: start again, cached */
        }
    }
    return write_all(fd, p, n);
}

static int io_rc(int rc)
{
    return rc == -ENOSPC || rc == -EDQUOT ? FERRY_ENOSPACE : FERRY_EINTERNAL;
}

/*
 * R-CHUNK-7: verifies each new chunk against the hash its list promised and
 * writes it to its place by R-STORE-1's order; chunks the user already
 * holds are only acknowledged. Hashing here keeps it off the loop thread.
 */
static int place_chunks(struct batch *b, int *nplaced)
{
    struct srv *srv = b->srv;
    char hex[65], rel[FERRY_BLOB_RELPATH_MAX];
    uint8_t h[32], rnd[16];
    struct op *op;
    int dfd, rc, n = 0;

    for (op = b->ops; op != NULL; op = op->next) {
        if (op->kind != OP_CHUNK || op->rc != 0)
            continue;
        if ((rc = ferry_meta_chunk_has(srv->wdb, op->uid, op->hash)) != 0) {
            if (rc < 0)
                op->rc = rc;
            continue;
        }
        ferry_sha256_buf(op->data, (size_t)op->size, h);
        if (memcmp(h, op->hash, 32) != 0) {
            op->rc = FERRY_EHASH;
            continue;
        }
        ferry_random(rnd, sizeof(rnd));
        ferry_hex_encode(rnd, sizeof(rnd), hex);
        snprintf(op->tmpname, sizeof(op->tmpname), "ck-%.32s", hex);
        op->tmpfd = openat(srv->tmpfd, op->tmpname,
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (op->tmpfd < 0) {
            op->rc = io_rc(-errno);
            op->tmpname[0] = '\0';
            continue;
        }
        if ((rc = write_chunk(op->tmpfd, op->data, (size_t)op->size)) != 0) {
            op->rc = io_rc(rc);
            continue;
        }
        ferry_hex_encode(op->hash, 32, hex);
        snprintf(rel, sizeof(rel), "chunks/%lld/%.2s", (long long)op->uid, hex);
        /* Most chunk directories exist: one open, not a mkdir per level. */
        if ((dfd = ferry_open_beneath(srv->datafd, rel, O_RDONLY | O_DIRECTORY, 0)) < 0 &&
            (dfd = ferry_mkdirs_beneath(srv->datafd, rel)) < 0) {
            op->rc = io_rc(dfd);
            continue;
        }
        if (renameat(srv->tmpfd, op->tmpname, dfd, hex) != 0) {
            op->rc = io_rc(-errno);
            close(dfd);
            continue;
        }
        op->tmpname[0] = '\0';
        op->flag2 = dfd;
        op->top = "chunks";
        n++;
    }
    *nplaced += n;
    return 0;
}

/* fsyncs a directory beneath the data dir (its entries become durable). */
static int fsync_dir(struct srv *srv, const char *rel)
{
    int fd = ferry_open_beneath(srv->datafd, rel, O_RDONLY | O_DIRECTORY, 0), rc = 0;

    if (fd < 0)
        return fd;
    if (fsync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

static int placed(const struct op *op)
{
    return (op->kind == OP_UPLOAD || op->kind == OP_CHUNK) && op->flag2 > 0;
}

static int durable(struct batch *b, int nplaced)
{
    char rel[64];
    struct op *op;
    int64_t last_uid = -1;
    const char *last_top = NULL;
    int rc = 0, blobs = 0, chunks = 0;

    if (nplaced >= 8) {
        if (syncfs(b->srv->datafd) != 0)
            rc = -errno;
    } else if (nplaced > 0) {
        /*
         * Each file, its <top>/<uid>/<hh> directory, and the directories
         * above it, which may be new: <top>/<uid> and <top>.
         */
        for (op = b->ops; op != NULL && rc == 0; op = op->next) {
            if (op->rc != 0 || !placed(op))
                continue;
            if (fdatasync(op->tmpfd) != 0 || fsync(op->flag2) != 0) {
                rc = -errno;
                break;
            }
            if (op->uid != last_uid || op->top != last_top) {
                snprintf(rel, sizeof(rel), "%s/%lld", op->top, (long long)op->uid);
                rc = fsync_dir(b->srv, rel);
                last_uid = op->uid;
                last_top = op->top;
            }
            if (op->kind == OP_CHUNK)
                chunks = 1;
            else
                blobs = 1;
        }
        if (rc == 0 && blobs)
            rc = fsync_dir(b->srv, "blobs");
        if (rc == 0 && chunks)
            rc = fsync_dir(b->srv, "chunks");
    }
    for (op = b->ops; op != NULL; op = op->next) {
        if (placed(op)) {
            close(op->flag2);
            op->flag2 = 0;
        }
        /* R-STORE-5: an fsync error is fatal for every upload it covered. */
        if (rc != 0 && (op->kind == OP_UPLOAD || op->kind == OP_CHUNK) && op->rc == 0)
            op->rc = io_rc(rc);
    }
    return rc;
}

static int apply(struct srv *srv, struct op *op)
{
    struct ferry_meta *m = srv->wdb;
    int64_t uid = 0, dir;
    int rc;

    switch (op->kind) {
    case OP_UPLOAD:
        return ferry_meta_put_file(m, op->uid, op->path, op->size, op->cid, op->mtime, op->flag,
                                   op->now, op->data, op->list, op->list_len, srv->cfg.quota);
    case OP_CHUNK:
        return ferry_meta_chunk_put(m, op->uid, op->hash, op->size, op->now);
    case OP_MKDIR:
        return ferry_meta_mkdirs(m, op->uid, op->path, op->mtime, op->now, &dir);
    case OP_REMOVE:
    case OP_MOVE:
        /* R-STORE-10: a message applied before (a retry after a lost reply) is Ok again. */
        if ((rc = ferry_meta_op_done(m, op->uid, op->ref)) != 0)
            return rc > 0 ? 0 : rc;
        rc = op->kind == OP_REMOVE
                 ? ferry_meta_remove(m, op->uid, op->path, op->flag)
                 : ferry_meta_move(m, op->uid, op->path, op->path2, op->flag, op->now);
        if (rc != 0)
            return rc;
        return ferry_meta_op_record(m, op->uid, op->ref, op->now);
    case OP_SIGNUP:
        if ((rc = ferry_meta_user_create(m, op->user, op->pwhash, op->now, &uid)) != 0)
            return rc;
        op->uid = uid;
        /* Sign-up also logs the device in. */
        /* fall through */
    case OP_SESSION:
        if ((rc = ferry_meta_device_seen(m, op->uid, op->device_id, op->device_name, op->now)) != 0)
            return rc;
        return ferry_meta_session_put(m, op->uid, op->device_id, op->token_hash, op->now);
    case OP_SETPW:
        /* R-AUTH-7: a new password revokes every other session of the user. */
        if ((rc = ferry_meta_user_set_pwhash(m, op->uid, op->pwhash)) != 0)
            return rc;
        return ferry_meta_session_delete_user(m, op->uid, op->token_hash);
    case OP_LOGOUT:
        if (op->flag)
            return ferry_meta_session_delete_user(m, op->uid, NULL);
        return ferry_meta_session_delete(m, op->token_hash);
    }
    return FERRY_EINTERNAL;
}

static void gc_collect(void *arg, const char *rel)
{
    struct batch *b = arg;
    char **v;

    if (b->ngc == b->capgc) {
        size_t ncap = b->capgc ? b->capgc * 2 : 16;
        if ((v = ferry_realloc(b->gc, ncap * sizeof(*v))) == NULL)
            return; /* left as garbage for a later sweep */
        b->gc = v;
        b->capgc = ncap;
    }
    if ((b->gc[b->ngc] = ferry_strdup(rel)) != NULL)
        b->ngc++;
}

/* Runs on the thread pool; the only code that writes the database. */
static void batch_work(uv_work_t *w)
{
    struct batch *b = w->data;
    struct srv *srv = b->srv;
    struct op *op;
    int nplaced = 0, rc;
    size_t i;

    place_chunks(b, &nplaced);
    place_blobs(b, &nplaced);
    durable(b, nplaced);
    if ((rc = ferry_meta_begin(srv->wdb)) != 0)
        goto fail;
    for (op = b->ops; op != NULL; op = op->next) {
        if (op->rc != 0)
            continue;
        if ((rc = ferry_meta_savepoint(srv->wdb)) != 0)
            goto fail_tx;
        op->rc = apply(srv, op);
        if (op->rc != 0)
            ferry_meta_rollback_to(srv->wdb);
        else if ((rc = ferry_meta_release(srv->wdb)) != 0)
            goto fail_tx;
    }
    if ((rc = ferry_meta_gc(srv->wdb, srv_now_ns(), srv->cfg.partial_ttl_ns, gc_collect, b)) != 0)
        goto fail_tx;
    /* synchronous=FULL: once COMMIT returns, the batch survives power loss. */
    if ((rc = ferry_meta_commit(srv->wdb)) != 0)
        goto fail_tx;
    for (i = 0; i < b->ngc; i++)
        unlinkat(srv->datafd, b->gc[i], 0);
    return;
fail_tx:
    ferry_meta_rollback(srv->wdb);
fail:
    for (op = b->ops; op != NULL; op = op->next)
        if (op->rc == 0)
            op->rc = rc;
}

struct revoke {
    struct srv *srv;
    struct sess *except;
    int64_t uid;
    const uint8_t *token; /* NULL: every session of uid */
};

static void revoke_one(uv_handle_t *h, void *arg)
{
    struct revoke *r = arg;
    struct sess *s;

    if (h->type != UV_TCP || h == (uv_handle_t *)&r->srv->listener || h->data == NULL ||
        uv_is_closing(h))
        return;
    s = h->data; /* the connection is the session's first member */
    if (s == r->except || s->closed || !s->authed || s->uid != r->uid)
        return;
    if (r->token != NULL && sodium_memcmp(s->token_hash, r->token, 32) != 0)
        return;
    srv_send_error(s, NULL, FERRY_EAUTH, "session revoked: log in again");
    ferry_conn_close(&s->conn);
}

/* R-AUTH-7: revocation reaches live connections at once, not only new ones. */
static void revoke_live(struct srv *srv, struct sess *except, int64_t uid, const uint8_t *token)
{
    struct revoke r = {.srv = srv, .except = except, .uid = uid, .token = token};

    uv_walk(srv->loop, revoke_one, &r);
}

static void reply(struct op *op, json_t **committed)
{
    struct sess *s = op->s;
    char tid[33];

    if (s->closed)
        return;
    if (op->rc != 0) {
        json_t *e = json_pack("{s:s, s:i, s:s}", "ref", op->ref, "code", ferry_err_to_wire(op->rc),
                              "message", ferry_strerror(op->rc));
        if (e != NULL && (op->kind == OP_UPLOAD || op->kind == OP_CHUNK)) {
            ferry_hex_encode(op->tid, FERRY_TID_LEN, tid);
            json_object_set_new(e, "tid", json_string(tid));
        }
        if (e != NULL && op->kind == OP_CHUNK)
            json_object_set_new(e, "index", json_integer(op->index));
        srv_send(s, FERRY_MSG_ERROR, e);
        return;
    }
    switch (op->kind) {
    case OP_CHUNK:
        /* R-CHUNK-7: a durable promise, sent only after the commit. */
        ferry_hex_encode(op->tid, FERRY_TID_LEN, tid);
        srv_send(s, FERRY_MSG_CHUNK_STORED,
                 json_pack("{s:s, s:I}", "tid", tid, "index", (json_int_t)op->index));
        break;
    case OP_UPLOAD:
        ferry_hex_encode(op->tid, FERRY_TID_LEN, tid);
        if (*committed == NULL)
            *committed = json_array();
        json_array_append_new(*committed, json_string(tid));
        break;
    case OP_SIGNUP:
    case OP_SESSION:
        s->authed = 1;
        s->uid = op->uid;
        snprintf(s->user, sizeof(s->user), "%s", op->user);
        memcpy(s->token_hash, op->token_hash, 32);
        if (s->counted_unauth) {
            srv_ip_release_unauth(s->srv, s->conn.peer_ip);
            s->counted_unauth = 0;
        }
        srv_send(
            s, FERRY_MSG_SESSION,
            json_pack("{s:s, s:s, s:s}", "ref", op->ref, "token", op->token, "user", op->user));
        break;
    case OP_LOGOUT:
        revoke_live(s->srv, s, op->uid, op->flag ? NULL : op->token_hash);
        s->authed = 0;
        sodium_memzero(s->token_hash, sizeof(s->token_hash));
        srv_send(s, FERRY_MSG_OK, json_pack("{s:s}", "ref", op->ref));
        /* R-SESS-3: logged out is not logged in: the deadline starts again. */
        s->accepted_ms = ferry_now_ms();
        if (!s->counted_unauth && srv_ip_admit(s->srv, s->conn.peer_ip) == 0)
            s->counted_unauth = 1;
        break;
    case OP_SETPW:
        /* Every other session of the user ends; this one stays. */
        revoke_live(s->srv, s, op->uid, NULL);
        srv_send(s, FERRY_MSG_OK, json_pack("{s:s}", "ref", op->ref));
        break;
    default:
        srv_send(s, FERRY_MSG_OK, json_pack("{s:s}", "ref", op->ref));
    }
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
            reply(o, &committed);
            if ((o->kind == OP_UPLOAD && o->list == NULL) || o->kind == OP_CHUNK)
                o->s->unacked -= (uint64_t)o->size;
            /* Keep each Committed inside one frame. */
            if (committed != NULL && json_array_size(committed) >= SRV_COMMITTED_TIDS_MAX) {
                srv_send(op->s, FERRY_MSG_COMMITTED, json_pack("{s:o}", "tids", committed));
                committed = NULL;
            }
        }
        if (committed != NULL)
            srv_send(op->s, FERRY_MSG_COMMITTED, json_pack("{s:o}", "tids", committed));
    }
    for (op = b->ops; op != NULL; op = op->next) {
        if (op->kind == OP_SIGNUP || op->kind == OP_SESSION || op->kind == OP_SETPW ||
            op->kind == OP_LOGOUT)
            srv_sess_auth_done(op->s);
        srv_sess_op_done(op->s);
        srv_sess_unref(op->s);
        op->s = NULL;
    }
    for (op = b->ops; op != NULL; op = next) {
        next = op->next;
        if (op->tmpname[0] != '\0')
            unlinkat(srv->tmpfd, op->tmpname, 0);
        srv_op_free(op);
    }
    for (i = 0; i < b->ngc; i++)
        ferry_free(b->gc[i]);
    ferry_free(b->gc);
    ferry_free(b);
    start_job(srv);
}

/* Bytes an op brings to a batch: a chunked file's bytes came with its chunks. */
static uint64_t op_bytes(const struct op *op)
{
    if (op->kind == OP_CHUNK || (op->kind == OP_UPLOAD && op->list == NULL))
        return (uint64_t)op->size;
    return 0;
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
           (n == 0 || bytes + op_bytes(op) <= SRV_BATCH_BYTES)) {
        srv->q_head = op->next;
        op->next = NULL;
        *tail = op;
        tail = &op->next;
        bytes += op_bytes(op);
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
