/* ferry serve: accounts, sessions, password hashing and login throttling. */
#include <string.h>

#include <sodium.h>

#include "server.h"

/* Work for the single Argon2id slot (R-AUTH-3). */
struct hashjob {
    uv_work_t work;
    struct sess *s;
    int32_t type;
    char ref[FERRY_UUID_STR_LEN + 1];
    char user[SRV_USER_MAX + 1];
    char device[SRV_DEVICE_NAME_MAX + 1];
    char *pw;    /* the password to hash or verify; wiped after */
    char *newpw; /* ChangePwd: the new password */
    char stored[160];
    int64_t uid;
    int known;
    int rc;
    char out_hash[160];
    struct hashjob *next;
};

static void wipe_free(char *p)
{
    if (p == NULL)
        return;
    sodium_memzero(p, strlen(p));
    ferry_free(p);
}

int srv_auth_init(struct srv *srv)
{
    char pw[32];

    /* R-AUTH-5: unknown names are verified against this, costing the same. */
    ferry_random(pw, sizeof(pw) - 1);
    pw[sizeof(pw) - 1] = '\0';
    for (size_t i = 0; i + 1 < sizeof(pw); i++)
        pw[i] = (char)('a' + (unsigned char)pw[i] % 26);
    if (crypto_pwhash_str(srv->dummy_hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return -ENOMEM;
    sodium_memzero(pw, sizeof(pw));
    return 0;
}

static struct ip_slot *ip_slot(struct srv *srv, const char *ip)
{
    struct ip_slot *v;
    int i;

    for (i = 0; i < srv->nips; i++)
        if (strcmp(srv->ips[i].ip, ip) == 0)
            return &srv->ips[i];
    /* Reuse an idle slot before growing: the table stays as small as the clients. */
    for (i = 0; i < srv->nips; i++) {
        if (srv->ips[i].unauth == 0 && srv->ips[i].tokens >= srv->cfg.login_rate) {
            snprintf(srv->ips[i].ip, sizeof(srv->ips[i].ip), "%s", ip);
            return &srv->ips[i];
        }
    }
    if ((v = ferry_realloc(srv->ips, (size_t)(srv->nips + 1) * sizeof(*v))) == NULL)
        return NULL;
    srv->ips = v;
    v = &srv->ips[srv->nips++];
    *v = (struct ip_slot){.tokens = srv->cfg.login_rate, .refill_ms = ferry_now_ms()};
    snprintf(v->ip, sizeof(v->ip), "%s", ip);
    return v;
}

int srv_ip_admit(struct srv *srv, const char *ip)
{
    struct ip_slot *slot = ip_slot(srv, ip);

    if (slot == NULL || slot->unauth >= srv->cfg.max_unauth_per_ip)
        return FERRY_EBUSY;
    slot->unauth++;
    return 0;
}

void srv_ip_release_unauth(struct srv *srv, const char *ip)
{
    struct ip_slot *slot = ip_slot(srv, ip);

    if (slot != NULL && slot->unauth > 0)
        slot->unauth--;
}

/* R-AUTH-4: a token bucket per source IP, refilled at login_rate per minute. */
static int ip_take_token(struct srv *srv, const char *ip, uint64_t *retry_ms)
{
    struct ip_slot *slot = ip_slot(srv, ip);
    uint64_t now = ferry_now_ms();
    double rate = srv->cfg.login_rate / 60000.0;

    if (slot == NULL)
        return FERRY_EBUSY;
    slot->tokens += (double)(now - slot->refill_ms) * rate;
    if (slot->tokens > srv->cfg.login_rate)
        slot->tokens = srv->cfg.login_rate;
    slot->refill_ms = now;
    if (slot->tokens < 1.0) {
        *retry_ms = (uint64_t)((1.0 - slot->tokens) / rate) + 1;
        return FERRY_EBUSY;
    }
    slot->tokens -= 1.0;
    return 0;
}

static struct fail_slot *fail_slot(struct srv *srv, const char *name, int create)
{
    struct fail_slot *oldest = &srv->fails[0];
    int i;

    for (i = 0; i < SRV_FAIL_TABLE; i++) {
        if (srv->fails[i].name[0] != '\0' && strcmp(srv->fails[i].name, name) == 0)
            return &srv->fails[i];
        if (srv->fails[i].used_ms < oldest->used_ms)
            oldest = &srv->fails[i];
    }
    if (!create)
        return NULL;
    *oldest = (struct fail_slot){.used_ms = ferry_now_ms()};
    snprintf(oldest->name, sizeof(oldest->name), "%s", name);
    return oldest;
}

/* R-AUTH-4: after 5 failures, 1 s doubling to 15 min between attempts. */
static int name_allowed(struct srv *srv, const char *name, uint64_t *retry_ms)
{
    struct fail_slot *f = fail_slot(srv, name, 0);
    uint64_t now = ferry_now_ms();

    if (f == NULL || f->next_ms <= now)
        return 0;
    *retry_ms = f->next_ms - now;
    return FERRY_EBUSY;
}

static void name_failed(struct srv *srv, const char *name)
{
    struct fail_slot *f = fail_slot(srv, name, 1);
    uint64_t delay;

    f->failures++;
    f->used_ms = ferry_now_ms();
    if (f->failures >= 5) {
        int shift = f->failures - 5 > 10 ? 10 : f->failures - 5;
        delay = 1000ull << shift;
        if (delay > 15ull * 60 * 1000)
            delay = 15ull * 60 * 1000;
        f->next_ms = f->used_ms + delay;
    }
}

static void name_succeeded(struct srv *srv, const char *name)
{
    struct fail_slot *f = fail_slot(srv, name, 0);

    if (f != NULL)
        *f = (struct fail_slot){0};
}

static int user_name_valid(const char *u)
{
    size_t i, n = strlen(u);

    /* R-AUTH-1 */
    if (n == 0 || n > SRV_USER_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = u[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

static int device_name_valid(const char *d)
{
    size_t i, n = strlen(d);

    if (n == 0 || n > SRV_DEVICE_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)d[i] < 0x20 || d[i] == 0x7f)
            return 0;
    return 1;
}

static void hash_work(uv_work_t *w)
{
    struct hashjob *j = w->data;

    switch (j->type) {
    case FERRY_MSG_SIGNUP:
        j->rc =
            crypto_pwhash_str(j->out_hash, j->pw, strlen(j->pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0
                ? 0
                : -ENOMEM;
        break;
    case FERRY_MSG_LOGIN:
    case FERRY_MSG_CHANGEPWD:
        /* The verify runs whether or not the name exists (R-AUTH-5). */
        j->rc = crypto_pwhash_str_verify(j->stored, j->pw, strlen(j->pw)) == 0 && j->known
                    ? 0
                    : FERRY_EAUTH;
        if (j->rc == 0 && j->type == FERRY_MSG_CHANGEPWD && j->newpw != NULL &&
            crypto_pwhash_str(j->out_hash, j->newpw, strlen(j->newpw),
                              crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
            j->rc = -ENOMEM;
        break;
    default:
        j->rc = FERRY_EINTERNAL;
    }
}

static void hash_next(struct srv *srv);

static void make_token(struct op *op)
{
    uint8_t raw[32];

    ferry_random(raw, sizeof(raw));
    sodium_bin2base64(op->token, sizeof(op->token), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    ferry_sha256_buf(raw, sizeof(raw), op->token_hash);
    sodium_memzero(raw, sizeof(raw));
}

static void hash_done(uv_work_t *w, int status)
{
    struct hashjob *j = w->data;
    struct sess *s = j->s;
    struct srv *srv = s->srv;
    struct op *op = NULL;

    srv->hash_running = 0;
    if (status != 0)
        j->rc = FERRY_ECANCELED;
    if (j->type == FERRY_MSG_LOGIN || j->type == FERRY_MSG_CHANGEPWD) {
        if (j->rc == FERRY_EAUTH)
            name_failed(srv, j->user);
        else if (j->rc == 0)
            name_succeeded(srv, j->user);
    }
    if (j->rc != 0 || s->closed) {
        if (!s->closed)
            srv_send_error(s, j->ref, j->rc,
                           j->rc == FERRY_EAUTH ? "wrong user name or password" : NULL);
        srv_sess_auth_done(s);
        srv_sess_op_done(s);
        srv_sess_unref(s);
        goto out;
    }
    /* Section 6.2: a ChangePwd without `new` only checks the old password (R-CLI-7). */
    if (j->type == FERRY_MSG_CHANGEPWD && j->newpw == NULL) {
        srv_send(s, FERRY_MSG_OK, json_pack("{s:s}", "ref", j->ref));
        srv_sess_auth_done(s);
        srv_sess_op_done(s);
        srv_sess_unref(s);
        goto out;
    }
    /* The hash is done; the database change goes through the writer queue. */
    op = srv_op_new(s,
                    j->type == FERRY_MSG_SIGNUP  ? OP_SIGNUP
                    : j->type == FERRY_MSG_LOGIN ? OP_SESSION
                                                 : OP_SETPW,
                    j->ref);
    if (op == NULL) {
        srv_send_error(s, j->ref, -ENOMEM, NULL);
        srv_sess_auth_done(s);
        srv_sess_op_done(s);
        srv_sess_unref(s);
        goto out;
    }
    op->uid = j->uid;
    snprintf(op->user, sizeof(op->user), "%s", j->user);
    snprintf(op->pwhash, sizeof(op->pwhash), "%s", j->out_hash);
    snprintf(op->device_id, sizeof(op->device_id), "%s", s->conn.peer_id);
    snprintf(op->device_name, sizeof(op->device_name), "%s", j->device);
    if (op->kind == OP_SETPW)
        memcpy(op->token_hash, s->token_hash, 32);
    else
        make_token(op);
    /* srv_op_new took its own reference and count; drop the hash job's. */
    srv_op_submit(srv, op);
    s->outstanding--;
    srv_sess_unref(s);
out:
    wipe_free(j->pw);
    wipe_free(j->newpw);
    sodium_memzero(j->out_hash, sizeof(j->out_hash));
    ferry_free(j);
    hash_next(srv);
}

static void hash_next(struct srv *srv)
{
    struct hashjob *j = srv->h_head;

    if (srv->hash_running || j == NULL)
        return;
    srv->h_head = j->next;
    if (srv->h_head == NULL)
        srv->h_tail = NULL;
    srv->h_len--;
    srv->hash_running = 1;
    j->work.data = j;
    if (uv_queue_work(srv->loop, &j->work, hash_work, hash_done) != 0) {
        j->rc = FERRY_EINTERNAL;
        hash_done(&j->work, -1);
    }
}

static int busy(struct sess *s, const char *ref, uint64_t retry_ms)
{
    json_t *o = json_pack(
        "{s:s, s:i, s:s, s:I}", "ref", ref, "code", ferry_err_to_wire(FERRY_EBUSY), "message",
        "too many attempts, try again later", "retry_after_ms", (json_int_t)retry_ms);

    return srv_send(s, FERRY_MSG_ERROR, o);
}

static int queue_hash(struct sess *s, const struct ferry_cmd *cmd, const char *user, const char *pw,
                      const char *newpw, const char *device)
{
    struct srv *srv = s->srv;
    struct hashjob *j;
    uint64_t retry = 0;
    int64_t uid = 0;
    char stored[160];
    int known = 1;

    /* R-AUTH-4: throttles are checked before any hashing work is spent. */
    if (cmd->type != FERRY_MSG_CHANGEPWD && ip_take_token(srv, s->conn.peer_ip, &retry) != 0)
        return busy(s, cmd->id, retry);
    if (cmd->type != FERRY_MSG_SIGNUP && name_allowed(srv, user, &retry) != 0)
        return busy(s, cmd->id, retry);
    if (srv->h_len >= srv->cfg.hash_queue)
        return srv_send_error(s, cmd->id, FERRY_EBUSY, "server busy, try again later");
    if (cmd->type == FERRY_MSG_LOGIN) {
        if (ferry_meta_user_get(srv->rdb, user, &uid, stored, sizeof(stored)) != 0) {
            known = 0;
            snprintf(stored, sizeof(stored), "%s", srv->dummy_hash);
        }
    } else if (cmd->type == FERRY_MSG_CHANGEPWD) {
        uid = s->uid;
        if (ferry_meta_user_pwhash(srv->rdb, uid, stored, sizeof(stored)) != 0)
            return srv_send_error(s, cmd->id, FERRY_EINTERNAL, NULL);
    } else if (ferry_meta_user_get(srv->rdb, user, &uid, stored, sizeof(stored)) == 0) {
        return srv_send_error(s, cmd->id, FERRY_EEXIST, "user name taken");
    }
    if ((j = ferry_calloc(1, sizeof(*j))) == NULL)
        return -ENOMEM;
    j->s = s;
    j->type = cmd->type;
    j->uid = uid;
    j->known = known;
    snprintf(j->ref, sizeof(j->ref), "%s", cmd->id);
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->device, sizeof(j->device), "%s", device != NULL ? device : "");
    snprintf(j->stored, sizeof(j->stored), "%s", stored);
    j->pw = ferry_strdup(pw);
    j->newpw = newpw != NULL ? ferry_strdup(newpw) : NULL;
    if (j->pw == NULL || (newpw != NULL && j->newpw == NULL)) {
        wipe_free(j->pw);
        wipe_free(j->newpw);
        ferry_free(j);
        return -ENOMEM;
    }
    srv_sess_ref(s);
    s->outstanding++;
    s->auth_pending++;
    if (srv->h_tail != NULL)
        srv->h_tail->next = j;
    else
        srv->h_head = j;
    srv->h_tail = j;
    srv->h_len++;
    hash_next(srv);
    return 0;
}

int srv_auth_handle(struct sess *s, const struct ferry_cmd *cmd)
{
    const char *user = NULL, *pw = NULL, *newpw = NULL, *device = NULL;
    struct op *op;
    int all = 0, rc;

    switch (cmd->type) {
    case FERRY_MSG_SIGNUP:
    case FERRY_MSG_LOGIN:
        if ((rc = ferry_msg_str(cmd->body, "user", 256, &user)) != 0 ||
            (rc = ferry_msg_str(cmd->body, "password", SRV_PASSWORD_MAX, &pw)) != 0 ||
            (rc = ferry_msg_str(cmd->body, "device", 256, &device)) != 0)
            return srv_send_error(s, cmd->id, rc, "expected user, password and device");
        if (s->authed)
            return srv_send_error(s, cmd->id, FERRY_EDENIED, "already logged in");
        if (!device_name_valid(device))
            return srv_send_error(s, cmd->id, FERRY_EUSAGE, "invalid device name");
        if (cmd->type == FERRY_MSG_SIGNUP) {
            if (!s->srv->cfg.signup_open)
                return srv_send_error(s, cmd->id, FERRY_EDENIED,
                                      "sign-up is closed on this server");
            if (!user_name_valid(user))
                return srv_send_error(s, cmd->id, FERRY_EUSAGE,
                                      "user names are 1-64 of a-z 0-9 . _ - starting with a "
                                      "letter or digit");
            if (strlen(pw) < SRV_PASSWORD_MIN)
                return srv_send_error(s, cmd->id, FERRY_EUSAGE,
                                      "password too short (at least 8 bytes)");
        } else if (!user_name_valid(user)) {
            /* Invalid names still pay the hash, like unknown ones (R-AUTH-5). */
            user = "";
        }
        return queue_hash(s, cmd, user, pw, NULL, device);
    case FERRY_MSG_CHANGEPWD:
        if (!s->authed)
            return srv_send_error(s, cmd->id, FERRY_EAUTH, "not logged in");
        if ((rc = ferry_msg_str(cmd->body, "old", SRV_PASSWORD_MAX, &pw)) != 0 ||
            (json_object_get(cmd->body, "new") != NULL &&
             (rc = ferry_msg_str(cmd->body, "new", SRV_PASSWORD_MAX, &newpw)) != 0))
            return srv_send_error(s, cmd->id, rc, "expected old and new");
        if (newpw != NULL && strlen(newpw) < SRV_PASSWORD_MIN)
            return srv_send_error(s, cmd->id, FERRY_EUSAGE,
                                  "password too short (at least 8 bytes)");
        return queue_hash(s, cmd, s->user, pw, newpw, NULL);
    case FERRY_MSG_LOGOUT:
        if (!s->authed)
            return srv_send_error(s, cmd->id, FERRY_EAUTH, "not logged in");
        if ((rc = ferry_msg_bool_opt(cmd->body, "all", 0, &all)) != 0)
            return srv_send_error(s, cmd->id, rc, "all must be a boolean");
        if ((op = srv_op_new(s, OP_LOGOUT, cmd->id)) == NULL)
            return -ENOMEM;
        op->uid = s->uid;
        op->flag = all;
        memcpy(op->token_hash, s->token_hash, 32);
        s->auth_pending++;
        srv_op_submit(s->srv, op);
        return 0;
    default:
        return FERRY_EPROTO;
    }
}
