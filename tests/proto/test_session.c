/*
 * The client session (ferry/session.h) against a real ferry serve: Connect
 * and Accept, replies matched by ref, identity checks, redials with backoff
 * and the errors that end a session. Each test runs its own uv loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "ferry/session.h"
#include "harness.h"
#include "loop_harness.h"

/* What a test's session did, as its callbacks saw it. */
struct rec {
    struct loop_harness lh;
    struct ferry_session *s;
    int trust; /* on_identity's answer */
    int identity_calls;
    char identity[FERRY_ID_LEN + 1];
    int ups;
    char user[80];
    int user_null;
    int minor;
    int downs;
    int down_rc;
    int closed;
    int close_rc;
    int frames; /* frames that answered no call */
    int stop_on_up;
    void (*on_down_hook)(struct rec *r);
};

/* One call's replies, in arrival order. */
struct reply {
    struct rec *r;
    int n;     /* replies seen */
    int rc;    /* the last one's rc */
    int done;  /* the call is over */
    int order; /* when it ended, among the calls of the test */
    int last;  /* DirPage: the last page came */
    size_t entries;
    int32_t type;
};

static int done_counter;

static int on_identity(struct ferry_session *s, const char *id)
{
    struct rec *r = ferry_session_data(s);

    r->identity_calls++;
    snprintf(r->identity, sizeof(r->identity), "%s", id);
    return r->trust ? 0 : -1;
}

static void on_up(struct ferry_session *s, const struct ferry_session_info *info)
{
    struct rec *r = ferry_session_data(s);

    r->ups++;
    r->user_null = info->user == NULL;
    snprintf(r->user, sizeof(r->user), "%s", info->user != NULL ? info->user : "");
    r->minor = info->minor;
    assert_string_equal(info->server_id, ferry_session_server_id(s));
    if (r->stop_on_up)
        uv_stop(&r->lh.loop);
}

static int on_frame(struct ferry_session *s, const struct ferry_frame *f, const struct ferry_cmd *m)
{
    struct rec *r = ferry_session_data(s);

    r->frames++;
    /* The session hands over the command it decoded, and nothing for other frames. */
    assert_true((f->type == FERRY_FRAME_COMMAND) == (m != NULL));
    return 0;
}

static void on_down(struct ferry_session *s, int rc, uint64_t wait_ms)
{
    struct rec *r = ferry_session_data(s);

    r->downs++;
    r->down_rc = rc;
    /* R-CLI-3: the one backoff, from 0.5 s doubling to 10 s. */
    assert_true(wait_ms >= FERRY_BACKOFF_FIRST_MS && wait_ms <= FERRY_BACKOFF_MAX_MS);
    assert_false(ferry_session_is_up(s));
    assert_null(ferry_session_conn(s));
    if (r->on_down_hook != NULL)
        r->on_down_hook(r);
}

static void on_close(struct ferry_session *s, int rc)
{
    struct rec *r = ferry_session_data(s);

    r->closed++;
    r->close_rc = rc;
    ferry_session_free(s);
    r->s = NULL;
}

static const struct ferry_session_ops ops = {
    .on_identity = on_identity,
    .on_up = on_up,
    .on_frame = on_frame,
    .on_down = on_down,
    .on_close = on_close,
};

static int on_reply(struct ferry_session *s, int rc, const struct ferry_cmd *m, void *arg)
{
    struct reply *p = arg;

    (void)s;
    p->n++;
    p->rc = rc;
    if (m != NULL) {
        p->type = m->type;
        p->entries += json_array_size(json_object_get(m->body, "entries"));
        p->last = json_is_true(json_object_get(m->body, "last"));
    }
    /* R-CMD-5: a DirPage stream stays on its call until the last page. */
    if (rc == 0 && m != NULL && m->type == FERRY_MSG_DIRPAGE && !p->last)
        return 1;
    p->done = 1;
    p->order = ++done_counter;
    return 0;
}

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    loop_harness_init(&r->lh);
    r->trust = 1;
}

static void run_until(struct rec *r, loop_harness_cond cond, void *arg)
{
    loop_harness_run(&r->lh, HARNESS_WAIT_MS, cond, r, arg);
}

static int is_up(void *rv, void *arg)
{
    struct rec *r = rv;

    (void)arg;
    return r->ups > 0 || r->closed;
}

static int is_closed(void *rv, void *arg)
{
    struct rec *r = rv;

    (void)arg;
    return r->closed;
}

static int is_down(void *rv, void *arg)
{
    struct rec *r = rv;

    (void)arg;
    return r->downs > 0 || r->closed;
}

static int is_done(void *rv, void *arg)
{
    struct rec *r = rv;

    return ((struct reply *)arg)->done || r->closed;
}

static int ups_twice_and_done(void *rv, void *arg)
{
    struct rec *r = rv;

    return (r->ups >= 2 && ((struct reply *)arg)->done) || r->closed;
}

/* Ends the loop: the session closes, the loop's handles go. */
static void rec_finish(struct rec *r)
{
    if (r->s != NULL) {
        ferry_session_close(r->s);
        run_until(r, is_closed, NULL);
        assert_int_equal(r->close_rc, 0);
    }
    loop_harness_end(&r->lh);
}

/* A device with an account on srv: its identity, its TLS context and its token. */
struct device {
    struct client cl;
    SSL_CTX *ctx;
    char token[64];
};

static void device_signup(struct device *d, struct server *srv, const char *user)
{
    assert_int_equal(client_open(&d->cl, srv), 0);
    assert_int_equal(client_signup(&d->cl, user, d->token, sizeof(d->token)), 1);
    assert_non_null(d->ctx = ferry_tls_ctx_new(&d->cl.id, 0));
}

static void device_free(struct device *d)
{
    SSL_CTX_free(d->ctx);
    client_close(&d->cl);
}

static void session_open(struct rec *r, struct device *d, struct server *srv, const char *pin,
                         const char *token, int need_user, uint64_t retry_for_ms)
{
    struct ferry_session_cfg cfg = loop_harness_cfg(&r->lh, d->ctx, srv, token);

    cfg.pin = pin;
    cfg.need_user = need_user;
    cfg.retry_for_ms = retry_for_ms;
    assert_int_equal(ferry_session_open(&cfg, &ops, r, &r->s), 0);
}

static const char *const quiet_args[] = {"--login-rate", "1000", NULL};

/* Connect with a token: Accept names the user, and a call's reply comes back. */
static void test_connect_with_token(void **state)
{
    struct server srv;
    struct device d;
    struct rec r;
    struct reply who = {0};

    (void)state;
    server_start(&srv, quiet_args);
    device_signup(&d, &srv, "alice");
    rec_init(&r);
    session_open(&r, &d, &srv, srv.id, d.token, 1, 0);
    /* A call made before Accept waits for it, and goes out then. */
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_WHOAMI, json_object(), on_reply, &who), 0);
    run_until(&r, is_done, &who);
    assert_int_equal(r.ups, 1);
    assert_string_equal(r.user, "alice");
    assert_int_equal(r.minor, 5);
    assert_string_equal(ferry_session_server_id(r.s), srv.id);
    assert_true(ferry_session_accepted(r.s));
    assert_int_equal(who.rc, 0);
    assert_int_equal(who.type, FERRY_MSG_IDENTITY);
    assert_int_equal(r.identity_calls, 0); /* pinned: nobody is asked */
    rec_finish(&r);
    device_free(&d);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/*
 * R-CMD-5, R-PIPE-1: pipelined calls, a DirPage stream among them, each
 * reply reaching its own call by ref whatever the order they come in.
 */
static void test_pipelined_calls(void **state)
{
    enum { DIRS = 120, PINGS = 4 };
    struct server srv;
    struct device d;
    struct rec r;
    struct reply mk[DIRS], list = {0}, who = {0}, ping[PINGS], missing = {0};
    char path[64];
    int i;

    (void)state;
    memset(mk, 0, sizeof(mk));
    memset(ping, 0, sizeof(ping));
    server_start(&srv, quiet_args);
    device_signup(&d, &srv, "bob");
    rec_init(&r);
    session_open(&r, &d, &srv, srv.id, d.token, 1, 0);
    r.stop_on_up = 1;
    run_until(&r, is_up, NULL);
    assert_int_equal(r.ups, 1);
    for (i = 0; i < DIRS; i++) {
        snprintf(path, sizeof(path), "d%03d", i);
        assert_int_equal(ferry_session_call(r.s, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", path),
                                            on_reply, &mk[i]),
                         0);
    }
    /* More than two pages (50 entries each), then calls whose replies may overtake it. */
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", "/"),
                                        on_reply, &list),
                     0);
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_WHOAMI, json_object(), on_reply, &who), 0);
    for (i = 0; i < PINGS; i++)
        assert_int_equal(ferry_session_call(r.s, FERRY_MSG_PING, json_object(), on_reply, &ping[i]),
                         0);
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_DIRINFO,
                                        json_pack("{s:s}", "path", "/nowhere"), on_reply, &missing),
                     0);
    run_until(&r, is_done, &missing);
    run_until(&r, is_done, &list);
    run_until(&r, is_done, &who);
    for (i = 0; i < DIRS; i++) {
        assert_true(mk[i].done);
        assert_int_equal(mk[i].rc, 0);
        assert_int_equal(mk[i].n, 1);
    }
    /* The multi-reply call: every page, and only its own, then it ends. */
    assert_int_equal(list.rc, 0);
    assert_true(list.n >= 3);
    assert_true(list.last);
    assert_int_equal(list.entries, DIRS);
    assert_int_equal(who.rc, 0);
    assert_int_equal(who.n, 1);
    for (i = 0; i < PINGS; i++) {
        run_until(&r, is_done, &ping[i]);
        assert_int_equal(ping[i].type, FERRY_MSG_PONG);
        assert_int_equal(ping[i].n, 1);
    }
    /* An Error reply reaches its call with the mapped code. */
    assert_int_equal(missing.n, 1);
    assert_int_equal(missing.rc, FERRY_ENOTFOUND);
    assert_int_equal(missing.type, FERRY_MSG_ERROR);
    assert_int_equal(r.frames, 0);
    rec_finish(&r);
    device_free(&d);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* R-TLS-3: a pin the server does not match ends the session before any application byte. */
static void test_wrong_pin(void **state)
{
    struct server srv;
    struct device d;
    struct rec r;
    struct reply who = {0};

    (void)state;
    server_start(&srv, quiet_args);
    device_signup(&d, &srv, "carol");
    rec_init(&r);
    /* A well-formed ID that is not the server's: the device's own. */
    session_open(&r, &d, &srv, d.cl.id.id, d.token, 1, 60000);
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_WHOAMI, json_object(), on_reply, &who), 0);
    run_until(&r, is_closed, NULL);
    assert_int_equal(r.close_rc, FERRY_EPIN);
    assert_int_equal(r.ups, 0);
    assert_int_equal(r.downs, 0); /* never redialed, window or not */
    assert_int_equal(r.identity_calls, 0);
    /* The call never went out: it ends with the session. */
    assert_int_equal(who.n, 1);
    assert_int_equal(who.rc, FERRY_ECANCELED);
    rec_finish(&r);
    device_free(&d);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* R-TLS-4: no pin, the owner decides; a refusal ends it, a yes lets it in. */
static void test_identity_decision(void **state)
{
    struct server srv;
    struct device d;
    struct rec r;

    (void)state;
    server_start(&srv, quiet_args);
    device_signup(&d, &srv, "dave");
    rec_init(&r);
    r.trust = 0;
    session_open(&r, &d, &srv, NULL, d.token, 1, 60000);
    run_until(&r, is_closed, NULL);
    assert_int_equal(r.identity_calls, 1);
    assert_string_equal(r.identity, srv.id);
    assert_int_equal(r.close_rc, FERRY_EPIN);
    assert_int_equal(r.ups, 0);
    assert_int_equal(r.downs, 0);
    rec_finish(&r);

    rec_init(&r);
    session_open(&r, &d, &srv, NULL, d.token, 1, 0);
    run_until(&r, is_up, NULL);
    assert_int_equal(r.identity_calls, 1);
    assert_int_equal(r.ups, 1);
    assert_string_equal(r.user, "dave");
    rec_finish(&r);
    device_free(&d);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/*
 * R-SESS-6, R-AUTH-7: a revoked token is Accept with user null then Error 4.
 * A session that needs a user ends with FERRY_EAUTH and no redial; one that
 * does not is up, not logged in, and the Error 4 answering Connect reaches
 * no one.
 */
static void test_revoked_token(void **state)
{
    struct server srv;
    struct device d;
    struct ferry_cmd m;
    struct rec r;
    struct reply ping = {0};

    (void)state;
    server_start(&srv, quiet_args);
    device_signup(&d, &srv, "erin");
    assert_int_equal(client_send(&d.cl, FERRY_MSG_LOGOUT, json_object()), 0);
    assert_int_equal(client_expect(&d.cl, FERRY_MSG_OK, &m), 1);
    ferry_cmd_cleanup(&m);

    rec_init(&r);
    session_open(&r, &d, &srv, srv.id, d.token, 1, 60000);
    run_until(&r, is_closed, NULL);
    assert_int_equal(r.close_rc, FERRY_EAUTH);
    assert_int_equal(r.ups, 0);
    assert_int_equal(r.downs, 0);
    rec_finish(&r);

    rec_init(&r);
    session_open(&r, &d, &srv, srv.id, d.token, 0, 0);
    run_until(&r, is_up, NULL);
    assert_int_equal(r.ups, 1);
    assert_true(r.user_null);
    /* The Ping's Pong comes after the Error 4, which must not reach on_frame. */
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_PING, json_object(), on_reply, &ping), 0);
    run_until(&r, is_done, &ping);
    assert_int_equal(ping.type, FERRY_MSG_PONG);
    assert_int_equal(r.frames, 0);
    rec_finish(&r);
    device_free(&d);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* The server killed under a session (it is started again on the same port and data). */
static void kill_server(struct server *srv)
{
    kill(srv->pid, SIGKILL);
    waitpid(srv->pid, NULL, 0);
    harness_forget(srv->pid);
}

/*
 * R-CLI-3, R-SESS-4: a lost link ends the calls it took with
 * FERRY_ECANCELED, the session redials with the backoff, and a call made
 * while down goes out after the next Accept.
 */
static void test_redial_after_restart(void **state)
{
    struct server srv;
    struct device d;
    struct rec r;
    struct reply before = {0}, during = {0};
    char listen[64];
    const char *args[] = {"--login-rate", "1000", "--listen", listen, NULL};

    (void)state;
    server_start(&srv, quiet_args);
    device_signup(&d, &srv, "frank");
    client_close(&d.cl); /* its identity stays in the context */
    memset(&d.cl, 0, sizeof(d.cl));
    snprintf(listen, sizeof(listen), "127.0.0.1:%s", srv.port);
    rec_init(&r);
    session_open(&r, &d, &srv, srv.id, d.token, 1, 60000);
    r.stop_on_up = 1;
    run_until(&r, is_up, NULL);
    r.stop_on_up = 0;
    /* A call in flight when the server dies. */
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", "/"),
                                        on_reply, &before),
                     0);
    kill_server(&srv);
    run_until(&r, is_down, NULL);
    assert_int_equal(r.closed, 0);
    assert_int_equal(r.downs, 1);
    assert_true(ferry_conn_lost(r.down_rc));
    /* R-CLI-3: the lost link's calls ended before on_down... unless the reply beat the kill. */
    assert_true(before.done);
    assert_true(before.rc == FERRY_ECANCELED || before.rc == 0);
    /* A call made while down waits for the redial. */
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_WHOAMI, json_object(), on_reply, &during),
                     0);
    server_launch(&srv, args);
    run_until(&r, ups_twice_and_done, &during);
    assert_int_equal(r.closed, 0);
    assert_int_equal(r.ups, 2);
    assert_int_equal(during.rc, 0);
    assert_int_equal(during.type, FERRY_MSG_IDENTITY);
    assert_string_equal(r.user, "frank");
    rec_finish(&r);
    device_free(&d);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* R-CLI-3: once the outage outlasts the window, the session ends with the loss's error. */
static void test_retry_window_closes(void **state)
{
    struct server srv;
    struct device d;
    struct rec r;

    (void)state;
    server_start(&srv, quiet_args);
    device_signup(&d, &srv, "grace");
    client_close(&d.cl);
    memset(&d.cl, 0, sizeof(d.cl));
    rec_init(&r);
    session_open(&r, &d, &srv, srv.id, d.token, 1, 1200);
    r.stop_on_up = 1;
    run_until(&r, is_up, NULL);
    r.stop_on_up = 0;
    kill_server(&srv);
    run_until(&r, is_closed, NULL);
    assert_true(r.downs >= 1);
    assert_true(ferry_conn_lost(r.close_rc));
    assert_int_equal(r.ups, 1);
    rec_finish(&r);
    device_free(&d);
    server_cleanup(&srv);
}

/*
 * R-SESS-9, R-SESS-11: Error 9 busy in answer to Connect is retried like a
 * lost link; the session is up once the server has room.
 */
static struct client *busy_holder;

static void free_room(struct rec *r)
{
    (void)r;
    if (busy_holder != NULL) {
        client_close(busy_holder);
        busy_holder = NULL;
    }
}

static void test_busy_is_retried(void **state)
{
    const char *const args[] = {"--login-rate",    "1000", "--max-conns", "2",
                                "--reserve-conns", "0",    NULL};
    struct server srv;
    struct device d;
    struct client holder;
    struct rec r;

    (void)state;
    server_start(&srv, args);
    device_signup(&d, &srv, "heidi"); /* one of the two places */
    assert_int_equal(client_open(&holder, &srv), 0);
    assert_int_equal(client_hello(&holder, NULL), 1); /* the other */
    busy_holder = &holder;
    rec_init(&r);
    r.on_down_hook = free_room;
    session_open(&r, &d, &srv, srv.id, d.token, 1, 60000);
    run_until(&r, is_up, NULL);
    assert_int_equal(r.closed, 0);
    assert_true(r.downs >= 1);
    assert_int_equal(r.down_rc, FERRY_EBUSY);
    assert_int_equal(r.ups, 1);
    rec_finish(&r);
    device_free(&d);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* FERRY_SESSION_CALLS_MAX: a broken owner cannot grow the table without bound. */
static void test_calls_capped(void **state)
{
    struct server srv;
    struct device d;
    struct rec r;
    static struct reply sink;
    int i;

    (void)state;
    server_start(&srv, quiet_args);
    device_signup(&d, &srv, "ivan");
    rec_init(&r);
    /* Made before Accept, so nothing goes out: the table alone fills. */
    session_open(&r, &d, &srv, srv.id, d.token, 1, 0);
    for (i = 0; i < FERRY_SESSION_CALLS_MAX; i++)
        assert_int_equal(ferry_session_call(r.s, FERRY_MSG_PING, json_object(), on_reply, &sink),
                         0);
    assert_int_equal(ferry_session_call(r.s, FERRY_MSG_PING, json_object(), on_reply, &sink),
                     FERRY_ETOOBIG);
    ferry_session_close(r.s);
    run_until(&r, is_closed, NULL);
    assert_int_equal(r.close_rc, 0);
    assert_int_equal(sink.n, FERRY_SESSION_CALLS_MAX);
    assert_int_equal(sink.rc, FERRY_ECANCELED);
    rec_finish(&r);
    device_free(&d);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_connect_with_token, harness_teardown),
        cmocka_unit_test_teardown(test_pipelined_calls, harness_teardown),
        cmocka_unit_test_teardown(test_wrong_pin, harness_teardown),
        cmocka_unit_test_teardown(test_identity_decision, harness_teardown),
        cmocka_unit_test_teardown(test_revoked_token, harness_teardown),
        cmocka_unit_test_teardown(test_redial_after_restart, harness_teardown),
        cmocka_unit_test_teardown(test_retry_window_closes, harness_teardown),
        cmocka_unit_test_teardown(test_busy_is_retried, harness_teardown),
        cmocka_unit_test_teardown(test_calls_capped, harness_teardown),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
