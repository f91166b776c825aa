/* ferry serve: one session per connection; the first stop for every frame. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "server.h"

int64_t srv_now_ns(void)
{
    return ferry_wall_ns();
}

void srv_sess_ref(struct sess *s)
{
    s->refs++;
}

void srv_sess_unref(struct sess *s)
{
    if (--s->refs > 0)
        return;
    ferry_conn_release(s->conn);
    ferry_free(s);
}

int srv_send(struct sess *s, int32_t type, json_t *body)
{
    if (s->closed) {
        json_decref(body);
        return FERRY_ECANCELED;
    }
    return ferry_conn_send_cmd(s->conn, type, body);
}

int srv_send_error(struct sess *s, const char *ref, int rc, const char *msg)
{
    json_t *o = json_pack("{s:i, s:s}", "code", ferry_err_to_wire(rc), "message",
                          msg != NULL ? msg : ferry_strerror(rc));

    if (o == NULL)
        return -ENOMEM;
    if (ref != NULL && ref[0] != '\0')
        json_object_set_new(o, "ref", json_string(ref));
    return srv_send(s, FERRY_MSG_ERROR, o);
}

/* A protocol fault: one Error, then close this connection only (R-ERR-1). */
static int fault(struct sess *s, const char *ref, int rc, const char *msg)
{
    srv_log_fault(s, msg != NULL ? msg : ferry_strerror(rc));
    srv_send_error(s, ref, rc, msg);
    return rc < 0 ? rc : FERRY_EPROTO;
}

/* Why a connection or a login is refused (R-SESS-7 to R-SESS-10): log key and text. */
enum refusal {
    ADMITTED,
    REFUSE_STOPPING,
    REFUSE_FULL,
    REFUSE_RESERVE,
    REFUSE_IP,
    REFUSE_UNAUTH,
    REFUSE_TABLE,
    REFUSE_USER,
};

static const struct {
    const char *key;
    const char *text;
} refusals[] = {
    [ADMITTED] = {"-", "-"},
    [REFUSE_STOPPING] = {"stopping", "the server is stopping"},
    [REFUSE_FULL] = {"server-full", "the server has no free connection"},
    [REFUSE_RESERVE] = {"reserve", "the server's last connections are kept for new addresses"},
    [REFUSE_IP] = {"ip-cap", "too many connections from this address"},
    [REFUSE_UNAUTH] = {"unauth-cap", "too many connections not logged in from this address"},
    [REFUSE_TABLE] = {"table-full", "too many addresses at once"},
    [REFUSE_USER] = {"user-cap", "too many connections for this user"},
};

/* R-LOG-4: one line per refusal, limited (R-LOG-3). */
static void log_refused(struct sess *s, enum refusal why, const char *reply, const char *user)
{
    char u[80];

    if (!srv_log_allow(s->srv, SRV_LOG_REFUSED))
        return;
    ferry_log(FERRY_LOG_NOTICE, "event=refused reason=%s ip=%s user=%s reply=%s conns=%d",
              refusals[why].key, ferry_conn_peer_ip(s->conn),
              user != NULL ? srv_log_val(u, sizeof(u), user, SRV_USER_MAX) : "-", reply,
              s->srv->nconns);
}

/* R-SESS-9, R-SESS-10: Error 9 saying why; the caller closes the connection. */
static int send_busy(struct sess *s, const char *ref, enum refusal why)
{
    char msg[160];

    snprintf(msg, sizeof(msg), "server busy: %s; try again later", refusals[why].text);
    srv_send_error(s, ref, FERRY_EBUSY, msg);
    return FERRY_EBUSY;
}

/*
 * R-SESS-9: a refused connection finished TLS and sent its first frame:
 * answer it (Connect gets its ref) with Error 9, then close.
 */
static int refuse_frame(struct sess *s, const struct ferry_frame *f)
{
    struct ferry_cmd cmd;
    int rc;

    if (f->type == FERRY_FRAME_HEARTBEAT)
        return 0;
    if (f->type != FERRY_FRAME_COMMAND)
        return send_busy(s, NULL, (enum refusal)s->refusing);
    rc = ferry_cmd_decode(f->payload, f->payload_len, &cmd);
    send_busy(s, cmd.id, (enum refusal)s->refusing);
    if (rc == 0)
        ferry_cmd_cleanup(&cmd);
    return FERRY_EBUSY;
}

int srv_sess_user_take(struct sess *s, int64_t uid, int check)
{
    struct srv *srv = s->srv;
    struct user_slot *u;

    if (s->uslot != NULL)
        return 0;
    if ((u = srv_user_get(srv, uid)) == NULL)
        return -ENOMEM;
    /* R-SESS-10: logins awaiting their commit count too, so racing ones cannot pass the cap. */
    if (check && u->conns >= srv->cfg.max_conns_per_user) {
        srv_user_put(srv, u);
        return FERRY_EBUSY;
    }
    u->conns++;
    s->uslot = u;
    return 0;
}

void srv_sess_user_release(struct sess *s)
{
    struct user_slot *u = s->uslot;

    if (u == NULL)
        return;
    s->uslot = NULL;
    u->conns--;
    srv_user_put(s->srv, u);
}

/* The connection is logged in: it leaves the count of those not logged in (R-SESS-5). */
static void now_authed(struct sess *s)
{
    s->authed = 1;
    if (s->counted_unauth) {
        s->ip->unauth--;
        s->counted_unauth = 0;
    }
}

int srv_sess_logged_in(struct sess *s, int64_t uid, const char *user, const uint8_t token[32])
{
    int rc;

    /* A Login reserved its place under the cap before its commit; a Signup's user is new. */
    if ((rc = srv_sess_user_take(s, uid, 0)) != 0)
        return rc;
    s->uid = uid;
    snprintf(s->user, sizeof(s->user), "%s", user);
    memcpy(s->token_hash, token, 32);
    now_authed(s);
    return 0;
}

void srv_sess_logged_out(struct sess *s)
{
    s->authed = 0;
    sodium_memzero(s->token_hash, sizeof(s->token_hash));
    srv_sess_user_release(s);
    /* R-SESS-3: logged out is not logged in: the deadline starts again. */
    s->accepted_ms = ferry_now_ms();
    if (!s->counted_unauth && s->ip != NULL) {
        s->ip->unauth++;
        s->counted_unauth = 1;
    }
}

struct revoke {
    struct srv *srv;
    struct sess *except;
    int64_t uid;
    const uint8_t *token; /* NULL: every session of uid */
    int closed;
};

static void revoke_one(struct ferry_conn *c, void *arg)
{
    struct revoke *r = arg;
    struct sess *s = ferry_conn_data(c);

    if (s == r->except || s->closed || !s->authed || s->uid != r->uid)
        return;
    if (r->token != NULL && sodium_memcmp(s->token_hash, r->token, 32) != 0)
        return;
    srv_send_error(s, NULL, FERRY_EAUTH, "session revoked: log in again");
    ferry_conn_close(s->conn);
    r->closed++;
}

/* R-AUTH-7: revocation reaches live connections at once, not only new ones. */
int srv_sess_revoke_live(struct srv *srv, struct sess *except, int64_t uid, const uint8_t *token)
{
    struct revoke r = {.srv = srv, .except = except, .uid = uid, .token = token};

    if (srv->listener != NULL)
        ferry_listener_each(srv->listener, revoke_one, &r);
    return r.closed;
}

void srv_sess_op_done(struct sess *s)
{
    s->outstanding--;
    if (s->closed)
        return;
    if (s->barrier && s->outstanding == 0) {
        s->barrier = 0;
        ferry_conn_resume(s->conn);
    } else if (ferry_conn_is_paused(s->conn) && !s->barrier &&
               s->unacked < s->srv->cfg.max_unacked && s->ndownloads < s->srv->cfg.max_downloads) {
        ferry_conn_resume(s->conn);
    }
    ferry_conn_flush(s->conn);
}

static int on_ready(struct ferry_conn *c)
{
    (void)c;
    return 0;
}

static int handle_connect(struct sess *s, const struct ferry_cmd *cmd)
{
    const char *token = NULL, *client = NULL;
    uint8_t raw[32];
    size_t rawlen = 0;
    char dev[FERRY_ID_LEN + 1];
    int rc, token_ok = 0;
    json_t *acc;

    if ((rc = ferry_msg_str(cmd->body, "client", 128, &client)) != 0 ||
        (rc = ferry_msg_str_opt(cmd->body, "token", 128, &token)) != 0)
        return fault(s, cmd->id, rc, "malformed Connect");
    s->connected = 1;
    {
        /* R-FILE-1: what the client can read; the version passed R-CMD-2 already. */
        const char *v = json_string_value(json_object_get(cmd->body, "version"));
        long minor = v != NULL && strncmp(v, "1.", 2) == 0 ? strtol(v + 2, NULL, 10) : 0;

        s->peer_minor = minor > 0 && minor < 1000 ? (int)minor : 0;
    }
    if (token != NULL) {
        /* R-AUTH-6: tokens are looked up by hash and bound to the device key. */
        if (sodium_base642bin(raw, sizeof(raw), token, strlen(token), NULL, &rawlen, NULL,
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
            rawlen == sizeof(raw)) {
            ferry_sha256_buf(raw, sizeof(raw), s->token_hash);
            sodium_memzero(raw, sizeof(raw));
            if (ferry_meta_session_get(s->srv->rdb, s->token_hash, &s->uid, dev, s->user,
                                       sizeof(s->user)) == 0 &&
                strcmp(dev, ferry_conn_peer_id(s->conn)) == 0)
                token_ok = 1;
        }
        if (!token_ok)
            sodium_memzero(s->token_hash, sizeof(s->token_hash));
    }
    if (token_ok && (rc = srv_sess_user_take(s, s->uid, 1)) != 0) {
        sodium_memzero(s->token_hash, sizeof(s->token_hash));
        if (rc != FERRY_EBUSY)
            return rc;
        /* R-SESS-10: the answer to this Connect is Error 9, then the close. */
        log_refused(s, REFUSE_USER, "error", s->user);
        return send_busy(s, cmd->id, REFUSE_USER);
    }
    acc = json_pack("{s:s, s:s, s:i, s:{s:i, s:i, s:i, s:i}}", "ref", cmd->id, "server_id",
                    s->srv->id.id, "proto", FERRY_PROTO_VERSION, "limits", "frame_payload_max",
                    FERRY_FRAME_PAYLOAD_MAX, "data_max", FERRY_DATA_MAX, "page_entries_max",
                    SRV_PAGE_ENTRIES, "acks", SRV_DONE_TIDS);
    if (acc == NULL)
        return -ENOMEM;
    json_object_set_new(acc, "user", token_ok ? json_string(s->user) : json_null());
    if ((rc = srv_send(s, FERRY_MSG_ACCEPT, acc)) != 0)
        return rc;
    if (token_ok) {
        now_authed(s);
        ferry_log(FERRY_LOG_DEBUG, "event=resume user=%s ip=%s device=%s", s->user,
                  ferry_conn_peer_ip(s->conn), ferry_conn_peer_id(s->conn));
    } else if (token != NULL) {
        srv_send_error(s, cmd->id, FERRY_EAUTH, "session expired or revoked: log in again");
    }
    return 0;
}

int srv_service_add(struct srv *srv, const struct srv_service *svc)
{
    size_t i;
    int k;

    if (srv->nservices == SRV_SERVICES_MAX ||
        svc->nhandlers > (size_t)(SRV_HANDLERS_MAX - srv->nhandlers))
        return FERRY_ETOOBIG;
    for (k = 0; k < srv->nservices; k++)
        if ((svc->data != NULL && srv->services[k]->data != NULL) ||
            (svc->chunk != NULL && srv->services[k]->chunk != NULL))
            return FERRY_EEXIST;
    for (i = 0; i < svc->nhandlers; i++)
        for (k = 0; k < srv->nhandlers; k++)
            if (srv->handlers[k]->type == svc->handlers[i].type)
                return FERRY_EEXIST;
    for (i = 0; i < svc->nhandlers; i++)
        srv->handlers[srv->nhandlers++] = &svc->handlers[i];
    srv->services[srv->nservices++] = svc;
    return 0;
}

static const struct srv_handler *handler_for(const struct srv *srv, int32_t type)
{
    int k;

    for (k = 0; k < srv->nhandlers; k++)
        if (srv->handlers[k]->type == type)
            return srv->handlers[k];
    return NULL;
}

static int handle_cmd(struct sess *s, const struct ferry_cmd *cmd)
{
    const struct srv_handler *h = handler_for(s->srv, cmd->type);
    int32_t t = cmd->type;

    /* R-SESS-1: Connect comes first, exactly once. */
    if (!s->connected)
        return t == FERRY_MSG_CONNECT ? handle_connect(s, cmd)
                                      : fault(s, cmd->id, FERRY_EPROTO, "expected Connect");
    /*
     * Requests that read state, or change who is logged in, wait until this
     * connection's earlier writes have committed, so pipelining keeps order.
     */
    if (s->outstanding > 0 && h != NULL && (h->flags & SRV_H_ORDERED)) {
        s->barrier = 1;
        ferry_conn_pause(s->conn);
        return 1; /* not consumed: redelivered on resume */
    }
    /*
     * Chunks are checked in parallel and join the write queue when checked
     * (transfer.c); a TransferComplete must join it after this connection's
     * chunks, as it arrived after them.
     */
    if (h != NULL && (h->flags & SRV_H_CHECKED) && s->checking > 0) {
        s->check_wait = 1;
        ferry_conn_pause(s->conn);
        return 1;
    }
    switch (t) {
    case FERRY_MSG_CONNECT:
        return fault(s, cmd->id, FERRY_EPROTO, "duplicate Connect");
    case FERRY_MSG_PING:
        return srv_send(s, FERRY_MSG_PONG, json_pack("{s:s}", "ref", cmd->id));
    case FERRY_MSG_DISCONNECT:
        return FERRY_ECANCELED;
    case FERRY_MSG_COMMAND:
        /* R-CMD-4: seed 000's remote command stays refused. */
        return srv_send_error(s, cmd->id, FERRY_EDENIED, "remote commands are disabled");
    default:
        break;
    }
    if (h != NULL && (h->flags & SRV_H_ANON))
        return h->fn(s, cmd);
    /* R-SESS-2: nothing else before authentication. */
    if (!s->authed)
        return fault(s, cmd->id, FERRY_EAUTH, "not logged in");
    if (h == NULL)
        return fault(s, cmd->id, FERRY_EPROTO, "message not valid from a client");
    return h->fn(s, cmd);
}

/* The service that takes data frames (chunk: chunk frames), if any. */
static const struct srv_service *frame_service(const struct srv *srv, int chunk)
{
    int k;

    for (k = 0; k < srv->nservices; k++)
        if (chunk ? srv->services[k]->chunk != NULL : srv->services[k]->data != NULL)
            return srv->services[k];
    return NULL;
}

static int on_frame(struct ferry_conn *c, const struct ferry_frame *f)
{
    struct sess *s = ferry_conn_data(c);
    const struct srv_service *svc;
    struct ferry_cmd cmd;
    struct ferry_data d;
    int rc;

    if (s->refusing)
        return refuse_frame(s, f);
    /*
     * R-PIPE-2: while a Signup, Login, ChangePwd or Logout is in flight, who
     * this connection is may change: every later frame waits for the answer.
     */
    if (s->auth_pending > 0 && f->type != FERRY_FRAME_HEARTBEAT) {
        s->barrier = 1;
        ferry_conn_pause(s->conn);
        return 1;
    }
    switch (f->type) {
    case FERRY_FRAME_HEARTBEAT:
        return 0;
    case FERRY_FRAME_DATA:
        if (!s->authed)
            return fault(s, NULL, FERRY_EAUTH, "data before login");
        if ((rc = ferry_data_decode(f->payload, f->payload_len, &d)) != 0)
            return fault(s, NULL, rc, "malformed data frame");
        if ((svc = frame_service(s->srv, 0)) == NULL)
            return fault(s, NULL, FERRY_EPROTO, "data frames not taken");
        return svc->data(s, &d);
    case FERRY_FRAME_CHUNK: {
        struct ferry_chunk_frame cf;

        if (!s->authed)
            return fault(s, NULL, FERRY_EAUTH, "data before login");
        if ((rc = ferry_chunk_frame_decode(f->payload, f->payload_len, &cf)) != 0)
            return fault(s, NULL, rc, "malformed chunk frame");
        if ((svc = frame_service(s->srv, 1)) == NULL)
            return fault(s, NULL, FERRY_EPROTO, "chunk frames not taken");
        return svc->chunk(s, &cf);
    }
    case FERRY_FRAME_FILE:
        /* R-FILE-1: whole files go from server to client only. */
        return fault(s, NULL, FERRY_EPROTO, "file frame from a client");
    default:
        break;
    }
    rc = ferry_cmd_decode(f->payload, f->payload_len, &cmd);
    if (rc != 0)
        return fault(s, cmd.id, rc, "malformed command");
    rc = handle_cmd(s, &cmd);
    ferry_cmd_cleanup(&cmd);
    return rc;
}

static void on_fault(struct ferry_conn *c, int rc)
{
    /* R-FRAME-1, R-FRAME-3: one Error, then the connection closes. */
    fault(ferry_conn_data(c), NULL, rc,
          rc == FERRY_ETOOBIG    ? "frame longer than 32 KiB"
          : rc == FERRY_EVERSION ? "unsupported frame version"
                                 : "malformed frame");
}

void srv_sess_drained(struct sess *s)
{
    int k;

    for (k = 0; k < s->srv->nservices; k++)
        if (s->srv->services[k]->drain != NULL)
            s->srv->services[k]->drain(s);
}

static void on_drain(struct ferry_conn *c)
{
    srv_sess_drained(ferry_conn_data(c));
}

static int on_input_end(struct ferry_conn *c)
{
    struct sess *s = ferry_conn_data(c);
    int k;

    for (k = 0; k < s->srv->nservices; k++)
        if (s->srv->services[k]->input_end != NULL)
            s->srv->services[k]->input_end(s);
    return 0;
}

void srv_sess_auth_done(struct sess *s)
{
    s->auth_pending--;
    /* A login that reserved a place under the user's cap and then failed gives it back. */
    if (!s->authed)
        srv_sess_user_release(s);
}

static int on_tick(struct ferry_conn *c, uint64_t now)
{
    struct sess *s = ferry_conn_data(c);

    srv_log_flush(s->srv);
    /* R-SESS-9: a refused connection that says nothing is closed soon. */
    if (s->refusing) {
        if (now - s->accepted_ms < SRV_REFUSE_WAIT_MS)
            return 0;
        if (ferry_conn_is_ready(s->conn))
            send_busy(s, NULL, (enum refusal)s->refusing);
        return FERRY_EBUSY;
    }
    /* R-SESS-3: log in within the deadline or be closed. */
    if (!s->authed && s->outstanding == 0 && now - s->accepted_ms >= s->srv->cfg.auth_timeout_ms)
        return fault(s, NULL, FERRY_ETIMEDOUT, "not authenticated in time");
    return 0;
}

static void on_close(struct ferry_conn *c)
{
    struct sess *s = ferry_conn_data(c);
    struct srv *srv = s->srv;
    int k;

    s->closed = 1;
    if (s->refusing) {
        srv->nrefusing--;
        s->ip->refusing--;
    }
    if (s->admitted) {
        srv->nconns--;
        s->ip->conns--;
    }
    if (s->counted_unauth) {
        s->ip->unauth--;
        s->counted_unauth = 0;
    }
    srv_sess_user_release(s);
    srv_ip_put(srv, s->ip, ferry_now_ms());
    s->ip = NULL;
    srv_log_flush(srv);
    for (k = 0; k < srv->nservices; k++)
        if (srv->services[k]->closing != NULL)
            srv->services[k]->closing(s);
    srv_sess_unref(s);
}

/*
 * R-SESS-5, R-SESS-7, R-SESS-8: may a new connection from ip be admitted?
 * The last reserve_conns places of --max-conns go only to an address that
 * has no connection yet, so one address, or one user's many connections,
 * can never take the place of someone arriving.
 */
static enum refusal admission(struct srv *srv, const struct ip_slot *ip)
{
    int reserve = srv->cfg.reserve_conns >= 0 ? srv->cfg.reserve_conns : srv->cfg.max_conns / 16;

    if (srv->stopping)
        return REFUSE_STOPPING;
    if (ip == NULL)
        return REFUSE_TABLE;
    if (srv->nconns >= srv->cfg.max_conns)
        return REFUSE_FULL;
    if (srv->nconns >= srv->cfg.max_conns - reserve && ip->conns > 0)
        return REFUSE_RESERVE;
    if (ip->conns >= srv->cfg.max_conns_per_ip)
        return REFUSE_IP;
    if (ip->unauth >= srv->cfg.max_unauth_per_ip)
        return REFUSE_UNAUTH;
    return ADMITTED;
}

static void admit(struct sess *s)
{
    struct srv *srv = s->srv;
    uint64_t now = ferry_now_ms();
    struct ip_slot *ip = srv_ip_get(srv, ferry_conn_peer_ip(s->conn), now);
    enum refusal why = admission(srv, ip);
    int tell;

    if (why == ADMITTED) {
        s->admitted = 1;
        s->ip = ip;
        s->counted_unauth = 1;
        srv->nconns++;
        ip->conns++;
        ip->unauth++;
        return;
    }
    /*
     * R-SESS-9: the refused peer is told why (TLS, then Error 9), within a
     * bounded number of such connections in all and per address; past
     * those, and while stopping, the socket is closed before any TLS byte.
     */
    tell = why != REFUSE_STOPPING && ip != NULL && srv->nrefusing < SRV_REFUSING_MAX &&
           ip->refusing < SRV_REFUSING_PER_IP;
    log_refused(s, why, tell ? "error" : "close", NULL);
    if (!tell) {
        srv_ip_put(srv, ip, now);
        ferry_conn_close(s->conn);
        return;
    }
    s->refusing = (int)why;
    s->ip = ip;
    ip->refusing++;
    srv->nrefusing++;
}

const struct ferry_conn_ops srv_sess_ops = {
    .on_ready = on_ready,
    .on_frame = on_frame,
    .on_fault = on_fault,
    .on_drain = on_drain,
    .on_input_end = on_input_end,
    .on_tick = on_tick,
    .on_close = on_close,
};

int srv_on_connection(struct ferry_listener *l, struct ferry_conn *c)
{
    struct srv *srv = ferry_listener_data(l);
    struct sess *s;

    /* The listener closes what we cannot take, so a full table does not spin on EMFILE. */
    if ((s = ferry_calloc(1, sizeof(*s))) == NULL)
        return -ENOMEM;
    s->conn = c;
    s->srv = srv;
    s->refs = 1;
    s->accepted_ms = ferry_now_ms();
    ferry_conn_set_data(c, s);
    admit(s);
    return 0;
}
