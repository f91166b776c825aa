/*
 * The one-shot client of the command-line tools: one dialed connection
 * (conn.c, dial.c) on a private libuv loop that runs only while the caller
 * pumps. TLS, framing and the socket are the connection's; what is here is
 * the blocking face the commands use: frames are handed over into a bounded
 * queue the caller takes them from, and output waits in the connection
 * until a pump moves it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "conn_int.h"

/*
 * Whole frames handed over by the connection and not yet taken by the
 * caller. Room for several largest frames; once it is full the connection
 * stops reading, so a caller that does not read holds the server back
 * (R-PIPE-3) instead of growing this.
 */
#define CLIENT_IN_MAX    (256 * 1024)
#define CLIENT_FRAME_MAX (FERRY_FRAME_HDR_LEN + FERRY_FRAME_PAYLOAD_MAX)
/*
 * Ciphertext handed to the socket ahead of it: the connection encrypts more
 * as the socket drains, so each byte is written shortly after it was
 * encrypted, while it is still in the cache. Encrypting a backlog of
 * megabytes at once and writing it later cost a cold copy of every byte
 * into the kernel, and fresh memory for the ciphertext.
 */
#define CLIENT_TX_WINDOW (512 * 1024)

struct ferry_client {
    uv_loop_t loop;
    uv_timer_t timer; /* the connect's and the pump's timeout */
    SSL_CTX *ctx;
    struct ferry_conn *conn;
    struct ferry_buf in; /* the queue: whole frames, framed again */
    size_t consumed;     /* bytes of the frame last returned, dropped on the next call */
    uint64_t arrived;    /* frames handed over so far, heartbeats included */
    uint64_t heartbeats; /* of which heartbeats */
    uint64_t last_rx_ms; /* the last whole frame (R-CLI-2), heartbeats included */
    uint64_t last_tx_ms; /* the last write that moved bytes to the socket */
    size_t last_pending; /* output not yet written, when last looked at */
    int fault;           /* the framing rule the server broke, once the queue is read */
    int ready;           /* the handshake finished and the pin matched */
    int closed;          /* the connection's on_close ran */
    int timer_fired;
    int loop_open;
    char server_id[FERRY_ID_LEN + 1];
};

static int client_ready(struct ferry_conn *conn)
{
    struct ferry_client *c = ferry_conn_data(conn);

    c->ready = 1;
    snprintf(c->server_id, sizeof(c->server_id), "%s", ferry_conn_peer_id(conn));
    c->last_rx_ms = c->last_tx_ms = ferry_now_ms();
    return 0;
}

/*
 * R-CLI-2: a sign of life is a whole frame, not a byte: a server that drips
 * the bytes of a frame it never finishes stays silent. Heartbeats are
 * counted and dropped here; every other frame joins the queue, or, when it
 * is full, stays in the connection, which stops reading until a pump finds
 * room again.
 */
static int client_frame(struct ferry_conn *conn, const struct ferry_frame *f)
{
    struct ferry_client *c = ferry_conn_data(conn);
    size_t hdr;

    if (f->type != FERRY_FRAME_HEARTBEAT) {
        if (ferry_buf_reserve(&c->in, FERRY_FRAME_HDR_LEN + f->payload_len) != 0) {
            ferry_conn_pause(conn);
            return 1;
        }
        hdr = ferry_frame_header_encode(ferry_buf_tail(&c->in), f->type, (uint32_t)f->payload_len);
        memcpy(ferry_buf_tail(&c->in) + hdr, f->payload, f->payload_len);
        ferry_buf_grow(&c->in, hdr + f->payload_len);
    } else {
        c->heartbeats++;
    }
    c->arrived++;
    c->last_rx_ms = ferry_now_ms();
    return 0;
}

static void client_fault(struct ferry_conn *conn, int rc)
{
    struct ferry_client *c = ferry_conn_data(conn);

    c->fault = rc;
}

static void client_closed(struct ferry_conn *conn)
{
    struct ferry_client *c = ferry_conn_data(conn);

    c->closed = 1; /* released by ferry_client_close() */
}

static const struct ferry_conn_ops client_ops = {.on_ready = client_ready,
                                                 .on_frame = client_frame,
                                                 .on_fault = client_fault,
                                                 .on_close = client_closed};

static void timer_cb(uv_timer_t *t)
{
    struct ferry_client *c = t->data;

    c->timer_fired = 1;
}

static void arm_timer(struct ferry_client *c, int timeout_ms)
{
    c->timer_fired = 0;
    if (timeout_ms > 0)
        uv_timer_start(&c->timer, timer_cb, (uint64_t)timeout_ms, 0);
}

/* The server closed the connection, or it broke. */
static int gone(const struct ferry_client *c)
{
    return c->closed || ferry_conn_is_closing(c->conn);
}

/*
 * Output that went to the socket since the last look is a write that moved
 * (R-CLI-2); then the socket is topped up from what is queued (the
 * connection goes on doing so as writes finish).
 */
static void move_output(struct ferry_client *c)
{
    if (gone(c))
        return;
    if (ferry_conn_pending(c->conn) < c->last_pending)
        c->last_tx_ms = ferry_now_ms();
    if (ferry_conn_flush(c->conn) != 0)
        net_conn_abort(c->conn, -EPIPE);
    c->last_pending = ferry_conn_pending(c->conn);
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
    struct ferry_conn_cfg cfg;
    struct ferry_client *c;
    int rc;

    if ((*cp = c = ferry_calloc(1, sizeof(*c))) == NULL)
        return -ENOMEM;
    ferry_buf_init(&c->in, CLIENT_IN_MAX);
    if (uv_loop_init(&c->loop) != 0) {
        rc = FERRY_EINTERNAL;
        goto out;
    }
    c->loop_open = 1;
    uv_timer_init(&c->loop, &c->timer); /* cannot fail */
    c->timer.data = c;
    if ((c->ctx = ferry_tls_ctx_new(id, 0)) == NULL) {
        rc = FERRY_EINTERNAL;
        goto out;
    }
    /*
     * The command keeps its own deadlines and sends its own heartbeats
     * (R-CLI-2, R-SESS-4), and the loop runs only while it pumps: the
     * connection's clock would judge a silence the command chose.
     */
    cfg = (struct ferry_conn_cfg){
        .ctx = c->ctx, .ops = &client_ops, .heartbeat_ms = UINT64_MAX, .idle_ms = UINT64_MAX};
    if ((rc = ferry_conn_dial(&c->loop, &cfg, src, host, port, pin, c, &c->conn)) != 0)
        goto out;
    net_conn_set_tx_window(c->conn, CLIENT_TX_WINDOW);
    arm_timer(c, timeout_ms);
    while (!c->ready && !gone(c) && !c->timer_fired)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_timer_stop(&c->timer);
    if (c->ready && !gone(c)) {
        rc = 0;
    } else if (!gone(c)) {
        rc = FERRY_ETIMEDOUT;
    } else {
        /*
         * R-TLS-3: a pinned ID that differs stopped the connection before any
         * application byte; the ID it presented is kept for the message.
         * A socket closed mid-handshake is a lost connection, worth retrying.
         */
        rc = ferry_conn_error(c->conn);
        if (rc == 0)
            rc = -ECONNRESET;
        if (rc == FERRY_EPIN)
            snprintf(c->server_id, sizeof(c->server_id), "%s", ferry_conn_peer_id(c->conn));
    }
out:
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
    if (c->conn != NULL) {
        /* What was not written is dropped, as closing a socket drops it. */
        net_conn_abort(c->conn, FERRY_ECANCELED);
        ferry_conn_release(c->conn);
    }
    if (c->loop_open) {
        uv_close((uv_handle_t *)&c->timer, NULL);
        /* The handles close, and a name lookup still running ends. */
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
    }
    SSL_CTX_free(c->ctx);
    ferry_buf_cleanup(&c->in);
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
    return gone(c);
}

int ferry_client_fd(const struct ferry_client *c)
{
    return uv_backend_fd(&c->loop);
}

uint64_t ferry_client_heartbeats(const struct ferry_client *c)
{
    return c->heartbeats;
}

/*
 * Room for n bytes at the end of the output. A connection that is gone
 * takes nothing, but the caller learns of it from the pump, as it learnt of
 * a broken socket from its write: the send itself succeeds.
 */
static int reserve(struct ferry_client *c, size_t n, uint8_t **p)
{
    if (gone(c)) {
        *p = NULL;
        return 0;
    }
    return ferry_conn_reserve(c->conn, n, p);
}

int ferry_client_send_raw(struct ferry_client *c, const void *p, size_t n)
{
    uint8_t *w;
    int rc;

    if ((rc = reserve(c, n, &w)) != 0 || w == NULL)
        return rc;
    memcpy(w, p, n);
    ferry_conn_commit(c->conn, n);
    return 0;
}

int ferry_client_send_heartbeat(struct ferry_client *c)
{
    uint8_t hb[FERRY_FRAME_HDR_LEN];

    return ferry_client_send_raw(c, hb, ferry_frame_header_encode(hb, FERRY_FRAME_HEARTBEAT, 0));
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
    return ferry_client_send_raw(c, frame, (size_t)n);
}

int ferry_client_send_data(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                           uint64_t offset, const uint8_t *p, size_t len)
{
    size_t need = ferry_data_frames_len(len);
    uint8_t *w;
    int rc;

    if (len == 0)
        return 0;
    if ((rc = reserve(c, need, &w)) != 0 || w == NULL)
        return rc;
    ferry_data_frames_encode(w, tid, offset, p, len);
    ferry_conn_commit(c->conn, need);
    return 0;
}

/*
 * Lays one chunk out as chunk frames at the end of the connection's output,
 * its bytes taken from p, or when p is NULL read from fd at foff straight
 * into place (one copy fewer than reading into a buffer first). Nothing is
 * queued unless every byte arrived: a short read is FERRY_ECANCELED (the
 * file shrank), a failed one -errno.
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
    if ((rc = reserve(c, need, &w)) != 0 || w == NULL)
        return rc;
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
    ferry_conn_commit(c->conn, need);
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
    ferry_conn_wire_bytes(c->conn, sent, received);
    return 0;
}

size_t ferry_client_pending(const struct ferry_client *c)
{
    return ferry_conn_pending(c->conn);
}

/* Drops the frame last returned, so that its room counts again. */
static void drop_consumed(struct ferry_client *c)
{
    if (c->consumed > 0) {
        ferry_buf_consume(&c->in, c->consumed);
        c->consumed = 0;
    }
}

int ferry_client_pump(struct ferry_client *c, int timeout_ms, int flush_all)
{
    uint64_t arrived = c->arrived;
    uv_run_mode mode = UV_RUN_NOWAIT;
    int had_out, rc;

    drop_consumed(c);
    if (gone(c))
        return c->fault != 0 ? c->fault : -ECONNRESET;
    /* Room for the largest frame again: let the connection deliver what it held. */
    if (ferry_conn_is_paused(c->conn) && c->in.limit - ferry_buf_used(&c->in) >= CLIENT_FRAME_MAX)
        ferry_conn_resume(c->conn);
    /* Encrypts the first of what is queued and hands it to the socket. */
    c->last_pending = 0;
    move_output(c);
    had_out = ferry_conn_pending(c->conn) > 0;
    arm_timer(c, timeout_ms);
    for (;;) {
        /* The first turn only collects what is ready: a write done, bytes that came. */
        uv_run(&c->loop, mode);
        move_output(c);
        if (c->arrived != arrived && !flush_all) {
            rc = 0;
            break;
        }
        if (gone(c)) {
            /* Frames that came with the close are taken before the close is. */
            rc = c->arrived != arrived ? 0 : c->fault != 0 ? c->fault : -ECONNRESET;
            break;
        }
        /* Everything queued went out: progress, so return (input may wait). */
        if (ferry_conn_pending(c->conn) == 0 && (flush_all || had_out)) {
            rc = 0;
            break;
        }
        if (timeout_ms == 0 || c->timer_fired) {
            rc = flush_all ? FERRY_ETIMEDOUT : 0;
            break;
        }
        /* A full queue and nothing to write: only the caller can make progress. */
        if (ferry_conn_is_paused(c->conn) && ferry_conn_pending(c->conn) == 0) {
            rc = 0;
            break;
        }
        mode = UV_RUN_ONCE;
    }
    uv_timer_stop(&c->timer);
    return rc;
}

int ferry_client_next_frame(struct ferry_client *c, struct ferry_frame *f)
{
    ssize_t n;

    drop_consumed(c);
    n = ferry_frame_parse(ferry_buf_peek(&c->in), ferry_buf_used(&c->in), f);
    if (n < 0)
        return (int)n;
    if (n == 0)
        return c->fault; /* 0, or the stream broke a rule after the frames queued */
    c->consumed = (size_t)n;
    return 1;
}
