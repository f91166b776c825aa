/*
 * The commands' runner: one library session (behind a hub, which transfer
 * jobs share) on a loop of the command's own, run until the calls made on
 * it are answered or a job is done. A command blocks here as it did on the
 * poll(2) client; the session does the rest (pin, Connect, replies by ref,
 * heartbeats, R-CLI-2's idle rule, and with a retry window the redials of
 * R-CLI-3).
 */
#include <string.h>

#include <sodium.h>

#include "cli.h"

/* How often the loop wakes to see Ctrl-C, which no handle of the loop hears. */
#define RPC_TICK_MS 100
/* How long a closing session may take to send its Disconnect. */
#define RPC_CLOSE_MS 1000

/* One call started by a command: its function, and the count of calls left. */
struct rpc_call {
    struct cli_rpc *rpc;
    cli_reply_fn fn;
    void *arg;
};

static int rpc_identity(struct ferry_hub *h, const char *server_id)
{
    struct cli_rpc *rpc = ferry_hub_data(h);

    /* Asked only when no pin applies (R-TLS-4). */
    return cli_ask_trust(rpc->r.addr, server_id) ? 0 : FERRY_EPIN;
}

static void rpc_up(struct ferry_hub *h, const struct ferry_session_info *info)
{
    struct cli_rpc *rpc = ferry_hub_data(h);

    rpc->up = 1;
    rpc->ever_up = 1;
    /* Section 15: 1.1 features only for a server that said 1.1 or later. */
    rpc->minor = info->minor;
    rpc->acks = info->acks;
}

static void rpc_down(struct ferry_hub *h, int rc, uint64_t wait_ms)
{
    struct cli_rpc *rpc = ferry_hub_data(h);

    rpc->up = 0;
    /* R-CLI-3: the session redials with the one backoff; the user hears of each try. */
    if (rpc->ever_up)
        cli_warn("connection lost (%s); reconnecting in %.1f s", ferry_strerror(rc),
                 (double)wait_ms / 1000);
    else
        cli_warn("cannot reach the server (%s); trying again in %.1f s", ferry_strerror(rc),
                 (double)wait_ms / 1000);
}

static void rpc_closed(struct ferry_hub *h, int rc)
{
    struct cli_rpc *rpc = ferry_hub_data(h);

    rpc->up = 0;
    rpc->closed = 1;
    /* The first loss past the retry window ends it, and says why; a close unasked is a loss. */
    rpc->close_rc = rc != 0 ? rc : -ECONNRESET;
}

static const struct ferry_hub_owner rpc_owner = {
    .on_identity = rpc_identity,
    .on_up = rpc_up,
    .on_down = rpc_down,
    .on_close = rpc_closed,
};

static void tick_cb(uv_timer_t *t)
{
    (void)t; /* waking uv_run is all it is for */
}

static int is_up(const struct cli_rpc *rpc, void *arg)
{
    (void)arg;
    return rpc->up;
}

static int no_pending(const struct cli_rpc *rpc, void *arg)
{
    (void)arg;
    return rpc->pending == 0;
}

int cli_rpc_run(struct cli_rpc *rpc, int (*done)(const struct cli_rpc *rpc, void *arg), void *arg)
{
    int rc = 0;

    while (!done(rpc, arg)) {
        /* R-CLI-13: Ctrl-C ends the wait. */
        if (cli_interrupted) {
            rc = -EINTR;
            break;
        }
        if (rpc->closed) {
            rc = rpc->close_rc;
            break;
        }
        uv_run(&rpc->loop, UV_RUN_ONCE);
    }
    rpc->active_ms = ferry_now_ms();
    return rc;
}

/* Frees the session, the loop and the secrets; the counterpart of cli_rpc_open. */
static void teardown(struct cli_rpc *rpc)
{
    uint64_t tx, rx;

    if (rpc->hub != NULL) {
        ferry_session_wire_bytes(rpc->s, &tx, &rx);
        cli_wire_add(tx, rx);
        ferry_hub_free(rpc->hub);
        rpc->hub = NULL;
        rpc->s = NULL;
    }
    if (rpc->loop_open) {
        uv_close((uv_handle_t *)&rpc->tick, NULL);
        uv_run(&rpc->loop, UV_RUN_DEFAULT);
        uv_loop_close(&rpc->loop);
        rpc->loop_open = 0;
    }
    SSL_CTX_free(rpc->ctx);
    rpc->ctx = NULL;
    ferry_identity_cleanup(&rpc->id);
    sodium_memzero(rpc->r.token, sizeof(rpc->r.token));
}

int cli_rpc_open(struct cli_rpc *rpc, int need_auth)
{
    struct cli_remote *r = &rpc->r;
    struct ferry_session_cfg cfg = {
        .host = r->host,
        .port = r->port,
        .token = r->token,
        .client = "ferry/" FERRY_VERSION_STR,
        .need_user = need_auth,
        /* 0 for a one-shot command: its user runs it again. */
        .retry_for_ms = rpc->retry_for_ms,
        .heartbeat_ms = CLI_HEARTBEAT_MS,
        .idle_ms = cli_idle_ms(),
        .connect_ms = CLI_CONNECT_TIMEOUT_MS,
    };
    struct cli_pin p;
    const char *seen;
    enum cli_stage stage;
    int rc;

    rpc->s = NULL;
    rpc->hub = NULL;
    rpc->ctx = NULL;
    rpc->loop_open = 0;
    rpc->up = rpc->ever_up = rpc->closed = rpc->close_rc = rpc->pending = 0;
    if ((rc = cli_load_identity(&rpc->id)) != 0)
        goto fail;
    cli_pin_choose(r, &p);
    if ((rpc->ctx = ferry_tls_ctx_new(&rpc->id, 0)) == NULL) {
        rc = -ENOMEM;
        cli_err("cannot connect to %s: %s", r->addr, ferry_strerror(rc));
        goto fail;
    }
    if ((rc = uv_loop_init(&rpc->loop)) != 0) {
        cli_err("cannot connect to %s: %s", r->addr, ferry_strerror(rc));
        goto fail;
    }
    rpc->loop_open = 1;
    uv_timer_init(&rpc->loop, &rpc->tick);
    uv_timer_start(&rpc->tick, tick_cb, RPC_TICK_MS, RPC_TICK_MS);
    cfg.loop = &rpc->loop;
    cfg.ctx = rpc->ctx;
    cfg.pin = p.pin;
    if ((rc = ferry_hub_open(&cfg, &rpc_owner, rpc, &rpc->hub)) != 0) {
        cli_err("cannot connect to %s: %s", r->addr, ferry_strerror(rc));
        goto fail;
    }
    rpc->s = ferry_hub_session(rpc->hub);
    if ((rc = cli_rpc_run(rpc, is_up, NULL)) == 0) {
        cli_pin_confirmed(r, &p, ferry_session_server_id(rpc->s));
        return 0;
    }
    /* Where it stopped decides the words, as on every other path. */
    seen = ferry_session_server_id(rpc->s);
    if (rc == FERRY_EPIN)
        stage = p.pin != NULL ? CLI_AT_TLS : CLI_AT_TRUST;
    else if (seen[0] == '\0')
        stage = CLI_AT_TLS;
    else if (rc == FERRY_EAUTH && ferry_session_accepted(rpc->s))
        stage = CLI_AT_ACCEPT;
    else
        stage = CLI_AT_CONNECT;
    /* A handshake that showed the pinned ID confirmed it, whatever came after. */
    if (seen[0] != '\0' && rc != FERRY_EPIN)
        cli_pin_confirmed(r, &p, seen);
    cli_connect_failed(r, p.pin, seen, stage, rc);
fail:
    teardown(rpc);
    return rc;
}

int cli_rpc_probe(struct cli_remote *r)
{
    struct cli_rpc rpc;
    int rc;

    memset(&rpc, 0, sizeof(rpc));
    rpc.r = *r;
    rpc.r.token[0] = '\0'; /* anonymous: the probe logs nobody in */
    if ((rc = cli_rpc_open(&rpc, 0)) == 0) {
        /* The identity just confirmed (and pinned for this address). */
        memcpy(r->server_id, rpc.r.server_id, sizeof(r->server_id));
        cli_rpc_close(&rpc);
    }
    return rc;
}

int cli_rpc_open_session(struct cli_rpc *rpc)
{
    memset(rpc, 0, sizeof(*rpc));
    if (cli_session_load(&rpc->r) != 0) {
        cli_err("not logged in. Run: ferry login --server HOST:PORT --user NAME");
        return FERRY_EAUTH;
    }
    return cli_rpc_open(rpc, 1);
}

int cli_rpc_open_retrying(struct cli_rpc *rpc, uint64_t retry_for_ms)
{
    memset(rpc, 0, sizeof(*rpc));
    if (cli_session_load(&rpc->r) != 0) {
        cli_err("not logged in. Run: ferry login --server HOST:PORT --user NAME");
        return FERRY_EAUTH;
    }
    rpc->retry_for_ms = retry_for_ms;
    return cli_rpc_open(rpc, 1);
}

static int call_reply(struct ferry_session *s, int rc, const struct ferry_cmd *m, void *arg)
{
    struct rpc_call *c = arg;
    struct cli_rpc *rpc = c->rpc;
    int more;

    (void)s;
    if (m == NULL && rc == FERRY_ECANCELED)
        rpc->lost = 1; /* the session ended under the call */
    more = c->fn(rpc, rc, m, c->arg);
    if (more == 1 && m != NULL)
        return 1;
    rpc->pending--;
    ferry_free(c);
    return 0;
}

int cli_rpc_start(struct cli_rpc *rpc, int32_t type, json_t *body, cli_reply_fn fn, void *arg)
{
    struct rpc_call *c;
    int rc;

    if (rpc->hub == NULL) {
        json_decref(body);
        return FERRY_ECANCELED;
    }
    if ((c = ferry_malloc(sizeof(*c))) == NULL) {
        json_decref(body);
        return -ENOMEM;
    }
    *c = (struct rpc_call){.rpc = rpc, .fn = fn, .arg = arg};
    if ((rc = ferry_session_call(rpc->s, type, body, call_reply, c)) != 0) {
        ferry_free(c);
        return rc;
    }
    rpc->pending++;
    return 0;
}

int cli_rpc_wait(struct cli_rpc *rpc)
{
    uint64_t tx, rx;
    int rc;

    rpc->lost = 0;
    rc = cli_rpc_run(rpc, no_pending, NULL);
    /* Calls ended by the session's end count off too: say why it ended. */
    if (rc == 0 && rpc->lost)
        rc = rpc->closed && rpc->close_rc != 0 ? rpc->close_rc : FERRY_ECANCELED;
    /*
     * The command stops waiting: calls still out end now, while what their
     * functions point to is alive, and the session with them.
     */
    if (rc != 0 && rpc->hub != NULL) {
        ferry_session_wire_bytes(rpc->s, &tx, &rx);
        cli_wire_add(tx, rx);
        ferry_hub_free(rpc->hub);
        rpc->hub = NULL;
        rpc->s = NULL;
    }
    return rc;
}

/* cli_rpc_call's one reply. */
struct one {
    struct ferry_cmd *reply;
    int rc;
    int verbose;
};

static int one_reply(struct cli_rpc *rpc, int rc, const struct ferry_cmd *m, void *arg)
{
    struct one *o = arg;
    const char *msg;

    (void)rpc;
    o->rc = rc;
    if (m == NULL)
        return 0;
    if (rc != 0) {
        /* The text is kept, escaped (R-ERR-2), for cli_last_error(). */
        cli_error_rc(m, &msg);
        if (o->verbose)
            cli_err("%s", msg);
        return 0;
    }
    o->reply->type = m->type;
    o->reply->body = json_incref(m->body);
    memcpy(o->reply->id, m->id, sizeof(o->reply->id));
    return 0;
}

int cli_rpc_call(struct cli_rpc *rpc, int32_t type, json_t *body, struct ferry_cmd *reply)
{
    struct one o = {.reply = reply, .rc = 0, .verbose = rpc->verbose_errors};
    int rc;

    memset(reply, 0, sizeof(*reply));
    if ((rc = cli_rpc_start(rpc, type, body, one_reply, &o)) != 0)
        return rc;
    if ((rc = cli_rpc_wait(rpc)) != 0) {
        ferry_cmd_cleanup(reply);
        memset(reply, 0, sizeof(*reply));
        return rc;
    }
    return o.rc;
}

void cli_rpc_close(struct cli_rpc *rpc)
{
    uint64_t until;

    if (rpc->hub != NULL && !rpc->closed) {
        /* Disconnect and the close_notify go out, briefly: the answers are in. */
        ferry_hub_close(rpc->hub);
        until = ferry_now_ms() + RPC_CLOSE_MS;
        while (!rpc->closed && ferry_now_ms() < until)
            uv_run(&rpc->loop, UV_RUN_ONCE);
    }
    teardown(rpc);
}
