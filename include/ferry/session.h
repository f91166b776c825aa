/*
 * Sessions: a client's logged-in conversation with one server, kept alive
 * across lost links.
 *
 * A session owns one dialed connection at a time (ferry/net.h). It checks
 * the server's identity (a pin, R-TLS-3, or the owner's on_identity), sends
 * Connect with the session token, and once Accept arrives is "up". Requests
 * go out through ferry_session_call(), which gives each a fresh id and hands
 * every reply whose ref names it to the call's function (R-CMD-5), several
 * replies when the call asks to stay (DirPage streams, a download). Frames
 * that answer no call go to ops->on_frame. Heartbeats and the idle close are
 * the connection's (R-SESS-4).
 *
 * When the link is lost (a socket error, silence, a close, or Error 9 busy
 * in answer to Connect, R-SESS-11), every call sent on it ends with
 * FERRY_ECANCELED, ops->on_down says when the session redials, and it does
 * so with the one backoff of R-CLI-3 while the outage is younger than
 * cfg->retry_for_ms. Calls made while down wait and go out, in order, once
 * the session is up again. A pin mismatch, a refused identity, a protocol
 * fault, any other answer from the server to Connect and an Accept without a
 * user where one is needed end the session: no link would cure them.
 *
 * Ownership: the library allocates the session; it is opaque. Its ops run
 * on the loop thread; on_close is the last call, after which the owner
 * frees it with ferry_session_free() (at once or later). The SSL_CTX stays
 * the caller's and must outlive the session.
 */
#ifndef FERRY_SESSION_H
#define FERRY_SESSION_H

#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "ferry/net.h"
#include "ferry/wire.h"

/* Outstanding calls (sent or waiting to be) a session keeps; more is FERRY_ETOOBIG. */
#define FERRY_SESSION_CALLS_MAX 65536
/* The longest session token Connect carries (section 6.1: ..128). */
#define FERRY_SESSION_TOKEN_MAX 128

struct ferry_session;

struct ferry_session_cfg {
    uv_loop_t *loop;
    SSL_CTX *ctx;            /* the caller's, made from its identity; outlives the session */
    const char *host, *port; /* copied */
    const char *from;        /* numeric local address to bind, or NULL */
    const char *pin;       /* the server ID required (R-TLS-3), or NULL: ops->on_identity decides */
    const char *token;     /* the session token for Connect, or NULL/"" (copied, wiped on free) */
    const char *client;    /* Connect's "client" member, e.g. "ferry/1.2.0" */
    int need_user;         /* an Accept with user null ends the session with FERRY_EAUTH */
    uint64_t retry_for_ms; /* R-CLI-3: how long an outage may be retried; 0 = never */
    uint64_t heartbeat_ms, idle_ms; /* R-SESS-4, passed to the connection */
    /* From dial to Accept at most this long (0: idle_ms bounds it); then FERRY_ETIMEDOUT. */
    uint64_t connect_ms;
};

/* What Accept said (valid during the call). */
struct ferry_session_info {
    const char *server_id; /* from the handshake */
    const char *user;      /* NULL when not logged in */
    int minor;             /* the server's protocol minor version */
    int acks;              /* R-XFER-3 download acknowledgements it remembers (as sent; 0: none) */
    const json_t *accept;  /* the whole Accept body, for limits not named here */
};

struct ferry_session_ops {
    /* No pin given: return 0 to trust server_id (the caller records the pin), < 0 to refuse. */
    int (*on_identity)(struct ferry_session *s, const char *server_id);
    /*
     * Accept arrived: the session is up (first time or after a redial). Calls
     * made before are sent now, in order; an owner re-issues here what the
     * lost link took.
     */
    void (*on_up)(struct ferry_session *s, const struct ferry_session_info *info);
    /*
     * A frame that answers no outstanding call: Committed, the server's
     * TransferComplete, an Error without ref, and every data, chunk and file
     * frame (never a heartbeat). m is the command the session decoded from
     * a command frame, NULL for any other frame; it lives for this call only.
     * Return < 0 to end the session (a protocol fault in what the server
     * sent). Optional: without it such frames are dropped.
     */
    int (*on_frame)(struct ferry_session *s, const struct ferry_frame *f,
                    const struct ferry_cmd *m);
    /* Output fell under the low mark (backpressure: produce more). Optional. */
    void (*on_drain)(struct ferry_session *s);
    /*
     * The link broke (rc) and the session will redial in wait_ms (R-CLI-3
     * backoff); every call sent on it was ended with FERRY_ECANCELED before
     * this. Optional.
     */
    void (*on_down)(struct ferry_session *s, int rc, uint64_t wait_ms);
    /*
     * The session is over for good: ferry_session_close() (rc 0), the retry
     * window closed (the loss's error), or an error no redial can cure (pin
     * mismatch, a refused identity, an answer to Connect other than Accept
     * or busy, a protocol fault). Every call still held has ended with
     * FERRY_ECANCELED. The last call; free with ferry_session_free() here or
     * later.
     */
    void (*on_close)(struct ferry_session *s, int rc);
};

/*
 * A reply to a call: rc 0 with the reply command, or the mapped Error code
 * (reply then holds the Error, whose message is the server's), or
 * FERRY_ECANCELED when the link broke or the session closed first (reply
 * NULL). Return 1 to keep the call for more replies with the same ref
 * (DirPage streams, a Download's Transfer then its TransferComplete...), 0
 * when done. A call ended by FERRY_ECANCELED is done whatever it returns.
 */
typedef int (*ferry_reply_fn)(struct ferry_session *s, int rc, const struct ferry_cmd *reply,
                              void *arg);

/*
 * Starts a session: the first dial begins at once. data becomes
 * ferry_session_data(). Returns < 0 only when nothing was started (bad
 * configuration, memory); every later failure ends in on_close.
 */
int ferry_session_open(const struct ferry_session_cfg *cfg, const struct ferry_session_ops *ops,
                       void *data, struct ferry_session **out);
/*
 * Sends a request with a fresh id (the session sets id and version) and
 * matches replies by ref; takes the reference to body. While down the
 * request waits for the next Accept. FERRY_ETOOBIG past
 * FERRY_SESSION_CALLS_MAX, FERRY_ECANCELED once closing; fn is not called
 * when this fails.
 */
int ferry_session_call(struct ferry_session *s, int32_t type, json_t *body, ferry_reply_fn fn,
                       void *arg);
/*
 * Sends a command that expects no reply (a download's TransferComplete,
 * Disconnect); takes the reference to body. -ENOTCONN while down: such a
 * command belongs to the link it was meant for.
 */
int ferry_session_send(struct ferry_session *s, int32_t type, json_t *body);
/* The live connection (NULL while down), for frames laid out in place (reserve/commit). */
struct ferry_conn *ferry_session_conn(struct ferry_session *s);
int ferry_session_is_up(const struct ferry_session *s);
/*
 * The ID the server presented in the last handshake that finished, also
 * after a pin mismatch or a refused identity (for the message that says
 * so); "" when none finished.
 */
const char *ferry_session_server_id(const struct ferry_session *s);
/* An Accept arrived on the last link (the Connect was answered with one). */
int ferry_session_accepted(const struct ferry_session *s);
/* Sends Disconnect, flushes, closes; on_close(0) follows (on a later loop turn). */
void ferry_session_close(struct ferry_session *s);
/*
 * Frees a session whose on_close ran. One still open is closed at once,
 * without on_close: the calls it still holds end with FERRY_ECANCELED
 * first, so their owners can free what they gave them.
 */
void ferry_session_free(struct ferry_session *s);
void *ferry_session_data(const struct ferry_session *s);
/* R-CLI-3: tell the session the owner made progress (resets the outage window). */
void ferry_session_progress(struct ferry_session *s);
/* TLS bytes the session's links have carried so far, both ways. */
void ferry_session_wire_bytes(const struct ferry_session *s, uint64_t *sent, uint64_t *received);

#endif
