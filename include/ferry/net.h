/* Network: TLS connections on the libuv loop (server) and a poll pump (client). */
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

struct ferry_conn_ops {
    /* The TLS handshake finished; peer_id is set. Return < 0 to close. */
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
    /* The connection is gone; free what data points to. */
    void (*on_close)(struct ferry_conn *c);
};

struct ferry_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    SSL *ssl;
    BIO *rbio; /* ciphertext from the socket, read by OpenSSL */
    BIO *wbio; /* ciphertext from OpenSSL, to the socket */
    struct ferry_buf in;
    struct ferry_buf out;
    uint8_t *rx;   /* socket read buffer */
    size_t queued; /* ciphertext handed to uv_write, not yet written */
    int ready;
    int closing;
    int paused;      /* the application asked not to be given more frames */
    int out_blocked; /* input stopped because the peer is not reading our output */
    int in_process;  /* re-entrancy guard for process_input */
    int handles;     /* libuv handles still open */
    uint64_t last_rx_ms;
    uint64_t last_tx_ms;
    uint64_t heartbeat_ms;
    uint64_t idle_ms;
    char peer_id[FERRY_ID_LEN + 1];
    char peer_ip[64];
    const struct ferry_conn_ops *ops;
    void *data;
};

/*
 * Takes an accepted TCP handle's place: the caller has uv_tcp_init'ed
 * c->tcp and accepted into it. Starts the TLS handshake as server.
 */
int ferry_conn_start(struct ferry_conn *c, SSL_CTX *ctx, const struct ferry_conn_ops *ops,
                     uint64_t heartbeat_ms, uint64_t idle_ms);
/* Queues a command frame; takes the reference to body. */
int ferry_conn_send_cmd(struct ferry_conn *c, int32_t type, json_t *body);
/* Queues raw frame bytes (already framed). */
int ferry_conn_send_raw(struct ferry_conn *c, const void *p, size_t n);
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
 * A function run before ciphertext is handed to any socket (NULL: none),
 * process-wide. The server writes the log lines it gathered there, so that
 * no line reaches the log after the reply that follows its event (R-LOG-7).
 */
void ferry_conn_set_before_send(void (*fn)(void));

/* Builds and encodes a command frame into a caller buffer of cap bytes. */
ssize_t ferry_frame_cmd(uint8_t *out, size_t cap, int32_t type, json_t *body);

/* --- Client side: one TLS connection driven by poll(2). --- */

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

/*
 * Connects to host:port, completes the TLS handshake presenting id, and
 * stores the server's ID in c->server_id. If pin is not NULL and differs,
 * fails with FERRY_EPIN before any application byte is sent.
 */
int ferry_client_connect(struct ferry_client *c, const char *host, const char *port,
                         const struct ferry_identity *id, const char *pin, int timeout_ms);
/*
 * The same from the local address src (numeric, e.g. "127.0.0.2"), or from
 * the system's choice when src is NULL. The protocol tests use it to be
 * several source addresses on loopback (R-SESS-8, R-AUTH-10).
 */
int ferry_client_connect_from(struct ferry_client *c, const char *src, const char *host,
                              const char *port, const struct ferry_identity *id, const char *pin,
                              int timeout_ms);
void ferry_client_close(struct ferry_client *c);
/* Queues a command frame; takes the reference to body (NULL: FERRY_EUSAGE). */
int ferry_client_send_cmd(struct ferry_client *c, int32_t type, json_t *body);
/* TLS bytes the connection has carried so far, both ways. */
int ferry_client_wire_bytes(const struct ferry_client *c, uint64_t *sent, uint64_t *received);
/* Queues one chunk's bytes as chunk frames (R-CHUNK-6). */
int ferry_client_send_chunk(struct ferry_client *c, const uint8_t tid[static FERRY_TID_LEN],
                            uint32_t index, const uint8_t *p, size_t len);
/* Bytes of TLS records gathered before a write(2) to the socket. */
#define FERRY_CLIENT_WBUF (64 * 1024)
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
 * Moves bytes: writes queued output, reads what has arrived. Returns once
 * some input arrived or all queued output was written; with nothing queued
 * it waits at most timeout_ms for input (0 = do not wait, < 0 = forever).
 * With flush_all it keeps going until the output is empty. Returns 0, or
 * < 0 on a dead connection or FERRY_ETIMEDOUT.
 */
int ferry_client_pump(struct ferry_client *c, int timeout_ms, int flush_all);
/*
 * Takes the next complete frame out of the input, if any: returns 1 and
 * fills f (valid until the next call), 0 if none is complete, < 0 on a
 * malformed stream.
 */
int ferry_client_next_frame(struct ferry_client *c, struct ferry_frame *f);
/* Bytes waiting to be written. */
size_t ferry_client_pending(const struct ferry_client *c);

#endif
