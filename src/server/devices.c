/*
 * ferry serve: an account's view of itself and its devices (Whoami,
 * DeviceList, DeviceRevoke; protocol 1.2), and the watch that makes
 * administrative revocations reach live connections (R-ADMIN-6..9).
 */
#include <string.h>

#include <sodium.h>

#include "server.h"

/* R-ADMIN-6: how often the server reads the admin generation. */
#define SRV_ADMIN_WATCH_MS 1000

/* R-ADMIN-7 */
static int whoami(struct sess *s, const struct ferry_cmd *cmd)
{
    struct ferry_device_info d;
    json_t *o;
    int rc;

    if ((rc = ferry_meta_session_info(s->srv->rdb, s->token_hash, &d)) != 0)
        return srv_send_error(s, cmd->id, rc == FERRY_ENOTFOUND ? FERRY_EAUTH : rc,
                              rc == FERRY_ENOTFOUND ? "session revoked: log in again" : NULL);
    o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "ref", cmd->id, "user", s->user, "device_id",
                  ferry_conn_peer_id(s->conn), "device_name", d.name, "session_created",
                  (json_int_t)d.session_created, "now", (json_int_t)srv_now_ns());
    if (o == NULL)
        return -ENOMEM;
    return srv_send(s, FERRY_MSG_IDENTITY, o);
}

struct lister {
    struct sess *s;
    json_t *arr;
};

static int list_one(void *arg, const struct ferry_device_info *d)
{
    struct lister *l = arg;
    json_t *e =
        json_pack("{s:s, s:s, s:I, s:I, s:b, s:b}", "id", d->id, "name", d->name, "first_seen",
                  (json_int_t)d->first_seen, "last_seen", (json_int_t)d->last_seen, "session",
                  d->session, "current", strcmp(d->id, ferry_conn_peer_id(l->s->conn)) == 0);

    if (e == NULL)
        return -ENOMEM;
    return json_array_append_new(l->arr, e) == 0 ? 0 : -ENOMEM;
}

/* R-ADMIN-8: at most FERRY_DEVICES_MAX, most recently seen first; total counts all. */
static int device_list(struct sess *s, const struct ferry_cmd *cmd)
{
    struct lister l = {.s = s, .arr = json_array()};
    int64_t total = 0;
    int rc;

    if (l.arr == NULL)
        return -ENOMEM;
    if ((rc = ferry_meta_read_begin(s->srv->rdb)) == 0) {
        if ((rc = ferry_meta_devices_count(s->srv->rdb, s->uid, &total)) == 0)
            rc = ferry_meta_devices_list(s->srv->rdb, s->uid, FERRY_DEVICES_MAX, list_one, &l);
        ferry_meta_read_end(s->srv->rdb);
    }
    if (rc != 0) {
        json_decref(l.arr);
        return rc == -ENOMEM ? rc : srv_send_error(s, cmd->id, rc, NULL);
    }
    return srv_send(
        s, FERRY_MSG_DEVICES,
        json_pack("{s:s, s:o, s:I}", "ref", cmd->id, "devices", l.arr, "total", (json_int_t)total));
}

/* A device ID: 52 characters of the base32 alphabet (R-TLS-2). */
static int device_id_valid(const char *id)
{
    size_t i;

    if (strlen(id) != FERRY_ID_LEN)
        return 0;
    for (i = 0; i < FERRY_ID_LEN; i++)
        if (!((id[i] >= 'A' && id[i] <= 'Z') || (id[i] >= '2' && id[i] <= '7')))
            return 0;
    return 1;
}

/* In the commit job (commit.c), on the writer connection. */
static int revoke_apply(struct srv *srv, struct op *op)
{
    return ferry_meta_device_revoke(srv->wdb, op->uid, op->device_id);
}

/* Back on the loop thread, after the commit. */
static void revoke_done(struct op *op, json_t **committed)
{
    struct sess *s = op->s;

    if (s->closed || op->rc != 0) {
        srv_op_reply(op, committed);
        return;
    }
    /* R-ADMIN-9: the revoked device's connections go now, not at the next watch. */
    srv_sessions_recheck(s->srv);
    srv_send(s, FERRY_MSG_OK, json_pack("{s:s}", "ref", op->ref));
}

static const struct op_type op_revoke = {
    .name = "device-revoke", .apply = revoke_apply, .done = revoke_done};

/* R-ADMIN-9: the change goes through the write queue like every other. */
static int device_revoke(struct sess *s, const struct ferry_cmd *cmd)
{
    const char *dev = NULL;
    struct op *op;
    int rc;

    if ((rc = ferry_msg_str(cmd->body, "device", FERRY_ID_LEN, &dev)) != 0)
        return srv_send_error(s, cmd->id, rc, "DeviceRevoke needs a device ID");
    if (!device_id_valid(dev))
        return srv_send_error(s, cmd->id, FERRY_ENOTFOUND, "no such device");
    if (strcmp(dev, ferry_conn_peer_id(s->conn)) == 0)
        return srv_send_error(s, cmd->id, FERRY_EDENIED,
                              "this is your own device: log out instead");
    if ((op = srv_op_new(s, &op_revoke, cmd->id)) == NULL)
        return -ENOMEM;
    op->uid = s->uid;
    snprintf(op->device_id, sizeof(op->device_id), "%s", dev);
    srv_op_submit(s->srv, op);
    return 0;
}

/* R-PIPE-2: what the connection asks about itself waits for its earlier writes. */
static const struct srv_handler devices_handlers[] = {
    {FERRY_MSG_WHOAMI, SRV_H_ORDERED, whoami},
    {FERRY_MSG_DEVICE_LIST, SRV_H_ORDERED, device_list},
    {FERRY_MSG_DEVICE_REVOKE, 0, device_revoke},
};

static const struct srv_service devices = {
    .name = "devices",
    .handlers = devices_handlers,
    .nhandlers = sizeof(devices_handlers) / sizeof(devices_handlers[0]),
};

int srv_devices_init(struct srv *srv)
{
    return srv_service_add(srv, &devices);
}

struct recheck {
    struct srv *srv;
    int failed; /* a read failed: the same generation is checked again */
};

static void recheck_one(struct ferry_conn *c, void *arg)
{
    struct recheck *r = arg;
    struct srv *srv = r->srv;
    struct sess *s = ferry_conn_data(c);
    char dev[FERRY_ID_LEN + 1], user[SRV_USER_MAX + 1];
    int64_t uid = 0;
    int rc;

    if (s->closed || !s->authed)
        return;
    rc = ferry_meta_session_get(srv->rdb, s->token_hash, &uid, dev, user, sizeof(user));
    if (rc == 0 && uid == s->uid && strcmp(dev, ferry_conn_peer_id(s->conn)) == 0)
        return;
    /* A read that failed (the database busy) proves nothing either way. */
    if (rc != 0 && rc != FERRY_ENOTFOUND) {
        r->failed = 1;
        return;
    }
    ferry_log(FERRY_LOG_NOTICE, "closing conn ip=%s user=%s reason=\"session revoked\"",
              ferry_conn_peer_ip(s->conn), s->user);
    srv_send_error(s, NULL, FERRY_EAUTH, "session revoked: log in again");
    ferry_conn_close(s->conn);
}

/* Returns 0 when every session could be checked. */
static int recheck_all(struct srv *srv)
{
    struct recheck r = {.srv = srv};

    if (srv->listener != NULL)
        ferry_listener_each(srv->listener, recheck_one, &r);
    return r.failed ? FERRY_EBUSY : 0;
}

void srv_sessions_recheck(struct srv *srv)
{
    recheck_all(srv);
}

/* R-ADMIN-6: one small read a second; the sessions are checked only after a change. */
static void watch_cb(uv_timer_t *t)
{
    struct srv *srv = t->data;
    int64_t gen;

    if (ferry_meta_admin_gen(srv->rdb, &gen) != 0 || gen == srv->admin_gen)
        return;
    if (recheck_all(srv) == 0)
        srv->admin_gen = gen;
}

int srv_admin_watch_start(struct srv *srv)
{
    int rc;

    if ((rc = ferry_meta_admin_gen(srv->rdb, &srv->admin_gen)) != 0)
        return rc;
    uv_timer_init(srv->loop, &srv->admin_watch);
    srv->admin_watch.data = srv;
    return uv_timer_start(&srv->admin_watch, watch_cb, SRV_ADMIN_WATCH_MS, SRV_ADMIN_WATCH_MS);
}

void srv_admin_watch_stop(struct srv *srv)
{
    if (srv->admin_watch.data != NULL && !uv_is_closing((uv_handle_t *)&srv->admin_watch))
        uv_close((uv_handle_t *)&srv->admin_watch, NULL);
}
