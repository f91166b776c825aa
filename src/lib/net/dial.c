/*
 * The dialing side: resolve, connect, then TLS as client. The pin is
 * checked in conn.c as the handshake ends, before on_ready (R-TLS-3).
 */
#include <errno.h>
#include <netdb.h>
#include <string.h>

#include "conn_int.h"

static void connect_cb(uv_connect_t *req, int status)
{
    struct ferry_conn *c = req->data;
    int rc;

    if (c->closing)
        return; /* closed while connecting: the handles are on their way out */
    if (status < 0) {
        net_conn_fail(c, status);
        return;
    }
    if ((rc = net_conn_start(c, c->ctx, 0)) != 0)
        net_conn_fail(c, rc);
}

/* Binds the socket to the numeric address from (port 0), of family. */
static int bind_from(struct ferry_conn *c, int family)
{
    struct sockaddr_storage ss;
    int rc;

    if (family == AF_INET6)
        rc = uv_ip6_addr(c->from, 0, (struct sockaddr_in6 *)&ss);
    else
        rc = uv_ip4_addr(c->from, 0, (struct sockaddr_in *)&ss);
    if (rc != 0)
        return FERRY_EUSAGE;
    return uv_tcp_bind(&c->tcp, (const struct sockaddr *)&ss, 0);
}

static void resolved_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct ferry_conn *c = req->data;
    int rc = 0;

    c->resolving = 0;
    if (c->closing)
        goto out;
    if (status < 0 || res == NULL) {
        rc = FERRY_ENOTFOUND;
        goto out;
    }
    /* The first address only: a name that resolves to several is tried at its first. */
    if (c->from[0] != '\0' && (rc = bind_from(c, res->ai_family)) != 0)
        goto out;
    c->connect.data = c;
    rc = uv_tcp_connect(&c->connect, &c->tcp, res->ai_addr, connect_cb);
out:
    uv_freeaddrinfo(res);
    if (rc != 0)
        net_conn_fail(c, rc);
    net_conn_unref(c); /* the lookup's reference */
}

int ferry_conn_dial(uv_loop_t *loop, const struct ferry_conn_cfg *cfg, const char *from,
                    const char *host, const char *port, const char *pin, void *data,
                    struct ferry_conn **out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct ferry_conn *c;
    int rc;

    *out = NULL;
    if ((pin != NULL && strlen(pin) != FERRY_ID_LEN) ||
        (from != NULL && strlen(from) >= sizeof(c->from)))
        return FERRY_EUSAGE;
    if ((c = net_conn_new(loop, cfg, data)) == NULL)
        return -ENOMEM;
    c->ctx = cfg->ctx;
    if (pin != NULL)
        memcpy(c->pin, pin, FERRY_ID_LEN + 1);
    if (from != NULL)
        strcpy(c->from, from);
    c->gai.data = c;
    c->refs++;
    c->resolving = 1;
    if ((rc = uv_getaddrinfo(loop, &c->gai, resolved_cb, host, port, &hints)) != 0) {
        /* Nothing started: close quietly, and free once the handles are closed. */
        c->resolving = 0;
        c->refs--;
        c->released = 1;
        c->ops = NULL;
        ferry_conn_close(c);
        return rc;
    }
    *out = c;
    return 0;
}
