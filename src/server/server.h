/* ferry serve: shared state of the server's services. */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include <stdint.h>

#include "ferry/blob.h"
#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/manifest.h"
#include "ferry/net.h"
#include "ferry/store.h"
#include "ferry/wire.h"
#include "ferry/writer.h"

#define SRV_USER_MAX        64
#define SRV_PASSWORD_MIN    8
#define SRV_PASSWORD_MAX    1024
#define SRV_DEVICE_NAME_MAX 64
#define SRV_TOKEN_B64_LEN   43
/* R-AUTH-3: Argon2id jobs waiting for the single hashing slot (--hash-queue). */
#define SRV_HASH_QUEUE_MAX 64
/* Uploads one connection may have open at once (--max-open-uploads). */
#define SRV_OPEN_UPLOADS_MAX 64
/* Downloads one connection may have queued (--max-queued-downloads). */
#define SRV_DOWNLOADS_MAX 64
/*
 * R-XFER-3: finished downloads whose acknowledgement is still accepted,
 * announced in Accept (1.3). Room for a client's 64 requests and two
 * batches of 448 files on their way to disk (R-RECV-5); 16 KiB per
 * connection that downloads. A power of two: the ring's index wraps.
 */
#define SRV_DONE_TIDS 1024
/* R-PAGE-1: entries per listing page. */
#define SRV_PAGE_ENTRIES 50
/* R-PIPE-3: a listing whose pages would queue more than this is refused (--max-listing). */
#define SRV_LISTING_OUT_MAX (32u << 20)
/* R-STORE-2: bounds of one group commit. */
#define SRV_BATCH_OPS   1000
#define SRV_BATCH_BYTES (256ull << 20)
/* Transfer ids per Committed message: 256 x 35 bytes fits a 32 KiB frame. */
#define SRV_COMMITTED_TIDS_MAX 256
/*
 * R-STORE-9: content up to this size is kept inline in the metadata
 * database, so a small file costs no inode, no rename and no fsync of its
 * own: the batch's single commit makes it durable (seed 002's pack idea).
 */
#define SRV_INLINE_MAX (64u << 10)
/* Upload bytes gathered before one write(2). */
#define SRV_WRITE_CHUNK (1u << 20)
/* Upload flushes on the pool at once, server-wide (of libuv's four threads). */
#define SRV_FLUSHES_MAX 2
/*
 * Flushes of one connection waiting for their turn: a frame that would
 * queue another waits unread, so a connection faster than the disk holds
 * a bounded number of megabytes in the queue, whatever its uploads.
 */
#define SRV_SESS_FLUSH_WAIT 2
/* Start writeback every this many bytes so the final fdatasync is short. */
#define SRV_WRITEBACK_STEP (8u << 20)
/* Blob bytes read per step of a download. */
#define SRV_READ_CHUNK (256u << 10)
/* R-CHUNK-6: chunks one connection may have begun and not finished. */
#define SRV_CHUNKS_OPEN_MAX 8

/*
 * Fair shares of connections and of password work (session.c, auth.c,
 * throttle.c). Each limit's value and why are in docs/protocol.md section 12.
 */
/* R-AUTH-13: names tracked for backoff, in each of two parts (known, unknown). */
#define SRV_NAME_TABLE 4096
/* Source addresses tracked beyond those with a live connection. */
#define SRV_IP_TABLE 4096
/* R-AUTH-12: hash jobs one user, or one address, may have waiting or running. */
#define SRV_HASH_PER_USER 2
#define SRV_HASH_PER_ADDR 4
/* R-SESS-9: refused connections told why at once, in all and per address. */
#define SRV_REFUSING_MAX    64
#define SRV_REFUSING_PER_IP 4
/* R-SESS-9: how long a refused connection may take to send its first frame. */
#define SRV_REFUSE_WAIT_MS 5000
/* R-LOG-3: lines a second of each kind a peer can cause in volume. */
#define SRV_LOG_BURST 10

/*
 * Bounded server resources (issue 9, items 7, 11, 12, 13). Each cap says
 * what one operation costs, so the defaults bound the memory in all.
 */
/* R-PIPE-4: writes one connection may have queued, about 1 KiB each (--max-queued-writes). */
#define SRV_CONN_OPS_MAX 4096
/* R-PIPE-4: writes queued by all connections together (--max-queued-writes-total). */
#define SRV_OPS_MAX 16384
/* R-STORE-11: staged upload bytes of all connections together (--max-unacked-total). */
#define SRV_UNACKED_TOTAL (1ull << 30)
/*
 * R-CHUNK-30: chunk-list bytes held for one user, on all its connections
 * (--max-chunk-lists-per-user): the list of a 470 GiB file at 256 KiB
 * chunks (R-CHUNK-1's average).
 */
#define SRV_LISTS_USER (64ull << 20)
/* R-CHUNK-30: chunk-list bytes held for all users together (--max-chunk-lists). */
#define SRV_LISTS_MAX (256ull << 20)
/*
 * R-PAGE-2: listings built by jobs at once, each with its own read snapshot
 * and SQLite connection, about 1 MiB with its unsent pages (--max-listings);
 * and at most this many of them for one user.
 */
#define SRV_LISTINGS_MAX  32
#define SRV_LISTINGS_USER 4
/*
 * R-PAGE-2: a listing of at most this many entries is answered on the loop
 * thread at once (about a millisecond); a longer one goes to a job.
 */
#define SRV_LIST_FAST_ENTRIES 256
/* R-PAGE-2: page bytes one step of a listing job produces. */
#define SRV_LISTING_SLICE (256u << 10)
/* R-PAGE-2: the page cache of a listing job's SQLite connection, in KiB. */
#define SRV_LISTING_CACHE_KIB 256

struct srv_config {
    char data[4096];
    char host[256];
    char port[16];
    int signup_open;
    uint64_t auth_timeout_ms;
    uint64_t heartbeat_ms;
    uint64_t idle_ms;
    int max_conns;
    int max_unauth_per_ip;
    int login_rate;
    uint64_t max_unacked;
    uint64_t max_file_size;
    uint64_t min_free;
    int hash_queue;
    int max_open_uploads;
    int max_downloads;
    uint64_t max_listing;
    uint64_t quota;         /* R-CHUNK-9: 0 for none */
    int64_t partial_ttl_ns; /* R-CHUNK-11 */
    int verbose;
    /* Fair shares of connections (R-SESS-7, R-SESS-8, R-SESS-10). */
    int max_conns_per_user;
    int max_conns_per_ip;
    int reserve_conns; /* of max_conns, for addresses with no connection; < 0: max_conns / 16 */
    /* Bounded resources. */
    int max_ops_conn;           /* R-PIPE-4 */
    int max_ops;                /* R-PIPE-4 */
    uint64_t max_unacked_total; /* R-STORE-11 */
    uint64_t max_lists;         /* R-CHUNK-30 */
    uint64_t max_lists_user;    /* R-CHUNK-30 */
    int max_listings;           /* R-PAGE-2 */
};

/* What one user holds of the resources capped per user (R-CHUNK-30). */
struct srv_use {
    int64_t uid;
    uint64_t list_bytes;
};

struct sess;
struct op;
struct listing;

/*
 * Dispatch by message number (session.c). The core owns connections,
 * logins and the ordering rules; services register what they handle.
 */
enum srv_handler_flags {
    SRV_H_ANON = 1,    /* may come before login (R-SESS-2) */
    SRV_H_ORDERED = 2, /* waits until the connection's earlier writes committed (R-PIPE-2) */
    SRV_H_CHECKED = 4, /* waits until the connection's chunks are checked (R-CHUNK-8) */
};

/* A command's handler: 0 handled, 1 left unconsumed (the connection paused), < 0 closes. */
typedef int (*srv_cmd_fn)(struct sess *s, const struct ferry_cmd *cmd);

struct srv_handler {
    int32_t type; /* FERRY_MSG_* */
    unsigned flags;
    srv_cmd_fn fn;
};

/* A service: its commands and the connection events it follows (each may be NULL). */
struct srv_service {
    const char *name;
    const struct srv_handler *handlers;
    size_t nhandlers;
    /* Data frames (type 2) and chunk frames (type 3) of a logged-in connection. */
    int (*data)(struct sess *s, const struct ferry_data *d);
    int (*chunk)(struct sess *s, const struct ferry_chunk_frame *f);
    /* The connection's output drained; the frames of one read were handled. */
    void (*drain)(struct sess *s);
    void (*input_end)(struct sess *s);
    /* The connection is closing: the service lets go of it. */
    void (*closing)(struct sess *s);
};

/* Services and handlers one server holds. */
#define SRV_SERVICES_MAX 8
#define SRV_HANDLERS_MAX 32

/* One party competing for the single hashing slot (R-AUTH-12). */
struct fair_key {
    int jobs;        /* hash jobs waiting or running */
    uint64_t finish; /* virtual time at which its last job queued ends */
};

/* A source address: its connections, its login bucket, its hashing share. */
struct ip_slot {
    char ip[64];
    int conns;    /* admitted connections, logged in or not (R-SESS-7) */
    int unauth;   /* of which not logged in (R-SESS-5) */
    int refusing; /* connections being told Error 9 (R-SESS-9) */
    double tokens;
    uint64_t refill_ms;
    struct fair_key fk;
    int idx; /* in the table's array */
    struct ip_slot *hnext;
};

/* A user with connections logged in, or password work queued. */
struct user_slot {
    int64_t uid;
    int conns; /* authenticated connections, and logins awaiting their commit (R-SESS-10) */
    struct fair_key fk;
    struct user_slot *hnext;
};

/* Backoff and bucket of one user name (R-AUTH-4, R-AUTH-11, R-AUTH-13). */
struct name_slot {
    char name[SRV_USER_MAX + 1];
    int used;
    int failures;
    uint64_t next_ms; /* no attempt before this */
    double tokens;
    uint64_t refill_ms;
    uint64_t touched; /* for least-recently-used eviction */
};

struct srv_throttle {
    struct ip_slot **ips; /* every tracked address */
    int nips;
    int ip_cap;
    struct ip_slot **ip_hash;
    struct user_slot **user_hash;
    unsigned nbuckets; /* of each hash; 0 until first use */
    int nusers;
    uint64_t vtime;   /* R-AUTH-12: start tag of the hash job last started */
    uint64_t touches; /* name table uses so far */
    struct name_slot known[SRV_NAME_TABLE];
    struct name_slot unknown[SRV_NAME_TABLE];
};

/* R-LOG-3: kinds of lines a peer can cause in volume, each limited on its own. */
enum srv_log_kind {
    SRV_LOG_REFUSED,
    SRV_LOG_FAULT,
    SRV_LOG_THROTTLED,
    SRV_LOG_KINDS,
};

struct srv_log_limit {
    uint64_t window_ms[SRV_LOG_KINDS];
    int lines[SRV_LOG_KINDS];
    uint64_t suppressed[SRV_LOG_KINDS];
};

struct srv {
    uv_loop_t *loop;
    struct ferry_listener *listener;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_timer_t kick;
    struct srv_config cfg;
    struct ferry_identity id;
    SSL_CTX *ctx;
    int datafd;
    int lockfd;
    /* The content store (ferry/blob.h): the only code that touches content files. */
    struct ferry_blob_store *blobs;
    struct ferry_meta *wdb; /* writer: used only by commit jobs, one at a time */
    struct ferry_meta *rdb; /* reader: used on the loop thread */
    /*
     * Upload flushes (transfer.c) running on libuv's pool, and those waiting
     * for a turn: at most SRV_FLUSHES_MAX at once, so writes to a slow disk
     * never take every pool thread from commits, logins and listings.
     */
    int flushes;
    struct flush *flush_head, *flush_tail;
    /*
     * A read transaction on rdb that srv_download_pump holds for one pass
     * (rsnap_open), numbered (rsnap) so that what was read in it can be
     * kept for the rest of it: the folder path of the last download
     * logged (R-LOG-5).
     */
    int rsnap_open;
    uint64_t rsnap;
    struct {
        uint64_t snap; /* the rsnap it was read in; 0: none */
        int64_t uid, dir_id;
        char path[FERRY_PATH_MAX + 2];
    } logdir;
    int nconns; /* admitted connections (R-SESS-5) */
    char dummy_hash[160];
    /* Fair shares and the server log (throttle.c, serverlog.c). */
    int nrefusing; /* connections being refused with an Error (R-SESS-9) */
    struct srv_throttle thr;
    struct srv_log_limit logl;
    uv_prepare_t log_turn; /* R-LOG-7: writes the lines of each loop turn */
    /* write queue (R-STORE-2) */
    struct op *q_head;
    struct op *q_tail;
    int q_len;
    int job_running;
    /* hashing queue (R-AUTH-3) */
    struct hashjob *h_head;
    struct hashjob *h_tail;
    /* Open chunked uploads of all connections (R-CHUNK-13). */
    struct upload *chunked;
    int h_len;
    int hash_running;
    int stopping;
    /* R-ADMIN-6: the admin generation last seen, polled once a second. */
    uv_timer_t admin_watch;
    int64_t admin_gen;
    /* Bounded resources: queued writes and staged bytes in all (R-PIPE-4, R-STORE-11). */
    int nops;
    uint64_t unacked;
    struct sess *opw_head; /* connections stopped until a commit frees room in all */
    struct sess *opw_tail;
    /* Chunk lists held, in all and per user (R-CHUNK-30). */
    uint64_t list_bytes;
    struct srv_use *uses;
    int nuses;
    int capuses;
    /* Registered services and their handlers (srv_service_add). */
    const struct srv_service *services[SRV_SERVICES_MAX];
    int nservices;
    const struct srv_handler *handlers[SRV_HANDLERS_MAX];
    int nhandlers;
    /* Listing jobs (R-PAGE-2), and connections waiting for one. */
    struct listing *listings;
    int nlistings;
    struct sess *lw_head;
    struct sess *lw_tail;
    /* Download reads on the thread pool, and the connections waiting to start one. */
    int dl_reads;
    struct sess *dlw_head;
    struct sess *dlw_tail;
};

/*
 * A chunk whose frames are arriving on a connection (R-CHUNK-6). It keeps
 * what the list promised, so it can finish even if the connection that
 * opened the upload goes away meanwhile.
 */
struct chunk_rx {
    uint8_t tid[FERRY_TID_LEN];
    char ref[FERRY_UUID_STR_LEN + 1];
    uint32_t index;
    uint32_t len;
    uint32_t got;
    uint8_t hash[32];
    uint8_t *buf;
};

struct upload {
    uint8_t tid[FERRY_TID_LEN];
    char ref[FERRY_UUID_STR_LEN + 1];
    char *path;
    uint64_t size;
    uint64_t received;
    uint64_t written;
    uint64_t synced;
    int64_t mtime;
    int exec;
    struct ferry_blob_spool spool; /* a large upload's bytes, until its commit */
    int is_inline;                 /* small: kept in memory, stored in the database */
    int rc;       /* first failure; later data is discarded until TransferComplete */
    int reported; /* the failure has been sent as an Error */
    struct ferry_sha256 sha;
    struct ferry_buf wbuf;
    /* Large uploads hash and write on the session's writer thread. */
    struct ferry_writer *wr;
    uint8_t *wb;
    size_t wlen;
    /*
     * Or, while that writer serves another upload, each megabyte gathered
     * in wbuf is hashed and written by a task on the thread pool, one at a
     * time (transfer.c, struct flush): the one in flight, if any, and
     * whether the upload was dropped meanwhile (the task then frees it).
     */
    struct flush *flush;
    int dropped;
    /* Chunked uploads (R-CHUNK): the list so far and the chunks arriving. */
    int chunked;
    uint8_t *list;   /* complete entries; none once the upload failed (R-CHUNK-30) */
    size_t list_len; /* bytes of the list received */
    size_t list_cap; /* bytes allocated, charged to uid */
    int64_t uid;     /* the user the upload was opened by */
    uint8_t carry[FERRY_CHUNK_ENT_LEN]; /* an entry split across frames */
    size_t carry_len;
    uint64_t list_sum;         /* sum of the lengths of the complete entries */
    uint32_t nent;             /* complete entries */
    uint32_t answered;         /* entries answered by ChunkNeed */
    uint64_t unanswered_bytes; /* chunk bytes of the entries after them (R-CHUNK-5) */
    int list_done;
    uint64_t t0_ms; /* when the Upload came, for the log (R-LOG-5) */
    /* Chunked uploads of every connection, for chunks sent on another one. */
    struct sess *owner;
    struct upload *gnext;
    struct upload **gprev;
    struct upload *next;
};

struct download {
    uint8_t tid[FERRY_TID_LEN];
    char ref[FERRY_UUID_STR_LEN + 1];
    int64_t file_id;
    char *path;
    int started;
    struct ferry_blob_reader *rd; /* its blob, or the pack or file of the chunk being sent */
    uint64_t size;
    uint64_t off;
    char cid[FERRY_CID_LEN + 1];
    int64_t mtime;
    int exec;
    uint8_t *mem;                     /* inline content, when the row holds it */
    uint64_t want_off;                /* R-CHUNK-14: resume from here... */
    char want_cid[FERRY_CID_LEN + 1]; /* ...if the content is still this */
    /* Chunked content: its list, the chunk being read and where it starts. */
    uint8_t *list;
    size_t list_len;
    int64_t uid;         /* the user the list is charged to (R-CHUNK-30)... */
    size_t list_charged; /* ...and how many bytes */
    size_t chunk;        /* index of the chunk being sent */
    uint32_t chunk_pos;  /* bytes of it already sent */
    uint32_t chunk_len;
    /* R-CHUNK-15: the list is sent instead of the file. */
    int list_mode;
    /* R-CHUNK-16: only these chunks ([first, count] pairs), as chunk frames. */
    uint32_t (*ranges)[2];
    size_t nranges, range;      /* the pairs, and the one being sent */
    uint64_t end;               /* bytes this download sends: size, list_len or the chunks' sum */
    int chunk_ready;            /* rd and bref locate the chunk */
    struct ferry_blob_ref bref; /* the content being read */
    uint64_t t0_ms, off0;       /* when and from where it began, for the log (R-LOG-5) */
    int plain;                  /* asked for the whole file: no offset, list or chunks */
    int whole;                  /* R-XFER-7: sent as one file frame, no TransferComplete */
    struct download *next;
};

/*
 * Download reads on the thread pool (download.c), so that the loop thread
 * never reads the disk: the loop lays out a piece's frame headers in a
 * slot's buffer, a work item fills their bytes with one read from the
 * blob, and the loop queues the buffer as it is (ferry_conn_send_ext: it
 * is encrypted from there, with no copy). Two slots per connection, one
 * read at a time, so the next piece is read while the last is encrypted;
 * a slot's buffer is allocated at the first read and freed when the
 * connection has no download left. SRV_DL_READS_MAX reads at once in the
 * whole server, so downloads leave pool threads to commits and checks;
 * connections beyond that wait in turn (srv->dlw_*).
 */
#define SRV_DL_SLOTS 2
#define SRV_DL_PIECE (1u << 20) /* content bytes of one read: a chunk fits whole */
/* Chunks of one read: each may end in a short frame, one more than the piece's. */
#define SRV_DL_ITEMS     16
#define SRV_DL_FRAMES    (SRV_DL_PIECE / FERRY_DATA_MAX + SRV_DL_ITEMS)
#define SRV_DL_SLOT_CAP  (SRV_DL_PIECE + SRV_DL_FRAMES * (FERRY_FRAME_HDR_LEN + FERRY_DATA_HDR_LEN))
#define SRV_DL_READS_MAX 2
/* One chunk's bytes (or a whole blob's) in a read: where they are, and their frames. */
struct dl_item {
    struct ferry_blob_ref ref; /* a chunk after the first: the read moves the reader here */
    int64_t pos;
    size_t want;
    int iov0, niov;
};
struct dl_slot {
    uv_work_t work;
    struct sess *s;
    struct download *d; /* the download it reads for, until its bytes are queued */
    int state;          /* DL_FREE, DL_READING, DL_READY, DL_QUEUED (download.c) */
    int whole;          /* one file frame (R-XFER-7), not a piece of data or chunk frames */
    int orphan;         /* d left the queue during the read: the slot frees it */
    int recheck;        /* a pack's chunk: its row is looked up again once read (R-CHUNK-11) */
    uint64_t seq;       /* the order of its read among the connection's: bytes go out in it */
    uint8_t *buf;       /* SRV_DL_SLOT_CAP bytes: the frames */
    size_t len;         /* bytes of frames */
    struct iovec iov[SRV_DL_FRAMES]; /* where the content's bytes go */
    int nfr;
    struct dl_item item[SRV_DL_ITEMS]; /* consecutive chunks read in one work item */
    int nitem;
    struct ferry_blob_reader *rd;
    int64_t pos;
    size_t want;
    ssize_t got;
};

struct sess {
    struct ferry_conn *conn; /* released with the session */
    struct srv *srv;
    int peer_minor; /* the minor of the version its Connect carried (R-FILE-1) */
    int refs;
    int closed;
    int connected;
    int authed;
    int counted_unauth;
    /* Admission (R-SESS-7 to R-SESS-10): what this connection counts in. */
    int admitted;            /* in srv->nconns and ip->conns */
    int refusing;            /* being refused (R-SESS-9): why, an enum of session.c; 0: not */
    struct ip_slot *ip;      /* its source address, while admitted or refusing */
    struct user_slot *uslot; /* held while logged in, or while a login commits */
    int64_t uid;
    char user[SRV_USER_MAX + 1];
    uint8_t token_hash[32];
    uint64_t accepted_ms;
    struct upload *uploads;
    int nuploads;
    struct ferry_writer *writer; /* created on the first large upload */
    /*
     * The writer's threads wake the loop through this when a buffer frees
     * or its work is done; writer_wait: a frame was left unread until then,
     * as the loop thread never waits for the disk.
     */
    uv_async_t *writer_wake;
    /*
     * The writer of a dropped upload is being ended on the pool (its queued
     * buffers reach the disk first): no upload takes it meanwhile, and a
     * closed connection's writer is freed once that is over.
     */
    int writer_ending;
    int writer_free_pending;
    int writer_wait;
    /*
     * Flushes still writing for uploads already gone (cancelled or failed):
     * they count among the open uploads until done (R-XFER-1), so a client
     * cannot pile up buffers and open files by opening and cancelling.
     */
    int lingering;
    int flush_waiting; /* its flushes in srv's queue, not yet started */
    struct download *dl_head;
    struct download *dl_tail;
    int ndownloads;
    struct dl_slot dl_slot[SRV_DL_SLOTS];
    uint64_t dl_seq;                         /* reads started so far */
    int dlw_waiting;                         /* in srv->dlw_*: waits for a read to start */
    struct sess *dlw_next;                   /* next in srv->dlw_* */
    struct chunk_rx rx[SRV_CHUNKS_OPEN_MAX]; /* chunks begun on this connection */
    int nrx;
    uint64_t unacked;
    int outstanding;  /* queued write ops and hash jobs */
    int auth_pending; /* Signup, Login, ChangePwd or Logout not yet answered */
    int barrier;      /* a frame waits until outstanding reaches 0 */
    int checking;     /* chunks whose SHA-256 check has not yet finished */
    int check_wait;   /* a TransferComplete waits until checking reaches 0 */
    /*
     * Recently finished downloads, whose TransferComplete ack is expected:
     * a ring of SRV_DONE_TIDS, allocated at the connection's first Download.
     */
    uint8_t (*done_tids)[FERRY_TID_LEN];
    uint64_t done_next; /* downloads finished in all */
    /* Bounded resources (R-PIPE-4). */
    int nops;              /* operations of this connection not yet committed */
    int opw_waiting;       /* in srv->opw_*: stopped until there is room in all */
    struct sess *opw_next; /* next in srv->opw_* */
    /* R-PAGE-2: the listing being sent, during which nothing else is read. */
    struct listing *listing;
    int listing_big;      /* the DirInfo held back needs a job: no second try on the loop */
    int lw_waiting;       /* in srv->lw_*: stopped until a listing job is free */
    struct sess *lw_next; /* next in srv->lw_* */
};

/* session.c */
/*
 * Registers a service: FERRY_EEXIST if another one handles one of its
 * message numbers or frames, FERRY_ETOOBIG past the tables' room.
 */
int srv_service_add(struct srv *srv, const struct srv_service *svc);
/* The connection may send more: every service's drain step, in the order they were added. */
void srv_sess_drained(struct sess *s);
void srv_sess_ref(struct sess *s);
void srv_sess_unref(struct sess *s);
int srv_send(struct sess *s, int32_t type, json_t *body);
int srv_send_error(struct sess *s, const char *ref, int rc, const char *msg);
/* The connections' callbacks, and the listener's for each one it accepts. */
extern const struct ferry_conn_ops srv_sess_ops;
int srv_on_connection(struct ferry_listener *l, struct ferry_conn *c);
void srv_sess_op_done(struct sess *s);
void srv_sess_auth_done(struct sess *s);
/* R-SESS-10: counts s as one of uid's connections; FERRY_EBUSY at the cap when check. */
int srv_sess_user_take(struct sess *s, int64_t uid, int check);
void srv_sess_user_release(struct sess *s);
/* The connection logged in (Signup, Login) or out; keeps the counts right. */
int srv_sess_logged_in(struct sess *s, int64_t uid, const char *user, const uint8_t token[32]);
void srv_sess_logged_out(struct sess *s);
/* R-AUTH-7: closes the live connections of uid's revoked sessions; returns how many. */
int srv_sess_revoke_live(struct srv *srv, struct sess *except, int64_t uid, const uint8_t *token);

/* auth.c: the accounts service. */
int srv_auth_init(struct srv *srv);
int srv_user_name_valid(const char *u);

/* throttle.c: bounded tables, given the time; no I/O. */
struct ip_slot *srv_ip_get(struct srv *srv, const char *ip, uint64_t now);
void srv_ip_put(struct srv *srv, struct ip_slot *v, uint64_t now);
int srv_ip_take_token(struct srv *srv, struct ip_slot *v, uint64_t now, uint64_t *retry_ms);
struct user_slot *srv_user_get(struct srv *srv, int64_t uid);
void srv_user_put(struct srv *srv, struct user_slot *u);
int srv_name_check(struct srv *srv, const char *name, int known, uint64_t now, uint64_t *retry_ms);
void srv_name_failed(struct srv *srv, const char *name, int known, uint64_t now);
void srv_name_succeeded(struct srv *srv, const char *name, int known, uint64_t now);
void srv_throttle_cleanup(struct srv *srv);

/* serverlog.c: the server log (docs/serverlog.md, R-LOG). */
/* Writes s as one log value (bare or quoted and escaped, at most max bytes of it). */
const char *srv_log_val(char *out, size_t cap, const char *s, size_t max);
/* R-LOG-3: 1 if a line of this kind may be written now, counting it; 0 if suppressed. */
int srv_log_allow(struct srv *srv, enum srv_log_kind kind);
/* Writes the counts of suppressed lines whose second is over. */
void srv_log_flush(struct srv *srv);
/* The log sink: "ferry serve: level=L msg" lines to standard error (R-LOG-7). */
void srv_log_sink(enum ferry_log_level lvl, const char *msg);
/* R-LOG-7: from now on the loop thread's lines are written once per loop turn. */
void srv_log_turns_start(struct srv *srv);
/* Writes what is gathered; from now on every line is written at once. */
void srv_log_turns_stop(struct srv *srv);
/* R-LOG-2: a protocol fault that closes s (R-ERR-1). */
void srv_log_fault(struct sess *s, const char *reason);
/* R-LOG-5: one line per finished transfer ("upload" or "download"). */
void srv_log_transfer(struct sess *s, const char *dir, const char *path, int64_t file_id,
                      uint64_t size, uint64_t sent, uint64_t t0_ms, int rc, const char *result);

/* files.c: the files service (listings and tree changes). */
int srv_files_init(struct srv *srv);

/* listing.c: DirInfo (R-PAGE-1, R-PAGE-2). */
int srv_listing_dirinfo(struct sess *s, const struct ferry_cmd *cmd);
/* R-PAGE-2: the connection's output drained: the listing may go on. */
void srv_listing_pump(struct sess *s);
/* The connection is closing: its listing ends, and it waits for none. */
void srv_listing_cleanup(struct sess *s);

/* transfer_service.c: the uploads and downloads service. */
int srv_transfer_init(struct srv *srv);

/* transfer.c */
int srv_upload_open(struct sess *s, const struct ferry_cmd *cmd);
int srv_upload_data(struct sess *s, const struct ferry_data *d);
int srv_chunk_data(struct sess *s, const struct ferry_chunk_frame *f);
int srv_upload_complete(struct sess *s, const struct ferry_cmd *cmd);
int srv_transfer_cancel(struct sess *s, const struct ferry_cmd *cmd);
int srv_download_queue(struct sess *s, const struct ferry_cmd *cmd);
void srv_download_pump(struct sess *s);
/* R-XFER-4: ends the download tid if it is still queued; nothing if it is not. */
void srv_download_cancel(struct sess *s, const uint8_t tid[static FERRY_TID_LEN]);
/* Drops every download of a closing connection (download.c). */
void srv_download_cleanup(struct sess *s);
void srv_transfer_cleanup(struct sess *s);
/* lists.c: chunk-list bytes held per user and in all (R-CHUNK-30). */
/*
 * Whether a list of want bytes could ever be held (else FERRY_ETOOBIG) and
 * fits the room left now on top of the held bytes this list holds already (else
 * FERRY_EBUSY: try again later).
 */
int srv_list_fits(struct srv *srv, int64_t uid, uint64_t held, uint64_t want);
/* The list bytes uid may still be charged: the smaller of its room and the server's. */
uint64_t srv_list_room(struct srv *srv, int64_t uid);
/* Charges n bytes to uid; the caller checked the room (srv_list_fits). */
int srv_list_charge(struct srv *srv, int64_t uid, uint64_t n);
/* Gives back list bytes charged to uid. */
void srv_list_uncharge(struct srv *srv, int64_t uid, uint64_t n);

/*
 * commit.c: the single-writer queue. It knows no kinds of operation: each
 * carries its type, whose steps the service that made it supplies.
 */
struct op_type {
    const char *name;
    /*
     * On the commit job, before the transaction: puts the operation's
     * content into the batch of the content store (ferry/blob.h). Returns
     * 1 if it put something, 0 if not, or an error for the operation.
     * NULL for an operation without content; with it, the operation is an
     * upload the batch's durability covers (R-STORE-5).
     */
    int (*put)(struct srv *srv, struct op *op, struct ferry_blob_batch *bb);
    /* On the commit job, in the batch's transaction under a savepoint of its own. */
    int (*apply)(struct srv *srv, struct op *op);
    /*
     * On the loop thread once the batch committed (or failed: op->rc):
     * the reply. Called even when the connection is closed, which the step
     * checks before sending. Transfer ids for the connection's one
     * Committed go into *committed.
     */
    void (*done)(struct op *op, json_t **committed);
    /* After every reply of the batch was sent and its room given back; may be NULL. */
    void (*finish)(struct op *op);
};

struct op {
    const struct op_type *type;
    struct sess *s;
    char ref[FERRY_UUID_STR_LEN + 1];
    int64_t uid;
    int rc;
    int64_t now;
    /* files */
    char *path;
    char *path2;
    int flag; /* recursive / force / all / exec */
    int replied;
    int64_t size;
    int64_t mtime;
    uint8_t tid[FERRY_TID_LEN];
    char cid[FERRY_CID_LEN + 1];
    struct ferry_blob_spool spool; /* a large upload: its bytes */
    uint8_t *data;                 /* inline content (R-STORE-9), a chunk's bytes, owned */
    uint8_t *list;                 /* chunked upload: its chunk list, owned */
    size_t list_len;
    int64_t list_uid;           /* R-CHUNK-30: whom the list is charged to... */
    size_t list_charged;        /* ...and how much, until the op is done */
    uint32_t index;             /* a chunk: its index in its list */
    uint8_t hash[32];           /* a chunk: the SHA-256 the list promised */
    struct ferry_blob_ref bref; /* a chunk: where the store put its bytes... */
    int bstatus;                /* ...how that went (ferry_blob_put_chunk)... */
    int stored;                 /* ...and whether they were put and made durable */
    int unused;                 /* a chunk held already: the bytes written are garbage */
    uv_work_t check;            /* a chunk: its SHA-256 check on the thread pool (transfer.c) */
    uint64_t t0_ms;             /* an upload: when its Upload came, for the log (R-LOG-5) */
    uint64_t staged; /* bytes it holds in memory or spool, counted in unacked (R-STORE-3) */
    /* accounts */
    char user[SRV_USER_MAX + 1];
    char pwhash[160];
    /* Login, ChangePwd: the hash the password was checked against (R-AUTH-14). */
    char verified[FERRY_PWHASH_MAX];
    char token[SRV_TOKEN_B64_LEN + 1];
    uint8_t token_hash[32];
    char device_id[FERRY_ID_LEN + 1];
    char device_name[SRV_DEVICE_NAME_MAX + 1];
    struct op *next;
};

struct op *srv_op_new(struct sess *s, const struct op_type *type, const char *ref);
/*
 * R-PIPE-4, R-STORE-11: whether s may queue one more write. 0: go ahead. 1:
 * a cap is reached; the connection is paused and the caller must leave the
 * frame unconsumed (return 1 from on_frame); it is read again once there is
 * room.
 */
int srv_op_admit(struct sess *s);
/* Forgets that s waits for room in all (its connection is closing). */
void srv_op_unwait(struct sess *s);
void srv_op_submit(struct srv *srv, struct op *op);
void srv_op_free(struct srv *srv, struct op *op);
void srv_kick_cb(uv_timer_t *t);
/* The reply of most operations: Ok, or an Error with the ref (nothing once closed). */
void srv_op_reply(struct op *op, json_t **committed);
/* The body of an operation's Error: its ref, code and message. */
json_t *srv_op_error_body(const struct op *op);
/* A content store's error as a ferry code: no space, or an internal error. */
int srv_io_rc(int rc);

/* upload_ops.c: the write-queue steps of uploads and chunks (R-STORE-2, R-CHUNK-7). */
extern const struct op_type srv_op_upload;
extern const struct op_type srv_op_chunk;

/* devices.c: Whoami, DeviceList, DeviceRevoke (R-ADMIN-7..9) and the admin watch. */
int srv_devices_init(struct srv *srv);
/* R-ADMIN-6: closes every connection whose session is gone from the database. */
void srv_sessions_recheck(struct srv *srv);
int srv_admin_watch_start(struct srv *srv);
void srv_admin_watch_stop(struct srv *srv);

/* Shared helpers. */
int64_t srv_now_ns(void);

#endif
