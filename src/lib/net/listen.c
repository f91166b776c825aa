/*
 * The accepting side: a TCP listener whose connections start TLS as
 * server. It keeps the connections it accepted on a list, so that their
 * owner can visit them (revocations, shutdown) without walking the loop.
 */
#include <errno.h>

#include "conn_int.h"

struct ferry_listener {
    uv_tcp_t tcp;
    struct ferry_conn_cfg cfg;
    ferry_accept_fn on_accept;
    void *data;
    struct net_conn_list conns;
    int stopped; /* the socket is closing or closed */
    int closed;  /* its close callback ran */
    int freed;   /* ferry_listener_free ran: free once closed */
};

/* What a connection dropped before its owner knew of it runs: nothing. */
static int quiet_ready(struct ferry_conn *c)
{
    (void)c;
    return FERRY_ECANCELED;
}

static int quiet_frame(struct ferry_conn *c, const struct ferry_frame *f)
{
    (void)c;
    (void)f;
    return FERRY_ECANCELED;
}

static const struct ferry_conn_ops quiet_ops = {.on_ready = quiet_ready, .on_frame = quiet_frame};

static void drop_closed(uv_handle_t *h)
{
    ferry_free(h);
}

/* Accepts and closes: the socket leaves the backlog, so the loop does not spin on it. */
static void drop_one(struct ferry_listener *l)
{
    /* Zeroed: its data stays NULL, as for any handle that is not a connection. */
    uv_tcp_t *tmp = ferry_calloc(1, sizeof(*tmp));

    if (tmp == NULL)
        return;
    uv_tcp_init(l->tcp.loop, tmp);
    uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)tmp);
    uv_close((uv_handle_t *)tmp, drop_closed);
}

/* Closes c without telling anyone: its owner never took it. */
static void drop_conn(struct ferry_conn *c)
{
    net_conn_list_remove(c);
    c->ops = &quiet_ops;
    c->released = 1;
    ferry_conn_close(c);
}

static void on_connection(uv_stream_t *s, int status)
{
    struct ferry_listener *l = s->data;
    struct ferry_conn *c;

    if (status < 0)
        return;
    if ((c = net_conn_new(l->tcp.loop, &l->cfg, NULL)) == NULL) {
        drop_one(l);
        return;
    }
    if (uv_accept(s, (uv_stream_t *)&c->tcp) != 0) {
        drop_conn(c);
        return;
    }
    net_conn_list_add(&l->conns, c);
    if (net_conn_start(c, l->cfg.ctx, 1) != 0 || l->on_accept(l, c) != 0)
        drop_conn(c);
}

int ferry_listener_open(uv_loop_t *loop, const struct sockaddr *addr,
                        const struct ferry_conn_cfg *cfg, ferry_accept_fn on_accept, void *data,
                        struct ferry_listener **out)
{
    struct ferry_listener *l;
    int rc;

    *out = NULL;
    if ((l = ferry_calloc(1, sizeof(*l))) == NULL)
        return -ENOMEM;
    l->cfg = *cfg;
    l->on_accept = on_accept;
    l->data = data;
    if ((rc = uv_tcp_init(loop, &l->tcp)) != 0) {
        ferry_free(l);
        return rc;
    }
    l->tcp.data = l;
    if ((rc = uv_tcp_bind(&l->tcp, addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection)) != 0) {
        ferry_listener_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int ferry_listener_addr(const struct ferry_listener *l, struct sockaddr_storage *ss)
{
    int len = sizeof(*ss);

    return uv_tcp_getsockname(&l->tcp, (struct sockaddr *)ss, &len);
}

void *ferry_listener_data(const struct ferry_listener *l)
{
    return l->data;
}

void ferry_listener_each(struct ferry_listener *l, void (*fn)(struct ferry_conn *c, void *arg),
                         void *arg)
{
    struct ferry_conn *c, *next;

    /* fn may close c, which leaves it on the list until its handles are gone. */
    for (c = l->conns.head; c != NULL; c = next) {
        next = c->lnext;
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            fn(c, arg);
    }
}

static void listener_closed(uv_handle_t *h)
{
    struct ferry_listener *l = h->data;

    l->closed = 1;
    if (l->freed)
        ferry_free(l);
}

void ferry_listener_stop(struct ferry_listener *l)
{
    if (l == NULL || l->stopped)
        return;
    l->stopped = 1;
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
}

void ferry_listener_free(struct ferry_listener *l)
{
    struct ferry_conn *c;

    if (l == NULL)
        return;
    /* The connections live on without it. */
    while ((c = l->conns.head) != NULL)
        net_conn_list_remove(c);
    l->freed = 1;
    ferry_listener_stop(l);
    if (l->closed)
        ferry_free(l);
}
