/*
 * Unit tests for net/: two connections on one loop, one dialing and one
 * accepting, exchange frames both ways; pins refuse the wrong peer on
 * either side before any application byte is handled (R-TLS-3, R-TLS-5).
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/net.h"
#include "ferry/wire.h"

/* Only a bound against a hang: no test waits for it to pass. */
#define NET_GUARD_MS 20000

struct side {
    struct fx *fx;
    struct ferry_conn *c;
    const char *allow; /* an acceptor's pin on the dialer (NULL: anyone) */
    int ready;
    int closed;
    int err;
    int frames; /* command frames handled */
    int32_t last_type;
    char peer[FERRY_ID_LEN + 1];
    uint64_t sent, received;
};

struct fx {
    char dir[64];
    uv_loop_t loop;
    uv_timer_t guard;
    struct ferry_identity srv_id, cli_id, other_id;
    SSL_CTX *srv_ctx, *cli_ctx;
    struct ferry_listener *l;
    char port[16];
    struct side srv, cli;
    int expect_closed; /* sides that close before the loop may end */
    int guard_fired;
};

static void side_done(struct side *s)
{
    struct fx *f = s->fx;

    s->closed = 1;
    s->err = ferry_conn_error(s->c);
    snprintf(s->peer, sizeof(s->peer), "%s", ferry_conn_peer_id(s->c));
    ferry_conn_wire_bytes(s->c, &s->sent, &s->received);
    ferry_conn_release(s->c);
    s->c = NULL;
    if (--f->expect_closed == 0) {
        ferry_listener_stop(f->l);
        uv_timer_stop(&f->guard);
        uv_close((uv_handle_t *)&f->guard, NULL);
    }
}

static int send_cmd(struct ferry_conn *c, int32_t type)
{
    int rc = ferry_conn_send_cmd(c, type, json_object());

    return rc != 0 ? rc : ferry_conn_flush(c);
}

/* The dialer speaks first: a Ping, once its peer proved the pinned ID. */
static int cli_ready(struct ferry_conn *c)
{
    struct side *s = ferry_conn_data(c);

    s->ready = 1;
    snprintf(s->peer, sizeof(s->peer), "%s", ferry_conn_peer_id(c));
    return send_cmd(c, FERRY_MSG_PING);
}

static int decode_type(const struct ferry_frame *f, int32_t *type)
{
    struct ferry_cmd cmd;

    if (f->type != FERRY_FRAME_COMMAND || ferry_cmd_decode(f->payload, f->payload_len, &cmd) != 0)
        return -1;
    *type = cmd.type;
    ferry_cmd_cleanup(&cmd);
    return 0;
}

/* The dialer takes the answer and ends the conversation. */
static int cli_frame(struct ferry_conn *c, const struct ferry_frame *f)
{
    struct side *s = ferry_conn_data(c);

    if (f->type == FERRY_FRAME_HEARTBEAT)
        return 0;
    if (decode_type(f, &s->last_type) != 0)
        return FERRY_EPROTO;
    s->frames++;
    ferry_conn_close(c);
    return 0;
}

static void cli_close(struct ferry_conn *c)
{
    side_done(ferry_conn_data(c));
}

static const struct ferry_conn_ops cli_ops = {
    .on_ready = cli_ready, .on_frame = cli_frame, .on_close = cli_close};

/* R-TLS-5: the acceptor learns the dialer's ID; with a pin, a stranger is refused. */
static int srv_ready(struct ferry_conn *c)
{
    struct side *s = ferry_conn_data(c);

    s->ready = 1;
    snprintf(s->peer, sizeof(s->peer), "%s", ferry_conn_peer_id(c));
    if (s->allow != NULL && strcmp(s->allow, s->peer) != 0)
        return FERRY_EPIN;
    return 0;
}

/* Every command is answered with Ok. */
static int srv_frame(struct ferry_conn *c, const struct ferry_frame *f)
{
    struct side *s = ferry_conn_data(c);

    if (f->type == FERRY_FRAME_HEARTBEAT)
        return 0;
    if (decode_type(f, &s->last_type) != 0)
        return FERRY_EPROTO;
    s->frames++;
    return send_cmd(c, FERRY_MSG_OK);
}

static void srv_close(struct ferry_conn *c)
{
    side_done(ferry_conn_data(c));
}

static const struct ferry_conn_ops srv_ops = {
    .on_ready = srv_ready, .on_frame = srv_frame, .on_close = srv_close};

static int on_accept(struct ferry_listener *l, struct ferry_conn *c)
{
    struct fx *f = ferry_listener_data(l);

    f->srv.c = c;
    ferry_conn_set_data(c, &f->srv);
    return 0;
}

static void guard_cb(uv_timer_t *t)
{
    struct fx *f = t->data;

    f->guard_fired = 1;
    uv_stop(&f->loop);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct ferry_conn_cfg cfg;
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    char path[128];

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-net-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/srv", f->dir);
    if (ferry_identity_load_or_create(path, &f->srv_id) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/cli", f->dir);
    if (ferry_identity_load_or_create(path, &f->cli_id) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/other", f->dir);
    if (ferry_identity_load_or_create(path, &f->other_id) != 0)
        return -1;
    if ((f->srv_ctx = ferry_tls_ctx_new(&f->srv_id, 1)) == NULL ||
        (f->cli_ctx = ferry_tls_ctx_new(&f->cli_id, 0)) == NULL)
        return -1;
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    f->srv.fx = f->cli.fx = f;
    f->expect_closed = 2;
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    uv_timer_start(&f->guard, guard_cb, NET_GUARD_MS, 0);
    cfg = (struct ferry_conn_cfg){
        .ctx = f->srv_ctx, .ops = &srv_ops, .heartbeat_ms = 30000, .idle_ms = 90000};
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (ferry_listener_open(&f->loop, (const struct sockaddr *)&sa, &cfg, on_accept, f, &f->l) !=
            0 ||
        ferry_listener_addr(f->l, &ss) != 0)
        return -1;
    snprintf(f->port, sizeof(f->port), "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    ferry_listener_free(f->l);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the handles close */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    SSL_CTX_free(f->srv_ctx);
    SSL_CTX_free(f->cli_ctx);
    ferry_identity_cleanup(&f->srv_id);
    ferry_identity_cleanup(&f->cli_id);
    ferry_identity_cleanup(&f->other_id);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void dial(struct fx *f, const char *port, const char *pin)
{
    struct ferry_conn_cfg cfg = {
        .ctx = f->cli_ctx, .ops = &cli_ops, .heartbeat_ms = 30000, .idle_ms = 90000};

    assert_int_equal(
        ferry_conn_dial(&f->loop, &cfg, NULL, "127.0.0.1", port, pin, &f->cli, &f->cli.c), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_false(f->guard_fired);
}

/* R-TLS-3, R-TLS-5: a frame each way, and each side knows the other's ID. */
static void test_dial_accept_both_ways(void **state)
{
    struct fx *f = *state;

    f->srv.allow = f->cli_id.id;
    dial(f, f->port, f->srv_id.id);
    assert_true(f->cli.ready);
    assert_true(f->srv.ready);
    assert_string_equal(f->cli.peer, f->srv_id.id);
    assert_string_equal(f->srv.peer, f->cli_id.id);
    assert_int_equal(f->srv.frames, 1);
    assert_int_equal(f->srv.last_type, FERRY_MSG_PING);
    assert_int_equal(f->cli.frames, 1);
    assert_int_equal(f->cli.last_type, FERRY_MSG_OK);
    assert_int_equal(f->cli.err, 0);
    /*
     * Wire counters: the acceptor read all the dialer wrote (to its close);
     * the dialer stops reading as it closes, before the acceptor's close.
     */
    assert_true(f->cli.sent > 0);
    assert_int_equal(f->cli.sent, f->srv.received);
    assert_true(f->cli.received > 0 && f->cli.received <= f->srv.sent);
}

/* R-TLS-3: a dialer pinned to another ID stops before any application byte. */
static void test_dial_wrong_pin(void **state)
{
    struct fx *f = *state;

    dial(f, f->port, f->other_id.id);
    assert_false(f->cli.ready);
    assert_int_equal(f->cli.err, FERRY_EPIN);
    /* It saw who answered, and the acceptor took no frame from it. */
    assert_string_equal(f->cli.peer, f->srv_id.id);
    assert_int_equal(f->srv.frames, 0);
}

/* R-TLS-5: an acceptor that pins its peers closes on a stranger, handling nothing. */
static void test_accept_wrong_peer(void **state)
{
    struct fx *f = *state;

    f->srv.allow = f->other_id.id;
    dial(f, f->port, f->srv_id.id);
    assert_true(f->srv.ready);
    assert_string_equal(f->srv.peer, f->cli_id.id);
    assert_int_equal(f->srv.err, FERRY_EPIN);
    assert_int_equal(f->srv.frames, 0);
    assert_int_equal(f->cli.frames, 0);
}

/* A dial to a port nobody listens on ends in on_close with the reason, never on_ready. */
static void test_dial_refused(void **state)
{
    struct fx *f = *state;
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_t probe;
    char port[16];

    /* A port just bound and closed again: free, with nobody listening. */
    uv_tcp_init(&f->loop, &probe);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_tcp_getsockname(&probe, (struct sockaddr *)&ss, &len), 0);
    snprintf(port, sizeof(port), "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    uv_close((uv_handle_t *)&probe, NULL);
    f->expect_closed = 1; /* the acceptor never sees it */
    dial(f, port, f->srv_id.id);
    assert_false(f->cli.ready);
    assert_int_equal(f->cli.err, UV_ECONNREFUSED);
}

/* R-CLI-3: reconnects back off from 0.5 s, doubling to 10 s, within the outage's window. */
static void test_backoff(void **state)
{
    static const uint64_t want[] = {500, 1000, 2000, 4000, 8000, 10000, 10000};
    unsigned i;

    (void)state;
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(ferry_backoff_ms(i), want[i]);
    assert_int_equal(ferry_backoff_ms(1000), 10000);
    assert_true(ferry_retry_window_open(1000, 60000, 1000));
    assert_true(ferry_retry_window_open(1000, 60000, 60999));
    assert_false(ferry_retry_window_open(1000, 60000, 61000));
    assert_false(ferry_retry_window_open(1000, 0, 1000));
}

/* R-CLI-3: what counts as a lost link, worth a redial, and what does not. */
static void test_conn_lost(void **state)
{
    (void)state;
    assert_true(ferry_conn_lost(-ECONNRESET));
    assert_true(ferry_conn_lost(-ECONNREFUSED));
    assert_true(ferry_conn_lost(-EPIPE));
    assert_true(ferry_conn_lost(FERRY_ETIMEDOUT));
    assert_true(ferry_conn_lost(FERRY_ECANCELED));
    assert_false(ferry_conn_lost(0));
    assert_false(ferry_conn_lost(-ENOMEM));
    assert_false(ferry_conn_lost(-EINTR));
    assert_false(ferry_conn_lost(FERRY_EPIN));
    assert_false(ferry_conn_lost(FERRY_EPROTO));
    assert_false(ferry_conn_lost(FERRY_EAUTH));
    assert_false(ferry_conn_lost(FERRY_EBUSY)); /* the session retries it itself, on Connect only */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dial_accept_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_wrong_pin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_wrong_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dial_refused, setup, teardown),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_conn_lost),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
