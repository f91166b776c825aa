/*
 * TLS connections on the libuv loop: frames, heartbeats, backpressure, and
 * the life cycle both sides share once the TCP link is up.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/err.h>

#include "conn_int.h"

struct write_req {
    uv_write_t req;
    struct write_req *next; /* on the spare list */
    size_t len;
    size_t cap;
    uint8_t data[];
};

/*
 * An external buffer queued with ferry_conn_send_ext(): the owner's bytes,
 * given to SSL_write from where they lie.
 */
struct net_ext {
    struct net_ext *next;
    const uint8_t *p;
    size_t len;
    size_t off;    /* bytes already encrypted */
    uint64_t mark; /* c->out_taken at which its turn comes */
    ferry_conn_ext_done_fn done;
    void *arg;
};

/*
 * Records gather in one write buffer until it holds NET_FLUSH_BYTES, then go
 * to the socket in one uv_write. SSL_write returns after every record (the
 * context enables partial writes), so handing each over alone cost a
 * uv_write, a write(2) and an allocation per 16 KiB. The buffer has room
 * for one more record past the mark.
 */
#define NET_FLUSH_BYTES (256 * 1024)
#define NET_TX_CAP      (NET_FLUSH_BYTES + 32 * 1024)
/*
 * Written buffers a connection keeps for its next writes: a fresh one each
 * time cost the page faults of new memory (the allocator gives large
 * blocks back to the system), 6 % of a put's client CPU when its links ran
 * full. Enough for a connection's whole output at its high mark, and one
 * more. They are freed once its output has been idle for a tick.
 */
#define NET_TX_SPARES (FERRY_NET_OUT_HIGH / NET_FLUSH_BYTES + 2)

/* Frees the spare write buffers. */
static void spares_free(struct ferry_conn *c)
{
    struct write_req *w;

    while ((w = c->spare) != NULL) {
        c->spare = w->next;
        ferry_free(w);
    }
    c->nspare = 0;
}

/* A written buffer: kept as a spare when it is a full-size one and there is room. */
static void tx_recycle(struct ferry_conn *c, struct write_req *w)
{
    if (w->cap != NET_TX_CAP || c->nspare >= NET_TX_SPARES || c->closing) {
        ferry_free(w);
        return;
    }
    w->next = c->spare;
    c->spare = w;
    c->nspare++;
}

/* Tells the owners of a list of finished external buffers, oldest first, and frees it. */
static void ext_finish(struct net_ext *e, int status)
{
    struct net_ext *next;

    for (; e != NULL; e = next) {
        next = e->next;
        e->done(e->arg, status);
        ferry_free(e);
    }
}

static void process_input(struct ferry_conn *c);
static void (*before_send)(void);

void ferry_conn_set_before_send(void (*fn)(void))
{
    before_send = fn;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

void net_conn_unref(struct ferry_conn *c)
{
    int released = c->released;

    if (--c->refs > 0)
        return;
    SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    ferry_free(c->tx);
    c->tx = NULL;
    spares_free(c);
    ferry_buf_cleanup(&c->in);
    ferry_buf_cleanup(&c->out);
    ferry_free(c->rx);
    c->rx = NULL;
    /* Buffers never encrypted go back to their owners before on_close. */
    ext_finish(c->ext_head, FERRY_ECANCELED);
    c->ext_head = c->ext_tail = NULL;
    c->ext_bytes = 0;
    net_conn_list_remove(c);
    c->gone = 1;
    if (c->ops != NULL && c->ops->on_close != NULL)
        c->ops->on_close(c);
    /* Released during on_close, it is freed already; released before, it is freed
     * now. */
    if (released)
        ferry_free(c);
}

static void handle_closed(uv_handle_t *h)
{
    net_conn_unref(h->data);
}

static void close_handles(struct ferry_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->gai); /* its callback drops its reference */
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
}

void net_conn_fail(struct ferry_conn *c, int rc)
{
    if (c->err == 0 && !c->closing)
        c->err = rc;
    ferry_conn_close(c);
}

void net_conn_abort(struct ferry_conn *c, int rc)
{
    if (c->err == 0 && !c->closing)
        c->err = rc;
    c->closing = 1;
    close_handles(c);
}

static void write_done(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct ferry_conn *c = req->handle->data;
    int was_high = ferry_conn_pending(c) >= FERRY_NET_OUT_LOW;

    c->queued -= w->len;
    tx_recycle(c, w);
    if (status < 0) {
        net_conn_fail(c, status);
        close_handles(c);
        return;
    }
    if (c->closing) {
        if (c->queued == 0)
            close_handles(c);
        return;
    }
    if (c->tx_window != 0 && (ferry_conn_queued(c) > 0 || c->ext_head != NULL) &&
        ferry_conn_flush(c) != 0) {
        net_conn_fail(c, -EPIPE);
        return;
    }
    if (was_high && ferry_conn_pending(c) < FERRY_NET_OUT_LOW) {
        if (c->ops->on_drain != NULL)
            c->ops->on_drain(c);
        if (c->out_blocked && !c->closing && ferry_conn_pending(c) < FERRY_NET_OUT_LOW) {
            c->out_blocked = 0;
            if (!c->paused) {
                uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
                process_input(c);
            }
        }
    }
}

void net_conn_list_add(struct net_conn_list *l, struct ferry_conn *c)
{
    c->list = l;
    c->lprev = NULL;
    c->lnext = l->head;
    if (l->head != NULL)
        l->head->lprev = c;
    l->head = c;
}

void net_conn_list_remove(struct ferry_conn *c)
{
    if (c->list == NULL)
        return;
    if (c->lprev != NULL)
        c->lprev->lnext = c->lnext;
    else
        c->list->head = c->lnext;
    if (c->lnext != NULL)
        c->lnext->lprev = c->lprev;
    c->list = NULL;
    c->lprev = c->lnext = NULL;
}
/* Hands every ciphertext byte OpenSSL produced to the socket, in one uv_write. */
static int push_ciphertext(struct ferry_conn *c)
{
    struct write_req *w = c->tx;
    uv_buf_t b;
    int rc;

    if (w == NULL || w->len == 0)
        return 0;
    c->tx = NULL;
    b = uv_buf_init((char *)w->data, (unsigned)w->len);
    if (before_send != NULL)
        before_send();
    if ((rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done)) != 0) {
        ferry_free(w);
        return rc;
    }
    c->queued += w->len;
    c->wire_tx += w->len;
    c->last_tx_ms = ferry_now_ms();
    return 0;
}

void net_conn_set_tx_window(struct ferry_conn *c, size_t bytes)
{
    c->tx_window = bytes;
}

/*
 * Encrypts at most NET_FLUSH_BYTES of the next bytes in order: those of out
 * up to the first external buffer's mark, else that buffer's own, which
 * goes to the list *done once all of it is encrypted.
 */
static int flush_step(struct ferry_conn *c, struct net_ext ***done)
{
    struct net_ext *e = c->ext_head;
    size_t n = ferry_buf_used(&c->out);
    const uint8_t *p = ferry_buf_peek(&c->out);
    int w = 0;

    if (e != NULL && e->mark == c->out_taken) {
        p = e->p + e->off;
        n = e->len - e->off;
    } else if (e != NULL && e->mark - c->out_taken < n) {
        n = (size_t)(e->mark - c->out_taken);
    }
    if (n > 0) {
        /* The error queue is per thread: another connection's entry must not leak here. */
        ERR_clear_error();
        w = SSL_write(c->ssl, p, (int)(n > NET_FLUSH_BYTES ? NET_FLUSH_BYTES : n));
        if (w <= 0)
            return FERRY_EINTERNAL;
    }
    if (e == NULL || e->mark != c->out_taken) {
        ferry_buf_consume(&c->out, (size_t)w);
        c->out_taken += (uint64_t)w;
        return 0;
    }
    e->off += (size_t)w;
    c->ext_bytes -= (size_t)w;
    if (e->off == e->len) {
        c->ext_head = e->next;
        if (c->ext_head == NULL)
            c->ext_tail = NULL;
        e->next = NULL;
        **done = e;
        *done = &e->next;
    }
    return 0;
}

int ferry_conn_flush(struct ferry_conn *c)
{
    size_t max_queued = c->tx_window != 0 ? c->tx_window : SIZE_MAX;
    struct net_ext *done = NULL, **dtail = &done;
    int rc = 0;

    if (!c->ready || uv_is_closing((uv_handle_t *)&c->tcp))
        return 0;
    while ((ferry_buf_used(&c->out) > 0 || c->ext_head != NULL) &&
           c->queued + (c->tx != NULL ? c->tx->len : 0) < max_queued) {
        if ((rc = flush_step(c, &dtail)) != 0)
            goto out;
        if (c->tx != NULL && c->tx->len >= NET_FLUSH_BYTES && push_ciphertext(c) != 0) {
            rc = FERRY_EINTERNAL;
            goto out;
        }
    }
    /* Records OpenSSL made on its own while reading (a ticket, an alert) go too. */
    rc = push_ciphertext(c) != 0 ? FERRY_EINTERNAL : 0;
out:
    /* Their bytes are in records now: the owners may reuse the buffers. */
    ext_finish(done, 0);
    return rc;
}

int ferry_conn_send_direct(struct ferry_conn *c, const void *p, size_t n)
{
    size_t max_queued = c->tx_window != 0 ? c->tx_window : SIZE_MAX;
    const uint8_t *b = p;
    int w, rc;

    if (c->closing)
        return FERRY_ECANCELED;
    /*
     * Straight to TLS only behind nothing: frames stay in order. Inside input
     * the connection writes after (as ferry_conn_flush is not called there).
     */
    while (n > 0 && c->ready && !c->in_process && !uv_is_closing((uv_handle_t *)&c->tcp) &&
           ferry_buf_used(&c->out) == 0 && c->ext_head == NULL &&
           c->queued + (c->tx != NULL ? c->tx->len : 0) < max_queued) {
        ERR_clear_error();
        w = SSL_write(c->ssl, b, (int)(n > NET_FLUSH_BYTES ? NET_FLUSH_BYTES : n));
        if (w <= 0 || (c->tx != NULL && c->tx->len >= NET_FLUSH_BYTES && push_ciphertext(c) != 0)) {
            /* Part of a frame may be out: the stream cannot go on. */
            net_conn_abort(c, -EPIPE);
            return FERRY_ECANCELED;
        }
        b += w;
        n -= (size_t)w;
    }
    if (n == 0)
        return 0;
    if ((rc = ferry_buf_append(&c->out, b, n)) != 0 && b != p) {
        net_conn_abort(c, rc); /* the rest of a frame begun cannot wait for room */
        return FERRY_ECANCELED;
    }
    return rc;
}

size_t ferry_conn_pending(const struct ferry_conn *c)
{
    return ferry_buf_used(&c->out) + c->ext_bytes + c->queued;
}

int ferry_conn_send_raw(struct ferry_conn *c, const void *p, size_t n)
{
    int rc;

    if (c->closing)
        return FERRY_ECANCELED;
    if ((rc = ferry_buf_append(&c->out, p, n)) != 0)
        return rc;
    if (ferry_buf_used(&c->out) >= FERRY_NET_COALESCE)
        return ferry_conn_flush(c);
    return 0;
}

int ferry_conn_reserve(struct ferry_conn *c, size_t n, uint8_t **p)
{
    int rc;

    *p = NULL;
    if (c->closing)
        return FERRY_ECANCELED;
    if ((rc = ferry_buf_reserve(&c->out, n)) != 0)
        return rc;
    *p = ferry_buf_tail(&c->out);
    return 0;
}

void ferry_conn_commit(struct ferry_conn *c, size_t n)
{
    ferry_buf_grow(&c->out, n);
}

size_t ferry_conn_queued(const struct ferry_conn *c)
{
    return ferry_buf_used(&c->out) + c->ext_bytes;
}

int ferry_conn_send_ext(struct ferry_conn *c, const void *hdr, size_t hdrlen, const void *buf,
                        size_t len, ferry_conn_ext_done_fn done, void *arg)
{
    struct net_ext *e;
    int rc;

    if (c->closing)
        return FERRY_ECANCELED;
    if (len > FERRY_NET_OUT_MAX - c->ext_bytes)
        return FERRY_ETOOBIG;
    if ((e = ferry_calloc(1, sizeof(*e))) == NULL)
        return -ENOMEM;
    if (hdrlen > 0 && (rc = ferry_buf_append(&c->out, hdr, hdrlen)) != 0) {
        ferry_free(e);
        return rc;
    }
    e->p = buf;
    e->len = len;
    e->done = done;
    e->arg = arg;
    e->mark = c->out_taken + ferry_buf_used(&c->out);
    if (c->ext_tail != NULL)
        c->ext_tail->next = e;
    else
        c->ext_head = e;
    c->ext_tail = e;
    c->ext_bytes += len;
    /* Queued: from here on done runs, so a failed flush closes rather than fails the call. */
    if (ferry_conn_queued(c) >= FERRY_NET_COALESCE && (rc = ferry_conn_flush(c)) != 0)
        net_conn_fail(c, rc);
    return 0;
}

ssize_t ferry_frame_cmd(uint8_t *out, size_t cap, int32_t type, json_t *body)
{
    ssize_t n;

    if (cap < FERRY_FRAME_HDR_LEN)
        return FERRY_ETOOBIG;
    if (!json_object_get(body, "id")) {
        char id[37];
        ferry_uuid_new(id);
        json_object_set_new(body, "id", json_string(id));
    }
    if (!json_object_get(body, "version"))
        json_object_set_new(body, "version", json_string(FERRY_MSG_VERSION));
    n = ferry_cmd_encode(type, body, out + FERRY_FRAME_HDR_LEN,
                         cap - FERRY_FRAME_HDR_LEN < FERRY_FRAME_PAYLOAD_MAX
                             ? cap - FERRY_FRAME_HDR_LEN
                             : FERRY_FRAME_PAYLOAD_MAX);
    if (n < 0)
        return n;
    ferry_frame_header_encode(out, FERRY_FRAME_COMMAND, (uint32_t)n);
    return n + FERRY_FRAME_HDR_LEN;
}

int ferry_conn_send_cmd(struct ferry_conn *c, int32_t type, json_t *body)
{
    uint8_t frame[FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX];
    ssize_t n = ferry_frame_cmd(frame, sizeof(frame), type, body);

    json_decref(body);
    if (n < 0)
        return (int)n;
    return ferry_conn_send_raw(c, frame, (size_t)n);
}

void ferry_conn_close(struct ferry_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->tx_window = 0; /* what is queued goes before the close_notify */
    if (c->ready) {
        ferry_conn_flush(c);
        SSL_shutdown(c->ssl);
        push_ciphertext(c);
    }
    if (c->queued == 0)
        close_handles(c);
}

void ferry_conn_release(struct ferry_conn *c)
{
    if (c == NULL || c->released)
        return;
    c->released = 1;
    if (c->gone) {
        ferry_free(c);
        return;
    }
    ferry_conn_close(c);
}

void ferry_conn_pause(struct ferry_conn *c)
{
    if (c->paused || c->gone)
        return;
    c->paused = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

/*
 * OpenSSL reads the ciphertext straight from the socket read buffer: a
 * memory BIO cost a copy of every byte received (and a memset of its
 * buffer as it grew). What a record leaves unread stays in rx for the next
 * SSL_read; reading from the socket is stopped meanwhile (paused, blocked
 * or closing), and alloc_cb keeps it should a read come first.
 */
static int rx_read(BIO *b, char *out, int len)
{
    struct ferry_conn *c = BIO_get_data(b);
    size_t n = c->rx_len - c->rx_off;

    BIO_clear_retry_flags(b);
    if (n == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    if (len < 0)
        return -1;
    if ((size_t)len < n)
        n = (size_t)len;
    memcpy(out, c->rx + c->rx_off, n);
    c->rx_off += n;
    if (c->rx_off == c->rx_len)
        c->rx_off = c->rx_len = 0;
    return (int)n;
}

static long rx_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct ferry_conn *c = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_PENDING:
        return (long)(c->rx_len - c->rx_off);
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int rx_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *rx_method;
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static void rx_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ferry socket read");

    if (m == NULL || BIO_meth_set_read(m, rx_read) != 1 || BIO_meth_set_ctrl(m, rx_ctrl) != 1 ||
        BIO_meth_set_create(m, rx_create) != 1) {
        BIO_meth_free(m);
        return;
    }
    rx_method = m;
}

static BIO *rx_bio_new(struct ferry_conn *c)
{
    BIO *b;

    pthread_once(&rx_once, rx_method_init);
    if (rx_method == NULL || (b = BIO_new(rx_method)) == NULL)
        return NULL;
    BIO_set_data(b, c);
    return b;
}

/*
 * The write side: OpenSSL lays each record straight into the buffer of the
 * next uv_write (c->tx). A memory BIO cost a memset and a copy into it, and
 * a second copy out of it, of every byte sent.
 */
static int tx_write(BIO *b, const char *in, int len)
{
    struct ferry_conn *c = BIO_get_data(b);
    struct write_req *w = c->tx, *nw;
    size_t need, cap;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    need = (w != NULL ? w->len : 0) + (size_t)len;
    if (w == NULL && c->spare != NULL && need <= NET_TX_CAP) {
        c->tx = w = c->spare;
        c->spare = w->next;
        c->nspare--;
        w->len = 0;
    } else if (w == NULL || w->cap < need) {
        /* Records of one flush fit NET_TX_CAP: growing is for the rare larger burst. */
        cap = need > NET_TX_CAP ? need + need / 2 : NET_TX_CAP;
        if ((nw = ferry_realloc(w, sizeof(*nw) + cap)) == NULL)
            return -1;
        if (w == NULL)
            nw->len = 0;
        nw->cap = cap;
        c->tx = w = nw;
    }
    memcpy(w->data + w->len, in, (size_t)len);
    w->len += (size_t)len;
    return len;
}

static long tx_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct ferry_conn *c = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_WPENDING:
        return c->tx != NULL ? (long)c->tx->len : 0;
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static BIO_METHOD *tx_method;
static pthread_once_t tx_once = PTHREAD_ONCE_INIT;

static void tx_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ferry socket write");

    if (m == NULL || BIO_meth_set_write(m, tx_write) != 1 || BIO_meth_set_ctrl(m, tx_ctrl) != 1 ||
        BIO_meth_set_create(m, rx_create) != 1) {
        BIO_meth_free(m);
        return;
    }
    tx_method = m;
}

static BIO *tx_bio_new(struct ferry_conn *c)
{
    BIO *b;

    pthread_once(&tx_once, tx_method_init);
    if (tx_method == NULL || (b = BIO_new(tx_method)) == NULL)
        return NULL;
    BIO_set_data(b, c);
    return b;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct ferry_conn *c = h->data;

    (void)hint;
    if (c->rx_off > 0) {
        memmove(c->rx, c->rx + c->rx_off, c->rx_len - c->rx_off);
        c->rx_len -= c->rx_off;
        c->rx_off = 0;
    }
    *b = uv_buf_init((char *)c->rx + c->rx_len, (unsigned)(FERRY_NET_RX_CAP - c->rx_len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct ferry_conn *c = s->data;

    if (n < 0) {
        net_conn_fail(c, n == UV_EOF ? -ECONNRESET : (int)n);
        return;
    }
    if (n == 0)
        return;
    c->last_rx_ms = ferry_now_ms();
    c->wire_rx += (uint64_t)n;
    (void)b; /* alloc_cb gave the tail of rx */
    c->rx_len += (size_t)n;
    process_input(c);
}

void ferry_conn_resume(struct ferry_conn *c)
{
    if (!c->paused || c->closing || c->gone)
        return;
    c->paused = 0;
    if (c->out_blocked)
        return; /* write_done resumes once the peer has read its replies */
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    /* Records already inside OpenSSL wake no poll: drain them now. */
    process_input(c);
}

/* Parses every complete frame in c->in; returns < 0 to close. */
static int dispatch_frames(struct ferry_conn *c)
{
    struct ferry_frame f;
    ssize_t n;
    int rc;

    while (!c->paused && !c->closing && !c->out_blocked) {
        /*
         * R-PIPE-3: stop taking requests while the peer leaves replies unread.
         * The dialing side keeps reading the replies to what it sends.
         */
        if (c->accepted && ferry_conn_pending(c) > FERRY_NET_OUT_BLOCK) {
            c->out_blocked = 1;
            uv_read_stop((uv_stream_t *)&c->tcp);
            return 0;
        }
        /* R-FILE-1: an accepting side takes no file frame; a dialing one may. */
        n = ferry_frame_parse_upto(ferry_buf_peek(&c->in), ferry_buf_used(&c->in), c->max_type, &f);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (c->ops->on_fault != NULL)
                c->ops->on_fault(c, (int)n);
            return (int)n;
        }
        rc = c->ops->on_frame(c, &f);
        if (rc == 1)
            return 0; /* the application paused and keeps this frame for later */
        ferry_buf_consume(&c->in, (size_t)n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void process_input(struct ferry_conn *c)
{
    int n, rc = 0, err, was_paused;

    if (c->in_process)
        return;
    c->in_process = 1;
again:
    if (!c->ready) {
        ERR_clear_error();
        n = SSL_do_handshake(c->ssl);
        push_ciphertext(c);
        if (n != 1) {
            err = SSL_get_error(c->ssl, n);
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
                rc = FERRY_EAUTH;
            goto out;
        }
        c->ready = 1;
        if ((rc = ferry_tls_peer_id(c->ssl, c->peer_id)) != 0)
            goto out;
        /* R-TLS-3: a pinned ID that differs stops us before any application byte.
         */
        if (c->pin[0] != '\0' && strcmp(c->pin, c->peer_id) != 0) {
            rc = FERRY_EPIN;
            goto out;
        }
        if ((rc = c->ops->on_ready(c)) != 0)
            goto out;
    }
    /* Read until OpenSSL wants more ciphertext, parsing as we go. */
    while (!c->paused && !c->closing && !c->out_blocked) {
        size_t room;

        if ((rc = dispatch_frames(c)) != 0 || c->paused || c->closing || c->out_blocked)
            break;
        if ((rc = ferry_buf_reserve(&c->in, FERRY_NET_READ_CHUNK)) != 0)
            break;
        room = c->in.cap - c->in.len;
        ERR_clear_error();
        n = SSL_read(c->ssl, ferry_buf_tail(&c->in), (int)(room > INT32_MAX ? INT32_MAX : room));
        if (n <= 0) {
            err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ)
                break;
            rc = err == SSL_ERROR_ZERO_RETURN ? FERRY_ECANCELED : FERRY_EPROTO;
            break;
        }
        ferry_buf_grow(&c->in, (size_t)n);
    }
    if (rc == 0 && c->ready && c->ops->on_input_end != NULL) {
        /*
         * The hook may resume a paused connection (a download finished):
         * frames already decrypted wake no poll, so read them now.
         */
        was_paused = c->paused;
        rc = c->ops->on_input_end(c);
        if (rc == 0 && was_paused && !c->paused && !c->closing && !c->out_blocked)
            goto again;
    }
out:
    c->in_process = 0;
    if (rc != 0) {
        ERR_clear_error();
        /* The peer's close_notify is an orderly end. */
        net_conn_fail(c, rc == FERRY_ECANCELED ? 0 : rc);
        return;
    }
    ferry_conn_flush(c);
}

static void tick_cb(uv_timer_t *t)
{
    struct ferry_conn *c = t->data;
    uint64_t now = ferry_now_ms();
    uint8_t hb[FERRY_FRAME_HDR_LEN];
    size_t n;

    /*
     * R-SESS-4: a silent peer is dropped; our own silence earns a heartbeat.
     * A close waits for the queued output to go, but a peer that reads
     * nothing would keep it (and its place) for ever: after the idle
     * timeout the output still queued is dropped with the connection.
     */
    if (now - c->last_rx_ms >= c->idle_ms) {
        if (c->err == 0 && !c->closing)
            c->err = FERRY_ETIMEDOUT;
        c->closing = 1;
        close_handles(c);
        return;
    }
    if (c->closing)
        return;
    if (c->queued == 0 && now - c->last_tx_ms >= 1000)
        spares_free(c);
    if (c->ready && now - c->last_tx_ms >= c->heartbeat_ms) {
        n = ferry_frame_header_encode(hb, FERRY_FRAME_HEARTBEAT, 0);
        ferry_conn_send_raw(c, hb, n);
        ferry_conn_flush(c);
    }
    if (c->ops->on_tick != NULL && c->ops->on_tick(c, now) < 0)
        ferry_conn_close(c);
}

struct ferry_conn *net_conn_new(uv_loop_t *loop, const struct ferry_conn_cfg *cfg, void *data)
{
    struct ferry_conn *c = ferry_calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->ops = cfg->ops;
    c->data = data;
    c->heartbeat_ms = cfg->heartbeat_ms;
    c->idle_ms = cfg->idle_ms;
    c->max_type = FERRY_FRAME_CHUNK;
    c->last_rx_ms = c->last_tx_ms = ferry_now_ms();
    ferry_buf_init(&c->in, FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX + FERRY_NET_READ_CHUNK);
    ferry_buf_init(&c->out, FERRY_NET_OUT_MAX);
    if (uv_tcp_init(loop, &c->tcp) != 0) {
        ferry_free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer); /* cannot fail */
    c->tcp.data = c;
    c->timer.data = c;
    c->refs = 2;
    uv_timer_start(&c->timer, tick_cb, 1000, 1000);
    return c;
}

int net_conn_start(struct ferry_conn *c, SSL_CTX *ctx, int server)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss), rc;

    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer_ip, sizeof(c->peer_ip));
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer_ip, sizeof(c->peer_ip));
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if ((c->rx = ferry_malloc(FERRY_NET_RX_CAP)) == NULL || (c->ssl = SSL_new(ctx)) == NULL ||
        (c->rbio = rx_bio_new(c)) == NULL || (c->wbio = tx_bio_new(c)) == NULL) {
        BIO_free(c->rbio);
        c->rbio = NULL;
        return -ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    if (server) {
        c->accepted = 1;
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
        c->max_type = FERRY_FRAME_FILE;
    }
    if ((rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)) != 0)
        return rc;
    /* The client speaks first: its hello goes out now. */
    if (!server)
        process_input(c);
    return 0;
}

const char *ferry_conn_peer_id(const struct ferry_conn *c)
{
    return c->ready ? c->peer_id : "";
}

const char *ferry_conn_peer_ip(const struct ferry_conn *c)
{
    return c->peer_ip;
}

void *ferry_conn_data(const struct ferry_conn *c)
{
    return c->data;
}

void ferry_conn_set_data(struct ferry_conn *c, void *data)
{
    c->data = data;
}

int ferry_conn_is_ready(const struct ferry_conn *c)
{
    return c->ready;
}

int ferry_conn_is_closing(const struct ferry_conn *c)
{
    return c->closing;
}

int ferry_conn_is_paused(const struct ferry_conn *c)
{
    return c->paused;
}

int ferry_conn_in_input(const struct ferry_conn *c)
{
    return c->in_process;
}

void ferry_conn_touch(struct ferry_conn *c, uint64_t now_ms)
{
    c->last_rx_ms = now_ms;
}

int ferry_conn_error(const struct ferry_conn *c)
{
    return c->err;
}

void ferry_conn_wire_bytes(const struct ferry_conn *c, uint64_t *sent, uint64_t *received)
{
    *sent = c->wire_tx;
    *received = c->wire_rx;
}
