/* ferry serve: one session per connection; the first stop for every frame. */
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
    ferry_free(s);
}

int srv_send(struct sess *s, int32_t type, json_t *body)
{
    if (s->closed) {
        json_decref(body);
        return FERRY_ECANCELED;
    }
    return ferry_conn_send_cmd(&s->conn, type, body);
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
    ferry_log(FERRY_LOG_NOTICE, "closing conn ip=%s reason=\"%s\"", s->conn.peer_ip,
              msg != NULL ? msg : ferry_strerror(rc));
    srv_send_error(s, ref, rc, msg);
    return rc < 0 ? rc : FERRY_EPROTO;
}

void srv_sess_op_done(struct sess *s)
{
    s->outstanding--;
    if (s->closed)
        return;
    if (s->barrier && s->outstanding == 0) {
        s->barrier = 0;
        ferry_conn_resume(&s->conn);
    } else if (s->conn.paused && !s->barrier && s->unacked < s->srv->cfg.max_unacked &&
               s->ndownloads < s->srv->cfg.max_downloads) {
        ferry_conn_resume(&s->conn);
    }
    ferry_conn_flush(&s->conn);
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
    if (token != NULL) {
        /* R-AUTH-6: tokens are looked up by hash and bound to the device key. */
        if (sodium_base642bin(raw, sizeof(raw), token, strlen(token), NULL, &rawlen, NULL,
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
            rawlen == sizeof(raw)) {
            ferry_sha256_buf(raw, sizeof(raw), s->token_hash);
            sodium_memzero(raw, sizeof(raw));
            if (ferry_meta_session_get(s->srv->rdb, s->token_hash, &s->uid, dev, s->user,
                                       sizeof(s->user)) == 0 &&
                strcmp(dev, s->conn.peer_id) == 0)
                token_ok = 1;
        }
        if (!token_ok)
            sodium_memzero(s->token_hash, sizeof(s->token_hash));
    }
    acc = json_pack("{s:s, s:s, s:i, s:{s:i, s:i, s:i}}", "ref", cmd->id, "server_id",
                    s->srv->id.id, "proto", FERRY_PROTO_VERSION, "limits", "frame_payload_max",
                    FERRY_FRAME_PAYLOAD_MAX, "data_max", FERRY_DATA_MAX, "page_entries_max",
                    SRV_PAGE_ENTRIES);
    if (acc == NULL)
        return -ENOMEM;
    json_object_set_new(acc, "user", token_ok ? json_string(s->user) : json_null());
    if ((rc = srv_send(s, FERRY_MSG_ACCEPT, acc)) != 0)
        return rc;
    if (token_ok) {
        s->authed = 1;
        if (s->counted_unauth) {
            srv_ip_release_unauth(s->srv, s->conn.peer_ip);
            s->counted_unauth = 0;
        }
    } else if (token != NULL) {
        srv_send_error(s, cmd->id, FERRY_EAUTH, "session expired or revoked: log in again");
    }
    return 0;
}

static int is_write_or_auth(int32_t t)
{
    switch (t) {
    case FERRY_MSG_SIGNUP:
    case FERRY_MSG_LOGIN:
    case FERRY_MSG_CHANGEPWD:
    case FERRY_MSG_LOGOUT:
    case FERRY_MSG_DIRINFO:
    case FERRY_MSG_DOWNLOAD:
    case FERRY_MSG_WHOAMI:
    case FERRY_MSG_DEVICE_LIST:
        return 1;
    default:
        return 0;
    }
}

static int handle_cmd(struct sess *s, const struct ferry_cmd *cmd)
{
    int32_t t = cmd->type;

    /* R-SESS-1: Connect comes first, exactly once. */
    if (!s->connected)
        return t == FERRY_MSG_CONNECT ? handle_connect(s, cmd)
                                      : fault(s, cmd->id, FERRY_EPROTO, "expected Connect");
    /*
     * Requests that read state, or change who is logged in, wait until this
     * connection's earlier writes have committed, so pipelining keeps order.
     */
    if (s->outstanding > 0 && is_write_or_auth(t)) {
        s->barrier = 1;
        ferry_conn_pause(&s->conn);
        return 1; /* not consumed: redelivered on resume */
    }
    /*
     * Chunks are checked in parallel and join the write queue when checked
     * (transfer.c); a TransferComplete must join it after this connection's
     * chunks, as it arrived after them.
     */
    if (t == FERRY_MSG_TRANSFER_COMPLETE && s->checking > 0) {
        s->check_wait = 1;
        ferry_conn_pause(&s->conn);
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
    case FERRY_MSG_SIGNUP:
    case FERRY_MSG_LOGIN:
    case FERRY_MSG_CHANGEPWD:
    case FERRY_MSG_LOGOUT:
        return srv_auth_handle(s, cmd);
    default:
        break;
    }
    /* R-SESS-2: nothing else before authentication. */
    if (!s->authed)
        return fault(s, cmd->id, FERRY_EAUTH, "not logged in");
    switch (t) {
    case FERRY_MSG_DIRINFO:
    case FERRY_MSG_REMOVE:
    case FERRY_MSG_MOVE:
    case FERRY_MSG_MKDIR:
        return srv_files_handle(s, cmd);
    case FERRY_MSG_UPLOAD:
    case FERRY_MSG_CHUNKED_UPLOAD:
        return srv_upload_open(s, cmd);
    case FERRY_MSG_TRANSFER_COMPLETE:
        return srv_upload_complete(s, cmd);
    case FERRY_MSG_TRANSFER_CANCEL:
        return srv_transfer_cancel(s, cmd);
    case FERRY_MSG_DOWNLOAD:
        return srv_download_queue(s, cmd);
    case FERRY_MSG_WHOAMI:
    case FERRY_MSG_DEVICE_LIST:
    case FERRY_MSG_DEVICE_REVOKE:
        return srv_devices_handle(s, cmd);
    default:
        return fault(s, cmd->id, FERRY_EPROTO, "message not valid from a client");
    }
}

static int on_frame(struct ferry_conn *c, const struct ferry_frame *f)
{
    struct sess *s = c->data;
    struct ferry_cmd cmd;
    struct ferry_data d;
    int rc;

    /*
     * R-PIPE-2: while a Signup, Login, ChangePwd or Logout is in flight, who
     * this connection is may change: every later frame waits for the answer.
     */
    if (s->auth_pending > 0 && f->type != FERRY_FRAME_HEARTBEAT) {
        s->barrier = 1;
        ferry_conn_pause(&s->conn);
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
        return srv_upload_data(s, &d);
    case FERRY_FRAME_CHUNK: {
        struct ferry_chunk_frame cf;

        if (!s->authed)
            return fault(s, NULL, FERRY_EAUTH, "data before login");
        if ((rc = ferry_chunk_frame_decode(f->payload, f->payload_len, &cf)) != 0)
            return fault(s, NULL, rc, "malformed chunk frame");
        return srv_chunk_data(s, &cf);
    }
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
    fault(c->data, NULL, rc,
          rc == FERRY_ETOOBIG    ? "frame longer than 32 KiB"
          : rc == FERRY_EVERSION ? "unsupported frame version"
                                 : "malformed frame");
}

static void on_drain(struct ferry_conn *c)
{
    srv_download_pump(c->data);
}

void srv_sess_auth_done(struct sess *s)
{
    s->auth_pending--;
}

static int on_tick(struct ferry_conn *c, uint64_t now)
{
    struct sess *s = c->data;

    /* R-SESS-3: log in within the deadline or be closed. */
    if (!s->authed && s->outstanding == 0 && now - s->accepted_ms >= s->srv->cfg.auth_timeout_ms)
        return fault(s, NULL, FERRY_ETIMEDOUT, "not authenticated in time");
    return 0;
}

static void on_close(struct ferry_conn *c)
{
    struct sess *s = c->data;

    s->closed = 1;
    s->srv->nconns--;
    if (s->counted_unauth)
        srv_ip_release_unauth(s->srv, s->conn.peer_ip);
    srv_transfer_cleanup(s);
    srv_sess_unref(s);
}

static const struct ferry_conn_ops sess_ops = {
    .on_ready = on_ready,
    .on_frame = on_frame,
    .on_fault = on_fault,
    .on_drain = on_drain,
    .on_tick = on_tick,
    .on_close = on_close,
};

static void reject_closed(uv_handle_t *h)
{
    ferry_free(h);
}

void srv_on_connection(uv_stream_t *listener, int status)
{
    struct srv *srv = listener->data;
    struct sess *s;
    uv_tcp_t *tmp;

    if (status < 0)
        return;
    if ((s = ferry_calloc(1, sizeof(*s))) == NULL)
        goto refuse;
    uv_tcp_init(srv->loop, &s->conn.tcp);
    if (uv_accept(listener, (uv_stream_t *)&s->conn.tcp) != 0) {
        s->conn.tcp.data = s;
        uv_close((uv_handle_t *)&s->conn.tcp, reject_closed);
        return;
    }
    s->srv = srv;
    s->refs = 1;
    s->accepted_ms = ferry_now_ms();
    s->conn.data = s;
    srv->nconns++;
    if (ferry_conn_start(&s->conn, srv->ctx, &sess_ops, srv->cfg.heartbeat_ms, srv->cfg.idle_ms) !=
        0)
        return; /* on_close frees */
    /* R-SESS-5: global and per-IP caps on connections not yet logged in. */
    if (srv->stopping || srv->nconns > srv->cfg.max_conns ||
        srv_ip_admit(srv, s->conn.peer_ip) != 0) {
        ferry_log(FERRY_LOG_NOTICE, "refusing conn ip=%s conns=%d", s->conn.peer_ip, srv->nconns);
        ferry_conn_close(&s->conn);
        return;
    }
    s->counted_unauth = 1;
    return;
refuse:
    /* Accept and drop, so a full table does not spin the loop on EMFILE. */
    /* Zeroed: walks over the loop's handles tell sessions by a non-NULL data. */
    if ((tmp = ferry_calloc(1, sizeof(*tmp))) == NULL)
        return;
    uv_tcp_init(srv->loop, tmp);
    uv_accept(listener, (uv_stream_t *)tmp);
    uv_close((uv_handle_t *)tmp, reject_closed);
}
