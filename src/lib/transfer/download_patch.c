/*
 * The download job's files fetched by chunks (R-CHUNK-15, R-CHUNK-16): the
 * list first, then only the chunks this disk does not hold already, in a
 * piece store (ferry/piece.h), placed once whole and verified; and a
 * partial file's durable prefix offered for resuming (R-CHUNK-14).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "download_int.h"

/* The folder a download lands in, opened (created with mkdir > 0); < 0 on failure. */
static int dl_dir(const struct dl *x, int mkdir, const char **name)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(x->rel, '/');

    *name = slash != NULL ? slash + 1 : x->rel;
    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - x->rel) : 0, x->rel);
    if (mkdir)
        return ferry_mkdirs_beneath(x->rootfd, parent);
    return parent[0] ? ferry_open_beneath(x->rootfd, parent, O_RDONLY | O_DIRECTORY, 0)
                     : fcntl(x->rootfd, F_DUPFD_CLOEXEC, 0);
}

/* The folder a download lands in, if it exists: borrowed from the cache, < 0 if not. */
static int local_dir(struct ferry_download *g, const struct dl *x, const char **name)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(x->rel, '/');
    const struct ferry_dir *dir;

    *name = slash != NULL ? slash + 1 : x->rel;
    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - x->rel) : 0, x->rel);
    if (ferry_dircache_get(&g->dc, x->rootfd, parent, 0, &dir) != 0)
        return -1;
    return dir->fd;
}

/*
 * Whether a chunked file has bytes on this disk to build on: a partial
 * download of it, or an old version at its destination (R-CHUNK-16). The
 * records count only for the part file they were made for (R-RECV-2).
 */
int ferry__dl_has_local(struct ferry_download *g, const struct dl *x)
{
    char pname[FERRY_PART_NAME_LEN];
    struct ferry_part_id id;
    uint64_t psize, palloc;
    const char *name;
    struct stat st;
    int dfd;

    if (strncmp(x->cid, FERRY_CID_CHUNKS_PREFIX, 7) != 0)
        return 0;
    if ((dfd = local_dir(g, x, &name)) < 0)
        return 0;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_size >= (off_t)FERRY_CHUNK_MIN)
        return 1;
    ferry_part_name(x->cid, x->rel, pname);
    if (ferry_part_stat(dfd, pname, &id, &psize, &palloc) != 0)
        return 0;
    return ferry_piece_has_bitmap(g->st, dfd, pname, x->cid, &id) ||
           ferry_part_durable(g->st, dfd, pname, x->cid, &id) > 0;
}

/*
 * R-CHUNK-14: a durable prefix of the same content in a part file recorded
 * for that very file (R-RECV-2): the Download asks for the rest. Files
 * without a part file cost one failed open here, nothing more.
 */
void ferry__dl_offer_resume(struct ferry_download *g, struct dl *x, json_t *req)
{
    char pname[FERRY_PART_NAME_LEN];
    uint64_t durable, psize, palloc;
    const char *name;
    int dfd;

    x->resume = 0;
    /*
     * Records of a durable prefix are made only for files the writer thread
     * receives (R-CHUNK-14), never for a small one checked in memory: no
     * part file to look for.
     */
    if (x->size <= DL_INLINE_MAX && strncmp(x->cid, "sha256:", 7) == 0)
        return;
    if (x->cid[0] == '\0' || ferry_hub_minor(g->hub) < 1 || (dfd = local_dir(g, x, &name)) < 0)
        return;
    ferry_part_name(x->cid, x->rel, pname);
    if (ferry_part_stat(dfd, pname, &x->part_id, &psize, &palloc) != 0)
        return;
    durable = ferry_part_durable(g->st, dfd, pname, x->cid, &x->part_id);
    if (durable > 0 && psize >= durable) {
        x->resume = durable;
        json_object_set_new(req, "offset", json_integer((json_int_t)durable));
        json_object_set_new(req, "hash", json_string(x->cid));
    }
}

/* R-CHUNK-15: asks for the file's chunk list. */
int ferry__dl_ask_list(struct ferry_download *g, struct dl *x)
{
    ferry_piece_free(x->piece);
    x->piece = NULL;
    ferry__dl_unclaim(g, x->id);
    x->state = DL_REQUESTED;
    x->phase = 1;
    ferry__dl_inflight(g, +1);
    return ferry__dl_request(g, x->id, FERRY_MSG_DOWNLOAD,
                             json_pack("{s:I, s:b}", "file_id", (json_int_t)x->file_id, "list", 1));
}

/* Gives up on a file downloaded by chunks; its verified chunks stay for a rerun. */
static void patch_fail(struct ferry_download *g, struct dl *x, const char *why, int discard)
{
    if (g->cur == x)
        g->cur = NULL;
    if (discard && x->piece != NULL)
        ferry_piece_discard(x->piece);
    ferry_piece_free(x->piece);
    x->piece = NULL;
    x->phase = 0;
    x->state = DL_FAILED;
    ferry__dl_fail(g, x->label, why);
}

/* patch_fail with the text of a local error code appended. */
static void patch_fail_rc(struct ferry_download *g, struct dl *x, const char *why, int rc)
{
    char buf[256];

    snprintf(buf, sizeof(buf), "%s: %s", why,
             rc < 0 && rc > -4096 ? strerror(-rc) : ferry_strerror(rc));
    patch_fail(g, x, buf, 0);
}

/* Reads a Transfer's tid, size and hash into g and x. */
static int patch_transfer(struct ferry_download *g, struct dl *x, const struct ferry_cmd *m,
                          const char **hash, uint64_t *size)
{
    const char *tid = json_string_value(json_object_get(m->body, "tid"));
    json_t *sz = json_object_get(m->body, "size");

    *hash = json_string_value(json_object_get(m->body, "hash"));
    if (tid == NULL || ferry_hex_decode(tid, g->tid, 16) != 0 || *hash == NULL ||
        !ferry_cid_valid(*hash) || !json_is_integer(sz) || json_integer_value(sz) < 0)
        return FERRY_EPROTO;
    *size = (uint64_t)json_integer_value(sz);
    if (ferry_hub_claim_tid(g->port, g->tid) != 0)
        return FERRY_EPROTO; /* a tid another transfer holds */
    g->cur = x;
    g->have_tid = 1;
    return 0;
}

int ferry__dl_patch_list_begin(struct ferry_download *g, struct dl *x, const struct ferry_cmd *m)
{
    json_t *ll = json_object_get(m->body, "list_len");
    const char *hash;
    uint64_t size;
    int rc;

    if (x->phase != 1 || !json_is_integer(ll) || json_integer_value(ll) < 0 ||
        (rc = patch_transfer(g, x, m, &hash, &size)) != 0)
        return FERRY_EPROTO;
    /* The list is of the current content, which may be newer than the listing's. */
    snprintf(x->cid, sizeof(x->cid), "%s", hash);
    g->prog.state = NULL;
    g->prog.name = x->label;
    x->mtime = json_integer_value(json_object_get(m->body, "mtime"));
    x->exec = json_is_true(json_object_get(m->body, "exec"));
    /* R-CHUNK-15: a list over its cap is refused before anything is allocated. */
    if ((rc = ferry_piece_new(g->st, hash, size, (uint64_t)json_integer_value(ll), &x->piece)) != 0)
        return rc == -ENOMEM ? rc : FERRY_EPROTO;
    /* Its chunks are written by pool tasks (write_work), never on the loop. */
    ferry_piece_stage(x->piece);
    return 0;
}

int ferry__dl_patch_chunks_begin(struct ferry_download *g, struct dl *x, const struct ferry_cmd *m)
{
    const char *hash;
    uint64_t size;

    if (x->piece == NULL || patch_transfer(g, x, m, &hash, &size) != 0 || strcmp(hash, x->cid) != 0)
        return FERRY_EPROTO;
    return 0;
}

/*
 * Work on the thread pool for a file fetched by chunks: planning (reading
 * the old file and the part file back, R-CHUNK-16) and placing (reading the
 * whole part file back, R-RECV-3) take as long as the disk takes, and the
 * loop receives meanwhile. The piece is the task's until its done runs.
 */
struct piece_task {
    struct ferry_download *g;
    struct dl *x;
    struct piece_task *next; /* the job's tasks on the pool (ptasks) */
    uint64_t link;           /* the link the file's acknowledgement belongs to */
    uint64_t seq;            /* R-RECV-5: its TransferComplete's place on that link */
    int has_tid;
    uint8_t tid[FERRY_TID_LEN];
    int dfd;
    char name[FERRY_PATH_MAX + 1];
    char pname[FERRY_PART_NAME_LEN];
    mode_t mode;
};

static struct piece_task *task_new(struct ferry_download *g, struct dl *x)
{
    struct piece_task *t = ferry_calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->g = g;
    t->x = x;
    t->link = g->link;
    t->dfd = -1;
    t->mode = (x->exec ? 0777 : 0666) & ~g->umask;
    t->next = g->ptasks;
    g->ptasks = t;
    x->busy++;
    g->tasks++;
    return t;
}

/* The task is over: the piece is the job's again, and the job goes on (or ends). */
static void task_end(struct piece_task *t)
{
    struct ferry_download *g = t->g;
    struct piece_task **pp = &g->ptasks;

    while (*pp != t)
        pp = &(*pp)->next;
    *pp = t->next;
    t->x->busy--;
    g->tasks--;
    if (t->dfd >= 0)
        close(t->dfd);
    ferry_free(t);
    g->pump(g);
}

static int place_work(void *arg)
{
    struct piece_task *t = arg;

    return ferry_piece_place(t->x->piece, t->name, t->mode, t->x->mtime);
}

static void place_done(void *arg, int rc)
{
    struct piece_task *t = arg;
    struct ferry_download *g = t->g;
    struct dl *x = t->x;
    char tidhex[33];

    g->prog.state = NULL;
    if (rc != 0) {
        /* R-RECV-3: bytes on disk that are not the content are not kept for a rerun either. */
        if (rc == FERRY_EHASH)
            patch_fail(g, x, "its bytes on disk did not match its hash; nothing was placed", 1);
        else
            patch_fail_rc(g, x, "cannot put it in place", rc);
        task_end(t);
        return;
    }
    ferry_piece_free(x->piece);
    x->piece = NULL;
    x->state = DL_DONE;
    g->prog.files_done++;
    ferry__dl_progress(g);
    /* Acknowledged on the link it came by only (R-XFER-3): a new one would not know it. */
    if (t->has_tid && t->link == g->link && ferry_hub_is_up(g->hub)) {
        ferry_hex_encode(t->tid, FERRY_TID_LEN, tidhex);
        rc = ferry__dl_send(g, FERRY_MSG_TRANSFER_COMPLETE,
                            json_pack("{s:s, s:s}", "tid", tidhex, "hash", x->cid));
        if (rc != 0 && g->fatal == 0)
            g->fatal = rc;
    }
    task_end(t);
}

/* The file is whole in its part file: into place on the pool, then acknowledged if tid is set. */
static int patch_place(struct ferry_download *g, struct dl *x, const uint8_t *tid)
{
    const char *name = strrchr(x->rel, '/');
    struct piece_task *t;
    int rc;

    name = name != NULL ? name + 1 : x->rel;
    if ((t = task_new(g, x)) == NULL)
        return -ENOMEM;
    snprintf(t->name, sizeof(t->name), "%s", name);
    if (tid != NULL) {
        /* Its acknowledgement is owed from now: the window counts from it (R-RECV-5). */
        t->has_tid = 1;
        t->seq = ferry_hub_tc_seq(g->hub);
        memcpy(t->tid, tid, FERRY_TID_LEN);
    }
    /* R-RECV-3: the part file is read back and hashed before the rename. */
    g->prog.name = x->label;
    g->prog.state = "verifying";
    ferry__dl_progress(g);
    if ((rc = ferry_pool_submit(g->pool, place_work, place_done, t, NULL)) != 0) {
        /* No pool: placed here, as safe, the loop waiting. */
        place_done(t, place_work(t));
    }
    return 0;
}

/* R-CHUNK-16: asks for the chunks still missing. */
int ferry__dl_patch_request(struct ferry_download *g, struct dl *x)
{
    json_t *ranges = ferry_piece_ranges(x->piece);

    if (ranges == NULL)
        return -ENOMEM;
    ferry__dl_unclaim(g, x->id);
    x->state = DL_REQUESTED;
    x->phase = 2;
    ferry__dl_inflight(g, +1);
    return ferry__dl_request(g, x->id, FERRY_MSG_DOWNLOAD,
                             json_pack("{s:I, s:s, s:o}", "file_id", (json_int_t)x->file_id, "hash",
                                       x->cid, "chunks", ranges));
}

/* The list is in: take what is on the disk, ask for the rest. */
/*
 * After local work on a piece: the chunks still missing are asked for on
 * the link the work began on; if that link is gone (or the job ends), the
 * file goes back to the queue with what is durable of it.
 */
static void next_request(struct piece_task *t)
{
    struct ferry_download *g = t->g;
    struct dl *x = t->x;
    size_t i = (size_t)(x - g->v);

    x->state = DL_QUEUED;
    if (t->link != g->link || !ferry_hub_is_up(g->hub) || g->ending) {
        ferry_piece_sync(x->piece);
        ferry_piece_free(x->piece);
        x->piece = NULL;
        x->phase = 0;
        x->counted = 0;
        if (g->ending)
            x->state = DL_FAILED;
    }
    /* Asked for by the pump, within the window (R-PIPE-1, R-RECV-5). */
    if (x->state == DL_QUEUED && g->next > i)
        g->next = i;
}

/* The oldest acknowledgement a chunked file being placed still owes on this link. */
uint64_t ferry__dl_placing_seq(const struct ferry_download *g)
{
    const struct piece_task *t;
    uint64_t oldest = FERRY_HUB_NO_SEQ;

    for (t = g->ptasks; t != NULL; t = t->next)
        if (t->has_tid && t->link == g->link && t->seq < oldest)
            oldest = t->seq;
    return oldest;
}

static int plan_work(void *arg)
{
    struct piece_task *t = arg;

    return ferry_piece_plan(t->x->piece, t->dfd, t->name, t->pname, t->mode, t->x->mtime);
}

static void plan_done(void *arg, int rc)
{
    struct piece_task *t = arg;
    struct ferry_download *g = t->g;
    struct dl *x = t->x;
    uint64_t reused, kept, need, avail;

    if (rc == FERRY_PIECE_ALREADY) {
        /* The file is already this content (the local index says so): nothing to fetch. */
        g->reused += ferry_piece_size(x->piece);
        g->prog.bytes_done += ferry_piece_size(x->piece);
        g->prog.bytes_skipped += ferry_piece_size(x->piece);
        ferry_piece_free(x->piece);
        x->piece = NULL;
        x->state = DL_DONE;
        g->prog.files_done++;
    } else if (rc == FERRY_EPROTO) {
        /* A list that is not the content's: the server is at fault. */
        patch_fail(g, x, "its chunk list did not match its content id", 0);
        if (g->fatal == 0)
            g->fatal = FERRY_EPROTO;
    } else if (rc == -ENOSPC) {
        /* R-RECV-6: refused before the part file was created or sized. */
        need = ferry_piece_need(x->piece, &avail);
        ferry_piece_free(x->piece);
        x->piece = NULL;
        x->phase = 0;
        x->state = DL_FAILED;
        ferry__dl_fail_space(g, x->label, need, avail);
    } else if (rc != 0) {
        if (rc == -EPERM)
            patch_fail(g, x, "cannot use its temporary file (a foreign file in the way?)", 0);
        else
            patch_fail_rc(g, x, "cannot use its temporary file", rc);
    } else {
        reused = ferry_piece_reused(x->piece, &kept);
        g->reused += reused;
        g->resumed += kept;
        x->counted += reused + kept;
        g->prog.bytes_done += reused + kept;
        g->prog.bytes_skipped += reused + kept;
        ferry__dl_progress(g);
        if (ferry_piece_complete(x->piece)) {
            /* The place task takes over the piece. */
            rc = patch_place(g, x, NULL);
            if (rc != 0 && g->fatal == 0)
                g->fatal = rc;
        } else {
            next_request(t);
        }
    }
    task_end(t);
}

/* The list is in: take what is on the disk (on the pool), then ask for the rest. */
int ferry__dl_patch_list_done(struct ferry_download *g)
{
    struct dl *x = g->cur;
    struct piece_task *t;
    const char *name;
    int dfd, rc;

    g->cur = NULL;
    if ((dfd = dl_dir(x, 1, &name)) < 0) {
        patch_fail(g, x, "cannot create its folder", 0);
        return 0;
    }
    if ((t = task_new(g, x)) == NULL) {
        close(dfd);
        return -ENOMEM;
    }
    t->dfd = dfd;
    snprintf(t->name, sizeof(t->name), "%s", name);
    ferry_part_name(x->cid, x->rel, t->pname);
    if ((rc = ferry_pool_submit(g->pool, plan_work, plan_done, t, NULL)) != 0)
        plan_done(t, plan_work(t)); /* no pool: here, as safe, the loop waiting */
    return 0;
}

static int write_work(void *arg)
{
    struct piece_task *t = arg;

    return ferry_piece_write(t->x->piece);
}

static void write_done(void *arg, int rc)
{
    struct piece_task *t = arg;
    struct ferry_download *g = t->g;
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(g->hub));

    g->chunk_task = 0;
    if (rc != 0)
        patch_fail_rc(g, t->x, "cannot write it", rc);
    else if (t->link != g->link || !ferry_hub_is_up(g->hub) || g->ending)
        next_request(t); /* given up meanwhile: what is written kept, as requeue_all would */
    if (g->paused && c != NULL) {
        g->paused = 0;
        ferry_conn_resume(c);
    }
    task_end(t);
}

/*
 * The chunks kept are written (and every 32 MiB synced) by a pool task; the
 * link is paused until it is done, as the piece is the task's meanwhile.
 */
static int write_chunks(struct ferry_download *g, struct dl *x)
{
    struct ferry_conn *c = ferry_session_conn(ferry_hub_session(g->hub));
    struct piece_task *t;

    if (c == NULL)
        return FERRY_EINTERNAL; /* chunks come only on a live link */
    if ((t = task_new(g, x)) == NULL)
        return -ENOMEM;
    ferry_conn_pause(c);
    g->paused = 1;
    g->chunk_task = 1;
    if (ferry_pool_submit(g->pool, write_work, write_done, t, NULL) != 0)
        write_done(t, write_work(t)); /* no pool: here, the loop waiting */
    return 0;
}

/* A chunk frame of the file being received by chunks. */
int ferry__dl_patch_chunk(struct ferry_download *g, const struct ferry_chunk_frame *f)
{
    struct dl *x = g->cur;
    uint64_t fresh = 0;
    int rc;

    rc = ferry_piece_chunk(x->piece, f, &fresh);
    if (rc == FERRY_EPROTO)
        return rc;
    if (rc == FERRY_PIECE_FLUSH) {
        g->prog.bytes_done += f->len;
        x->counted += f->len;
        ferry__dl_progress(g);
        return write_chunks(g, x);
    }
    g->prog.bytes_done += f->len;
    x->counted += f->len;
    ferry__dl_progress(g);
    if (rc == FERRY_EHASH) {
        /* Chunks arrive checked one by one: a bad one ends this file, not the others. */
        patch_fail(g, x, "a chunk did not match its hash; nothing was written", 0);
        return 0;
    }
    if (rc != 0)
        patch_fail_rc(g, x, "cannot write it", rc);
    (void)fresh;
    return 0;
}

static int sync_work(void *arg)
{
    struct piece_task *t = arg;

    return ferry_piece_sync(t->x->piece);
}

static void sync_done(void *arg, int rc)
{
    struct piece_task *t = arg;

    if (rc != 0)
        patch_fail_rc(t->g, t->x, "cannot make it durable", rc);
    else
        next_request(t);
    task_end(t);
}

int ferry__dl_patch_chunks_done(struct ferry_download *g)
{
    struct dl *x = g->cur;
    struct piece_task *t;
    int rc;

    g->cur = NULL;
    /* Placing syncs the part file before it reads it back. */
    if (ferry_piece_complete(x->piece))
        return patch_place(g, x, g->tid);
    /* More runs than one request carries: what came is made durable, then the next batch. */
    if ((t = task_new(g, x)) == NULL)
        return -ENOMEM;
    if ((rc = ferry_pool_submit(g->pool, sync_work, sync_done, t, NULL)) != 0)
        sync_done(t, sync_work(t));
    return 0;
}

/* An Error for a file downloaded by chunks. */
int ferry__dl_patch_error(struct ferry_download *g, struct dl *x, int code, const char *msg)
{
    /* R-CHUNK-16: the file changed on the server since its list: start again. */
    if (code == FERRY_EHASH && x->phase == 2 && x->restarts < 3) {
        size_t i = (size_t)(x - g->v);
        x->restarts++;
        if (x->piece != NULL)
            ferry_piece_sync(x->piece);
        ferry_piece_free(x->piece);
        x->piece = NULL;
        x->phase = 0;
        /* Asked again by the pump, within the window: its chunks are on disk now. */
        x->state = DL_QUEUED;
        if (g->next > i)
            g->next = i;
        return 0;
    }
    patch_fail(g, x, msg, 0);
    return 0;
}
