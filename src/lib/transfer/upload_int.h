/*
 * The upload job's internals, shared by its files, from the top:
 * upload.c (items, small files, session events, life cycle),
 * upload_chunked.c (chunked files and the extra links), upload_plan.c
 * (the walk) and upload_util.c (counts, frames, --bwlimit). A lower file
 * reaches the job's motor only through u->pump and u->finish.
 */
#ifndef FERRY_TRANSFER_UPLOAD_INT_H
#define FERRY_TRANSFER_UPLOAD_INT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <uv.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/hub.h"
#include "ferry/manifest.h"
#include "ferry/pool.h"
#include "ferry/upload.h"

enum { UP_DIR, UP_FILE };
/* QUEUED: to do; BUSY: being read or sent; SENT: waits for Committed (or Mkdir's OK). */
enum { IT_QUEUED, IT_BUSY, IT_SENT, IT_DONE, IT_FAILED };
/* An item's place among the hub's open uploads: none, taken, and its Upload sent. */
enum { UP_SLOT_NONE, UP_SLOT_TAKEN, UP_SLOT_SENT };

struct up_item {
    int kind;
    int state;
    char *local;
    char *remote;
    uint64_t size;
    int64_t mtime;
    int exec;
    int attempts;     /* chunked: commits refused for a missing chunk */
    int has_tid;      /* tid names the item's last transfer */
    int open;         /* UP_SLOT_*: its place among the hub's open uploads (R-XFER-1) */
    uint64_t counted; /* bytes this item added to bytes_done */
    uint64_t skipped; /* of them, bytes that did not travel */
    uint8_t tid[FERRY_TID_LEN];
};

/* What planning said, in order, for the owner once it is over. */
struct up_msg {
    int kind; /* MSG_ITEM (a failure, named) or MSG_NOTE */
    int rc;
    char *label; /* raw; NULL when text names the item */
    char *text;
};
enum { MSG_ITEM, MSG_NOTE };

struct up_read;
struct up_cfile;
struct up_call;

/* An extra link that carries chunks (R-CHUNK-13). */
struct up_link {
    struct ferry_upload *u;
    struct ferry_session *s; /* NULL: not open */
    int k;                   /* its number, 1.. (0 is the hub's) */
    int up;
    int dropping; /* closed by the job: no notice */
    int tallied;  /* its wire bytes are in the job's figures */
};

/* File bytes read per pool task of a plain Upload. */
#define UP_READ_BLOCK (1u << 20)
/*
 * Small files go to the pool in batches: one task reads and hashes up to
 * UP_FBATCH_FILES of them or UP_FBATCH_BYTES, whichever comes first, so a
 * tree of 4 KiB files costs one thread hand-off per batch, not per file.
 */
#define UP_FBATCH_FILES 64
#define UP_FBATCH_BYTES (1u << 20)
/* Batch tasks of one job at once: one pool slot stays for a chunked file. */
#define UP_FBATCHES_MAX 3
/* Plain Uploads being read or waiting for room, per job, and their bytes (read-ahead). */
#define UP_READS_MAX      (4 * UP_FBATCH_FILES)
#define UP_READ_AHEAD_MAX (8u << 20)
/* Chunk bytes one read task brings (at least one chunk); its buffers are kept for the next. */
#define UP_BATCH_BYTES (2u << 20)
/*
 * A read task lays its chunks out as chunk frames (R-CHUNK-6), headers
 * and all, so the loop hands them to TLS without copying them: a frame
 * header per FERRY_DATA_MAX bytes, and one more per chunk at most.
 */
#define UP_FRAME_OVERHEAD (FERRY_FRAME_HDR_LEN + FERRY_CHUNK_HDR_LEN)
#define UP_BATCH_BUF                                                                               \
    (UP_BATCH_BYTES +                                                                              \
     (UP_BATCH_BYTES / FERRY_DATA_MAX + UP_BATCH_BYTES / FERRY_CHUNK_MIN) * UP_FRAME_OVERHEAD)
/*
 * Buffers a job keeps for its next batches: the read tasks' two, and those
 * of the chunks a scan keeps (16 MiB, R-CHUNK-5). Fresh ones each time
 * cost their page faults again: 2 MiB blocks go back to the system when
 * freed.
 */
#define UP_SPARES_MAX 16
/* Pool tasks of one job at once. */
#define UP_POOL_MAX 4
/* Output queued on a link before the job stops producing for it. */
#define UP_OUT_HIGH FERRY_NET_OUT_HIGH

struct ferry_upload {
    struct ferry_hub *hub;
    struct ferry_hub_port *port;
    struct ferry_pool *pool;
    uv_loop_t *loop;
    struct ferry_job_ops ops;
    void *arg;

    /* The spec, copied. */
    char **sources;
    size_t nsources;
    char *dest;
    int into, recursive;
    uint64_t bwlimit;
    unsigned connections;
    struct ferry_state *state;
    struct ferry_session_cfg link_cfg;
    int has_link_cfg;
    char *l_host, *l_port, *l_from, *l_pin, *l_token, *l_client;

    /* Items, from planning. */
    struct up_item *v;
    size_t n;
    size_t cursor;     /* items before it are not QUEUED */
    size_t first_open; /* items before it are DONE or FAILED */
    size_t n_done, n_failed;
    uint64_t plan_failed; /* failures planning found (not items) */
    struct up_msg *msgs;
    size_t nmsgs;

    /* Where it stands. */
    int started, planned, up, minor, finished, cancelled, freeing;
    uint32_t gen; /* +1 at each lost link: work of an older link is dropped */
    int in_pump, pump_again;
    struct ferry_job_progress prog;
    uint64_t bytes_read;
    const char *cur_name;

    /* Plain Uploads: read in pool tasks, laid out in order of readiness. */
    unsigned reads;      /* alive: in a task or ready */
    uint64_t read_bytes; /* their planned sizes (a stream: one block) */
    unsigned fbatches;   /* batch tasks in flight */
    struct up_read *ready_head, *ready_tail;
    int stream_busy; /* a file of several blocks is under way (one at a time) */

    /* The chunked file under way, one at a time. */
    struct up_cfile *cf;
    struct up_link links[FERRY_UPLOAD_CONNECTIONS_MAX - 1];
    unsigned nlinks; /* wanted extra links */

    struct up_call *calls; /* Mkdirs in flight */

    /* --bwlimit */
    uv_timer_t bw_timer;
    int bw_waiting;
    uint64_t bw_start_ms, bw_sent;

    uint64_t wire_sent, wire_received; /* of extra links gone */

    /* Chunk buffers of finished reads, kept: a fresh 2 MiB costs page faults every time. */
    uint8_t *spare[UP_SPARES_MAX];
    unsigned nspare;

    /* The job's motor and its end (upload.c), for the files below it. */
    void (*pump)(struct ferry_upload *u);
    void (*finish)(struct ferry_upload *u, int rc);

    unsigned handles; /* pool and timer still to close when freeing */
};

/*
 * A send that failed because the link is going (its connection closing,
 * the session down): no fault of the job's; on_down requeues what it took.
 */
static inline int up_link_going(int rc)
{
    return rc == FERRY_ECANCELED || rc == -ENOTCONN;
}

/* upload.c */
void up_pump(struct ferry_upload *u);

/* upload_util.c */
/* u->pump and u->finish: the job's motor, and its end (on_done once). */
void up_kick(struct ferry_upload *u);
void up_end(struct ferry_upload *u, int rc);
void up_report(struct ferry_upload *u);
/* A UP_BATCH_BUF buffer (a kept one if any), and back (kept, or freed once freeing). */
uint8_t *up_buf_get(struct ferry_upload *u);
void up_buf_put(struct ferry_upload *u, uint8_t *p);
void up_fail(struct ferry_upload *u, struct up_item *it, int rc, const char *why);
void up_resolve(struct ferry_upload *u, struct up_item *it);
void up_progress(struct ferry_upload *u, struct up_item *it, uint64_t n, int skipped);
void up_uncount(struct ferry_upload *u, struct up_item *it, uint64_t n);
/* --bwlimit: 0 when n bytes may go now, 1 when a timer will call up_pump later. */
int up_bw_wait(struct ferry_upload *u);
void up_bw_sent(struct ferry_upload *u, uint64_t n);
/* Data frames of tid from off, laid out in place on c. */
int up_lay_data(struct ferry_conn *c, const uint8_t tid[static FERRY_TID_LEN], uint64_t off,
                const uint8_t *p, size_t len);
void up_flush(struct ferry_conn *c);
int up_send(struct ferry_upload *u, int32_t type, json_t *body);
/* Upload or ChunkedUpload of it under a new tid, claimed on the hub. */
int up_send_open(struct ferry_upload *u, struct up_item *it, int32_t type);
/* TransferComplete of it with its content id; the item then waits (IT_SENT). */
int up_send_complete(struct ferry_upload *u, struct up_item *it, const char *cid);
/* TransferCancel of it (R-XFER-4): its last word. */
int up_send_cancel(struct ferry_upload *u, struct up_item *it);
/*
 * The hub's count of open uploads (R-XFER-1): take a place for it (0, or 1
 * when none is free now: the hub wakes the job once one is), give it back.
 */
int up_slot_take(struct ferry_upload *u, struct up_item *it);
void up_slot_give(struct ferry_upload *u, struct up_item *it);
/*
 * The job stops: each upload it left open gets its TransferCancel, so the
 * server's count and the hub's fall together; places taken and unused go back.
 */
void up_slots_drop(struct ferry_upload *u);

/* upload_plan.c: the walk, on a worker thread; results read on the loop after. */
struct up_plan {
    struct ferry_upload *u;
    struct up_item *v;
    size_t n, cap;
    struct up_msg *msgs;
    size_t nmsgs, mcap;
    uint64_t failed;
    int rc;
};
int up_plan_work(void *arg);
void up_plan_free(struct up_plan *p);

/* upload_chunked.c */
/* Starts item idx as a chunked upload (R-CHUNK-4): 0, or < 0 for the job. */
int up_cf_start(struct ferry_upload *u, size_t idx);
/* Produces what the chunked file may: list frames, chunk reads, chunks, its end. */
void up_cf_pump(struct ferry_upload *u);
/* Drops the chunked file under way (a lost link, cancel, free). */
void up_cf_drop(struct ferry_upload *u);
int up_cf_frame(struct ferry_upload *u, const struct ferry_cmd *m, const uint8_t tid[16]);
int up_cf_owns(const struct ferry_upload *u, const struct up_item *it);
/* The item's failure arrived while it was being sent: stop, TransferCancel. */
void up_cf_failed(struct ferry_upload *u);
void up_links_open(struct ferry_upload *u);
void up_links_close(struct ferry_upload *u);

#endif
