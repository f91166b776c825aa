/* ferry serve: shared state of the server's services. */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include <stdint.h>

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
/* Finished downloads whose acknowledgement is still accepted. */
#define SRV_DONE_TIDS 64
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
/* Start writeback every this many bytes so the final fdatasync is short. */
#define SRV_WRITEBACK_STEP (8u << 20)
/* Blob bytes read per step of a download. */
#define SRV_READ_CHUNK (256u << 10)
/* R-CHUNK-6: chunks one connection may have begun and not finished. */
#define SRV_CHUNKS_OPEN_MAX 8
/* Per-name failure entries kept for login backoff. */
#define SRV_FAIL_TABLE 4096

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

struct ip_slot {
    char ip[64];
    int unauth;
    double tokens;
    uint64_t refill_ms;
};

struct fail_slot {
    char name[SRV_USER_MAX + 1];
    int failures;
    uint64_t next_ms;
    uint64_t used_ms;
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_timer_t kick;
    struct srv_config cfg;
    struct ferry_identity id;
    SSL_CTX *ctx;
    int datafd;
    int tmpfd;
    int lockfd;
    struct ferry_meta *wdb; /* writer: used only by commit jobs, one at a time */
    struct ferry_meta *rdb; /* reader: used on the loop thread */
    int nconns;
    struct ip_slot *ips;
    int nips;
    struct fail_slot fails[SRV_FAIL_TABLE];
    char dummy_hash[160];
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
    /* Listing jobs (R-PAGE-2), and connections waiting for one. */
    struct listing *listings;
    int nlistings;
    struct sess *lw_head;
    struct sess *lw_tail;
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
    int fd;
    int is_inline; /* small: kept in memory, stored in the database */
    int rc;        /* first failure; later data is discarded until TransferComplete */
    int reported;  /* the failure has been sent as an Error */
    char tmpname[40];
    struct ferry_sha256 sha;
    struct ferry_buf wbuf;
    /* Large uploads hash and write on the session's writer thread. */
    struct ferry_writer *wr;
    uint8_t *wb;
    size_t wlen;
    /* Chunked uploads (R-CHUNK): the list so far and the chunks arriving. */
    int chunked;
    uint8_t *list;   /* complete entries; none once the upload failed (R-CHUNK-30) */
    size_t list_len; /* bytes of the list received */
    size_t list_cap; /* bytes allocated, charged to uid */
    int64_t uid;     /* the user the upload was opened by */
    uint8_t carry[FERRY_CHUNK_ENT_LEN]; /* an entry split across frames */
    size_t carry_len;
    uint64_t list_sum; /* sum of the lengths of the complete entries */
    uint32_t nent;     /* complete entries */
    uint32_t answered; /* entries answered by ChunkNeed */
    int list_done;
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
    int fd;
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
    size_t nranges, range; /* the pairs, and the one being sent */
    uint64_t end;          /* bytes this download sends: size, list_len or the chunks' sum */
    int chunk_ready;       /* fd, pack and base locate the chunk */
    int64_t pack;          /* the pack open in fd (0: a chunk file of the old layout) */
    int64_t base;          /* where the chunk starts in fd */
    struct download *next;
};

struct sess {
    struct ferry_conn conn;
    struct srv *srv;
    int refs;
    int closed;
    int connected;
    int authed;
    int counted_unauth;
    int64_t uid;
    char user[SRV_USER_MAX + 1];
    uint8_t token_hash[32];
    uint64_t accepted_ms;
    struct upload *uploads;
    int nuploads;
    struct ferry_writer *writer; /* created on the first large upload */
    struct download *dl_head;
    struct download *dl_tail;
    int ndownloads;
    struct chunk_rx rx[SRV_CHUNKS_OPEN_MAX]; /* chunks begun on this connection */
    int nrx;
    uint64_t unacked;
    int outstanding;  /* queued write ops and hash jobs */
    int auth_pending; /* Signup, Login, ChangePwd or Logout not yet answered */
    int barrier;      /* a frame waits until outstanding reaches 0 */
    int checking;     /* chunks whose SHA-256 check has not yet finished */
    int check_wait;   /* a TransferComplete waits until checking reaches 0 */
    /* Recently finished downloads, whose TransferComplete ack is expected. */
    uint8_t done_tids[SRV_DONE_TIDS][FERRY_TID_LEN];
    unsigned done_next;
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
void srv_sess_ref(struct sess *s);
void srv_sess_unref(struct sess *s);
int srv_send(struct sess *s, int32_t type, json_t *body);
int srv_send_error(struct sess *s, const char *ref, int rc, const char *msg);
void srv_on_connection(uv_stream_t *listener, int status);
void srv_sess_op_done(struct sess *s);
void srv_sess_auth_done(struct sess *s);

/* auth.c */
int srv_auth_handle(struct sess *s, const struct ferry_cmd *cmd);
int srv_auth_init(struct srv *srv);
void srv_ip_release_unauth(struct srv *srv, const char *ip);
int srv_ip_admit(struct srv *srv, const char *ip);

/* files.c */
int srv_files_handle(struct sess *s, const struct ferry_cmd *cmd);

/* listing.c: DirInfo (R-PAGE-1, R-PAGE-2). */
int srv_listing_dirinfo(struct sess *s, const struct ferry_cmd *cmd);
/* R-PAGE-2: the connection's output drained: the listing may go on. */
void srv_listing_pump(struct sess *s);
/* The connection is closing: its listing ends, and it waits for none. */
void srv_listing_cleanup(struct sess *s);

/* transfer.c */
int srv_upload_open(struct sess *s, const struct ferry_cmd *cmd);
int srv_upload_data(struct sess *s, const struct ferry_data *d);
int srv_chunk_data(struct sess *s, const struct ferry_chunk_frame *f);
int srv_upload_complete(struct sess *s, const struct ferry_cmd *cmd);
int srv_transfer_cancel(struct sess *s, const struct ferry_cmd *cmd);
int srv_download_queue(struct sess *s, const struct ferry_cmd *cmd);
void srv_download_pump(struct sess *s);
void srv_transfer_cleanup(struct sess *s);
/* R-CHUNK-30: gives back list bytes charged to uid. */
void srv_list_uncharge(struct srv *srv, int64_t uid, uint64_t n);

/* commit.c: the single-writer queue. */
enum op_kind {
    OP_UPLOAD,
    OP_CHUNK,
    OP_MKDIR,
    OP_REMOVE,
    OP_MOVE,
    OP_SIGNUP,
    OP_SESSION,
    OP_SETPW,
    OP_LOGOUT,
};

struct op {
    enum op_kind kind;
    struct sess *s;
    char ref[FERRY_UUID_STR_LEN + 1];
    int64_t uid;
    int rc;
    int64_t now;
    /* files */
    char *path;
    char *path2;
    int flag;  /* recursive / force / all / exec */
    int flag2; /* upload: the blob directory fd while a batch runs */
    int replied;
    int64_t size;
    int64_t mtime;
    uint8_t tid[FERRY_TID_LEN];
    char cid[FERRY_CID_LEN + 1];
    char tmpname[40];
    int tmpfd;
    uint8_t *data; /* inline content (R-STORE-9), a chunk's bytes, owned */
    uint8_t *list; /* chunked upload: its chunk list, owned */
    size_t list_len;
    int64_t list_uid;    /* R-CHUNK-30: whom the list is charged to... */
    size_t list_charged; /* ...and how much, until the op is done */
    uint32_t index;      /* OP_CHUNK: index in its list */
    uint8_t hash[32];    /* OP_CHUNK: the SHA-256 the list promised */
    const char *top;     /* "blobs": where the placed file went */
    int64_t pack;        /* OP_CHUNK: the pack its bytes went to (0: not written) */
    int64_t off;         /* OP_CHUNK: and where in it */
    int unused;          /* OP_CHUNK: held already, the bytes written are garbage */
    uv_work_t check;     /* OP_CHUNK: its SHA-256 check on the thread pool (transfer.c) */
    /* accounts */
    char user[SRV_USER_MAX + 1];
    char pwhash[160];
    char token[SRV_TOKEN_B64_LEN + 1];
    uint8_t token_hash[32];
    char device_id[FERRY_ID_LEN + 1];
    char device_name[SRV_DEVICE_NAME_MAX + 1];
    struct op *next;
};

struct op *srv_op_new(struct sess *s, enum op_kind kind, const char *ref);
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
void srv_op_free(struct op *op);
void srv_kick_cb(uv_timer_t *t);

/* Shared helpers. */
int64_t srv_now_ns(void);

#endif
