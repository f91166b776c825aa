/*
 * The transfer hub: many transfer jobs over one session.
 *
 * A user may hold at most 64 connections to a server (R-SESS-10), and a
 * process that syncs a folder or runs a hundred transfers at once must not
 * need one per job. The hub owns one session (ferry/session.h) and lets
 * jobs share it: each job opens a port, sends its requests with
 * ferry_session_call() on ferry_hub_session(), and claims the transfer ids
 * (tids) and download refs it expects frames for. The hub hands each frame
 * that answers no call to the port that claimed it:
 *   - data and chunk frames, and the commands that carry a "tid" but no
 *     "ref" the session matched (the server's TransferComplete, ChunkNeed,
 *     ChunkStored, an Error about a transfer), by their tid;
 *   - file frames by their ref; one from a server below 1.4 (R-FILE-1) or
 *     answering no claimed ref (R-FILE-3) ends the session as a fault;
 *   - Committed (R-XFER-5) to every port that claimed one of its tids, once;
 *   - an Error that names neither (the server speaks of the connection) to
 *     every port.
 * A frame no port claimed goes to the owner's on_frame, or is dropped (the
 * data of a transfer a job abandoned).
 *
 * Session events reach every port: on_up after each Accept (re-issue what
 * the lost link took), on_down when the link breaks (the session has ended
 * every call sent on it; requeue), on_drain when output falls under the low
 * mark, on_close when the session is over for good.
 *
 * The server remembers the acknowledgements of the last `acks` downloads it
 * finished on a connection (R-RECV-5, R-XFER-3), counted in the order of
 * their TransferComplete or file frame across all jobs. The hub keeps that
 * count per link (ferry_hub_tc_seq) and the window shared by every job's
 * Downloads: ferry_hub_may_download() says whether one more may be asked
 * for now, given the oldest acknowledgement any port still has to send.
 * Uploads open at once are counted the same way, all jobs together, since
 * the server closes a connection that opens more than 64 (R-XFER-1).
 *
 * Ownership: the library allocates the hub and its ports; both are opaque.
 * Everything runs on the loop thread. A port may be closed from inside any
 * of its callbacks; its callbacks stop at once. The hub is freed with
 * ferry_hub_free() after its on_close (or at once, which ends the session
 * without callbacks to the owner; ports still open get on_close first).
 */
#ifndef FERRY_HUB_H
#define FERRY_HUB_H

#include <stdint.h>

#include "ferry/session.h"
#include "ferry/wire.h"

/* Tids and refs all ports together may claim at once; more is FERRY_ETOOBIG. */
#define FERRY_HUB_ROUTES_MAX (1u << 20)
/* Downloads asked for and not finished on one link, all jobs together (R-PIPE-1). */
#define FERRY_HUB_DOWNLOADS_MAX 64
/* Uploads open on one link, all jobs together (R-XFER-1: the 65th closes the connection). */
#define FERRY_HUB_UPLOADS_MAX 64
/* R-XFER-3: acknowledgements a server may remember that the hub counts on, at most. */
#define FERRY_HUB_ACKS_MAX 1024
/* A port holding no acknowledgement. */
#define FERRY_HUB_NO_SEQ UINT64_MAX

struct ferry_hub;
struct ferry_hub_port;

/* The hub owner's view of its session; every member optional. */
struct ferry_hub_owner {
    /* No pin given: 0 trusts server_id (the owner records the pin), < 0 refuses. */
    int (*on_identity)(struct ferry_hub *h, const char *server_id);
    void (*on_up)(struct ferry_hub *h, const struct ferry_session_info *info);
    void (*on_down)(struct ferry_hub *h, int rc, uint64_t wait_ms);
    /* A frame no port claimed; < 0 ends the session (a protocol fault). */
    int (*on_frame)(struct ferry_hub *h, const struct ferry_frame *f);
    /* The last call: after every port's on_close. */
    void (*on_close)(struct ferry_hub *h, int rc);
};

struct ferry_hub_port_ops {
    void (*on_up)(void *arg, const struct ferry_session_info *info);
    void (*on_down)(void *arg, int rc);
    void (*on_drain)(void *arg);
    /* The session is over; the port stays open until ferry_hub_port_close(). */
    void (*on_close)(void *arg, int rc);
    /*
     * A frame routed to this port; m is the decoded command for a command
     * frame (valid during the call), NULL for data, chunk and file frames.
     * Return < 0 to end the session (a protocol fault in what arrived),
     * or 1 after pausing the connection to take the frame again later
     * (see ferry_session_ops.on_frame). A frame several ports hear
     * (Committed, an Error about the connection) comes again to the ports
     * before the one that paused too.
     */
    int (*on_frame)(void *arg, const struct ferry_frame *f, const struct ferry_cmd *m);
};

/* Opens the session (see ferry_session_open); owner may be NULL. */
int ferry_hub_open(const struct ferry_session_cfg *cfg, const struct ferry_hub_owner *owner,
                   void *owner_data, struct ferry_hub **out);
struct ferry_session *ferry_hub_session(const struct ferry_hub *h);
void *ferry_hub_data(const struct ferry_hub *h);
/* The session is up now; info is the last Accept (NULL while down). */
int ferry_hub_is_up(const struct ferry_hub *h);
/* The server's protocol minor and acknowledgement memory (64 unless it said more). */
int ferry_hub_minor(const struct ferry_hub *h);
int ferry_hub_acks(const struct ferry_hub *h);
/* Closes the session (Disconnect first); ports' and the owner's on_close follow. */
void ferry_hub_close(struct ferry_hub *h);
void ferry_hub_free(struct ferry_hub *h);

int ferry_hub_port_open(struct ferry_hub *h, const struct ferry_hub_port_ops *ops, void *arg,
                        struct ferry_hub_port **out);
/*
 * Drops the port's claims and stops its callbacks; NULL is a no-op. The
 * answers to requests it still had out are dropped when they come (not
 * taken for faults), until the link is lost.
 */
void ferry_hub_port_close(struct ferry_hub_port *p);
struct ferry_hub *ferry_hub_port_hub(const struct ferry_hub_port *p);

/* Frames about this tid come to the port; FERRY_EEXIST if another port holds it. */
int ferry_hub_claim_tid(struct ferry_hub_port *p, const uint8_t tid[static FERRY_TID_LEN]);
void ferry_hub_release_tid(struct ferry_hub_port *p, const uint8_t tid[static FERRY_TID_LEN]);
/* File frames answering the request with this id (16 bytes, R-FILE-2) come to the port. */
int ferry_hub_claim_ref(struct ferry_hub_port *p, const uint8_t ref[static 16]);
void ferry_hub_release_ref(struct ferry_hub_port *p, const uint8_t ref[static 16]);

/* TransferCompletes and file frames the server sent on the current link (R-RECV-5). */
uint64_t ferry_hub_tc_seq(const struct ferry_hub *h);
/* The oldest tc_seq whose acknowledgement the port has still to send, or FERRY_HUB_NO_SEQ. */
void ferry_hub_port_hold(struct ferry_hub_port *p, uint64_t seq);
/* Whether one more Download may be asked for on this link now. */
int ferry_hub_may_download(const struct ferry_hub *h);
/* A Download was sent (+1) or finished, failed or was given up (-1). */
void ferry_hub_downloads(struct ferry_hub *h, int delta);
/*
 * Uploads: whether one more may be opened on this link now; +1 when a job
 * takes a place for one (before its Upload or ChunkedUpload), -1 when it
 * sent the upload's last word (TransferComplete or TransferCancel) or
 * gave the place up unused. The count starts from 0 on every link. When a
 * place frees up after the count was full, every port hears on_drain.
 */
int ferry_hub_may_upload(const struct ferry_hub *h);
void ferry_hub_uploads(struct ferry_hub *h, int delta);

#endif
