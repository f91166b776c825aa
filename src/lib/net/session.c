/*
 * A client session over dialed connections: the identity check, Connect
 * and Accept, replies matched to calls by ref, and redials with backoff
 * while an outage lasts (ferry/session.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ferry/session.h"

/* Where the session stands; the timer's meaning follows from it. */
enum sess_state {
    SESS_DIAL,    /* a connection is dialing or in its handshake (timer: connect deadline) */
    SESS_CONNECT, /* Connect sent, waiting for Accept */
    SESS_UP,      /* Accept arrived: calls go out */
    SESS_WAIT,    /* the link was lost; the timer redials */
    SESS_CLOSING, /* ferry_session_close(): the link closes, or the timer ends it */
    SESS_CLOSED,  /* on_close ran */
};

/* One request and the function its replies go to. */
struct call {
    struct call *prev, *next;
    char id[FERRY_UUID_STR_LEN + 1];
    int32_t type;
    json_t *body; /* not sent yet (made while down); NULL once sent */
    ferry_reply_fn fn;
    void *arg;
};

struct ferry_session {
    uv_loop_t *loop;
    SSL_CTX *ctx;
    const struct ferry_session_ops *ops;
    void *data;
    char host[256];
    char port[32];
    char from[64];
    char pin[FERRY_ID_LEN + 1]; /* "": on_identity decides */
    char token[FERRY_SESSION_TOKEN_MAX + 1];
    char client[129];
    int need_user;
    uint64_t retry_for_ms, heartbeat_ms, idle_ms, connect_ms;

    enum sess_state state;
    struct ferry_conn *conn; /* NULL while waiting or closed */
    uv_timer_t timer;
    /*
     * Output queued outside the connection's input handling waits for no
     * read to flush it: this timer flushes it on the next loop turn, once
     * for every call made meanwhile (one write, not one per call).
     */
    uv_timer_t flush;
    int flush_armed;
    int handles; /* of the two timers, those not closed yet */
    /*
     * Calls in the order made: those sent on the live link first, then those
     * waiting for the next Accept (a call made while up is sent at once, and
     * a lost link takes every sent one), so the two never interleave.
     */
    struct call *head, *tail;
    size_t ncalls;
    char connect_id[FERRY_UUID_STR_LEN + 1];
    char server_id[FERRY_ID_LEN + 1];
    int accepted;
    /*
     * Why the link is being closed, when the session closes it: fatal is an
     * error no redial cures, fault one that redials (silence, busy).
     */
    int fatal;
    int fault;
    /* R-CLI-2: the last whole frame from the server; bytes alone are no sign of life. */
    uint64_t last_frame_ms;
    /* R-CLI-3: when the outage being retried began (0: none) and the redials so far. */
    uint64_t outage_ms;
    unsigned attempt;
    uint64_t wire_tx, wire_rx; /* of the links closed so far */
};

static int dial(struct ferry_session *s);
static void timer_cb(uv_timer_t *t);

static void call_unlink(struct ferry_session *s, struct call *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        s->tail = c->prev;
    c->prev = c->next = NULL;
    s->ncalls--;
}

static void call_append(struct ferry_session *s, struct call *c)
{
    c->prev = s->tail;
    c->next = NULL;
    if (s->tail != NULL)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    s->ncalls++;
}

/* Takes c off the table and tells its owner rc (no reply); it is done. */
static void call_end(struct ferry_session *s, struct call *c, int rc)
{
    call_unlink(s, c);
    json_decref(c->body);
    c->fn(s, rc, NULL, c->arg);
    ferry_free(c);
}

/* The local code of an Error (or Reject) body (R-ERR-3: an unknown code is 10). */
static int error_rc(const json_t *body)
{
    json_t *code = json_object_get(body, "code");
    json_int_t wire = json_is_integer(code) ? json_integer_value(code) : 10;

    return ferry_err_from_wire(wire >= INT_MIN && wire <= INT_MAX ? (int)wire : 10);
}

static void flush_cb(uv_timer_t *t)
{
    struct ferry_session *s = t->data;

    s->flush_armed = 0;
    if (s->conn != NULL)
        ferry_conn_flush(s->conn);
}

/* Queues a command on the live link, and sees that it leaves soon. */
static int send_cmd(struct ferry_session *s, int32_t type, json_t *body)
{
    int rc = ferry_conn_send_cmd(s->conn, type, body);

    if (rc == 0 && !s->flush_armed && !ferry_conn_in_input(s->conn)) {
        s->flush_armed = 1;
        uv_timer_start(&s->flush, flush_cb, 0, 0);
    }
    return rc;
}

/* Sends c on the live link; its body goes with it. */
static int call_send(struct ferry_session *s, struct call *c)
{
    json_t *body = c->body;

    c->body = NULL;
    return send_cmd(s, c->type, body);
}

/*
 * The session is over: every call still held ends with FERRY_ECANCELED,
 * then the owner hears rc. Nothing touches s after on_close, which may free it.
 */
static void finish(struct ferry_session *s, int rc)
{
    s->state = SESS_CLOSED;
    uv_timer_stop(&s->timer);
    while (s->head != NULL)
        call_end(s, s->head, FERRY_ECANCELED);
    if (s->ops->on_close != NULL)
        s->ops->on_close(s, rc);
}

/*
 * The link is gone with rc, which a redial may mend: the calls it took end,
 * and the session waits its backoff (R-CLI-3) if the outage may still be
 * retried, else it is over.
 */
static void lost(struct ferry_session *s, int rc)
{
    uint64_t now = ferry_now_ms(), wait_ms;

    if (s->outage_ms == 0)
        s->outage_ms = now;
    s->state = SESS_WAIT;
    while (s->head != NULL && s->head->body == NULL)
        call_end(s, s->head, FERRY_ECANCELED);
    if (s->state != SESS_WAIT)
        return; /* an owner closed the session from a call's end */
    if (s->retry_for_ms == 0 || !ferry_retry_window_open(s->outage_ms, s->retry_for_ms, now)) {
        finish(s, rc);
        return;
    }
    wait_ms = ferry_backoff_ms(s->attempt++);
    if (s->ops->on_down != NULL)
        s->ops->on_down(s, rc, wait_ms);
    if (s->state == SESS_WAIT) /* else the owner closed the session in on_down */
        uv_timer_start(&s->timer, timer_cb, wait_ms, 0);
}

static void timer_cb(uv_timer_t *t)
{
    struct ferry_session *s = t->data;
    int rc;

    switch (s->state) {
    case SESS_WAIT:
        if ((rc = dial(s)) != 0) {
            /* Nothing started (memory): as good as a lost attempt. */
            if (ferry_conn_lost(rc))
                lost(s, rc);
            else
                finish(s, rc);
        }
        break;
    case SESS_DIAL:
        /* The handshake took longer than connect_ms: a silent link. */
        s->fault = FERRY_ETIMEDOUT;
        if (s->conn != NULL)
            ferry_conn_close(s->conn);
        break;
    case SESS_CLOSING:
        if (s->conn == NULL)
            finish(s, 0);
        break;
    default:
        break;
    }
}

/* Parses Accept's "version": the minor of "1.N", 0 otherwise. */
static int accept_minor(const json_t *body)
{
    const char *v = json_string_value(json_object_get(body, "version"));

    return v != NULL && strncmp(v, "1.", 2) == 0 ? atoi(v + 2) : 0;
}

/* Accept arrived: up, the waiting calls go out in order, then the owner is told. */
static int on_accept(struct ferry_session *s, const struct ferry_cmd *m)
{
    const char *user = json_string_value(json_object_get(m->body, "user"));
    json_t *acks = json_object_get(json_object_get(m->body, "limits"), "acks");
    struct ferry_session_info info = {
        .server_id = s->server_id,
        .user = user,
        .minor = accept_minor(m->body),
        .acks = json_is_integer(acks) && json_integer_value(acks) > 0 &&
                        json_integer_value(acks) < INT_MAX
                    ? (int)json_integer_value(acks)
                    : 0,
        .accept = m->body,
    };
    struct call *c, *next;
    int rc;

    s->accepted = 1;
    if (s->need_user && user == NULL) {
        /* A refused token (R-SESS-6): a new link would be refused alike. */
        s->fatal = FERRY_EAUTH;
        return FERRY_EAUTH;
    }
    s->state = SESS_UP;
    for (c = s->head; c != NULL; c = next) {
        next = c->next;
        if (c->body == NULL)
            continue;
        if ((rc = call_send(s, c)) != 0)
            call_end(s, c, rc);
    }
    if (s->ops->on_up != NULL)
        s->ops->on_up(s, &info);
    return 0;
}

/* A command before Accept: only the answer to Connect may come. */
static int before_accept(struct ferry_session *s, const struct ferry_cmd *m, const char *ref)
{
    int rc;

    if (m->type == FERRY_MSG_ACCEPT && ref != NULL && strcmp(ref, s->connect_id) == 0)
        return on_accept(s, m);
    if (m->type == FERRY_MSG_ERROR || m->type == FERRY_MSG_REJECT) {
        /* R-SESS-9, R-SESS-11: a full server is busy now, not for ever: redial. */
        rc = error_rc(m->body);
        if (rc == FERRY_EBUSY && m->type == FERRY_MSG_ERROR)
            s->fault = rc;
        else
            s->fatal = rc;
        return rc;
    }
    s->fatal = FERRY_EPROTO; /* R-SESS-1: the server's first command is Accept */
    return FERRY_EPROTO;
}

/* A command while up: to the call its ref names, else to the owner. */
static int on_command(struct ferry_session *s, const struct ferry_frame *f,
                      const struct ferry_cmd *m, const char *ref)
{
    struct call *c;
    int rc;

    /* R-SESS-6: the Error 4 that follows an Accept with user null answers Connect. */
    if (ref != NULL && strcmp(ref, s->connect_id) == 0)
        return 0;
    /*
     * R-CMD-5. Replies mostly come in the order asked, so the search from
     * the oldest call ends at once; out-of-order replies scan further.
     */
    for (c = s->head; ref != NULL && c != NULL && c->body == NULL; c = c->next)
        if (strcmp(c->id, ref) == 0)
            break;
    if (ref == NULL || c == NULL || c->body != NULL) {
        rc = s->ops->on_frame != NULL ? s->ops->on_frame(s, f, m) : 0;
        if (rc < 0 && s->fatal == 0)
            s->fatal = FERRY_EPROTO;
        return rc;
    }
    rc = m->type == FERRY_MSG_ERROR || m->type == FERRY_MSG_REJECT ? error_rc(m->body) : 0;
    if (c->fn(s, rc, m, c->arg) != 1) {
        call_unlink(s, c);
        ferry_free(c);
    }
    /* A Reject is an Error followed by a close (section 6.1). */
    if (m->type == FERRY_MSG_REJECT) {
        s->fatal = rc;
        return rc;
    }
    return 0;
}

static int conn_ready(struct ferry_conn *conn)
{
    struct ferry_session *s = ferry_conn_data(conn);
    json_t *body;

    if (s == NULL)
        return FERRY_ECANCELED;
    uv_timer_stop(&s->timer); /* the connect deadline: the handshake is done */
    snprintf(s->server_id, sizeof(s->server_id), "%s", ferry_conn_peer_id(conn));
    /* R-TLS-3: without a pin, the owner decides before any application byte. */
    if (s->pin[0] == '\0' &&
        (s->ops->on_identity == NULL || s->ops->on_identity(s, s->server_id) < 0)) {
        s->fatal = FERRY_EPIN;
        return FERRY_EPIN;
    }
    if (s->state == SESS_CLOSING)
        return FERRY_ECANCELED;
    body = json_pack("{s:s, s:s}", "client", s->client, "version", FERRY_MSG_VERSION);
    if (body == NULL)
        return -ENOMEM;
    if (s->token[0] != '\0')
        json_object_set_new(body, "token", json_string(s->token));
    ferry_uuid_new(s->connect_id);
    json_object_set_new(body, "id", json_string(s->connect_id));
    s->state = SESS_CONNECT;
    s->last_frame_ms = ferry_now_ms();
    return send_cmd(s, FERRY_MSG_CONNECT, body);
}

static int conn_frame(struct ferry_conn *conn, const struct ferry_frame *f)
{
    struct ferry_session *s = ferry_conn_data(conn);
    struct ferry_cmd m;
    const char *ref;
    int rc;

    if (s == NULL || s->state == SESS_CLOSING)
        return 0;
    s->last_frame_ms = ferry_now_ms();
    if (f->type == FERRY_FRAME_HEARTBEAT)
        return 0;
    if (f->type != FERRY_FRAME_COMMAND) {
        /* R-SESS-1: data, chunk and file frames only once the session is up. */
        if (s->state != SESS_UP) {
            s->fatal = FERRY_EPROTO;
            return FERRY_EPROTO;
        }
        rc = s->ops->on_frame != NULL ? s->ops->on_frame(s, f, NULL) : 0;
        if (rc < 0 && s->fatal == 0)
            s->fatal = FERRY_EPROTO;
        /* 1: the owner paused the connection and takes this frame again later. */
        return rc < 0 || (rc == 1 && ferry_conn_is_paused(conn)) ? rc : 0;
    }
    if (ferry_cmd_decode(f->payload, f->payload_len, &m) != 0) {
        s->fatal = FERRY_EPROTO; /* R-ERR-1: a fault in what the server sent */
        return FERRY_EPROTO;
    }
    ref = json_string_value(json_object_get(m.body, "ref"));
    if (s->state == SESS_UP)
        rc = on_command(s, f, &m, ref);
    else
        rc = before_accept(s, &m, ref);
    ferry_cmd_cleanup(&m);
    return rc < 0 || (rc == 1 && ferry_conn_is_paused(conn)) ? rc : 0;
}

static void conn_fault(struct ferry_conn *conn, int rc)
{
    struct ferry_session *s = ferry_conn_data(conn);

    /* A broken framing rule is the server's fault, not the link's. */
    if (s != NULL && s->fatal == 0)
        s->fatal = rc < 0 ? rc : FERRY_EPROTO;
}

static void conn_drain(struct ferry_conn *conn)
{
    struct ferry_session *s = ferry_conn_data(conn);

    if (s != NULL && s->state == SESS_UP && s->ops->on_drain != NULL)
        s->ops->on_drain(s);
}

static int conn_tick(struct ferry_conn *conn, uint64_t now_ms)
{
    struct ferry_session *s = ferry_conn_data(conn);

    /* R-CLI-2: the server's last whole frame, not its last byte, says it is alive. */
    if (s != NULL && ferry_conn_is_ready(conn) && now_ms - s->last_frame_ms >= s->idle_ms) {
        if (s->fault == 0)
            s->fault = FERRY_ETIMEDOUT;
        return FERRY_ETIMEDOUT;
    }
    return 0;
}

static void conn_closed(struct ferry_conn *conn)
{
    struct ferry_session *s = ferry_conn_data(conn);
    uint64_t tx, rx;
    int rc = ferry_conn_error(conn);

    if (s == NULL) { /* the session was freed first */
        ferry_conn_release(conn);
        return;
    }
    ferry_conn_wire_bytes(conn, &tx, &rx);
    s->wire_tx += tx;
    s->wire_rx += rx;
    /* A mismatched pin ends the handshake with the ID known: the owner names it. */
    if (rc == FERRY_EPIN && ferry_conn_peer_id(conn)[0] != '\0')
        snprintf(s->server_id, sizeof(s->server_id), "%s", ferry_conn_peer_id(conn));
    ferry_conn_release(conn);
    s->conn = NULL;
    uv_timer_stop(&s->timer);
    if (s->state == SESS_CLOSING) {
        finish(s, 0);
        return;
    }
    if (s->fatal != 0) {
        finish(s, s->fatal);
        return;
    }
    if (s->fault != 0)
        rc = s->fault;
    else if (rc == 0)
        rc = -ECONNRESET; /* the server closed: a lost link like any other */
    if (ferry_conn_lost(rc) || rc == FERRY_EBUSY)
        lost(s, rc);
    else
        finish(s, rc);
}

static const struct ferry_conn_ops conn_ops = {
    .on_ready = conn_ready,
    .on_frame = conn_frame,
    .on_fault = conn_fault,
    .on_drain = conn_drain,
    .on_tick = conn_tick,
    .on_close = conn_closed,
};

static int dial(struct ferry_session *s)
{
    struct ferry_conn_cfg cfg = {
        .ctx = s->ctx, .ops = &conn_ops, .heartbeat_ms = s->heartbeat_ms, .idle_ms = s->idle_ms};
    int rc;

    s->state = SESS_DIAL;
    s->accepted = 0;
    s->fatal = s->fault = 0;
    s->connect_id[0] = '\0';
    rc = ferry_conn_dial(s->loop, &cfg, s->from[0] != '\0' ? s->from : NULL, s->host, s->port,
                         s->pin[0] != '\0' ? s->pin : NULL, s, &s->conn);
    if (rc != 0)
        return rc;
    if (s->connect_ms > 0)
        uv_timer_start(&s->timer, timer_cb, s->connect_ms, 0);
    return 0;
}

/* Copies src into dst of cap bytes; FERRY_EUSAGE when it does not fit. */
static int copy_in(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;

    if (n >= cap)
        return FERRY_EUSAGE;
    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
    return 0;
}

static void free_cb(uv_handle_t *h)
{
    struct ferry_session *s = h->data;

    if (--s->handles == 0)
        ferry_free(s);
}

static void close_handles(struct ferry_session *s)
{
    uv_close((uv_handle_t *)&s->timer, free_cb);
    uv_close((uv_handle_t *)&s->flush, free_cb);
}

int ferry_session_open(const struct ferry_session_cfg *cfg, const struct ferry_session_ops *ops,
                       void *data, struct ferry_session **out)
{
    struct ferry_session *s;
    int rc;

    *out = NULL;
    if (cfg->loop == NULL || cfg->ctx == NULL || cfg->host == NULL || cfg->port == NULL ||
        cfg->idle_ms == 0 || cfg->heartbeat_ms == 0 ||
        (cfg->pin != NULL && strlen(cfg->pin) != FERRY_ID_LEN))
        return FERRY_EUSAGE;
    if ((s = ferry_calloc(1, sizeof(*s))) == NULL)
        return -ENOMEM;
    if ((rc = copy_in(s->host, sizeof(s->host), cfg->host)) != 0 ||
        (rc = copy_in(s->port, sizeof(s->port), cfg->port)) != 0 ||
        (rc = copy_in(s->from, sizeof(s->from), cfg->from)) != 0 ||
        (rc = copy_in(s->pin, sizeof(s->pin), cfg->pin)) != 0 ||
        (rc = copy_in(s->token, sizeof(s->token), cfg->token)) != 0 ||
        (rc = copy_in(s->client, sizeof(s->client), cfg->client != NULL ? cfg->client : "ferry")) !=
            0) {
        sodium_memzero(s->token, sizeof(s->token));
        ferry_free(s);
        return rc;
    }
    s->loop = cfg->loop;
    s->ctx = cfg->ctx;
    s->ops = ops;
    s->data = data;
    s->need_user = cfg->need_user;
    s->retry_for_ms = cfg->retry_for_ms;
    s->heartbeat_ms = cfg->heartbeat_ms;
    s->idle_ms = cfg->idle_ms;
    s->connect_ms = cfg->connect_ms;
    uv_timer_init(cfg->loop, &s->timer); /* cannot fail */
    uv_timer_init(cfg->loop, &s->flush);
    s->timer.data = s->flush.data = s;
    s->handles = 2;
    if ((rc = dial(s)) != 0) {
        sodium_memzero(s->token, sizeof(s->token));
        close_handles(s);
        return rc;
    }
    *out = s;
    return 0;
}

int ferry_session_call(struct ferry_session *s, int32_t type, json_t *body, ferry_reply_fn fn,
                       void *arg)
{
    struct call *c;
    int rc = 0;

    if (s->state == SESS_CLOSING || s->state == SESS_CLOSED)
        rc = FERRY_ECANCELED;
    else if (s->ncalls >= FERRY_SESSION_CALLS_MAX)
        rc = FERRY_ETOOBIG;
    else if (body == NULL || fn == NULL)
        rc = FERRY_EUSAGE;
    if (rc != 0 || (c = ferry_calloc(1, sizeof(*c))) == NULL) {
        json_decref(body);
        return rc != 0 ? rc : -ENOMEM;
    }
    ferry_uuid_new(c->id);
    json_object_set_new(body, "id", json_string(c->id));
    json_object_set_new(body, "version", json_string(FERRY_MSG_VERSION));
    c->type = type;
    c->body = body;
    c->fn = fn;
    c->arg = arg;
    call_append(s, c);
    if (s->state != SESS_UP)
        return 0; /* goes out after the next Accept */
    if ((rc = call_send(s, c)) != 0) {
        call_unlink(s, c);
        ferry_free(c);
    }
    return rc;
}

int ferry_session_send(struct ferry_session *s, int32_t type, json_t *body)
{
    if (s->state != SESS_UP) {
        json_decref(body);
        return -ENOTCONN;
    }
    return send_cmd(s, type, body);
}

struct ferry_conn *ferry_session_conn(struct ferry_session *s)
{
    return s->state == SESS_UP ? s->conn : NULL;
}

int ferry_session_is_up(const struct ferry_session *s)
{
    return s->state == SESS_UP;
}

const char *ferry_session_server_id(const struct ferry_session *s)
{
    return s->server_id;
}

int ferry_session_accepted(const struct ferry_session *s)
{
    return s->accepted;
}

void ferry_session_close(struct ferry_session *s)
{
    enum sess_state was = s->state;

    if (was == SESS_CLOSING || was == SESS_CLOSED)
        return;
    s->state = SESS_CLOSING;
    uv_timer_stop(&s->timer);
    if (s->conn == NULL) {
        /* Waiting to redial: end on the next loop turn, as a link's close would. */
        uv_timer_start(&s->timer, timer_cb, 0, 0);
        return;
    }
    if (was == SESS_UP || was == SESS_CONNECT)
        ferry_conn_send_cmd(s->conn, FERRY_MSG_DISCONNECT, json_object());
    ferry_conn_close(s->conn);
}

void ferry_session_free(struct ferry_session *s)
{
    struct call *c;

    if (s == NULL)
        return;
    if (s->conn != NULL) {
        /* Its close comes later and must not find the session. */
        ferry_conn_set_data(s->conn, NULL);
        ferry_conn_release(s->conn);
        s->conn = NULL;
    }
    /* The owners of the calls still held free what they gave them. */
    s->state = SESS_CLOSED;
    while ((c = s->head) != NULL)
        call_end(s, c, FERRY_ECANCELED);
    sodium_memzero(s->token, sizeof(s->token));
    close_handles(s);
}

void *ferry_session_data(const struct ferry_session *s)
{
    return s->data;
}

void ferry_session_progress(struct ferry_session *s)
{
    /* R-CLI-3: a later loss is a new outage, and its backoff starts again. */
    s->outage_ms = 0;
    s->attempt = 0;
}

void ferry_session_wire_bytes(const struct ferry_session *s, uint64_t *sent, uint64_t *received)
{
    uint64_t tx = 0, rx = 0;

    if (s->conn != NULL)
        ferry_conn_wire_bytes(s->conn, &tx, &rx);
    *sent = s->wire_tx + tx;
    *received = s->wire_rx + rx;
}
