/*
 * Unit tests for net/: two connections on one loop, one dialing and one
 * accepting, exchange frames both ways; pins refuse the wrong peer on
 * either side before any application byte is handled (R-TLS-3, R-TLS-5).
 * The blocking client (struct ferry_client), a connection on a loop of its
 * own, is driven against an acceptor running on a second thread.
 */
#include <arpa/inet.h>
#include <pthread.h>
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
    char log[32]; /* the frames an acceptor took: C command, D data */
    int nlog;
    uint64_t data_bytes; /* data frames taken, in order */
    int data_bad;        /* one came out of order or with bytes other than pattern() */
    void *data;          /* a test's own state */
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

/* The byte at offset off of the data the direct-send test sends. */
static uint8_t pattern(uint64_t off)
{
    return (uint8_t)(off * 131 + (off >> 11));
}

/* Every command is answered with Ok; data frames are checked against pattern(). */
static int srv_frame(struct ferry_conn *c, const struct ferry_frame *f)
{
    struct side *s = ferry_conn_data(c);
    struct ferry_data d;
    size_t i;

    if (f->type == FERRY_FRAME_HEARTBEAT)
        return 0;
    if (f->type == FERRY_FRAME_DATA) {
        if (ferry_data_decode(f->payload, f->payload_len, &d) != 0)
            return FERRY_EPROTO;
        if (d.offset != s->data_bytes)
            s->data_bad = 1;
        for (i = 0; i < d.len; i++)
            if (d.bytes[i] != pattern(d.offset + i))
                s->data_bad = 1;
        s->data_bytes += d.len;
        if (s->nlog < (int)sizeof(s->log) - 1)
            s->log[s->nlog++] = 'D';
        return 0;
    }
    if (decode_type(f, &s->last_type) != 0)
        return FERRY_EPROTO;
    s->frames++;
    if (s->nlog < (int)sizeof(s->log) - 1)
        s->log[s->nlog++] = 'C';
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

/* Data frames of [off, off + len) of pattern() in a fresh buffer of *n bytes. */
static uint8_t *pattern_frames(uint64_t off, size_t len, size_t *n)
{
    static const uint8_t tid[FERRY_TID_LEN] = {7};
    uint8_t *src = malloc(len), *out;
    size_t i;

    assert_non_null(src);
    for (i = 0; i < len; i++)
        src[i] = pattern(off + i);
    *n = ferry_data_frames_len(len);
    assert_non_null(out = malloc(*n));
    ferry_data_frames_encode(out, tid, off, src, len);
    free(src);
    return out;
}

#define DIRECT_A 5000   /* queued the usual way */
#define DIRECT_B 70000  /* sent directly behind A: copied after it */
#define DIRECT_C 600000 /* sent directly with nothing queued: straight to TLS */

/* Outside input (a timer), so nothing holds the direct path back but what is queued. */
static void direct_kick(uv_timer_t *t)
{
    struct fx *f = t->data;
    struct ferry_conn *c = f->cli.c;
    size_t na, nb, nc;
    uint8_t *a = pattern_frames(0, DIRECT_A, &na), *b = pattern_frames(DIRECT_A, DIRECT_B, &nb),
            *cc = pattern_frames(DIRECT_A + DIRECT_B, DIRECT_C, &nc);

    uv_close((uv_handle_t *)t, NULL);
    assert_int_equal(ferry_conn_send_raw(c, a, na), 0);
    assert_int_equal(ferry_conn_queued(c), na);
    /* Behind queued bytes it must wait its turn: copied in after them. */
    assert_int_equal(ferry_conn_send_direct(c, b, nb), 0);
    assert_int_equal(ferry_conn_queued(c), na + nb);
    assert_int_equal(ferry_conn_flush(c), 0);
    assert_int_equal(ferry_conn_queued(c), 0);
    /* Nothing queued: TLS takes it from the caller's buffer, none of it is copied in. */
    assert_int_equal(ferry_conn_send_direct(c, cc, nc), 0);
    assert_int_equal(ferry_conn_queued(c), 0);
    free(a);
    free(b);
    free(cc);
    /* The Ok to this Ping comes after every data byte was taken. */
    assert_int_equal(send_cmd(c, FERRY_MSG_PING), 0);
}

static int direct_ready(struct ferry_conn *c)
{
    struct side *s = ferry_conn_data(c);
    static uv_timer_t kick;

    s->ready = 1;
    uv_timer_init(&s->fx->loop, &kick);
    kick.data = s->fx;
    return uv_timer_start(&kick, direct_kick, 0, 0);
}

static const struct ferry_conn_ops direct_ops = {
    .on_ready = direct_ready, .on_frame = cli_frame, .on_close = cli_close};

/* ferry_conn_send_direct: frames arrive whole and in order, whichever path they took. */
static void test_send_direct(void **state)
{
    struct fx *f = *state;
    struct ferry_conn_cfg cfg = {
        .ctx = f->cli_ctx, .ops = &direct_ops, .heartbeat_ms = 30000, .idle_ms = 90000};

    assert_int_equal(ferry_conn_dial(&f->loop, &cfg, NULL, "127.0.0.1", f->port, f->srv_id.id,
                                     &f->cli, &f->cli.c),
                     0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_false(f->guard_fired);
    assert_int_equal(f->cli.last_type, FERRY_MSG_OK);
    assert_int_equal(f->srv.data_bytes, DIRECT_A + DIRECT_B + DIRECT_C);
    assert_false(f->srv.data_bad);
    assert_int_equal(f->cli.err, 0);
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

/*
 * --- External buffers (ferry_conn_send_ext): encrypted from where they lie,
 * in order with the frames queued around them, handed back exactly once.
 */
#define EXT_A 16384 /* bytes of the first data frame, whose header is copied */
#define EXT_B 8000  /* bytes of the second, laid out in the buffer itself */

struct ext {
    struct side *side;
    uint8_t *buf; /* A's bytes, then B's frame */
    size_t len;
    int done;        /* calls of ext_done */
    int status;      /* the last one's status */
    int done_first;  /* done had run when on_close came */
    size_t queued;   /* ferry_conn_queued() once the buffer was queued */
    size_t pending;  /* ferry_conn_pending() then */
    int done_queued; /* done had run by then (it must not: nothing was encrypted) */
    int done_flush;  /* calls of done once the next flush returned */
    int oks;
};

static void ext_done(void *arg, int status)
{
    struct ext *x = arg;

    x->done++;
    x->status = status;
}

/* The bytes of the data at offset off: a pattern the acceptor checks. */
static void ext_fill(uint8_t *p, uint64_t off, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = pattern(off + i);
}

static int ext_ready(struct ferry_conn *c)
{
    struct side *s = ferry_conn_data(c);
    struct ext *x = s->data;
    uint8_t tid[FERRY_TID_LEN] = {1};
    uint8_t hdr[FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN], *b;
    int rc;

    s->ready = 1;
    /* Ping, then A (header copied, bytes external), then B (all external), then Ping. */
    x->len = EXT_A + FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN + EXT_B;
    if ((x->buf = malloc(x->len)) == NULL)
        return -ENOMEM;
    ferry_frame_header_encode(hdr, FERRY_FRAME_DATA, FERRY_DATA_HDR_LEN + EXT_A);
    ferry_data_header_encode(hdr + FERRY_FRAME_HDR_LEN, tid, 0);
    ext_fill(x->buf, 0, EXT_A);
    b = x->buf + EXT_A;
    ferry_frame_header_encode(b, FERRY_FRAME_DATA, FERRY_DATA_HDR_LEN + EXT_B);
    ferry_data_header_encode(b + FERRY_FRAME_HDR_LEN, tid, EXT_A);
    ext_fill(b + FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN, EXT_A, EXT_B);
    if ((rc = ferry_conn_send_cmd(c, FERRY_MSG_PING, json_object())) != 0 ||
        (rc = ferry_conn_send_ext(c, hdr, sizeof(hdr), x->buf, x->len, ext_done, x)) != 0)
        return rc;
    x->queued = ferry_conn_queued(c);
    x->pending = ferry_conn_pending(c);
    x->done_queued = x->done;
    if ((rc = ferry_conn_send_cmd(c, FERRY_MSG_PING, json_object())) != 0 ||
        (rc = ferry_conn_flush(c)) != 0)
        return rc;
    x->done_flush = x->done;
    return 0;
}

/* Two Oks answer the two Pings: then it closes. */
static int ext_frame(struct ferry_conn *c, const struct ferry_frame *f)
{
    struct side *s = ferry_conn_data(c);
    struct ext *x = s->data;

    if (f->type == FERRY_FRAME_HEARTBEAT)
        return 0;
    if (decode_type(f, &s->last_type) != 0)
        return FERRY_EPROTO;
    if (++x->oks == 2)
        ferry_conn_close(c);
    return 0;
}

static void ext_close(struct ferry_conn *c)
{
    struct side *s = ferry_conn_data(c);

    if (s->data != NULL)
        ((struct ext *)s->data)->done_first = ((struct ext *)s->data)->done;
    side_done(s);
}

static const struct ferry_conn_ops ext_ops = {
    .on_ready = ext_ready, .on_frame = ext_frame, .on_close = ext_close};

/* The frames around an external buffer keep their order; it is handed back once encrypted. */
static void test_ext_order(void **state)
{
    struct fx *f = *state;
    struct ext x = {0};
    struct ferry_conn_cfg cfg = {
        .ctx = f->cli_ctx, .ops = &ext_ops, .heartbeat_ms = 30000, .idle_ms = 90000};

    f->cli.data = &x;
    assert_int_equal(
        ferry_conn_dial(&f->loop, &cfg, NULL, "127.0.0.1", f->port, NULL, &f->cli, &f->cli.c), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_false(f->guard_fired);
    assert_true(f->cli.ready);
    /* Backpressure counts the external bytes as queued and pending until encrypted. */
    assert_true(x.queued >= x.len + FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN);
    assert_true(x.pending >= x.queued);
    assert_int_equal(x.done_queued, 0);
    assert_int_equal(x.done_flush, 1);
    assert_int_equal(x.done, 1);
    assert_int_equal(x.status, 0);
    assert_int_equal(f->cli.err, 0);
    f->srv.log[f->srv.nlog] = '\0';
    assert_string_equal(f->srv.log, "CDDC");
    assert_int_equal(f->srv.data_bytes, EXT_A + EXT_B);
    assert_int_equal(f->srv.data_bad, 0);
    free(x.buf);
}

/*
 * A connection that closes with an external buffer still queued hands it
 * back, once, with FERRY_ECANCELED, before on_close; a buffer past the cap
 * is refused and never handed back.
 */
static void test_ext_close_queued(void **state)
{
    struct fx *f = *state;
    struct ext x = {0};
    struct ext big = {0};
    struct ferry_conn_cfg cfg = {
        .ctx = f->cli_ctx, .ops = &ext_ops, .heartbeat_ms = 30000, .idle_ms = 90000};
    static uint8_t buf[1 << 20];

    f->cli.data = &x;
    assert_int_equal(
        ferry_conn_dial(&f->loop, &cfg, NULL, "127.0.0.1", f->port, NULL, &f->cli, &f->cli.c), 0);
    /* Before the handshake nothing is encrypted: the buffer waits in the queue. */
    assert_int_equal(ferry_conn_send_ext(f->cli.c, NULL, 0, buf, sizeof(buf), ext_done, &x), 0);
    assert_true(ferry_conn_queued(f->cli.c) >= sizeof(buf));
    assert_true(ferry_conn_pending(f->cli.c) >= sizeof(buf));
    assert_int_equal(ferry_conn_send_ext(f->cli.c, NULL, 0, buf, FERRY_NET_OUT_MAX, ext_done, &big),
                     FERRY_ETOOBIG);
    ferry_conn_close(f->cli.c);
    assert_int_equal(ferry_conn_send_ext(f->cli.c, NULL, 0, buf, 1, ext_done, &big),
                     FERRY_ECANCELED);
    f->expect_closed = 1; /* the acceptor may never see it */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_false(f->guard_fired);
    assert_false(f->cli.ready);
    assert_int_equal(x.done, 1);
    assert_int_equal(x.status, FERRY_ECANCELED);
    assert_int_equal(x.done_first, 1);
    assert_int_equal(big.done, 0);
}

/*
 * --- The blocking client against an acceptor on a thread of its own. ---
 * The acceptor answers by message type: Ping with Ok; Disconnect with Ok,
 * then it closes; Mkdir with Ok, then the header of a frame larger than
 * any frame may be; Logout by no longer reading; DirInfo with FLOOD data
 * frames, numbered by their offset.
 */
#define FLOOD 64

struct peer {
    uv_loop_t loop;
    uv_async_t stop;
    SSL_CTX *ctx;
    struct ferry_listener *l;
    pthread_t thread;
    char port[16];
};

static void peer_reply(struct ferry_conn *c, int32_t type)
{
    assert_int_equal(ferry_conn_send_cmd(c, type, json_object()), 0);
    assert_int_equal(ferry_conn_flush(c), 0);
}

static int peer_frame(struct ferry_conn *c, const struct ferry_frame *f)
{
    static uint8_t data[FERRY_DATA_MAX];
    uint8_t hdr[FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN];
    static const uint8_t tid[FERRY_TID_LEN];
    int32_t type;
    int i;

    if (f->type == FERRY_FRAME_HEARTBEAT)
        return 0;
    if (decode_type(f, &type) != 0)
        return FERRY_EPROTO;
    switch (type) {
    case FERRY_MSG_DISCONNECT:
        peer_reply(c, FERRY_MSG_OK);
        ferry_conn_close(c);
        break;
    case FERRY_MSG_MKDIR:
        peer_reply(c, FERRY_MSG_OK);
        ferry_frame_header_encode(hdr, FERRY_FRAME_COMMAND, FERRY_FRAME_PAYLOAD_MAX + 1);
        assert_int_equal(ferry_conn_send_raw(c, hdr, FERRY_FRAME_HDR_LEN), 0);
        assert_int_equal(ferry_conn_flush(c), 0);
        break;
    case FERRY_MSG_LOGOUT:
        ferry_conn_pause(c);
        return 1; /* left unread, and so is everything after it */
    case FERRY_MSG_DIRINFO:
        for (i = 0; i < FLOOD; i++) {
            ferry_frame_header_encode(hdr, FERRY_FRAME_DATA,
                                      sizeof(hdr) - FERRY_FRAME_HDR_LEN + sizeof(data));
            ferry_data_header_encode(hdr + FERRY_FRAME_HDR_LEN, tid, (uint64_t)i * sizeof(data));
            memset(data, i, sizeof(data));
            assert_int_equal(ferry_conn_send_raw(c, hdr, sizeof(hdr)), 0);
            assert_int_equal(ferry_conn_send_raw(c, data, sizeof(data)), 0);
        }
        assert_int_equal(ferry_conn_flush(c), 0);
        break;
    default:
        peer_reply(c, FERRY_MSG_OK);
    }
    return 0;
}

static int peer_ready(struct ferry_conn *c)
{
    (void)c;
    return 0;
}

static void peer_closed(struct ferry_conn *c)
{
    ferry_conn_release(c);
}

static const struct ferry_conn_ops peer_ops = {
    .on_ready = peer_ready, .on_frame = peer_frame, .on_close = peer_closed};

static int peer_accept(struct ferry_listener *l, struct ferry_conn *c)
{
    (void)l;
    (void)c;
    return 0;
}

static void peer_drop(struct ferry_conn *c, void *arg)
{
    (void)arg;
    ferry_conn_close(c);
}

static void peer_stop(uv_async_t *a)
{
    struct peer *p = a->data;

    ferry_listener_each(p->l, peer_drop, NULL);
    ferry_listener_free(p->l);
    uv_close((uv_handle_t *)&p->stop, NULL);
}

static void *peer_run(void *arg)
{
    struct peer *p = arg;

    uv_run(&p->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void peer_start(struct fx *f, struct peer *p)
{
    struct ferry_conn_cfg cfg = {
        .ctx = f->srv_ctx, .ops = &peer_ops, .heartbeat_ms = 30000, .idle_ms = 90000};
    struct sockaddr_in sa;
    struct sockaddr_storage ss;

    /* The fixture's own loop does not run here: its guard is not needed. */
    uv_timer_stop(&f->guard);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(uv_loop_init(&p->loop), 0);
    assert_int_equal(uv_async_init(&p->loop, &p->stop, peer_stop), 0);
    p->stop.data = p;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(
        ferry_listener_open(&p->loop, (const struct sockaddr *)&sa, &cfg, peer_accept, p, &p->l),
        0);
    assert_int_equal(ferry_listener_addr(p->l, &ss), 0);
    snprintf(p->port, sizeof(p->port), "%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    assert_int_equal(pthread_create(&p->thread, NULL, peer_run, p), 0);
}

static void peer_join(struct peer *p)
{
    uv_async_send(&p->stop);
    assert_int_equal(pthread_join(p->thread, NULL), 0);
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

static struct ferry_client *client_open(struct fx *f, struct peer *p)
{
    struct ferry_client *c = NULL;

    assert_int_equal(
        ferry_client_connect(&c, "127.0.0.1", p->port, &f->cli_id, f->srv_id.id, NET_GUARD_MS), 0);
    assert_string_equal(ferry_client_server_id(c), f->srv_id.id);
    return c;
}

/* The next frame, pumping for it; fails the test once the guard's time has passed. */
static int client_frame_by(struct ferry_client *c, struct ferry_frame *fr)
{
    uint64_t deadline = ferry_now_ms() + NET_GUARD_MS;
    int rc;

    while ((rc = ferry_client_next_frame(c, fr)) == 0 && !ferry_client_eof(c)) {
        assert_true(ferry_now_ms() < deadline);
        rc = ferry_client_pump(c, 1000, 0);
        assert_true(rc == 0 || ferry_client_eof(c));
    }
    /* Frames that came before a close, and a fault after them, are still taken. */
    if (rc == 0)
        rc = ferry_client_next_frame(c, fr);
    return rc;
}

static int32_t frame_type(const struct ferry_frame *fr)
{
    int32_t type = -1;

    assert_int_equal(decode_type(fr, &type), 0);
    return type;
}

/* A call and its answer; a pump with nothing to read waits, then returns empty-handed. */
static void test_client_call_and_wait(void **state)
{
    struct fx *f = *state;
    struct ferry_client *c;
    struct ferry_frame fr;
    struct peer p;

    peer_start(f, &p);
    c = client_open(f, &p);
    assert_int_equal(ferry_client_send_cmd(c, FERRY_MSG_PING, json_object()), 0);
    assert_true(ferry_client_pending(c) > 0);
    assert_int_equal(ferry_client_pump(c, NET_GUARD_MS, 1), 0);
    assert_int_equal(ferry_client_pending(c), 0);
    assert_int_equal(client_frame_by(c, &fr), 1);
    assert_int_equal(frame_type(&fr), FERRY_MSG_OK);
    /* Nothing more comes: the pump times out with no frame and the link open. */
    assert_int_equal(ferry_client_pump(c, 100, 0), 0);
    assert_int_equal(ferry_client_pump(c, 0, 0), 0);
    assert_int_equal(ferry_client_next_frame(c, &fr), 0);
    assert_false(ferry_client_eof(c));
    /* R-CLI-2: the whole frame was a sign of life. */
    assert_true(ferry_client_last_rx_ms(c) > 0);
    ferry_client_close(&c);
    assert_null(c);
    peer_join(&p);
}

/* Output the server does not read: flush_all gives up with FERRY_ETIMEDOUT. */
static void test_client_flush_timeout(void **state)
{
    static uint8_t big[1 << 20];
    static const uint8_t tid[FERRY_TID_LEN];
    struct fx *f = *state;
    struct ferry_client *c;
    struct peer p;
    int i, rc = 0;

    peer_start(f, &p);
    c = client_open(f, &p);
    assert_int_equal(ferry_client_send_cmd(c, FERRY_MSG_LOGOUT, json_object()), 0);
    /* The kernel's buffers take some megabytes; a gigabyte they do not. */
    for (i = 0; i < 1024 && rc == 0; i++) {
        assert_int_equal(ferry_client_send_data(c, tid, (uint64_t)i << 20, big, sizeof(big)), 0);
        rc = ferry_client_pump(c, 200, 1);
    }
    assert_int_equal(rc, FERRY_ETIMEDOUT);
    assert_true(ferry_client_pending(c) > 0);
    assert_false(ferry_client_eof(c));
    ferry_client_close(&c);
    peer_join(&p);
}

/* The server's answer, then its close: the answer first, then eof. */
static void test_client_server_closes(void **state)
{
    struct fx *f = *state;
    struct ferry_client *c;
    struct ferry_frame fr;
    struct peer p;

    peer_start(f, &p);
    c = client_open(f, &p);
    assert_int_equal(ferry_client_send_cmd(c, FERRY_MSG_DISCONNECT, json_object()), 0);
    assert_int_equal(ferry_client_pump(c, NET_GUARD_MS, 1), 0);
    assert_int_equal(client_frame_by(c, &fr), 1);
    assert_int_equal(frame_type(&fr), FERRY_MSG_OK);
    assert_int_equal(client_frame_by(c, &fr), 0);
    assert_true(ferry_client_eof(c));
    assert_int_equal(ferry_client_pump(c, 100, 0), -ECONNRESET);
    /* Sending to a closed connection is not an error of its own: the pump tells. */
    assert_int_equal(ferry_client_send_cmd(c, FERRY_MSG_PING, json_object()), 0);
    assert_int_equal(ferry_client_pump(c, 100, 1), -ECONNRESET);
    ferry_client_close(&c);
    peer_join(&p);
}

/* R-FRAME-3: a frame larger than any may be is refused, after the frames before it. */
static void test_client_frame_too_big(void **state)
{
    struct fx *f = *state;
    struct ferry_client *c;
    struct ferry_frame fr;
    struct peer p;
    int rc;

    peer_start(f, &p);
    c = client_open(f, &p);
    assert_int_equal(ferry_client_send_cmd(c, FERRY_MSG_MKDIR, json_object()), 0);
    assert_int_equal(ferry_client_pump(c, NET_GUARD_MS, 1), 0);
    assert_int_equal(client_frame_by(c, &fr), 1);
    assert_int_equal(frame_type(&fr), FERRY_MSG_OK);
    rc = client_frame_by(c, &fr);
    assert_true(rc < 0);
    assert_true(ferry_client_eof(c));
    /* The pump names the fault too, and so does every later call. */
    assert_int_equal(ferry_client_pump(c, 0, 0), rc);
    assert_int_equal(ferry_client_next_frame(c, &fr), rc);
    ferry_client_close(&c);
    peer_join(&p);
}

/*
 * More frames than the queue holds, left unread for a while: the connection
 * stops reading, and every frame arrives, in order, once they are taken.
 */
static void test_client_queue_bound(void **state)
{
    struct fx *f = *state;
    struct ferry_client *c;
    struct ferry_frame fr;
    struct ferry_data d;
    struct peer p;
    int i;

    peer_start(f, &p);
    c = client_open(f, &p);
    assert_int_equal(ferry_client_send_cmd(c, FERRY_MSG_DIRINFO, json_object()), 0);
    assert_int_equal(ferry_client_pump(c, NET_GUARD_MS, 1), 0);
    for (i = 0; i < 20; i++)
        assert_int_equal(ferry_client_pump(c, 50, 0), 0);
    for (i = 0; i < FLOOD; i++) {
        assert_int_equal(client_frame_by(c, &fr), 1);
        assert_int_equal(fr.type, FERRY_FRAME_DATA);
        assert_int_equal(ferry_data_decode(fr.payload, fr.payload_len, &d), 0);
        assert_int_equal(d.offset, (uint64_t)i * FERRY_DATA_MAX);
        assert_int_equal(d.len, FERRY_DATA_MAX);
        assert_int_equal(d.bytes[0], (uint8_t)i);
        assert_int_equal(d.bytes[FERRY_DATA_MAX - 1], (uint8_t)i);
    }
    assert_int_equal(ferry_client_pump(c, 0, 0), 0);
    assert_int_equal(ferry_client_next_frame(c, &fr), 0);
    ferry_client_close(&c);
    peer_join(&p);
}

/* R-TLS-3: a pin that differs fails with FERRY_EPIN, naming the ID the server showed. */
static void test_client_wrong_pin(void **state)
{
    struct fx *f = *state;
    struct ferry_client *c = NULL;
    struct peer p;

    peer_start(f, &p);
    assert_int_equal(
        ferry_client_connect(&c, "127.0.0.1", p.port, &f->cli_id, f->other_id.id, NET_GUARD_MS),
        FERRY_EPIN);
    assert_non_null(c);
    assert_string_equal(ferry_client_server_id(c), f->srv_id.id);
    ferry_client_close(&c);
    peer_join(&p);
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
        cmocka_unit_test_setup_teardown(test_send_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ext_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ext_close_queued, setup, teardown),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test_setup_teardown(test_client_call_and_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_flush_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_server_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_frame_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_queue_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_wrong_pin, setup, teardown),
        cmocka_unit_test(test_conn_lost),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
