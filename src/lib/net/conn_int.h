/*
 * The connection's layout, private to net/: conn.c moves its bytes,
 * listen.c and dial.c open it. Nothing outside src/lib/net sees it.
 */
#ifndef FERRY_NET_CONN_INT_H
#define FERRY_NET_CONN_INT_H

#include "ferry/net.h"

/* Room for one socket read beside what OpenSSL left of the last. */
#define FERRY_NET_RX_CAP (2 * FERRY_NET_READ_CHUNK)

struct net_conn_list;
struct write_req;
struct net_ext;

struct ferry_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect; /* the dialer's TCP connect */
    uv_getaddrinfo_t gai; /* the dialer's name lookup */
    SSL *ssl;
    BIO *rbio;               /* reads the ciphertext in rx */
    BIO *wbio;               /* ciphertext from OpenSSL, laid straight into tx */
    struct write_req *tx;    /* the next uv_write, being filled; NULL: none */
    struct write_req *spare; /* written buffers kept for the next writes */
    int nspare;
    size_t tx_window; /* ciphertext kept ahead of the socket; 0: all of it */
    struct ferry_buf in;
    struct ferry_buf out;
    /*
     * External buffers (ferry_conn_send_ext), oldest first: each goes
     * once out_taken reaches its mark, the bytes of out queued before it.
     */
    struct net_ext *ext_head, *ext_tail;
    size_t ext_bytes;   /* their bytes not yet encrypted */
    uint64_t out_taken; /* bytes of out given to TLS so far */
    uint8_t *rx;        /* socket reads (FERRY_NET_RX_CAP), read in place by OpenSSL */
    size_t rx_off;      /* ciphertext in rx not yet taken by OpenSSL: [rx_off, rx_len) */
    size_t rx_len;
    size_t queued; /* ciphertext handed to uv_write, not yet written */
    int ready;
    int closing;
    int paused;       /* the application asked not to be given more frames */
    int accepted;     /* the accepting side, which bounds an unread peer (R-PIPE-3) */
    int out_blocked;  /* input stopped: the peer reads none of our output */
    int in_process;   /* re-entrancy guard for process_input */
    int refs;         /* libuv handles and requests still open */
    int resolving;    /* the dialer's name lookup is in flight */
    int gone;         /* on_close has run */
    int released;     /* the owner is done with it: free once gone */
    int err;          /* why it closed (the first reason), 0: orderly */
    uint8_t max_type; /* the highest frame type the peer may send (R-FILE-1) */
    uint64_t last_rx_ms;
    uint64_t last_tx_ms;
    uint64_t heartbeat_ms;
    uint64_t idle_ms;
    uint64_t wire_tx, wire_rx;
    char peer_id[FERRY_ID_LEN + 1];
    char peer_ip[64];
    char pin[FERRY_ID_LEN + 1]; /* R-TLS-3: the ID a dialed peer must show; "": any */
    SSL_CTX *ctx;               /* the dialer's, until TLS starts */
    char from[64];              /* the dialer's local address, or "" */
    const struct ferry_conn_ops *ops;
    void *data;
    /* An accepted connection is on its listener's list while open. */
    struct net_conn_list *list;
    struct ferry_conn *lprev, *lnext;
};

/*
 * A connection on loop with its TCP handle and timer initialised (the
 * timer running: the idle deadline covers connecting and the handshake),
 * nothing connected yet. NULL: no memory.
 */
struct ferry_conn *net_conn_new(uv_loop_t *loop, const struct ferry_conn_cfg *cfg, void *data);
/* The TCP link is up: starts TLS, as server (accepted) or client (dialed). */
int net_conn_start(struct ferry_conn *c, SSL_CTX *ctx, int server);
/* Closes c for the reason rc (kept if it is the first). */
void net_conn_fail(struct ferry_conn *c, int rc);
/*
 * Closes c now, for the reason rc if it is the first: output still queued
 * is dropped, and no close_notify is sent (a one-shot client that is done).
 */
void net_conn_abort(struct ferry_conn *c, int rc);
/*
 * With a window, ferry_conn_flush() stops once that much ciphertext waits
 * for the socket, and each finished write tops it up: a sender with a
 * large backlog encrypts each byte shortly before it is written, while it
 * is still in the cache. 0: everything at once.
 */
void net_conn_set_tx_window(struct ferry_conn *c, size_t bytes);
/* Drops one reference taken for a libuv handle or request. */
void net_conn_unref(struct ferry_conn *c);
/*
 * The open connections a listener accepted. The list is kept here, with
 * the connections, so that a closing connection leaves it without calling
 * up into the listener.
 */
struct net_conn_list {
    struct ferry_conn *head;
};
void net_conn_list_add(struct net_conn_list *l, struct ferry_conn *c);
/* Takes c off the list it is on, if any. */
void net_conn_list_remove(struct ferry_conn *c);

#endif
