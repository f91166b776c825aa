/*
 * The download job's insides, shared by download.c (receiving and
 * placing), download_plan.c (what to fetch) and download_patch.c (files
 * fetched by chunks, R-CHUNK-15/16). Not a public header.
 */
#ifndef FERRY_DOWNLOAD_INT_H
#define FERRY_DOWNLOAD_INT_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "ferry/batch.h"
#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/download.h"
#include "ferry/hub.h"
#include "ferry/manifest.h"
#include "ferry/part.h"
#include "ferry/path.h"
#include "ferry/piece.h"
#include "ferry/pool.h"
#include "ferry/writer.h"

/* Where a download stands. */
enum {
    DL_QUEUED = 0,
    DL_REQUESTED = 1,
    DL_DONE = 2,
    DL_FAILED = 3,
    DL_VERIFIED = 4, /* verified, waiting in the batch to become durable (R-RECV-4) */
};

/* Files up to this size are checked in memory and written with one write(2). */
#define DL_INLINE_MAX FERRY_WRITER_BUF
/*
 * A batch holds its mark of files and, while the one before it is still
 * being made durable, the downloads of a whole window beyond it (R-RECV-5
 * bounds them): room for both, so a verified file never waits for the disk.
 */
#define DL_BATCH_CAP (FERRY_BATCH_FILES_MAX + FERRY_HUB_DOWNLOADS_MAX)
/*
 * The bytes of small files a batch may hold: its mark, and the files of the
 * window already requested when it was reached (the pump requests no more
 * then), 1 MiB each at most.
 */
#define DL_HELD_CAP (FERRY_BATCH_HELD + FERRY_HUB_DOWNLOADS_MAX * DL_INLINE_MAX)
/*
 * R-RECV-7: what the listings of one job may bring: a million entries, and
 * 128 MiB of names. Entries are counted as they arrive, refused names
 * included, so a listing without end ends the job instead of running on.
 */
#define DL_LIST_ENTRIES_MAX (1u << 20)
#define DL_LIST_BYTES_MAX   (128u << 20)

struct dl {
    int64_t file_id;
    uint64_t size;                   /* as the listing gave it */
    int rootfd;                      /* the destination folder this item lives beneath (borrowed) */
    char *rel;                       /* path beneath rootfd, validated (R-PATH-6) */
    char *label;                     /* what to call it in messages */
    char id[FERRY_UUID_STR_LEN + 1]; /* the request's id; the hub routes its answers by it */
    int state;                       /* DL_* */
    char cid[FERRY_CID_LEN + 1];     /* content id the listing gave, "" if none */
    uint64_t resume;                 /* durable bytes of a partial file, asked to resume */
    struct ferry_part_id part_id;    /* R-RECV-2: the part file those bytes are in */
    /* R-CHUNK-15/16: 1 its list was asked for, 2 some of its chunks. */
    int phase;
    int restarts; /* times it changed on the server mid-way */
    struct ferry_piece *piece;
    int64_t mtime;
    int exec;
    uint64_t counted; /* progress it added on the chunk path, taken back on a requeue */
    uint64_t link;    /* the link it was verified on: acknowledged only on that one */
    int busy;         /* pool tasks holding its piece (planning, syncing, placing) */
};

struct piece_task;

struct dirmt {
    int rootfd;
    char *rel;
    int64_t mtime;
};

struct ferry_download {
    struct ferry_hub *hub;
    struct ferry_hub_port *port;
    uv_loop_t *loop;
    struct ferry_state *st;
    const struct ferry_job_ops *ops;
    void *arg;
    struct ferry_pool *pool;
    /*
     * ferry__dl_pump: the pool completions of download_patch.c call it through
     * here, since the job's files form a chain (download.c calls them).
     */
    void (*pump)(struct ferry_download *g);
    uv_async_t wake; /* the writer's threads say a buffer is free or the file written */
    int wake_open;
    /* the spec */
    char **srcs;
    int nsrc;
    char *dest;
    int dest_dir, rec;
    mode_t umask;
    /* the plan */
    struct dl *v;
    size_t n, cap;
    struct dirmt *dirs;
    size_t ndirs, capdirs;
    int *rootfds;
    size_t nroots;
    int started, planned;
    int plan_i;    /* the source being asked about */
    int plan_step; /* 0 its DirInfo, 1 its recursive listing */
    char plan_id[FERRY_UUID_STR_LEN + 1];
    int plan_rootfd;               /* the folder a listing lands in */
    size_t plan_failed;            /* failures counted before the plan began */
    uint64_t listed, listed_bytes; /* R-RECV-7 */
    /* what the job is doing */
    size_t next, first; /* the next to request; the first not finished */
    size_t inflight;    /* Downloads requested and not finished */
    size_t failed;
    uint64_t resumed, reused;
    struct ferry_job_progress prog;
    int pumping, over, cancelled, paused;
    int ending;    /* dl_end was asked: its rc, 1 for success */
    int fatal;     /* the error that ends the job */
    uint64_t link; /* links lost so far */
    /* the transfer being received */
    struct dl *cur;
    uint8_t tid[FERRY_TID_LEN];
    char cur_id[FERRY_UUID_STR_LEN + 1]; /* the request it answers */
    int have_tid; /* a Transfer was announced and its TransferComplete is due */
    int active;   /* its bytes are being received (into ibuf or the part file) */
    char hash[FERRY_CID_LEN + 1];
    uint64_t size, got;
    int64_t mtime;
    int exec;
    int dirfd, fd;
    struct ferry_dir dir;
    char tmpname[FERRY_PART_NAME_LEN];
    struct ferry_part_id part_id;
    int inl;       /* a small file, gathered in ibuf and checked in memory */
    uint8_t *ibuf; /* DL_INLINE_MAX bytes, allocated at the first small file */
    struct ferry_writer *wr;
    uint8_t *wb;
    size_t wlen;
    struct ferry_part_space space; /* R-RECV-6 */
    _Atomic uint64_t unwritten;    /* held in the batches, not yet written (R-RECV-6) */
    /* R-RECV-4: folders kept open, verified files waiting (batch), the batch being synced */
    struct ferry_dircache dc;
    struct ferry_batch batch, fbatch;
    int flushing;
    struct ferry_batch_slice slice; /* files of the batch being written by a pool task */
    int slicing;
    int tasks;                 /* tasks on the pool: pieces, a resumed prefix */
    int writer_task;           /* a pool task owns the writer: a file opened, a file kept */
    const char *open_why;      /* what open_work failed at */
    int open_plain;            /* its error code adds nothing to open_why */
    int chunk_task;            /* a pool task writes the chunks kept (download_patch.c) */
    int requeue_cur;           /* the link was lost meanwhile: requeue it once read */
    struct piece_task *ptasks; /* those tasks (download_patch.c) */
    uint8_t (*acks)[FERRY_TID_LEN];
    size_t nacks;
    int ack_rc;
};

/* download_base.c: called by the others, calls none of them */
void ferry__dl_fail_code(struct ferry_download *g, const char *label, int rc, const char *why);
void ferry__dl_fail(struct ferry_download *g, const char *label, const char *why);
void ferry__dl_fail_rc(struct ferry_download *g, const char *label, const char *why, int rc);
void ferry__dl_fail_space(struct ferry_download *g, const char *label, uint64_t need,
                          uint64_t avail);
void ferry__dl_progress(struct ferry_download *g);
int ferry__dl_send(struct ferry_download *g, int32_t type, json_t *body);
int ferry__dl_request(struct ferry_download *g, char id[static FERRY_UUID_STR_LEN + 1],
                      int32_t type, json_t *body);
void ferry__dl_unclaim(struct ferry_download *g, const char *id);
void ferry__dl_pump(struct ferry_download *g);
void ferry__dl_inflight(struct ferry_download *g, int delta);

/* download_plan.c */
void ferry__dl_plan_start(struct ferry_download *g);
void ferry__dl_plan_reset(struct ferry_download *g);
void ferry__dl_plan_free(struct ferry_download *g);
int ferry__dl_plan_reply(struct ferry_download *g, const struct ferry_cmd *m);
/* 1 when ref named a planning request (its Error is handled), else 0. */
int ferry__dl_plan_error(struct ferry_download *g, const char *ref, int rc, const char *msg);

/* download_patch.c */
int ferry__dl_has_local(struct ferry_download *g, const struct dl *x);
void ferry__dl_offer_resume(struct ferry_download *g, struct dl *x, json_t *req);
int ferry__dl_ask_list(struct ferry_download *g, struct dl *x);
int ferry__dl_patch_list_begin(struct ferry_download *g, struct dl *x, const struct ferry_cmd *m);
int ferry__dl_patch_chunks_begin(struct ferry_download *g, struct dl *x, const struct ferry_cmd *m);
int ferry__dl_patch_list_done(struct ferry_download *g);
int ferry__dl_patch_chunk(struct ferry_download *g, const struct ferry_chunk_frame *f);
int ferry__dl_patch_chunks_done(struct ferry_download *g);
int ferry__dl_patch_request(struct ferry_download *g, struct dl *x);
uint64_t ferry__dl_placing_seq(const struct ferry_download *g);
int ferry__dl_patch_error(struct ferry_download *g, struct dl *x, int code, const char *msg);

#endif
