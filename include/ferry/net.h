/*
 * Network: framed TLS 1.3 connections between two ferry processes.
 *
 * A connection (struct ferry_conn) lives on a libuv loop. Either side may
 * open it: a listener accepts connections, the dialer opens one to a
 * host:port. Both sides present their identity's certificate, learn the
 * peer's ID from the finished handshake (R-TLS-5) and, when the owner gives
 * one, refuse a peer whose ID differs from the pin before any application
 * byte moves (R-TLS-3). Frames, heartbeats and the idle timeout (R-SESS-4)
 * and backpressure are the same code for both sides.
 *
 * Ownership: the library allocates connections and listeners; they are
 * opaque. A connection's owner is its ops: they run on the loop thread, and
 * on_close is the last call made with the connection. The owner then frees
 * it with ferry_conn_release(), at once or later (a connection stays
 * readable, and every call on it a harmless no-op, until released). The SSL_CTX
 * passed in stays the caller's and must outlive the connections made with it.
 *
 * struct ferry_client, below, is the one-shot client of the command-line
 * tools: one dialed connection on a private loop that runs only while the
 * caller pumps, with a blocking face. It is opaque too.
 */
#ifndef FERRY_NET_H
#define FERRY_NET_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/wire.h"

/* Plaintext read scratch and socket read size. */
#define FERRY_NET_READ_CHUNK (64 * 1024)
/* R-FRAME-4: queued frames go out in writes of at least this many bytes. */
#define FERRY_NET_COALESCE (64 * 1024)
/* Outbound plaintext a connection may hold before producers must wait. */
#define FERRY_NET_OUT_HIGH (2 * 1024 * 1024)
#define FERRY_NET_OUT_LOW  (512 * 1024)
/* Hard cap on outbound plaintext: producers check the high mark first. */
#define FERRY_NET_OUT_MAX (8 * 1024 * 1024)
/*
 * R-PIPE-3: a peer that sends requests without reading the replies stops
 * being read once this much output waits for it, so a connection's memory
 * stays bounded.
 */
#define FERRY_NET_OUT_BLOCK (4 * 1024 * 1024)

struct ferry_conn;
struct ferry_listener;

struct ferry_conn_ops {
    /*
     * The TLS handshake finished (and the pin, if any, matched);
     * ferry_conn_peer_id() is set. Return < 0 to close (an acceptor that
     * pins its peers refuses an unknown ID here).
     */
    int (*on_ready)(struct ferry_conn *c);
    /*
     * One complete frame. Return < 0 to close the connection, or 1 after
     * ferry_conn_pause() to leave the frame unconsumed for redelivery.
     */
    int (*on_frame)(struct ferry_conn *c, const struct ferry_frame *f);
    /* The byte stream broke a framing rule (rc); the connection closes after. */
    void (*on_fault)(struct ferry_conn *c, int rc);
    /* Outbound bytes fell under FERRY_NET_OUT_LOW. */
    void (*on_drain)(struct ferry_conn *c);
    /*
     * Optional: every frame read so far has been handled. Work that many
     * frames of one read share (a read transaction, one batch) runs here.
     * Return < 0 to close.
     */
    int (*on_input_end)(struct ferry_conn *c);
    /* A once-a-second tick, for deadlines. Return < 0 to close. */
    int (*on_tick)(struct ferry_conn *c, uint64_t now_ms);
    /*
     * The connection is gone (ferry_conn_error() says why); the last call.
     * Free what data points to, and release the connection.
     */
    void (*on_close)(struct ferry_conn *c);
};

/* What every connection of a listener or of one dial shares. */
struct ferry_conn_cfg {
    SSL_CTX *ctx; /* ferry_tls_ctx_new(); the caller's */
    const struct ferry_conn_ops *ops;
    uint64_t heartbeat_ms; /* R-SESS-4: our silence that earns a heartbeat */
    uint64_t idle_ms;      /* R-SESS-4: the peer's silence that closes */
};

/*
 * Dials host:port (resolved on the loop's thread pool) and starts the TLS
 * handshake as client. from: a numeric local address to bind first, or
 * NULL. pin: the ID the peer must present (R-TLS-3), or NULL to take any and
 * leave the decision to on_ready. data becomes ferry_conn_data(). The
 * connection is returned at once; every failure (resolution, connect,
 * handshake, pin) ends in on_close with ferry_conn_error() set, and on_ready
 * never runs for it. Returns < 0 only when nothing was started.
 */
int ferry_conn_dial(uv_loop_t *loop, const struct ferry_conn_cfg *cfg, const char *from,
                    const char *host, const char *port, const char *pin, void *data,
                    struct ferry_conn **out);

/*
 * Is told of each accepted connection, which has started its handshake.
 * Set the connection's data here; return < 0 to drop it (no on_close runs).
 */
typedef int (*ferry_accept_fn)(struct ferry_listener *l, struct ferry_conn *c);

/*
 * Listens on addr (a resolved address; port 0 picks one) with a backlog of
 * 511. Accepted connections use cfg. When a connection cannot be made
 * (memory), the socket is accepted and closed, so a full table does not
 * spin the loop.
 */
int ferry_listener_open(uv_loop_t *loop, const struct sockaddr *addr,
                        const struct ferry_conn_cfg *cfg, ferry_accept_fn on_accept, void *data,
                        struct ferry_listener **out);
/* The address it listens on. */
int ferry_listener_addr(const struct ferry_listener *l, struct sockaddr_storage *ss);
void *ferry_listener_data(const struct ferry_listener *l);
/* Calls fn for every connection it accepted whose socket is still open. */
void ferry_listener_each(struct ferry_listener *l, void (*fn)(struct ferry_conn *c, void *arg),
                         void *arg);
/* Stops listening; the connections it accepted go on, and stay on its list. */
void ferry_listener_stop(struct ferry_listener *l);
/*
 * Stops listening if it still does and frees the listener (once the loop
 * has closed its socket); its connections go on without it.
 */
void ferry_listener_free(struct ferry_listener *l);

/* Queues a command frame; takes the reference to body. */
int ferry_conn_send_cmd(struct ferry_conn *c, int32_t type, json_t *body);
/* Queues raw frame bytes (already framed). */
int ferry_conn_send_raw(struct ferry_conn *c, const void *p, size_t n);
/*
 * Sends raw frame bytes from the caller's memory without first copying
 * them into the output queue: when nothing is queued before them and the
 * connection is not inside its input, TLS encrypts straight from p; what
 * cannot go that way (or the window does not take now) is queued as by
 * ferry_conn_send_raw. p is the caller's again on return.
 */
int ferry_conn_send_direct(struct ferry_conn *c, const void *p, size_t n);
/*
 * Room for n bytes of frames at the end of the output, to be laid out in
 * place (one copy fewer than building them elsewhere): *p points at it.
 * FERRY_ETOOBIG past FERRY_NET_OUT_MAX, -ENOMEM, or FERRY_ECANCELED once
 * closing. Nothing is queued until ferry_conn_commit() says how many of
 * them were written.
 */
int ferry_conn_reserve(struct ferry_conn *c, size_t n, uint8_t **p);
void ferry_conn_commit(struct ferry_conn *c, size_t n);
/*
 * Told that an external buffer queued with ferry_conn_send_ext() is no
 * longer needed: status 0 once all its bytes were encrypted, or
 * FERRY_ECANCELED when the connection went with some still queued. It runs
 * on the loop thread, exactly once per queued buffer, possibly inside
 * ferry_conn_send_ext(), ferry_conn_flush() or any call that flushes, and
 * at the latest just before on_close; it must not release the connection.
 */
typedef void (*ferry_conn_ext_done_fn)(void *arg, int status);
/*
 * Queues hdrlen bytes of hdr (copied; may be 0) and then len bytes of buf
 * (not copied: encrypted straight from buf when their turn comes), in
 * order with every other frame queued. buf must stay unchanged until done
 * runs. Its bytes count as queued and pending like any others, under
 * their own cap of FERRY_NET_OUT_MAX. Returns 0 once queued (done will
 * run), or FERRY_ECANCELED once closing, FERRY_ETOOBIG, -ENOMEM (done will
 * not run).
 */
int ferry_conn_send_ext(struct ferry_conn *c, const void *hdr, size_t hdrlen, const void *buf,
                        size_t len, ferry_conn_ext_done_fn done, void *arg);
/* Plaintext queued but not yet given to TLS. */
size_t ferry_conn_queued(const struct ferry_conn *c);
/* Encrypts and hands queued bytes to the socket. */
int ferry_conn_flush(struct ferry_conn *c);
/* Outbound bytes not yet written to the socket. */
size_t ferry_conn_pending(const struct ferry_conn *c);
/* Stops or resumes delivery of frames (backpressure). */
void ferry_conn_pause(struct ferry_conn *c);
void ferry_conn_resume(struct ferry_conn *c);
/* Flushes what is queued, then closes. Safe to call more than once. */
void ferry_conn_close(struct ferry_conn *c);
/*
 * The owner is done with c: it is freed once closed (at once when on_close
 * has run; else it is closed, and freed after on_close).
 */
void ferry_conn_release(struct ferry_conn *c);

/* The peer's ID once ready (R-TLS-2), else "". */
const char *ferry_conn_peer_id(const struct ferry_conn *c);
/* The peer's numeric IP address, or "" when unknown. */
const char *ferry_conn_peer_ip(const struct ferry_conn *c);
void *ferry_conn_data(const struct ferry_conn *c);
void ferry_conn_set_data(struct ferry_conn *c, void *data);
/* The handshake finished; closing: ferry_conn_close() ran or the link broke. */
int ferry_conn_is_ready(const struct ferry_conn *c);
int ferry_conn_is_closing(const struct ferry_conn *c);
/* ferry_conn_pause() holds delivery. */
int ferry_conn_is_paused(const struct ferry_conn *c);
/* Frames are being delivered now (inside on_frame or on_input_end). */
int ferry_conn_in_input(const struct ferry_conn *c);
/*
 * Counts now as a sign of life from the peer (R-PAGE-3: a peer left unread
 * on purpose is not silent).
 */
void ferry_conn_touch(struct ferry_conn *c, uint64_t now_ms);
/* Why the connection closed: 0 for an orderly close, else a FERRY_E* or -errno. */
int ferry_conn_error(const struct ferry_conn *c);
/* TLS bytes the connection has carried so far, both ways. */
void ferry_conn_wire_bytes(const struct ferry_conn *c, uint64_t *sent, uint64_t *received);

/*
 * A function run before ciphertext is handed to any socket (NULL: none),
 * process-wide. The server writes the log lines it gathered there, so that
 * no line reaches the log after the reply that follows its event (R-LOG-7).
 */
void ferry_conn_set_before_send(void (*fn)(void));

/* R-CLI-3: how a client waits between reconnects, written once for every command. */
#define FERRY_BACKOFF_FIRST_MS 500
#define FERRY_BACKOFF_MAX_MS   10000
/* The pause before retry number attempt (0 for the first): 0.5 s doubling to 10 s. */
uint64_t ferry_backoff_ms(unsigned attempt);
/* Whether an outage that began at start_ms may still be retried within window_ms. */
int ferry_retry_window_open(uint64_t start_ms, uint64_t window_ms, uint64_t now_ms);
/*
 * R-CLI-3: whether a connection that ended with rc was lost, so that a
 * redial may mend it: a system error on the socket, silence, a close. An
 * answer from the server, a protocol fault, a pin or TLS failure, a local
 * error (memory) or Ctrl-C (-EINTR) would come back the same on any link.
 */
int ferry_conn_lost(int rc);

/* Builds and encodes a command frame into a caller buffer of cap bytes. */
ssize_t ferry_frame_cmd(uint8_t *out, size_t cap, int32_t type, json_t *body);

/*
 * --- Client side: one dialed connection on a loop of its own. ---
 * The loop runs only inside ferry_client_connect*() and ferry_client_pump():
 * sends queue, the pump moves bytes, and frames wait in a bounded queue for
 * ferry_client_next_frame(). Heartbeats and the idle timeout are the
 * caller's (R-CLI-2, R-SESS-4): the connection sends none of its own.
 */

struct ferry_client;

/*
 * Connects to host:port, completes the TLS handshake presenting id, and
 * sets *cp to the new client (ferry_client_server_id() names the server).
 * If pin is not NULL and differs, fails with FERRY_EPIN before any
 * application byte is sent; *cp is then set too, for the ID it presented,
 * and must be closed. On any other failure *cp is NULL.
 */
int ferry_client_connect(struct ferry_client **cp, const char *host, const char *port,
                         const struct ferry_identity *id, const char *pin, int timeout_ms);
/*
 * The same from the local address src (numeric, e.g. "127.0.0.2"), or from
 * the system's choice when src is NULL. The protocol tests use it to be
 * several source addresses on loopback (R-SESS-8, R-AUTH-10).
 */
int ferry_client_connect_from(struct ferry_client **cp, const char *src, const char *host,
                              const char *port, const struct ferry_identity *id, const char *pin,
                              int timeout_ms);
/* Closes and frees *cp, and sets it to NULL; nothing when it is NULL. */
void ferry_client_close(struct ferry_client **cp);
/* The server's ID, from the handshake. */
const char *ferry_client_server_id(const struct ferry_client *c);
/* R-CLI-2: when the last whole frame arrived (heartbeats included). */
uint64_t ferry_client_last_rx_ms(const struct ferry_client *c);
/* When a write last moved bytes to the socket. */
uint64_t ferry_client_last_tx_ms(const struct ferry_client *c);
/* The server closed the connection, or it broke. */
int ferry_client_eof(const struct ferry_client *c);
/*
 * A descriptor to wait on beside others (poll(2) POLLIN): the private
 * loop's, readable when the socket has something for the next pump.
 */
int ferry_client_fd(const struct ferry_client *c);
/* Queues raw frame bytes (already framed). */
int ferry_client_send_raw(struct ferry_client *c, const void *p, size_t n);
/* Queues a heartbeat frame (R-SESS-4). */
int ferry_client_send_heartbeat(struct ferry_client *c);
/*
 * Heartbeat frames received so far. ferry_client_next_frame() never returns
 * them; tests of R-SESS-4 count them here.
 */
uint64_t ferry_client_heartbeats(const struct ferry_client *c);
/* Queues a command frame; takes the reference to body (NULL: FERRY_EUSAGE). */
int ferry_client_send_cmd(struct ferry_client *c, int32_t type, json_t *body);
/* TLS bytes the connection has carried so far, both ways. */
int ferry_client_wire_bytes(const struct ferry_client *c, uint64_t *sent, uint64_t *received);
/* Queues one chunk's bytes as chunk frames (R-CHUNK-6). */
int ferry_client_send_chunk(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                            uint32_t index, const uint8_t *p, size_t len);
/* Frames of one chunk: FERRY_CHUNK_MAX / FERRY_DATA_MAX, with room to spare. */
#define FERRY_CLIENT_CHUNK_IOV 128
/*
 * The same, reading the chunk's len bytes from fd at off straight into the
 * output (at most FERRY_CLIENT_CHUNK_IOV frames' worth, else FERRY_EUSAGE). Queues nothing on
 * failure: -errno, or FERRY_ECANCELED when the file ends early (it changed since it was chunked).
 */
int ferry_client_send_chunk_fd(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                               uint32_t index, int fd, uint64_t off, size_t len);
/* Queues len bytes of transfer data as data frames starting at offset. */
int ferry_client_send_data(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                           uint64_t offset, const uint8_t *p, size_t len);
/*
 * Moves bytes (runs the loop): writes queued output, reads what has
 * arrived. Returns once some frame arrived or all queued output was
 * written; with nothing queued it waits at most timeout_ms for input (0 =
 * do not wait, < 0 = forever), and returns 0 when none came. With flush_all
 * it keeps going until the output is empty, and gives FERRY_ETIMEDOUT if
 * timeout_ms passes first. Returns < 0 on a dead connection (-ECONNRESET,
 * or the framing fault the server committed). Frames already queued stay
 * there for ferry_client_next_frame().
 */
int ferry_client_pump(struct ferry_client *c, int timeout_ms, int flush_all);
/*
 * Takes the next frame out of the queue, if any: returns 1 and fills f
 * (valid until the next call of this or of ferry_client_pump()), 0 if none
 * is there, < 0 once the queue is empty and the stream was malformed
 * (a frame over FERRY_FRAME_PAYLOAD_MAX, an unknown version or type).
 */
int ferry_client_next_frame(struct ferry_client *c, struct ferry_frame *f);
/* Bytes waiting to be written: queued, or given to the socket and not yet taken. */
size_t ferry_client_pending(const struct ferry_client *c);

#endif
