/* Client-side TLS connection driven by poll(2): one-shot commands need no loop. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ferry/net.h"

struct ferry_client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct ferry_buf in;
    struct ferry_buf out;
    uint64_t last_tx_ms; /* the last write that moved bytes to the socket */
    uint64_t last_rx_ms; /* the last whole frame taken out (R-CLI-2), heartbeats included */
    size_t consumed;     /* bytes of the frame last returned, dropped on the next call */
    int eof;
    char server_id[FERRY_ID_LEN + 1];
    uint64_t wire_tx; /* TLS bytes written to and read from the socket */
    uint64_t wire_rx;
};

static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;

    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return n == 0 ? FERRY_ETIMEDOUT : 0;
}

/* Binds fd to the numeric address src (port 0) before it connects. */
static int bind_source(int fd, int family, const char *src)
{
    struct addrinfo hints = {.ai_family = family,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_PASSIVE},
                    *res = NULL;
    int rc = 0;

    if (getaddrinfo(src, "0", &hints, &res) != 0)
        return FERRY_EUSAGE;
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0)
        rc = -errno;
    freeaddrinfo(res);
    return rc;
}

static int dial(const char *src, const char *host, const char *port, int timeout_ms, int *fdp)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    int fd = -1, rc, one = 1, soerr;
    socklen_t sl;

    *fdp = -1;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
        return FERRY_ENOTFOUND;
    rc = -ECONNREFUSED;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        if (src != NULL && (rc = bind_source(fd, ai->ai_family, src)) != 0)
            goto next;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            rc = -errno;
            goto next;
        }
        if ((rc = wait_fd(fd, POLLOUT, timeout_ms)) != 0)
            goto next;
        sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            rc = -(soerr ? soerr : errno);
            goto next;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        *fdp = fd;
        rc = 0;
        break;
    next:
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return rc;
}

/* Counts what the socket BIO moves: TLS records, handshake included. */
static long count_io(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                     size_t *processed)
{
    struct ferry_client *c = (struct ferry_client *)BIO_get_callback_arg(b);

    (void)argp;
    (void)len;
    (void)argi;
    (void)argl;
    if (c != NULL && ret > 0 && processed != NULL) {
        if (oper == (BIO_CB_READ | BIO_CB_RETURN))
            c->wire_rx += *processed;
        else if (oper == (BIO_CB_WRITE | BIO_CB_RETURN))
            c->wire_tx += *processed;
    }
    return ret;
}

/* Bytes of TLS records written into the buffer BIO, not yet to the socket. */
static size_t bio_pending(const struct ferry_client *c)
{
    return BIO_wpending(SSL_get_wbio(c->ssl));
}

/*
 * One socket BIO reads; writes go through a buffer BIO in front of it, so
 * 16 KiB TLS records reach the socket FERRY_CLIENT_WBUF at a time: a quarter
 * of the write(2) calls and of the TCP segments, for one extra copy. The
 * socket BIO counts the wire bytes both ways.
 */
static int set_bios(struct ferry_client *c)
{
    BIO *sock = BIO_new_socket(c->fd, BIO_NOCLOSE), *buf = BIO_new(BIO_f_buffer());
    int rc = FERRY_EINTERNAL;

    if (sock == NULL || buf == NULL || BIO_set_write_buffer_size(buf, FERRY_CLIENT_WBUF) != 1 ||
        BIO_up_ref(sock) != 1)
        goto out;
    c->wire_tx = c->wire_rx = 0;
    BIO_set_callback_ex(sock, count_io);
    BIO_set_callback_arg(sock, (char *)c);
    BIO_push(buf, sock);
    /* The SSL owns both: one reference to sock as rbio, one through buf's chain. */
    SSL_set_bio(c->ssl, sock, buf);
    sock = buf = NULL;
    rc = 0;
out:
    BIO_free(buf);
    BIO_free(sock);
    return rc;
}

int ferry_client_connect(struct ferry_client **cp, const char *host, const char *port,
                         const struct ferry_identity *id, const char *pin, int timeout_ms)
{
    return ferry_client_connect_from(cp, NULL, host, port, id, pin, timeout_ms);
}

int ferry_client_connect_from(struct ferry_client **cp, const char *src, const char *host,
                              const char *port, const struct ferry_identity *id, const char *pin,
                              int timeout_ms)
{
    uint64_t deadline = ferry_now_ms() + (uint64_t)timeout_ms;
    struct ferry_client *c;
    int rc, n, err;

    if ((*cp = c = ferry_calloc(1, sizeof(*c))) == NULL)
        return -ENOMEM;
    c->fd = -1;
    ferry_buf_init(&c->in, FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX + FERRY_NET_READ_CHUNK);
    ferry_buf_init(&c->out, FERRY_NET_OUT_MAX);
    if ((rc = dial(src, host, port, timeout_ms, &c->fd)) != 0)
        goto out;
    if ((c->ctx = ferry_tls_ctx_new(id, 0)) == NULL || (c->ssl = SSL_new(c->ctx)) == NULL ||
        (rc = set_bios(c)) != 0) {
        rc = FERRY_EINTERNAL;
        goto out;
    }
    /* Read whole socket buffers, not a header then a body per 16 KiB record. */
    SSL_set_read_ahead(c->ssl, 1);
    SSL_set_default_read_buffer_len(c->ssl, 256 * 1024);
    for (;;) {
        uint64_t now = ferry_now_ms();

        ERR_clear_error(); /* see write_some */
        n = SSL_connect(c->ssl);
        if (n == 1)
            break;
        err = SSL_get_error(c->ssl, n);
        if ((err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) || now >= deadline) {
            /*
             * A socket closed mid-handshake (a server that died or dropped
             * us) is a lost connection, worth retrying; an alert is a
             * refusal. OpenSSL 3 reports a clean EOF there as an SSL error.
             */
            if (now >= deadline)
                rc = FERRY_ETIMEDOUT;
            else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN ||
                     (err == SSL_ERROR_SSL &&
                      ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING))
                rc = -ECONNRESET;
            else
                rc = FERRY_EAUTH;
            ERR_clear_error();
            goto out;
        }
        if ((rc = wait_fd(c->fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                          (int)(deadline - now))) != 0)
            goto out;
    }
    if ((rc = ferry_tls_peer_id(c->ssl, c->server_id)) != 0)
        goto out;
    /* R-TLS-3: a pinned ID that differs stops us before any application byte. */
    if (pin != NULL && strcmp(pin, c->server_id) != 0) {
        rc = FERRY_EPIN;
        goto out;
    }
    c->last_rx_ms = c->last_tx_ms = ferry_now_ms();
out:
    ERR_clear_error();
    if (rc != 0 && rc != FERRY_EPIN)
        ferry_client_close(cp);
    return rc;
}

void ferry_client_close(struct ferry_client **cp)
{
    struct ferry_client *c = *cp;

    if (c == NULL)
        return;
    *cp = NULL;
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    if (c->ctx != NULL)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    ferry_buf_cleanup(&c->in);
    ferry_buf_cleanup(&c->out);
    ferry_free(c);
}

const char *ferry_client_server_id(const struct ferry_client *c)
{
    return c->server_id;
}

uint64_t ferry_client_last_rx_ms(const struct ferry_client *c)
{
    return c->last_rx_ms;
}

uint64_t ferry_client_last_tx_ms(const struct ferry_client *c)
{
    return c->last_tx_ms;
}

int ferry_client_eof(const struct ferry_client *c)
{
    return c->eof;
}

int ferry_client_fd(const struct ferry_client *c)
{
    return c->fd;
}

int ferry_client_send_raw(struct ferry_client *c, const void *p, size_t n)
{
    return ferry_buf_append(&c->out, p, n);
}

int ferry_client_send_heartbeat(struct ferry_client *c)
{
    uint8_t hb[FERRY_FRAME_HDR_LEN];

    return ferry_buf_append(&c->out, hb, ferry_frame_header_encode(hb, FERRY_FRAME_HEARTBEAT, 0));
}

void ferry_client_input(struct ferry_client *c, const uint8_t **p, size_t *n)
{
    if (c->consumed > 0) {
        ferry_buf_consume(&c->in, c->consumed);
        c->consumed = 0;
    }
    *p = ferry_buf_peek(&c->in);
    *n = ferry_buf_used(&c->in);
}

void ferry_client_input_drop(struct ferry_client *c, size_t n)
{
    ferry_buf_consume(&c->in, n);
}

int ferry_client_send_cmd(struct ferry_client *c, int32_t type, json_t *body)
{
    uint8_t frame[FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX];
    ssize_t n;

    /* json_pack gives NULL for a string that is not UTF-8: the caller's error, not the link's. */
    if (body == NULL)
        return FERRY_EUSAGE;
    n = ferry_frame_cmd(frame, sizeof(frame), type, body);

    json_decref(body);
    if (n < 0)
        return (int)n;
    return ferry_buf_append(&c->out, frame, (size_t)n);
}

int ferry_client_send_data(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                           uint64_t offset, const uint8_t *p, size_t len)
{
    size_t frames = (len + FERRY_DATA_MAX - 1) / FERRY_DATA_MAX, need, chunk;
    uint8_t *w;
    int rc;

    if (len == 0)
        return 0;
    need = len + frames * (FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN);
    if ((rc = ferry_buf_reserve(&c->out, need)) != 0)
        return rc;
    w = ferry_buf_tail(&c->out);
    while (len > 0) {
        chunk = len > FERRY_DATA_MAX ? FERRY_DATA_MAX : len;
        ferry_frame_header_encode(w, FERRY_FRAME_DATA, (uint32_t)(FERRY_DATA_HDR_LEN + chunk));
        ferry_data_header_encode(w + FERRY_FRAME_HDR_LEN, tid, offset);
        memcpy(w + FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN, p, chunk);
        w += FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN + chunk;
        p += chunk;
        offset += chunk;
        len -= chunk;
    }
    ferry_buf_grow(&c->out, need);
    return 0;
}

/*
 * Lays one chunk out as chunk frames in the output buffer, its bytes taken
 * from p, or when p is NULL read from fd at foff straight into place (one
 * copy fewer than reading into a buffer first). Nothing is queued unless
 * every byte arrived: a short read is FERRY_ECANCELED (the file shrank), a
 * failed one -errno.
 */
static int queue_chunk(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                       uint32_t index, const uint8_t *p, int fd, uint64_t foff, size_t len)
{
    size_t frames = (len + FERRY_DATA_MAX - 1) / FERRY_DATA_MAX, need, piece, left = len, k = 0;
    struct iovec iov[FERRY_CLIENT_CHUNK_IOV];
    uint32_t offset = 0;
    uint8_t *w;
    ssize_t n;
    int rc;

    if (len == 0 || len > UINT32_MAX || (p == NULL && frames > FERRY_CLIENT_CHUNK_IOV))
        return FERRY_EUSAGE;
    need = len + frames * (FERRY_FRAME_HDR_LEN + FERRY_CHUNK_HDR_LEN);
    if ((rc = ferry_buf_reserve(&c->out, need)) != 0)
        return rc;
    w = ferry_buf_tail(&c->out);
    while (left > 0) {
        piece = left > FERRY_DATA_MAX ? FERRY_DATA_MAX : left;
        ferry_frame_header_encode(w, FERRY_FRAME_CHUNK, (uint32_t)(FERRY_CHUNK_HDR_LEN + piece));
        ferry_chunk_frame_header_encode(w + FERRY_FRAME_HDR_LEN, tid, index, offset);
        w += FERRY_FRAME_HDR_LEN + FERRY_CHUNK_HDR_LEN;
        if (p != NULL) {
            memcpy(w, p, piece);
            p += piece;
        } else {
            iov[k++] = (struct iovec){.iov_base = w, .iov_len = piece};
        }
        w += piece;
        offset += (uint32_t)piece;
        left -= piece;
    }
    /* One preadv fills every frame's bytes in place: one call per chunk. */
    if (p == NULL) {
        do {
            n = preadv(fd, iov, (int)k, (off_t)foff);
        } while (n < 0 && errno == EINTR);
        if (n < 0)
            return -errno;
        if ((size_t)n != len)
            return FERRY_ECANCELED;
    }
    ferry_buf_grow(&c->out, need);
    return 0;
}

int ferry_client_send_chunk(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                            uint32_t index, const uint8_t *p, size_t len)
{
    if (p == NULL)
        return FERRY_EUSAGE;
    return queue_chunk(c, tid, index, p, -1, 0, len);
}

int ferry_client_send_chunk_fd(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                               uint32_t index, int fd, uint64_t off, size_t len)
{
    if (fd < 0)
        return FERRY_EUSAGE;
    return queue_chunk(c, tid, index, NULL, fd, off, len);
}

int ferry_client_wire_bytes(const struct ferry_client *c, uint64_t *sent, uint64_t *received)
{
    *sent = c->wire_tx;
    *received = c->wire_rx;
    return 0;
}

size_t ferry_client_pending(const struct ferry_client *c)
{
    return ferry_buf_used(&c->out) + (c->ssl != NULL ? bio_pending(c) : 0);
}

/* Writes as much queued output as the socket takes; 1 if it would block. */
static int write_some(struct ferry_client *c)
{
    size_t used;
    int n, err;

    while ((used = ferry_buf_used(&c->out)) > 0) {
        /*
         * OpenSSL's error queue is per thread, not per connection: a stale
         * entry left by another connection would make SSL_get_error report
         * a plain WANT_READ as a fatal error on this one.
         */
        ERR_clear_error();
        n = SSL_write(c->ssl, ferry_buf_peek(&c->out), (int)(used > 1048576 ? 1048576 : used));
        if (n <= 0) {
            err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
                return 1;
            return -EPIPE;
        }
        ferry_buf_consume(&c->out, (size_t)n);
        c->last_tx_ms = ferry_now_ms();
    }
    /* All records made: push the buffer BIO's tail to the socket. */
    if (bio_pending(c) > 0) {
        ERR_clear_error();
        if (BIO_flush(SSL_get_wbio(c->ssl)) != 1)
            return BIO_should_retry(SSL_get_wbio(c->ssl)) ? 1 : -EPIPE;
    }
    return 0;
}

/* Reads until OpenSSL wants more bytes or the input buffer is full. */
static int read_some(struct ferry_client *c)
{
    size_t room;
    int n, err, got = 0;

    for (;;) {
        if (ferry_buf_reserve(&c->in, FERRY_NET_READ_CHUNK) != 0)
            return got; /* full: the caller must take frames first */
        room = c->in.cap - c->in.len;
        ERR_clear_error(); /* see write_some */
        n = SSL_read(c->ssl, ferry_buf_tail(&c->in), (int)(room > INT32_MAX ? INT32_MAX : room));
        if (n <= 0) {
            err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
                return got;
            c->eof = 1;
            return got ? got : -ECONNRESET;
        }
        ferry_buf_grow(&c->in, (size_t)n);
        got = 1;
    }
}

int ferry_client_pump(struct ferry_client *c, int timeout_ms, int flush_all)
{
    uint64_t deadline = ferry_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    int had_out = ferry_client_pending(c) > 0;
    struct pollfd p;
    int rc, got, n, wait;

    for (;;) {
        uint64_t now;

        if (c->eof)
            return -ECONNRESET;
        if ((rc = write_some(c)) < 0)
            return rc;
        if ((got = read_some(c)) < 0)
            return got;
        if (got > 0 && !flush_all)
            return 0;
        /* Everything queued went out: progress, so return (input may wait). */
        if (ferry_client_pending(c) == 0 && (flush_all || got > 0 || had_out))
            return 0;
        /* Records buffered inside OpenSSL wake no poll: only wait when empty. */
        if (SSL_pending(c->ssl) > 0 && c->in.limit - ferry_buf_used(&c->in) > 0)
            continue;
        p = (struct pollfd){.fd = c->fd};
        /* With no room for input, waiting for it would spin: wait to write only. */
        if (c->in.limit - ferry_buf_used(&c->in) >= FERRY_NET_READ_CHUNK)
            p.events |= POLLIN;
        if (ferry_client_pending(c) > 0)
            p.events |= POLLOUT;
        now = ferry_now_ms();
        if (timeout_ms >= 0 && now >= deadline)
            return flush_all ? FERRY_ETIMEDOUT : 0;
        if (p.events == 0)
            return 0; /* the caller must take frames before anything can move */
        wait = timeout_ms < 0 ? -1 : (int)(deadline - now);
        n = poll(&p, 1, wait);
        if (n < 0 && errno != EINTR)
            return -errno;
        /* A signal: let the caller look at why (Ctrl-C) before waiting on. */
        if (n < 0 && !flush_all)
            return 0;
        if (n == 0 && !flush_all)
            return 0;
    }
}

int ferry_client_next_frame(struct ferry_client *c, struct ferry_frame *f)
{
    ssize_t n;

    if (c->consumed > 0) {
        ferry_buf_consume(&c->in, c->consumed);
        c->consumed = 0;
    }
    for (;;) {
        n = ferry_frame_parse(ferry_buf_peek(&c->in), ferry_buf_used(&c->in), f);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return 0;
        /*
         * R-CLI-2: a sign of life is a whole frame, not a byte: a server that
         * drips the bytes of a frame it never finishes stays silent.
         */
        c->last_rx_ms = ferry_now_ms();
        if (f->type == FERRY_FRAME_HEARTBEAT) {
            ferry_buf_consume(&c->in, (size_t)n);
            continue;
        }
        c->consumed = (size_t)n;
        return 1;
    }
}
