/*
 * ferry serve: accounts, sessions, password hashing and its fair share
 * (R-AUTH-3, R-AUTH-10 to R-AUTH-12), and their lines in the server log.
 */
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
    char shown[80]; /* the name as the log shows it (R-LOG-1) */
    /* R-AUTH-12: the share it is charged to: its user's for ChangePwd, else its address's. */
    struct user_slot *usr;
    struct ip_slot *ip;
    uint64_t start; /* its start tag in virtual time */
    struct hashjob *next;
};

static void wipe_free(char *p)
{
    if (p == NULL)
        return;
    sodium_memzero(p, strlen(p));
    ferry_free(p);
}

static const struct srv_service *accounts_service(void);

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
    return srv_service_add(srv, accounts_service());
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

/* R-AUTH-1, for the administration commands too (admin.c). */
int srv_user_name_valid(const char *u)
{
    return user_name_valid(u);
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

static void make_token(struct op *op)
{
    uint8_t raw[32];

    ferry_random(raw, sizeof(raw));
    sodium_bin2base64(op->token, sizeof(op->token), raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    ferry_sha256_buf(raw, sizeof(raw), op->token_hash);
    sodium_memzero(raw, sizeof(raw));
}

static struct fair_key *job_key(const struct hashjob *j)
{
    return j->usr != NULL ? &j->usr->fk : &j->ip->fk;
}

/* One line per password operation or account change (R-LOG-4). */
static void log_account(struct sess *s, enum ferry_log_level lvl, const char *event,
                        const char *result, const char *reason, const char *shown,
                        const char *device_name, const char *extra)
{
    char dev[80];

    ferry_log(lvl, "event=%s result=%s%s%s user=%s ip=%s device=%s%s%s%s", event, result,
              reason != NULL ? " reason=" : "", reason != NULL ? reason : "", shown,
              ferry_conn_peer_ip(s->conn), ferry_conn_peer_id(s->conn),
              device_name != NULL ? " device_name=" : "",
              device_name != NULL ? srv_log_val(dev, sizeof(dev), device_name, SRV_DEVICE_NAME_MAX)
                                  : "",
              extra != NULL ? extra : "");
}

/*
 * Account changes through the write queue (R-STORE-1): their steps in the
 * commit job's transaction and back on the loop thread.
 */
static int signup_apply(struct srv *srv, struct op *op);
static int session_apply(struct srv *srv, struct op *op);
static int setpw_apply(struct srv *srv, struct op *op);
static int logout_apply(struct srv *srv, struct op *op);
static void account_done(struct op *op, json_t **committed);
static void account_finish(struct op *op);

static const struct op_type op_signup = {
    .name = "signup", .apply = signup_apply, .done = account_done, .finish = account_finish};
static const struct op_type op_session = {
    .name = "session", .apply = session_apply, .done = account_done, .finish = account_finish};
static const struct op_type op_setpw = {
    .name = "passwd", .apply = setpw_apply, .done = account_done, .finish = account_finish};
static const struct op_type op_logout = {
    .name = "logout", .apply = logout_apply, .done = account_done, .finish = account_finish};

/*
 * R-AUTH-14: a password checked against a hash that changed since (a
 * ChangePwd, `ferry serve user passwd|disable`) opens no session.
 */
static int session_apply(struct srv *srv, struct op *op)
{
    struct ferry_meta *m = srv->wdb;
    int rc;

    if (op->verified[0] != '\0' && (rc = ferry_meta_user_pwhash_is(m, op->uid, op->verified)) != 0)
        return rc;
    if ((rc = ferry_meta_device_seen(m, op->uid, op->device_id, op->device_name, op->now)) != 0)
        return rc;
    return ferry_meta_session_put(m, op->uid, op->device_id, op->token_hash, op->now);
}

/* Sign-up also logs the device in. */
static int signup_apply(struct srv *srv, struct op *op)
{
    int64_t uid = 0;
    int rc;

    if ((rc = ferry_meta_user_create(srv->wdb, op->user, op->pwhash, op->now, &uid)) != 0)
        return rc;
    op->uid = uid;
    return session_apply(srv, op);
}

static int setpw_apply(struct srv *srv, struct op *op)
{
    int rc;

    /* R-AUTH-14: the old password must still be the password when the new one lands. */
    if ((rc = ferry_meta_user_pwhash_is(srv->wdb, op->uid, op->verified)) != 0)
        return rc;
    /* R-AUTH-7: a new password revokes every other session of the user. */
    if ((rc = ferry_meta_user_set_pwhash(srv->wdb, op->uid, op->pwhash)) != 0)
        return rc;
    return ferry_meta_session_delete_user(srv->wdb, op->uid, op->token_hash);
}

static int logout_apply(struct srv *srv, struct op *op)
{
    if (op->flag)
        return ferry_meta_session_delete_user(srv->wdb, op->uid, NULL);
    return ferry_meta_session_delete(srv->wdb, op->token_hash);
}

/* An account operation committed: the session's new state, its reply, its line. */
static void account_done(struct op *op, json_t **committed)
{
    struct sess *s = op->s;
    char user[80], extra[40];
    int n;

    if (s->closed || op->rc != 0) {
        srv_op_reply(op, committed);
        return;
    }
    srv_log_val(user, sizeof(user), op->user, SRV_USER_MAX);
    if (op->type == &op_signup || op->type == &op_session) {
        if (srv_sess_logged_in(s, op->uid, op->user, op->token_hash) != 0) {
            srv_send_error(s, op->ref, -ENOMEM, NULL);
            ferry_conn_close(s->conn);
            return;
        }
        log_account(s, FERRY_LOG_INFO, op->type == &op_signup ? "signup" : "login", "ok", NULL,
                    user, op->device_name, NULL);
        srv_send(
            s, FERRY_MSG_SESSION,
            json_pack("{s:s, s:s, s:s}", "ref", op->ref, "token", op->token, "user", op->user));
    } else if (op->type == &op_logout) {
        n = srv_sess_revoke_live(s->srv, s, op->uid, op->flag ? NULL : op->token_hash);
        snprintf(extra, sizeof(extra), " scope=%s revoked=%d", op->flag ? "all" : "device", n);
        srv_log_val(user, sizeof(user), s->user, SRV_USER_MAX);
        log_account(s, FERRY_LOG_INFO, "logout", "ok", NULL, user, NULL, extra);
        srv_sess_logged_out(s);
        srv_send(s, FERRY_MSG_OK, json_pack("{s:s}", "ref", op->ref));
    } else {
        /* R-AUTH-7: every other session of the user ends; this one stays. */
        n = srv_sess_revoke_live(s->srv, s, op->uid, NULL);
        snprintf(extra, sizeof(extra), " revoked=%d", n);
        srv_log_val(user, sizeof(user), s->user, SRV_USER_MAX);
        log_account(s, FERRY_LOG_INFO, "passwd", "ok", NULL, user, NULL, extra);
        srv_send(s, FERRY_MSG_OK, json_pack("{s:s}", "ref", op->ref));
    }
}

/* The reply is out: the session's next account request may be read. */
static void account_finish(struct op *op)
{
    srv_sess_auth_done(op->s);
}

static const char *op_event(int32_t type)
{
    return type == FERRY_MSG_SIGNUP ? "signup" : type == FERRY_MSG_LOGIN ? "login" : "passwd";
}

static void queue_unlink(struct srv *srv, struct hashjob **pp)
{
    struct hashjob *j = *pp, *t;

    *pp = j->next;
    srv->h_len--;
    if (srv->h_tail == j) {
        for (t = srv->h_head; t != NULL && t->next != NULL; t = t->next)
            ;
        srv->h_tail = t;
    }
    j->next = NULL;
}

/* Releases what a job holds: its share of the hashing slot and its secrets. */
static void job_free(struct srv *srv, struct hashjob *j)
{
    job_key(j)->jobs--;
    if (j->usr != NULL)
        srv_user_put(srv, j->usr);
    else
        srv_ip_put(srv, j->ip, ferry_now_ms());
    wipe_free(j->pw);
    wipe_free(j->newpw);
    sodium_memzero(j->out_hash, sizeof(j->out_hash));
    ferry_free(j);
}

/* A job that ends without a database change: its Error, and the connection goes on. */
static void job_fail(struct srv *srv, struct hashjob *j, int rc, const char *msg)
{
    struct sess *s = j->s;

    if (!s->closed && rc != 0)
        srv_send_error(s, j->ref, rc, msg);
    job_free(srv, j);
    srv_sess_auth_done(s);
    srv_sess_op_done(s);
    srv_sess_unref(s);
}

static void hash_next(struct srv *srv);

static void hash_done(uv_work_t *w, int status)
{
    struct hashjob *j = w->data;
    struct sess *s = j->s;
    struct srv *srv = s->srv;
    const char *why = NULL;
    uint64_t now = ferry_now_ms();
    struct op *op = NULL;
    int rc;

    srv->hash_running = 0;
    if (status != 0)
        j->rc = FERRY_ECANCELED;
    if (j->type == FERRY_MSG_LOGIN || j->type == FERRY_MSG_CHANGEPWD) {
        if (j->rc == FERRY_EAUTH)
            srv_name_failed(srv, j->user, j->known, now);
        else if (j->rc == 0)
            srv_name_succeeded(srv, j->user, j->known, now);
    }
    if (j->rc == FERRY_EAUTH) {
        why = j->type == FERRY_MSG_CHANGEPWD ? "bad-password"
              : j->user[0] == '\0'           ? "invalid-name"
              : !j->known                    ? "unknown-user"
                                             : "bad-password";
        log_account(s, FERRY_LOG_NOTICE, op_event(j->type), "fail", why, j->shown,
                    j->type == FERRY_MSG_CHANGEPWD ? NULL : j->device, NULL);
    }
    /*
     * R-SESS-10: a right password over the user's connection cap gets no
     * session; the place it takes now is held until its commit answers.
     */
    if (j->rc == 0 && j->type == FERRY_MSG_LOGIN && !s->closed &&
        (rc = srv_sess_user_take(s, j->uid, 1)) != 0) {
        j->rc = rc;
        if (rc == FERRY_EBUSY) {
            log_account(s, FERRY_LOG_NOTICE, "login", "refused", "user-cap", j->shown, j->device,
                        NULL);
            job_fail(srv, j, rc,
                     "server busy: too many connections for this user; try again later");
            goto next;
        }
    }
    if (j->rc != 0 || s->closed) {
        job_fail(srv, j, j->rc, j->rc == FERRY_EAUTH ? "wrong user name or password" : NULL);
        goto next;
    }
    /* Section 6.2: a ChangePwd without `new` only checks the old password (R-CLI-7). */
    if (j->type == FERRY_MSG_CHANGEPWD && j->newpw == NULL) {
        srv_send(s, FERRY_MSG_OK, json_pack("{s:s}", "ref", j->ref));
        job_fail(srv, j, 0, NULL); /* nothing to change: the job ends here */
        goto next;
    }
    /* The hash is done; the database change goes through the writer queue. */
    op = srv_op_new(s,
                    j->type == FERRY_MSG_SIGNUP  ? &op_signup
                    : j->type == FERRY_MSG_LOGIN ? &op_session
                                                 : &op_setpw,
                    j->ref);
    if (op == NULL) {
        job_fail(srv, j, -ENOMEM, NULL);
        goto next;
    }
    op->uid = j->uid;
    snprintf(op->user, sizeof(op->user), "%s", j->user);
    snprintf(op->pwhash, sizeof(op->pwhash), "%s", j->out_hash);
    if (j->type != FERRY_MSG_SIGNUP)
        snprintf(op->verified, sizeof(op->verified), "%s", j->stored);
    snprintf(op->device_id, sizeof(op->device_id), "%s", ferry_conn_peer_id(s->conn));
    snprintf(op->device_name, sizeof(op->device_name), "%s", j->device);
    if (op->type == &op_setpw)
        memcpy(op->token_hash, s->token_hash, 32);
    else
        make_token(op);
    srv_op_submit(srv, op);
    /* srv_op_new took its own reference and count, and the op answers auth_pending. */
    s->outstanding--;
    job_free(srv, j);
    srv_sess_unref(s);
next:
    hash_next(srv);
}

/*
 * R-AUTH-12: start-time fair queuing. Each job gets a start tag, the later
 * of the virtual time and the end of its party's previous job, and costs
 * one tag unit per Argon2id run; the job with the smallest tag runs next
 * (the earliest among equals). Every party with work waiting thus gets the
 * same share of the slot whatever it queued, and a party arriving idle
 * starts at the current virtual time: no credit for idleness, no debt.
 */
static void hash_next(struct srv *srv)
{
    struct hashjob *j, **pp, **pick = NULL;

    if (srv->hash_running || srv->h_head == NULL)
        return;
    for (pp = &srv->h_head; *pp != NULL; pp = &(*pp)->next)
        if (pick == NULL || (*pp)->start < (*pick)->start)
            pick = pp;
    j = *pick;
    queue_unlink(srv, pick);
    srv->thr.vtime = j->start;
    srv->hash_running = 1;
    j->work.data = j;
    if (uv_queue_work(srv->loop, &j->work, hash_work, hash_done) != 0) {
        j->rc = FERRY_EINTERNAL;
        hash_done(&j->work, -1);
    }
}

static int busy(struct sess *s, const char *ref, uint64_t retry_ms, const char *msg)
{
    json_t *o = json_pack("{s:s, s:i, s:s}", "ref", ref, "code", ferry_err_to_wire(FERRY_EBUSY),
                          "message", msg);

    if (o != NULL && retry_ms > 0)
        json_object_set_new(o, "retry_after_ms", json_integer((json_int_t)retry_ms));
    return srv_send(s, FERRY_MSG_ERROR, o);
}

/* An attempt refused before any hashing: Error 9 and a line (limited, R-LOG-3). */
static int refuse_attempt(struct sess *s, const struct ferry_cmd *cmd, const char *shown,
                          const char *device, const char *why, uint64_t retry_ms, const char *msg)
{
    char extra[40] = "";

    if (srv_log_allow(s->srv, SRV_LOG_THROTTLED)) {
        if (retry_ms > 0)
            snprintf(extra, sizeof(extra), " retry_ms=%llu", (unsigned long long)retry_ms);
        log_account(s, FERRY_LOG_NOTICE, op_event(cmd->type), "refused", why, shown, device, extra);
    }
    return busy(s, cmd->id, retry_ms, msg);
}

/*
 * Queues one password operation for the hashing slot. In order: the
 * party's own limit and the queue's (R-AUTH-3, R-AUTH-12), the address's
 * bucket (R-AUTH-10), then the name's backoff and bucket (R-AUTH-11), so
 * a refusal for want of room spends no budget.
 */
static int queue_hash(struct sess *s, const struct ferry_cmd *cmd, const char *user,
                      const char *shown, const char *pw, const char *newpw, const char *device)
{
    struct srv *srv = s->srv;
    struct hashjob *j;
    struct fair_key *key;
    uint64_t now = ferry_now_ms(), retry = 0;
    int64_t uid = 0;
    char stored[160];
    int known = 1, limit;

    if (cmd->type == FERRY_MSG_CHANGEPWD) {
        if (s->uslot == NULL)
            return srv_send_error(s, cmd->id, FERRY_EINTERNAL, NULL);
        key = &s->uslot->fk;
        limit = SRV_HASH_PER_USER;
    } else {
        key = &s->ip->fk;
        limit = SRV_HASH_PER_ADDR;
    }
    if (key->jobs >= limit)
        return refuse_attempt(s, cmd, shown, device, "share", 0,
                              "server busy: a password operation of yours is already waiting; "
                              "try again later");
    /*
     * R-AUTH-3: past --hash-queue waiting jobs only a party with nothing
     * queued gets in. One operation per connection at a time (R-PIPE-2)
     * already bounds the queue by the connections; this bounds the wait.
     */
    if (srv->h_len >= srv->cfg.hash_queue && key->jobs > 0)
        return refuse_attempt(s, cmd, shown, device, "queue-full", 0,
                              "server busy, try again later");
    if (srv_ip_take_token(srv, s->ip, now, &retry) != 0)
        return refuse_attempt(s, cmd, shown, device, "ip-rate", retry,
                              "too many attempts, try again later");
    if (cmd->type == FERRY_MSG_LOGIN) {
        if (user[0] == '\0' ||
            ferry_meta_user_get(srv->rdb, user, &uid, stored, sizeof(stored)) != 0) {
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
    if (cmd->type != FERRY_MSG_SIGNUP && srv_name_check(srv, user, known, now, &retry) != 0)
        return refuse_attempt(s, cmd, shown, device, "name-rate", retry,
                              "too many attempts, try again later");
    if ((j = ferry_calloc(1, sizeof(*j))) == NULL)
        return -ENOMEM;
    j->s = s;
    j->type = cmd->type;
    j->uid = uid;
    j->known = known;
    snprintf(j->ref, sizeof(j->ref), "%s", cmd->id);
    snprintf(j->user, sizeof(j->user), "%s", user);
    snprintf(j->shown, sizeof(j->shown), "%s", shown);
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
    if (cmd->type == FERRY_MSG_CHANGEPWD)
        j->usr = s->uslot;
    else
        j->ip = s->ip;
    key->jobs++;
    /* R-AUTH-12: a ChangePwd runs Argon2id twice, so it costs two. */
    j->start = key->finish > srv->thr.vtime ? key->finish : srv->thr.vtime;
    key->finish = j->start + (cmd->type == FERRY_MSG_CHANGEPWD ? 2 : 1);
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

/* Signup, Login, ChangePwd and Logout (R-AUTH). */
static int account_request(struct sess *s, const struct ferry_cmd *cmd)
{
    const char *user = NULL, *pw = NULL, *newpw = NULL, *device = NULL;
    char shown[80];
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
        }
        srv_log_val(shown, sizeof(shown), user, SRV_USER_MAX);
        /* Invalid names still pay the hash, like unknown ones (R-AUTH-5), sharing one entry. */
        if (cmd->type == FERRY_MSG_LOGIN && !user_name_valid(user))
            user = "";
        return queue_hash(s, cmd, user, shown, pw, NULL, device);
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
        srv_log_val(shown, sizeof(shown), s->user, SRV_USER_MAX);
        return queue_hash(s, cmd, s->user, shown, pw, newpw, NULL);
    case FERRY_MSG_LOGOUT:
        if (!s->authed)
            return srv_send_error(s, cmd->id, FERRY_EAUTH, "not logged in");
        if ((rc = ferry_msg_bool_opt(cmd->body, "all", 0, &all)) != 0)
            return srv_send_error(s, cmd->id, rc, "all must be a boolean");
        if ((op = srv_op_new(s, &op_logout, cmd->id)) == NULL)
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

/* R-SESS-2: account requests may come before a login; R-PIPE-2: they wait for earlier writes. */
static const struct srv_handler account_handlers[] = {
    {FERRY_MSG_SIGNUP, SRV_H_ANON | SRV_H_ORDERED, account_request},
    {FERRY_MSG_LOGIN, SRV_H_ANON | SRV_H_ORDERED, account_request},
    {FERRY_MSG_CHANGEPWD, SRV_H_ANON | SRV_H_ORDERED, account_request},
    {FERRY_MSG_LOGOUT, SRV_H_ANON | SRV_H_ORDERED, account_request},
};

static const struct srv_service accounts = {
    .name = "accounts",
    .handlers = account_handlers,
    .nhandlers = sizeof(account_handlers) / sizeof(account_handlers[0]),
};

static const struct srv_service *accounts_service(void)
{
    return &accounts;
}
