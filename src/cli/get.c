/* ferry get: download files and folders; each lands in a temp file, renamed once verified. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "ferry/manifest.h"
#include "ferry/part.h"
#include "ferry/path.h"
#include "ferry/piece.h"
#include "ferry/writer.h"
#include "getbatch.h"

/* Where a download stands. */
enum {
    DL_QUEUED = 0,
    DL_REQUESTED = 1,
    DL_DONE = 2,
    DL_FAILED = 3,
    DL_VERIFIED = 4, /* verified, waiting in the batch to become durable (R-RECV-4) */
};

struct dl {
    int64_t file_id;
    uint64_t size; /* as the listing gave it */
    int rootfd;    /* the destination folder this item lives beneath (borrowed) */
    char *rel;     /* path beneath rootfd, validated (R-PATH-6) */
    char *label;   /* what to call it in messages */
    char id[FERRY_UUID_STR_LEN + 1];
    int state;                    /* DL_* */
    char cid[FERRY_CID_LEN + 1];  /* content id the listing gave, "" if none */
    uint64_t resume;              /* durable bytes of a partial file, asked to resume */
    struct ferry_part_id part_id; /* R-RECV-2: the part file those bytes are in */
    /* R-CHUNK-15/16: 1 its list was asked for, 2 some of its chunks. */
    int phase;
    int restarts; /* times it changed on the server mid-way */
    struct ferry_piece *piece;
    int64_t mtime;
    int exec;
    uint64_t counted; /* progress it added on the chunk path, taken back on a requeue */
};

struct dirmt {
    int rootfd;
    char *rel;
    int64_t mtime;
};

struct get {
    struct cli_conn cc;
    struct dl *v;
    size_t n, cap;
    struct dirmt *dirs;
    size_t ndirs, capdirs;
    int *rootfds;
    size_t nroots;
    size_t failed;
    uint64_t listed, listed_bytes; /* R-RECV-7: entries and name bytes the listings brought */
    struct cli_progress prog;
    mode_t umask;
    /* the transfer being received */
    struct dl *cur;
    uint8_t tid[FERRY_TID_LEN];
    int have_tid; /* a Transfer was announced and its TransferComplete is due */
    int active;   /* its bytes are being received (into ibuf or the part file) */
    char hash[FERRY_CID_LEN + 1];
    uint64_t size, got, synced;
    int64_t mtime;
    int exec;
    int dirfd, fd;
    struct cli_dir dir; /* the folder dirfd is (its identity, for the batch) */
    char tmpname[FERRY_PART_NAME_LEN];
    struct ferry_part_id part_id; /* the part file's identity (R-RECV-2) */
    /*
     * Hashing and writing run on the writer's thread while this one
     * receives; a small file is gathered here instead (inl), checked, and
     * written with one write(2): a thread hand-off per file cost more.
     */
    int inl;
    uint8_t *ibuf; /* CLI_INLINE_MAX bytes, allocated at the first small file */
    struct ferry_writer *wr;
    uint8_t *wb;
    size_t wlen;
    struct ferry_part_space space; /* R-RECV-6: free space as last read, less what was admitted */
    uint64_t unsynced; /* bytes handed to the writer since the last check of what is durable */
    uint64_t recorded; /* durable bytes recorded in the state database */
    uint64_t resumed;  /* bytes not fetched again thanks to partial files (--stats) */
    uint64_t reused;   /* bytes taken from old local files instead (--stats) */
    size_t inflight;   /* Downloads requested and not finished */
    /*
     * R-RECV-4: destination folders kept open, verified files waiting to be
     * durable (batch), and the batch the flusher thread is making durable
     * meanwhile (fbatch, while flushing).
     */
    struct cli_dircache dc;
    struct cli_batch batch, fbatch;
    struct cli_flusher *fl;
    int flushing;
    /*
     * R-RECV-5: the TransferCompletes the server sent on this connection, in
     * order: the server remembers the last cc.acks of them for their
     * acknowledgements, and each file in a batch keeps its number.
     */
    uint64_t tc_seq;
    /* R-XFER-6: the acknowledgements of the batch being reported (1.3). */
    uint8_t (*acks)[FERRY_TID_LEN];
    size_t nacks;
};

/* R-CHUNK-14: a partial download becomes durable (and resumable) every this many bytes. */
#define GET_DURABLE_STEP (32u << 20)
/* Queued requests and acknowledgements are pushed out from this many bytes (one TLS record). */
#define GET_PUSH_BYTES (16u << 10)
/* Files up to this size are checked and written on the receiving thread (one writer buffer). */
#define CLI_INLINE_MAX FERRY_WRITER_BUF
/*
 * R-RECV-7: what the listings of one get may bring: a million entries, and
 * 128 MiB of names (a tree of 4 KiB paths reaches that first). Entries are
 * counted as they arrive, refused names included, so the plan they make
 * stays under about half a GiB, and a listing without end (or one of
 * nothing but refused names) ends the get instead of running forever.
 */
#define CLI_LIST_ENTRIES_MAX (1u << 20)
#define CLI_LIST_BYTES_MAX   (128u << 20)

static const char get_usage[] =
    "usage: ferry get [-r] [-q] [--retry-for SECS] REMOTE... [LOCAL]\n"
    "\n"
    "Downloads remote files (and with -r, folders). The last argument is the local\n"
    "destination, as with cp and scp; with a single argument it is the current\n"
    "folder. Each file is written to a temporary name, checked against its content\n"
    "id, made durable, then renamed into place: nothing half-written is ever\n"
    "visible, and a file reported received survives a crash.\n"
    "\n"
    "  -r, --recursive    download folders and everything in them\n"
    "  -q, --quiet        no progress line\n"
    "  --retry-for SECS   reconnect and carry on for this long after the connection\n"
    "                     is lost (default 60; 0: give up at once)\n"
    "  --stats            print files and bytes received, kept and on the wire\n"
    "\n"
    "A download cut short keeps what was made durable (every 32 MiB) in a\n"
    ".ferry-*.part file beside the destination; running the same get again\n"
    "continues from there. A file that does not fit in the destination's free\n"
    "space is refused before anything is written.\n"
    "\n"
    "Exit status: 0 all received, 1 failure, 2 usage, 3 some files failed (each\n"
    "named), 4 interrupted: run the same command again.\n";

static void failmsg(struct get *g, const char *label, const char *why)
{
    g->failed++;
    /* R-CLI-13: a message starts on a line of its own, never on the progress line. */
    cli_progress_clear();
    fprintf(stderr, "ferry: ");
    cli_print_name(stderr, label);
    fprintf(stderr, ": %s\n", why);
}

/* failmsg with the text of a local error code appended ("why: No such file"). */
static void failmsg_rc(struct get *g, const char *label, const char *why, int rc)
{
    char buf[256];

    snprintf(buf, sizeof(buf), "%s: %s", why,
             rc < 0 && rc > -4096 ? strerror(-rc) : ferry_strerror(rc));
    failmsg(g, label, buf);
}

/* R-RECV-6: "not enough space" with the figures, for a file refused before it is written. */
static void failmsg_space(struct get *g, const char *label, uint64_t need, uint64_t avail)
{
    char buf[200];

    snprintf(buf, sizeof(buf),
             "not enough free space for it (%.1f MB to write, %.1f MB free); nothing was written",
             (double)need / 1e6, (double)avail / 1e6);
    failmsg(g, label, buf);
}

/* R-RECV-7: counts an entry of a listing as it arrives; FERRY_ETOOBIG past the caps. */
static int listed(struct get *g, const char *name)
{
    g->listed++;
    g->listed_bytes += name != NULL ? strlen(name) : 0;
    if (g->listed > CLI_LIST_ENTRIES_MAX || g->listed_bytes > CLI_LIST_BYTES_MAX)
        return FERRY_ETOOBIG;
    return 0;
}

static int add_dl(struct get *g, int64_t file_id, uint64_t size, int rootfd, const char *rel,
                  const char *label, const char *cid)
{
    struct dl *d;

    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 256;
        struct dl *nv = ferry_realloc(g->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        g->v = nv;
        g->cap = ncap;
    }
    d = &g->v[g->n];
    *d = (struct dl){.file_id = file_id, .size = size, .rootfd = rootfd};
    if (cid != NULL && ferry_cid_valid(cid))
        snprintf(d->cid, sizeof(d->cid), "%s", cid);
    d->rel = ferry_strdup(rel);
    d->label = ferry_strdup(label);
    if (d->rel == NULL || d->label == NULL)
        return -ENOMEM;
    g->n++;
    return 0;
}

static int add_dir(struct get *g, int rootfd, const char *rel, int64_t mtime)
{
    if (g->ndirs == g->capdirs) {
        size_t ncap = g->capdirs ? g->capdirs * 2 : 64;
        struct dirmt *nv = ferry_realloc(g->dirs, ncap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        g->dirs = nv;
        g->capdirs = ncap;
    }
    g->dirs[g->ndirs] = (struct dirmt){.rootfd = rootfd, .rel = ferry_strdup(rel), .mtime = mtime};
    if (g->dirs[g->ndirs].rel == NULL)
        return -ENOMEM;
    g->ndirs++;
    return 0;
}

static int add_root(struct get *g, int fd)
{
    int *nv = ferry_realloc(g->rootfds, (g->nroots + 1) * sizeof(*nv));

    if (nv == NULL)
        return -ENOMEM;
    g->rootfds = nv;
    g->rootfds[g->nroots++] = fd;
    return 0;
}

/* One recursive listing of a remote folder, turned into local dirs and downloads. */
static int plan_tree(struct get *g, const char *src, int rootfd)
{
    char id[FERRY_UUID_STR_LEN + 1], norm[FERRY_PATH_MAX + 1];
    struct ferry_cmd m;
    int rc, last = 0;

    ferry_uuid_new(id);
    rc = ferry_client_send_cmd(g->cc.c, FERRY_MSG_DIRINFO,
                               json_pack("{s:s, s:s, s:b}", "id", id, "path", src, "recursive", 1));
    while (rc == 0 && !last) {
        const char *ref, *msg;
        json_t *e;
        size_t i;

        if ((rc = cli_next(&g->cc, &m, NULL)) < 0)
            return rc;
        rc = 0;
        ref = json_string_value(json_object_get(m.body, "ref"));
        if (ref == NULL || strcmp(ref, id) != 0) {
            ferry_cmd_cleanup(&m);
            continue;
        }
        if (m.type == FERRY_MSG_ERROR) {
            cli_error_rc(&m, &msg);
            failmsg(g, src, msg);
            ferry_cmd_cleanup(&m);
            return 0;
        }
        json_array_foreach(json_object_get(m.body, "entries"), i, e)
        {
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *type = json_string_value(json_object_get(e, "type"));
            json_int_t fid = json_integer_value(json_object_get(e, "id"));
            json_int_t mt = json_integer_value(json_object_get(e, "mtime"));
            int fd;

            if ((rc = listed(g, name)) != 0)
                break;
            /* R-PATH-6: a name from the server is hostile until validated. */
            if (name == NULL || type == NULL ||
                ferry_path_normalize(name, strlen(name), norm, sizeof(norm)) != 0 ||
                strcmp(norm, name) != 0 || norm[0] == '\0') {
                failmsg(g, name != NULL ? name : "?", "refused an unsafe name from the server");
                continue;
            }
            if (strcmp(type, "dir") == 0) {
                if ((fd = ferry_mkdirs_beneath(rootfd, norm)) < 0) {
                    failmsg_rc(g, norm, "cannot create the folder", fd);
                    continue;
                }
                close(fd);
                if ((rc = add_dir(g, rootfd, norm, mt)) != 0)
                    break;
            } else if ((rc =
                            add_dl(g, fid, (uint64_t)json_integer_value(json_object_get(e, "size")),
                                   rootfd, norm, norm,
                                   json_string_value(json_object_get(e, "hash")))) != 0) {
                break;
            }
            g->prog.total += (uint64_t)json_integer_value(json_object_get(e, "size"));
        }
        last = json_is_true(json_object_get(m.body, "last"));
        ferry_cmd_cleanup(&m);
    }
    if (rc == FERRY_ETOOBIG) {
        cli_progress_clear();
        fprintf(stderr, "%s: the listing of ", cli_prog);
        cli_print_name(stderr, src);
        fprintf(stderr,
                " holds more than this client accepts (%u entries or %u MiB of names); get "
                "its folders one by one\n",
                CLI_LIST_ENTRIES_MAX, CLI_LIST_BYTES_MAX >> 20);
    }
    return rc;
}

/* Hands the filled buffer to the writer thread. */
static void submit(struct get *g)
{
    if (g->wb != NULL)
        ferry_writer_submit(g->wr, g->wb, g->wlen);
    g->wb = NULL;
    g->wlen = 0;
}

/* Copies received bytes into writer buffers; < 0 once the file failed. */
static int put_bytes(struct get *g, const uint8_t *p, size_t n)
{
    size_t k;

    if (g->inl) {
        /* begin() checked the size, and the receive loop each frame against it. */
        memcpy(g->ibuf + g->got, p, n);
        return 0;
    }
    while (n > 0) {
        if (g->wb == NULL && (g->wb = ferry_writer_buf(g->wr)) == NULL)
            return FERRY_EINTERNAL;
        k = FERRY_WRITER_BUF - g->wlen < n ? FERRY_WRITER_BUF - g->wlen : n;
        memcpy(g->wb + g->wlen, p, k);
        g->wlen += k;
        p += k;
        n -= k;
        if (g->wlen == FERRY_WRITER_BUF) {
            submit(g);
            g->unsynced += FERRY_WRITER_BUF;
        }
        /*
         * R-CHUNK-14: the writer thread fdatasyncs every 32 MiB by itself;
         * what it made durable is recorded here, without waiting for it,
         * bound to this part file's identity (R-RECV-2).
         */
        if (g->unsynced >= GET_DURABLE_STEP && g->wb == NULL) {
            uint64_t durable = ferry_writer_durable(g->wr);
            g->unsynced = 0;
            if (durable > g->recorded) {
                ferry_part_record(cli_state(), g->dirfd, g->tmpname, g->hash, &g->part_id, durable);
                g->recorded = durable;
            }
        }
    }
    return 0;
}

/*
 * Gives up the file being received: its part file is removed with every
 * record of it (R-RECV-2), and it is named on stderr. rc, when not 0, is
 * the local error appended to why.
 */
static void fail_current(struct get *g, const char *why, int rc)
{
    char cid[FERRY_CID_LEN + 1];

    if (g->cur == NULL)
        return;
    if (g->fd >= 0) {
        submit(g);
        if (!g->inl && ferry_writer_busy(g->wr))
            ferry_writer_end(g->wr, cid);
        close(g->fd);
        unlinkat(g->dirfd, g->tmpname, 0);
        ferry_part_forget(cli_state(), g->dirfd, g->tmpname);
    }
    if (g->dirfd >= 0)
        close(g->dirfd);
    g->fd = g->dirfd = -1;
    g->active = 0;
    g->cur->state = DL_FAILED;
    if (rc != 0)
        failmsg_rc(g, g->cur->label, why, rc);
    else
        failmsg(g, g->cur->label, why);
    g->cur = NULL;
}

static void abort_current(struct get *g, const char *why)
{
    fail_current(g, why, 0);
}

/* R-XFER-4: stops the server sending a download given up before its data. */
static int cancel_current(struct get *g)
{
    char tidhex[33];

    ferry_hex_encode(g->tid, FERRY_TID_LEN, tidhex);
    /* No TransferComplete may follow: its window slot frees now. */
    g->have_tid = 0;
    g->inflight--;
    return ferry_client_send_cmd(g->cc.c, FERRY_MSG_TRANSFER_CANCEL,
                                 json_pack("{s:s}", "tid", tidhex));
}

/*
 * The current file's folder (created if missing) and, R-RECV-6, room for
 * what is still to be written, with the margin, before any part file is
 * created or sized: a declared size is only a claim. 0 when admitted; 1 when
 * the folder failed, 2 when the space was refused (said, the file failed).
 */
static int admit(struct get *g, struct dl *d, const struct cli_dir **dir)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(d->rel, '/');
    uint64_t avail;
    int rc;

    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - d->rel) : 0, d->rel);
    if ((rc = cli_dircache_get(&g->dc, d->rootfd, parent, 1, dir)) != 0) {
        fail_current(g, "cannot create its folder", rc);
        return 1;
    }
    if ((rc = ferry_part_space_reserve(&g->space, (*dir)->fd, (*dir)->dev, g->size - d->resume,
                                       &avail)) != 0) {
        if (rc == -ENOSPC)
            failmsg_space(g, d->label, g->size - d->resume, avail);
        else
            failmsg_rc(g, d->label, "cannot check the free space", rc);
        d->state = DL_FAILED;
        g->cur = NULL;
        return 2;
    }
    return 0;
}

static int begin(struct get *g, struct dl *d, const struct ferry_cmd *m)
{
    const char *tid = json_string_value(json_object_get(m->body, "tid"));
    const char *hash = json_string_value(json_object_get(m->body, "hash"));
    json_t *size = json_object_get(m->body, "size");
    const struct cli_dir *dir;
    int rc;

    if (tid == NULL || ferry_hex_decode(tid, g->tid, 16) != 0 || hash == NULL ||
        !ferry_cid_valid(hash) || !json_is_integer(size) || json_integer_value(size) < 0)
        return FERRY_EPROTO;
    g->cur = d;
    cli_progress_state(&g->prog, NULL);
    cli_progress_file(&g->prog, d->label);
    g->have_tid = 1;
    g->size = (uint64_t)json_integer_value(size);
    g->got = g->synced = 0;
    g->mtime = json_integer_value(json_object_get(m->body, "mtime"));
    g->exec = json_is_true(json_object_get(m->body, "exec"));
    snprintf(g->hash, sizeof(g->hash), "%s", hash);
    g->fd = g->dirfd = -1;
    /* Resume only what the server agreed to send the rest of (its Transfer's hash). */
    if (d->resume > 0 && (strcmp(d->cid, g->hash) != 0 || d->resume > g->size))
        d->resume = 0;
    if ((rc = admit(g, d, &dir)) != 0)
        return rc == 2 ? cancel_current(g) : 0;
    g->inl = d->resume == 0 && g->size <= CLI_INLINE_MAX && strncmp(g->hash, "sha256:", 7) == 0;
    if (g->inl && g->ibuf == NULL && (g->ibuf = ferry_malloc(CLI_INLINE_MAX)) == NULL)
        g->inl = 0;
    if (g->inl) {
        /* R-RECV-3: checked in memory; its part file is made once it is verified (place_inline). */
        g->recorded = g->unsynced = 0;
        g->active = 1;
        return 0;
    }
    g->dir = *dir;
    g->dir.rel = NULL; /* the cache's: only the identity is kept */
    if ((g->dirfd = fcntl(dir->fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        fail_current(g, "cannot open its folder", -errno);
        return 0;
    }
    /* R-CHUNK-14: the part file's name follows from the content and the destination. */
    ferry_part_name(g->hash, d->rel, g->tmpname);
    /* R-RECV-1: no symlink followed, ours alone: a planted temp name cannot redirect us. */
    if ((rc = ferry_part_open(g->dirfd, g->tmpname, &g->part_id)) < 0) {
        fail_current(g,
                     rc == -EPERM ? "cannot create its temporary file (a foreign file in the way?)"
                                  : "cannot create its temporary file",
                     rc == -EPERM ? 0 : rc);
        return 0;
    }
    g->fd = rc;
    /* R-RECV-2: the prefix offered was in a part file that is not this one any more. */
    if (d->resume > 0 && !ferry_part_same(&g->part_id, &d->part_id)) {
        fail_current(g, "its partial file changed during the download; run the same command again",
                     0);
        return 0;
    }
    if (ftruncate(g->fd, (off_t)d->resume) != 0) {
        fail_current(g, "cannot write it", -errno);
        return 0;
    }
    g->active = 1;
    /* R-CHUNK-10: a chunked file is checked by re-chunking what arrives. */
    if ((strncmp(g->hash, FERRY_CID_CHUNKS_PREFIX, 7) == 0
             ? ferry_writer_begin_chunked(g->wr, g->fd)
             : ferry_writer_begin(g->wr, g->fd)) != 0 ||
        (d->resume > 0 && ferry_writer_resume(g->wr, d->resume) != 0)) {
        fail_current(g, "cannot start writing", 0);
        return 0;
    }
    ferry_writer_sync_every(g->wr, GET_DURABLE_STEP);
    g->got = d->resume;
    g->recorded = d->resume;
    g->unsynced = 0;
    g->resumed += d->resume;
    g->prog.done += d->resume;
    g->prog.skipped += d->resume;
    return 0;
}

struct flush_ctx {
    struct get *g;
    int acks; /* the connection is up: acknowledge each file placed */
    int rc;
};

/* One file of a flushed batch: received once durable in place, then acknowledged. */
static void placed(void *arg, struct cli_batch_ent *e, int rc, const char *stage)
{
    struct flush_ctx *f = arg;
    struct get *g = f->g;
    struct dl *d = e->arg;
    char tidhex[33];

    if (rc != 0) {
        d->state = DL_FAILED;
        failmsg_rc(g, d->label, stage, rc);
        return;
    }
    d->state = DL_DONE;
    g->prog.files_done++;
    if (!f->acks || f->rc != 0)
        return;
    /* R-XFER-6: a 1.3 server takes the batch's acknowledgements together (send_acks). */
    if (g->cc.minor >= 3 && g->nacks < CLI_BATCH_FILES_MAX) {
        memcpy(g->acks[g->nacks++], e->tid, FERRY_TID_LEN);
        return;
    }
    /* Seed 000: the receiver acknowledges after its check; R-RECV-4: and once durable. */
    ferry_hex_encode(e->tid, FERRY_TID_LEN, tidhex);
    f->rc = ferry_client_send_cmd(g->cc.c, FERRY_MSG_TRANSFER_COMPLETE,
                                  json_pack("{s:s, s:s}", "tid", tidhex, "hash", e->cid));
}

/* R-XFER-6: the acknowledgements placed() gathered, 256 to a TransferComplete. */
static int send_acks(struct get *g)
{
    char tidhex[33];
    size_t i = 0, k;
    json_t *a;
    int rc = 0;

    while (rc == 0 && i < g->nacks) {
        if ((a = json_array()) == NULL) {
            rc = -ENOMEM;
            break;
        }
        for (k = 0; k < FERRY_ACK_TIDS_MAX && i < g->nacks; k++, i++) {
            ferry_hex_encode(g->acks[i], FERRY_TID_LEN, tidhex);
            json_array_append_new(a, json_string(tidhex));
        }
        rc = ferry_client_send_cmd(g->cc.c, FERRY_MSG_TRANSFER_COMPLETE,
                                   json_pack("{s:o}", "tids", a));
    }
    g->nacks = 0;
    return rc;
}

/* Reports every file of a batch made durable (cli_batch_done), then acknowledges them. */
static int report(struct get *g, struct cli_batch *b, int acks)
{
    struct flush_ctx f = {.g = g, .acks = acks};
    int rc;

    g->nacks = 0;
    cli_batch_done(b, placed, &f);
    rc = send_acks(g);
    cli_progress_update(&g->prog, 0);
    return f.rc != 0 ? f.rc : rc;
}

/*
 * Takes back the batch the flusher made durable: its files are reported
 * and (with acks) acknowledged, which frees their places in the window.
 * With wait, waits for it; without, only if it is done.
 */
static int collect(struct get *g, int wait, int acks)
{
    if (!g->flushing || !cli_flusher_ready(g->fl, wait))
        return 0;
    g->flushing = 0;
    return report(g, &g->fbatch, acks);
}

/*
 * R-RECV-4: hands the batch to the flusher thread, once the batch before it
 * is taken back, and receiving goes on meanwhile. Without a flusher thread
 * the batch is made durable here.
 */
static int flush_async(struct get *g)
{
    struct cli_batch empty;
    int rc;

    if (g->batch.n == 0)
        return 0;
    if ((rc = collect(g, 1, 1)) != 0)
        return rc;
    /* Folders are opened again for the next batch: one replaced meanwhile is seen. */
    cli_dircache_clear(&g->dc);
    if (g->fl == NULL) {
        cli_batch_sync(&g->batch);
        return report(g, &g->batch, 1);
    }
    /* The batch goes to the flusher; the one it emptied before is filled next. */
    empty = g->fbatch;
    g->fbatch = g->batch;
    g->batch = empty;
    g->flushing = 1;
    cli_flusher_start(g->fl, &g->fbatch);
    return 0;
}

/* R-RECV-4: everything verified is durable, placed and (with acks) acknowledged on return. */
static int flush(struct get *g, int acks)
{
    int rc = collect(g, 1, acks), rc2;

    if (g->batch.n == 0)
        return rc;
    cli_batch_sync(&g->batch);
    rc2 = report(g, &g->batch, acks);
    cli_dircache_clear(&g->dc);
    return rc != 0 ? rc : rc2;
}

/* A small file is checked in memory, before anything of it is on disk; FERRY_EHASH if wrong. */
static int verify_inline(struct get *g, char cid[static FERRY_CID_LEN + 1])
{
    uint8_t h[32];

    ferry_sha256_buf(g->ibuf, (size_t)g->got, h);
    memcpy(cid, "sha256:", 7);
    ferry_hex_encode(h, sizeof(h), cid + 7);
    if (g->got != g->size || strcmp(cid, g->hash) != 0)
        return FERRY_EHASH;
    return 0;
}

/*
 * A small file verified in memory (R-RECV-3) gets its part file now, new
 * and with its final mode (R-RECV-1), written whole, timed, and joins the
 * batch: one openat, one write and one futimens in all, against the eight
 * calls a part file opened before its bytes arrived costs.
 */
static int place_inline(struct get *g, struct dl *d, const char *name, const char *cid)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(d->rel, '/'), *why = "cannot write it";
    const struct cli_dir *dir;
    struct timespec ts[2];
    size_t off = 0;
    ssize_t n;
    int fd, fresh, rc = 0;

    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - d->rel) : 0, d->rel);
    if ((rc = cli_dircache_get(&g->dc, d->rootfd, parent, 1, &dir)) != 0) {
        fail_current(g, "cannot create its folder", rc);
        return 0;
    }
    ferry_part_name(g->hash, d->rel, g->tmpname);
    fd = ferry_part_create(dir->fd, g->tmpname, (g->exec ? 0777 : 0666) & ~g->umask, &fresh);
    if (fd < 0) {
        fail_current(g,
                     fd == -EPERM ? "cannot create its temporary file (a foreign file in the way?)"
                                  : "cannot create its temporary file",
                     fd == -EPERM ? 0 : fd);
        return 0;
    }
    while (rc == 0 && off < g->got) {
        n = write(fd, g->ibuf + off, (size_t)g->got - off);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n > 0)
            off += (size_t)n;
    }
    cli_mtime_ts(g->mtime, ts);
    if (rc == 0 && futimens(fd, ts) != 0) {
        rc = -errno;
        why = "cannot set its mode and time";
    }
    if (rc == 0) {
        /* A part file that was there may have records: they go once it is placed. */
        rc = cli_batch_add(&g->batch, dir, fd, g->tmpname, name, cid, g->tid, g->tc_seq, g->size,
                           !fresh, d);
        why = "cannot keep it for placing";
    } else {
        close(fd);
    }
    if (rc != 0) {
        unlinkat(dir->fd, g->tmpname, 0);
        if (!fresh)
            ferry_part_forget(cli_state(), dir->fd, g->tmpname);
        fail_current(g, why, rc);
        return 0;
    }
    d->state = DL_VERIFIED;
    g->cur = NULL;
    g->active = 0;
    return 0;
}

static int finish(struct get *g)
{
    const char *name = strrchr(g->cur->rel, '/');
    char cid[FERRY_CID_LEN + 1];
    struct timespec ts[2];
    struct dl *d = g->cur;
    int rc;

    name = name != NULL ? name + 1 : g->cur->rel;
    /* The writer may still be hashing what arrived last: say so on the line. */
    cli_progress_state(&g->prog, "verifying");
    cli_progress_update(&g->prog, 0);
    if (g->inl) {
        rc = verify_inline(g, cid);
    } else {
        submit(g);
        rc = ferry_writer_end(g->wr, cid);
    }
    cli_progress_state(&g->prog, NULL);
    if (rc != 0) {
        fail_current(g,
                     rc == FERRY_EHASH ? "content did not match its hash; nothing was written"
                                       : "cannot write it",
                     rc == FERRY_EHASH ? 0 : rc);
        return 0;
    }
    /* Seed 000: the receiver checks the hash before anything is visible. */
    if (g->got != g->size || strcmp(cid, g->hash) != 0) {
        fail_current(g, "content did not match its hash; nothing was written", 0);
        return 0;
    }
    /* R-RECV-4: a full batch goes to the flusher before another file joins it. */
    if (cli_batch_full(&g->batch) && (rc = flush_async(g)) != 0)
        return rc;
    if (g->inl)
        return place_inline(g, d, name, cid);
    cli_mtime_ts(g->mtime, ts);
    if (fchmod(g->fd, (g->exec ? 0777 : 0666) & ~g->umask) != 0 || futimens(g->fd, ts) != 0) {
        fail_current(g, "cannot set its mode and time", -errno);
        return 0;
    }
    g->dir.fd = g->dirfd;
    rc = cli_batch_add(&g->batch, &g->dir, g->fd, g->tmpname, name, cid, g->tid, g->tc_seq, g->size,
                       g->recorded > 0 || d->resume > 0, d);
    g->fd = -1; /* the batch's now, or closed */
    if (rc != 0) {
        unlinkat(g->dirfd, g->tmpname, 0);
        ferry_part_forget(cli_state(), g->dirfd, g->tmpname);
        fail_current(g, "cannot keep it for placing", rc);
        return 0;
    }
    close(g->dirfd);
    g->dirfd = -1;
    d->state = DL_VERIFIED;
    g->cur = NULL;
    g->active = 0;
    return 0;
}

/*
 * R-XFER-7, R-FILE-3: a whole small file in one frame, begun as a Transfer
 * begins a small file (R-RECV-6 first), its bytes taken in memory, and
 * finished at once: checked against its hash, then placed in the batch.
 * The server is done with it: nothing is cancelled if it fails here.
 */
static int take_file(struct get *g, struct dl *d, const struct ferry_file_frame *f)
{
    const struct cli_dir *dir;

    g->cur = d;
    cli_progress_state(&g->prog, NULL);
    cli_progress_file(&g->prog, d->label);
    g->have_tid = 0; /* no TransferComplete follows */
    memcpy(g->tid, f->tid, FERRY_TID_LEN);
    g->size = f->len;
    g->got = g->synced = 0;
    g->mtime = f->mtime;
    g->exec = f->exec;
    memcpy(g->hash, "sha256:", 7);
    ferry_hex_encode(f->sha256, sizeof(f->sha256), g->hash + 7);
    g->fd = g->dirfd = -1;
    d->resume = 0; /* a file frame answers only a Download from byte 0 */
    /* The server is done with it: a refusal here cancels nothing. */
    if (admit(g, d, &dir) != 0)
        return 0;
    if (g->ibuf == NULL && (g->ibuf = ferry_malloc(CLI_INLINE_MAX)) == NULL)
        return -ENOMEM;
    memcpy(g->ibuf, f->bytes, f->len);
    g->inl = 1;
    g->active = 1;
    g->recorded = g->unsynced = 0;
    g->got = f->len;
    g->prog.done += f->len;
    return finish(g);
}

static struct dl *by_ref(struct get *g, const char *ref, size_t from)
{
    size_t i;

    for (i = from; ref != NULL && i < g->n; i++)
        if (g->v[i].state == DL_REQUESTED && strcmp(g->v[i].id, ref) == 0)
            return &g->v[i];
    return NULL;
}

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
static int local_dir(struct get *g, const struct dl *x, const char **name)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(x->rel, '/');
    const struct cli_dir *dir;

    *name = slash != NULL ? slash + 1 : x->rel;
    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - x->rel) : 0, x->rel);
    if (cli_dircache_get(&g->dc, x->rootfd, parent, 0, &dir) != 0)
        return -1;
    return dir->fd;
}

/*
 * Whether a chunked file has bytes on this disk to build on: a partial
 * download of it, or an old version at its destination (R-CHUNK-16). The
 * records count only for the part file they were made for (R-RECV-2).
 */
static int has_local(struct get *g, const struct dl *x)
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
    return ferry_piece_has_bitmap(cli_state(), dfd, pname, x->cid, &id) ||
           ferry_part_durable(cli_state(), dfd, pname, x->cid, &id) > 0;
}

/*
 * R-CHUNK-14: a durable prefix of the same content in a part file recorded
 * for that very file (R-RECV-2): the Download asks for the rest. Files
 * without a part file cost one failed open here, nothing more.
 */
static void offer_resume(struct get *g, struct dl *x, json_t *req)
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
    if (x->size <= CLI_INLINE_MAX && strncmp(x->cid, "sha256:", 7) == 0)
        return;
    if (x->cid[0] == '\0' || g->cc.minor < 1 || (dfd = local_dir(g, x, &name)) < 0)
        return;
    ferry_part_name(x->cid, x->rel, pname);
    if (ferry_part_stat(dfd, pname, &x->part_id, &psize, &palloc) != 0)
        return;
    durable = ferry_part_durable(cli_state(), dfd, pname, x->cid, &x->part_id);
    if (durable > 0 && psize >= durable) {
        x->resume = durable;
        json_object_set_new(req, "offset", json_integer((json_int_t)durable));
        json_object_set_new(req, "hash", json_string(x->cid));
    }
}

/* R-CHUNK-15: asks for the file's chunk list. */
static int ask_list(struct get *g, struct dl *x)
{
    ferry_piece_free(x->piece);
    x->piece = NULL;
    ferry_uuid_new(x->id);
    x->state = DL_REQUESTED;
    x->phase = 1;
    g->inflight++;
    return ferry_client_send_cmd(
        g->cc.c, FERRY_MSG_DOWNLOAD,
        json_pack("{s:s, s:I, s:b}", "id", x->id, "file_id", (json_int_t)x->file_id, "list", 1));
}

/* Gives up on a file downloaded by chunks; its verified chunks stay for a rerun. */
static void patch_fail(struct get *g, struct dl *x, const char *why, int discard)
{
    if (g->cur == x)
        g->cur = NULL;
    if (discard && x->piece != NULL)
        ferry_piece_discard(x->piece);
    ferry_piece_free(x->piece);
    x->piece = NULL;
    x->phase = 0;
    x->state = DL_FAILED;
    failmsg(g, x->label, why);
}

/* patch_fail with the text of a local error code appended. */
static void patch_fail_rc(struct get *g, struct dl *x, const char *why, int rc)
{
    char buf[256];

    snprintf(buf, sizeof(buf), "%s: %s", why,
             rc < 0 && rc > -4096 ? strerror(-rc) : ferry_strerror(rc));
    patch_fail(g, x, buf, 0);
}

/* Reads a Transfer's tid, size and hash into g and x. */
static int patch_transfer(struct get *g, struct dl *x, const struct ferry_cmd *m, const char **hash,
                          uint64_t *size)
{
    const char *tid = json_string_value(json_object_get(m->body, "tid"));
    json_t *sz = json_object_get(m->body, "size");

    *hash = json_string_value(json_object_get(m->body, "hash"));
    if (tid == NULL || ferry_hex_decode(tid, g->tid, 16) != 0 || *hash == NULL ||
        !ferry_cid_valid(*hash) || !json_is_integer(sz) || json_integer_value(sz) < 0)
        return FERRY_EPROTO;
    *size = (uint64_t)json_integer_value(sz);
    g->cur = x;
    g->have_tid = 1;
    return 0;
}

static int patch_list_begin(struct get *g, struct dl *x, const struct ferry_cmd *m)
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
    cli_progress_state(&g->prog, NULL);
    cli_progress_file(&g->prog, x->label);
    x->mtime = json_integer_value(json_object_get(m->body, "mtime"));
    x->exec = json_is_true(json_object_get(m->body, "exec"));
    /* R-CHUNK-15: a list over its cap is refused before anything is allocated. */
    if ((rc = ferry_piece_new(cli_state(), hash, size, (uint64_t)json_integer_value(ll),
                              &x->piece)) != 0)
        return rc == -ENOMEM ? rc : FERRY_EPROTO;
    return 0;
}

static int patch_chunks_begin(struct get *g, struct dl *x, const struct ferry_cmd *m)
{
    const char *hash;
    uint64_t size;

    if (x->piece == NULL || patch_transfer(g, x, m, &hash, &size) != 0 || strcmp(hash, x->cid) != 0)
        return FERRY_EPROTO;
    return 0;
}

/* The file is whole in its part file: into place, and acknowledged if tid is set. */
static int patch_place(struct get *g, struct dl *x, const uint8_t *tid)
{
    const char *name = strrchr(x->rel, '/');
    char tidhex[33];
    int rc;

    name = name != NULL ? name + 1 : x->rel;
    /* R-RECV-3: the part file is read back and hashed before the rename. */
    cli_progress_file(&g->prog, x->label);
    cli_progress_state(&g->prog, "verifying");
    cli_progress_update(&g->prog, 1);
    rc = ferry_piece_place(x->piece, name, (x->exec ? 0777 : 0666) & ~g->umask, x->mtime);
    cli_progress_state(&g->prog, NULL);
    if (rc != 0) {
        /* R-RECV-3: bytes on disk that are not the content are not kept for a rerun either. */
        if (rc == FERRY_EHASH)
            patch_fail(g, x, "its bytes on disk did not match its hash; nothing was placed", 1);
        else
            patch_fail_rc(g, x, "cannot put it in place", rc);
        return 0;
    }
    ferry_piece_free(x->piece);
    x->piece = NULL;
    x->state = DL_DONE;
    g->prog.files_done++;
    if (tid == NULL)
        return 0;
    ferry_hex_encode(tid, FERRY_TID_LEN, tidhex);
    return ferry_client_send_cmd(g->cc.c, FERRY_MSG_TRANSFER_COMPLETE,
                                 json_pack("{s:s, s:s}", "tid", tidhex, "hash", x->cid));
}

/* R-CHUNK-16: asks for the chunks still missing. */
static int patch_request(struct get *g, struct dl *x)
{
    json_t *ranges = ferry_piece_ranges(x->piece);

    if (ranges == NULL)
        return -ENOMEM;
    ferry_uuid_new(x->id);
    x->state = DL_REQUESTED;
    x->phase = 2;
    g->inflight++;
    return ferry_client_send_cmd(g->cc.c, FERRY_MSG_DOWNLOAD,
                                 json_pack("{s:s, s:I, s:s, s:o}", "id", x->id, "file_id",
                                           (json_int_t)x->file_id, "hash", x->cid, "chunks",
                                           ranges));
}

/* The list is in: take what is on the disk, ask for the rest. */
static int patch_list_done(struct get *g)
{
    struct dl *x = g->cur;
    const char *name;
    char pname[FERRY_PART_NAME_LEN];
    uint64_t reused, kept, need, avail;
    int dfd, rc;

    g->cur = NULL;
    if ((dfd = dl_dir(x, 1, &name)) < 0) {
        patch_fail(g, x, "cannot create its folder", 0);
        return 0;
    }
    ferry_part_name(x->cid, x->rel, pname);
    rc =
        ferry_piece_plan(x->piece, dfd, name, pname, (x->exec ? 0777 : 0666) & ~g->umask, x->mtime);
    close(dfd);
    if (rc == FERRY_PIECE_ALREADY) {
        /* The file is already this content (the local index says so): nothing to fetch. */
        g->reused += ferry_piece_size(x->piece);
        g->prog.done += ferry_piece_size(x->piece);
        g->prog.skipped += ferry_piece_size(x->piece);
        ferry_piece_free(x->piece);
        x->piece = NULL;
        x->state = DL_DONE;
        g->prog.files_done++;
        return 0;
    }
    if (rc == FERRY_EPROTO)
        return rc; /* a list that is not the content's: the server is at fault */
    if (rc == -ENOSPC) {
        /* R-RECV-6: refused before the part file was created or sized. */
        need = ferry_piece_need(x->piece, &avail);
        ferry_piece_free(x->piece);
        x->piece = NULL;
        x->phase = 0;
        x->state = DL_FAILED;
        failmsg_space(g, x->label, need, avail);
        return 0;
    }
    if (rc != 0) {
        if (rc == -EPERM)
            patch_fail(g, x, "cannot use its temporary file (a foreign file in the way?)", 0);
        else
            patch_fail_rc(g, x, "cannot use its temporary file", rc);
        return 0;
    }
    reused = ferry_piece_reused(x->piece, &kept);
    g->reused += reused;
    g->resumed += kept;
    x->counted += reused + kept;
    g->prog.done += reused + kept;
    g->prog.skipped += reused + kept;
    cli_progress_update(&g->prog, 0);
    if (ferry_piece_complete(x->piece))
        return patch_place(g, x, NULL);
    return patch_request(g, x);
}

/* A chunk frame of the file being received by chunks. */
static int patch_chunk(struct get *g, const struct ferry_chunk_frame *f)
{
    struct dl *x = g->cur;
    uint64_t fresh = 0;
    int rc;

    rc = ferry_piece_chunk(x->piece, f, &fresh);
    if (rc == FERRY_EPROTO)
        return rc;
    g->prog.done += f->len;
    x->counted += f->len;
    cli_progress_update(&g->prog, 0);
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

static int patch_chunks_done(struct get *g)
{
    struct dl *x = g->cur;
    uint8_t tid[FERRY_TID_LEN];
    int rc;

    g->cur = NULL;
    memcpy(tid, g->tid, sizeof(tid));
    if ((rc = ferry_piece_sync(x->piece)) != 0) {
        patch_fail_rc(g, x, "cannot make it durable", rc);
        return 0;
    }
    if (ferry_piece_complete(x->piece))
        return patch_place(g, x, tid);
    /* More runs than one request carries: the next batch of them. */
    return patch_request(g, x);
}

/* An Error for a file downloaded by chunks. */
static int patch_error(struct get *g, struct dl *x, int code, const char *msg)
{
    /* R-CHUNK-16: the file changed on the server since its list: start again. */
    if (code == FERRY_EHASH && x->phase == 2 && x->restarts < 3) {
        x->restarts++;
        if (x->piece != NULL)
            ferry_piece_sync(x->piece);
        return ask_list(g, x);
    }
    patch_fail(g, x, msg, 0);
    return 0;
}

/*
 * R-RECV-5, R-PIPE-1: whether one more Download may go out. At most 64 are
 * outstanding, and every one of them may finish before the server reads
 * the acknowledgement of the oldest file waiting for one: that file must
 * still be among the last cc.acks downloads the server finished. Counted
 * in TransferCompletes, so a file that failed here after its data still
 * takes its place in the server's memory.
 */
static int may_request(const struct get *g)
{
    uint64_t oldest;

    if (g->inflight >= CLI_DOWNLOADS_IN_FLIGHT)
        return 0;
    if (g->flushing && g->fbatch.n > 0)
        oldest = g->fbatch.e[0].seq;
    else if (g->batch.n > 0)
        oldest = g->batch.e[0].seq;
    else
        return 1;
    return g->tc_seq + g->inflight + 1 < oldest + (uint64_t)g->cc.acks;
}

static int run_downloads(struct get *g)
{
    size_t next = 0, first = 0;
    struct ferry_cmd m;
    struct ferry_data d;
    struct ferry_chunk_frame cf;
    struct ferry_file_frame ff;
    int rc = 0;

    g->inflight = 0;
    /* A new connection: a new memory of acknowledgements on the server (R-RECV-5). */
    g->tc_seq = 0;
    g->batch.max = g->fbatch.max = cli_batch_files(g->cc.acks);
    while (rc == 0) {
        /* A batch the flusher has made durable is reported and acknowledged. */
        if ((rc = collect(g, 0, 1)) != 0)
            return rc;
        /*
         * R-RECV-4, group commit: a batch of CLI_BATCH_MIN files goes to the
         * flusher as soon as it is idle (a slow disk makes batches larger
         * rather than the wait longer), any batch when nothing requested is
         * on its way, and a full one waits for the flusher.
         */
        if (g->batch.n > 0 &&
            ((!g->flushing && (g->batch.n >= CLI_BATCH_MIN || g->inflight == 0)) ||
             cli_batch_full(&g->batch)) &&
            (rc = flush_async(g)) != 0)
            return rc;
        /* Keep a window of requests ahead of the one being received (R-PIPE-1, R-RECV-5). */
        while (next < g->n && may_request(g)) {
            struct dl *x = &g->v[next++];
            if (x->state != DL_QUEUED)
                continue; /* received (or failed) on an earlier connection */
            json_t *req;
            /* R-CHUNK-15: local bytes to build on: ask for the list first. */
            if (g->cc.minor >= 1 && has_local(g, x)) {
                if ((rc = ask_list(g, x)) != 0)
                    return rc;
                continue;
            }
            ferry_uuid_new(x->id);
            x->state = DL_REQUESTED;
            g->inflight++;
            req = json_pack("{s:s, s:I}", "id", x->id, "file_id", (json_int_t)x->file_id);
            x->resume = 0;
            if (req != NULL)
                offer_resume(g, x, req);
            if ((rc = ferry_client_send_cmd(g->cc.c, FERRY_MSG_DOWNLOAD, req)) != 0)
                return rc;
        }
        /*
         * New requests and acknowledgements go out now, without waiting,
         * once the server's queue runs low or 16 KiB gathered: the
         * connection only writes when no whole frame is left to read, so
         * with small files the server sat idle while this side worked
         * through a full input buffer, and then the other way round.
         */
        if (ferry_client_pending(g->cc.c) > 0 &&
            (g->inflight < CLI_DOWNLOADS_IN_FLIGHT / 2 ||
             ferry_client_pending(g->cc.c) >= GET_PUSH_BYTES) &&
            (rc = ferry_client_pump(g->cc.c, 0, 0)) != 0)
            return rc;
        while (first < g->n && g->v[first].state >= DL_DONE)
            first++;
        /* Everything answered: what waits in the batch becomes durable, and that is all. */
        if (first == g->n && g->cur == NULL)
            return flush(g, 1);
        /* Nothing is on its way: the flusher's acknowledgements are what opens the window. */
        if (g->inflight == 0 && g->cur == NULL && g->flushing) {
            rc = collect(g, 1, 1);
            continue;
        }
        rc = cli_next_frame(&g->cc, &m, &d, &cf, &ff);
        if (rc < 0)
            return rc;
        if (rc == 4) {
            char ref[FERRY_UUID_STR_LEN + 1];
            struct dl *x;

            /* R-FILE-3: an answer to one of our Downloads, while no other arrives. */
            ferry_uuid_from_bytes(ff.ref, ref);
            x = by_ref(g, ref, first);
            if (x == NULL || g->cur != NULL || x->phase != 0)
                return FERRY_EPROTO;
            /* R-RECV-5, R-XFER-7: finished on the server, as a TransferComplete says. */
            g->tc_seq++;
            g->inflight--;
            if ((rc = take_file(g, x, &ff)) != 0)
                return rc;
            continue;
        }
        if (rc == 3) {
            rc = 0;
            if (g->cur == NULL)
                continue; /* chunks of a transfer we abandoned */
            if (g->cur->phase != 2 || memcmp(cf.tid, g->tid, 16) != 0)
                return FERRY_EPROTO;
            if ((rc = patch_chunk(g, &cf)) != 0)
                return rc;
            continue;
        }
        if (rc == 2) {
            rc = 0;
            if (g->cur != NULL && g->cur->phase == 1 && g->cur->piece != NULL &&
                memcmp(d.tid, g->tid, 16) == 0) {
                if (ferry_piece_list_data(g->cur->piece, d.offset, d.bytes, d.len) != 0)
                    return FERRY_EPROTO;
                continue;
            }
            if (g->cur == NULL || memcmp(d.tid, g->tid, 16) != 0) {
                if (g->cur == NULL)
                    continue; /* data of a transfer we abandoned */
                return FERRY_EPROTO;
            }
            if (d.offset != g->got || d.len > g->size - g->got)
                return FERRY_EPROTO;
            if (g->active && put_bytes(g, d.bytes, d.len) != 0) {
                char cid[FERRY_CID_LEN + 1];
                int werr;
                g->got += d.len;
                submit(g);
                werr = ferry_writer_end(g->wr, cid);
                fail_current(g, "cannot write it", werr != 0 ? werr : FERRY_EINTERNAL);
                continue;
            }
            g->got += d.len;
            g->prog.done += d.len;
            cli_progress_update(&g->prog, 0);
            continue;
        }
        rc = 0;
        if (m.type == FERRY_MSG_TRANSFER) {
            struct dl *x = by_ref(g, json_string_value(json_object_get(m.body, "ref")), first);
            if (x == NULL || g->cur != NULL)
                rc = FERRY_EPROTO;
            else if (json_object_get(m.body, "list_len") != NULL)
                rc = patch_list_begin(g, x, &m);
            else if (x->phase == 2)
                rc = patch_chunks_begin(g, x, &m);
            else
                rc = begin(g, x, &m);
        } else if (m.type == FERRY_MSG_TRANSFER_COMPLETE) {
            const char *t = json_string_value(json_object_get(m.body, "tid"));
            uint8_t tid[16];
            /* R-RECV-5: every one, ours or not, is a download the server now remembers. */
            g->tc_seq++;
            if (t == NULL || ferry_hex_decode(t, tid, 16) != 0)
                rc = FERRY_EPROTO;
            else if (memcmp(tid, g->tid, 16) == 0 && g->have_tid) {
                /* Also for a transfer abandoned locally: its window slot frees now. */
                g->inflight--;
                g->have_tid = 0;
                if (g->cur != NULL && g->cur->piece != NULL)
                    rc = g->cur->phase == 1 ? patch_list_done(g) : patch_chunks_done(g);
                else
                    rc = g->cur != NULL && g->active ? finish(g) : 0;
            }
        } else if (m.type == FERRY_MSG_ERROR) {
            const char *msg, *t = json_string_value(json_object_get(m.body, "tid"));
            struct dl *x = by_ref(g, json_string_value(json_object_get(m.body, "ref")), first);
            int code = cli_error_rc(&m, &msg);
            if (x != NULL) {
                g->inflight--;
                if (x == g->cur)
                    g->have_tid = 0;
                if (x->piece != NULL) {
                    if (x == g->cur)
                        g->cur = NULL;
                    rc = patch_error(g, x, code, msg);
                } else if (x == g->cur) {
                    abort_current(g, msg);
                } else {
                    x->state = DL_FAILED;
                    failmsg(g, x->label, msg);
                }
            } else if (t == NULL) {
                cli_err("server: %s", msg);
                rc = FERRY_EPROTO;
            }
        }
        ferry_cmd_cleanup(&m);
    }
    return rc;
}

/* Asks for each source and plans its downloads (and folders). */
static int plan_sources(struct get *g, char **srcs, int nsrc, const char *dest, int dest_dir,
                        int rec)
{
    int i, rc = 0;

    for (i = 0; i < nsrc && rc == 0; i++) {
        const char *src = srcs[i];
        char tmp[FERRY_PATH_MAX + 1], target[PATH_MAX], *base;
        struct ferry_cmd reply;
        json_t *e;
        const char *type;
        int is_dir, rootfd;

        rc = cli_call(&g->cc, FERRY_MSG_DIRINFO, json_pack("{s:s, s:b}", "path", src, "stat", 1),
                      &reply);
        if (rc != 0) {
            if (cli_conn_lost(rc))
                break; /* asked again on a new connection */
            failmsg(g, src, ferry_strerror(rc));
            rc = rc == FERRY_ENOTFOUND || rc == FERRY_EPATH || rc == FERRY_ENOTDIR ? 0 : rc;
            continue;
        }
        e = json_array_get(json_object_get(reply.body, "entries"), 0);
        type = json_string_value(json_object_get(e, "type"));
        is_dir = type != NULL && strcmp(type, "dir") == 0;
        snprintf(tmp, sizeof(tmp), "%s", src);
        base = basename(tmp);
        if (strcmp(base, "/") == 0 || strcmp(base, ".") == 0 || base[0] == '\0')
            base = "ferry-root";
        if (dest_dir)
            snprintf(target, sizeof(target), "%s/%s", dest, base);
        else
            snprintf(target, sizeof(target), "%s", dest);
        if (!is_dir && !dest_dir && dest[0] != '\0' && dest[strlen(dest) - 1] == '/') {
            /* R-CLI-8: "dir/" names a folder; as cp says, a file is not one. */
            failmsg(g, dest, strerror(ENOTDIR));
        } else if (!is_dir) {
            char dcopy[PATH_MAX], bcopy[PATH_MAX];
            snprintf(dcopy, sizeof(dcopy), "%s", target);
            snprintf(bcopy, sizeof(bcopy), "%s", target);
            rootfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (rootfd < 0 || add_root(g, rootfd) != 0) {
                failmsg(g, target, strerror(errno));
            } else {
                rc = add_dl(g, json_integer_value(json_object_get(e, "id")),
                            (uint64_t)json_integer_value(json_object_get(e, "size")), rootfd,
                            basename(bcopy), src, json_string_value(json_object_get(e, "hash")));
                g->prog.total += (uint64_t)json_integer_value(json_object_get(e, "size"));
            }
        } else if (!rec) {
            failmsg(g, src, "is a folder (use -r)");
        } else if (mkdir(target, 0777) != 0 && errno != EEXIST) {
            failmsg(g, target, strerror(errno));
        } else if ((rootfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
                   add_root(g, rootfd) != 0) {
            failmsg(g, target, strerror(errno));
        } else {
            if ((rc = add_dir(g, rootfd, "", json_integer_value(json_object_get(e, "mtime")))) == 0)
                rc = plan_tree(g, src, rootfd);
        }
        ferry_cmd_cleanup(&reply);
    }
    return rc;
}

/* Forgets a plan cut short by a lost connection, to make it again. */
static void plan_reset(struct get *g)
{
    size_t k;

    for (k = 0; k < g->n; k++) {
        ferry_free(g->v[k].rel);
        ferry_free(g->v[k].label);
        ferry_piece_free(g->v[k].piece);
    }
    g->n = 0;
    for (k = 0; k < g->ndirs; k++)
        ferry_free(g->dirs[k].rel);
    g->ndirs = 0;
    for (k = 0; k < g->nroots; k++)
        close(g->rootfds[k]);
    g->nroots = 0;
    g->prog.total = 0;
    g->listed = g->listed_bytes = 0; /* R-RECV-7: the plan is made again from nothing */
}

/* A download cut by a lost connection goes back to the queue, its temp file gone. */
static void requeue_all(struct get *g)
{
    char cid[FERRY_CID_LEN + 1];
    size_t k;

    /* Files verified before the loss are placed; their acknowledgement has nowhere to go. */
    flush(g, 0);
    if (g->cur != NULL) {
        /* A small file is all in memory, without a part file: nothing to keep. */
        if (g->fd >= 0 && !g->inl) {
            uint64_t durable = 0;
            /* R-CHUNK-14: what is written is made durable and kept for the retry. */
            submit(g);
            if (ferry_writer_sync(g->wr, &durable) == 0 && durable > 0)
                ferry_part_record(cli_state(), g->dirfd, g->tmpname, g->hash, &g->part_id, durable);
            ferry_writer_end(g->wr, cid);
            close(g->fd);
        }
        if (g->dirfd >= 0)
            close(g->dirfd);
        g->fd = g->dirfd = -1;
        g->active = 0;
        if (g->cur->piece == NULL)
            g->prog.done -= g->got;
        g->cur = NULL;
    }
    g->have_tid = 0;
    for (k = 0; k < g->n; k++) {
        struct dl *x = &g->v[k];
        if (x->state != DL_REQUESTED)
            continue;
        x->state = DL_QUEUED;
        /* R-CHUNK-16: what is written becomes durable and recorded for the retry. */
        if (x->piece != NULL) {
            ferry_piece_sync(x->piece);
            ferry_piece_free(x->piece);
            x->piece = NULL;
        }
        x->phase = 0;
        g->prog.done -= x->counted;
        g->prog.skipped -= x->counted < g->prog.skipped ? x->counted : g->prog.skipped;
        x->counted = 0;
    }
}

/* Whether running the same command again may get further (a lost connection, not a fault). */
static int resumable(int rc)
{
    return rc < 0 && rc != FERRY_EPROTO && rc != FERRY_EAUTH && rc != FERRY_EPIN &&
           rc != FERRY_ETOOBIG;
}

/* Issue 4: reconnect with backoff for up to retry_for_ms and carry on. */
static int run_retrying(struct get *g, uint64_t retry_for_ms)
{
    int rc;

    for (;;) {
        rc = run_downloads(g);
        if (rc >= 0 || !resumable(rc))
            return rc;
        requeue_all(g);
        if ((rc = cli_reconnect(&g->cc, rc, ferry_now_ms(), retry_for_ms)) != 0)
            return rc;
    }
}

/* What cmd_get allocates before it connects; the plan is freed where it is used. */
static void get_free(struct get *g)
{
    ferry_writer_free(g->wr);
    g->wr = NULL;
    cli_batch_cleanup(&g->batch);
    cli_batch_cleanup(&g->fbatch);
    ferry_free(g->acks);
    g->acks = NULL;
    ferry_free(g->ibuf);
    g->ibuf = NULL;
}

int cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {
        {"recursive", no_argument, NULL, 'r'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},      {"retry-for", required_argument, NULL, 1},
        {"stats", no_argument, NULL, 2},       {NULL, 0, NULL, 0},
    };
    struct get g = {.fd = -1, .dirfd = -1};
    uint64_t retry_for_ms = 60000, v;
    int stats = 0;
    const char *dest = ".";
    struct stat dst;
    int c, rec = 0, nsrc, rc = 0, dest_dir;
    size_t k, done = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "rRqh", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
        case 'R':
            rec = 1;
            break;
        case 'q':
            cli_quiet = 1;
            break;
        case 'h':
            fputs(get_usage, stdout);
            return CLI_OK;
        case 1:
            if (ferry_parse_size(optarg, &v) != 0 || v > 86400 * 7) {
                cli_err("--retry-for: give whole seconds, at most a week");
                return CLI_USAGE;
            }
            retry_for_ms = v * 1000;
            break;
        case 2:
            stats = 1;
            break;
        default:
            fputs(get_usage, stderr);
            return CLI_USAGE;
        }
    }
    nsrc = argc - optind;
    if (nsrc < 1) {
        fputs(get_usage, stderr);
        return CLI_USAGE;
    }
    if (nsrc >= 2) {
        dest = argv[argc - 1];
        nsrc--;
    }
    g.umask = umask(022);
    umask(g.umask);
    if (ferry_writer_new(&g.wr) != 0 || cli_batch_init(&g.batch, CLI_BATCH_FILES_MAX) != 0 ||
        cli_batch_init(&g.fbatch, CLI_BATCH_FILES_MAX) != 0 ||
        (g.acks = ferry_calloc(CLI_BATCH_FILES_MAX, sizeof(*g.acks))) == NULL) {
        cli_err("out of memory");
        get_free(&g);
        return CLI_FAIL;
    }
    dest_dir = stat(dest, &dst) == 0 && S_ISDIR(dst.st_mode);
    /* R-CLI-9: a re-run of an unfinished get keeps the destination its first run chose. */
    if (cli_task_dest_dir() >= 0)
        dest_dir = cli_task_dest_dir();
    else
        cli_task_set_dest_dir(dest_dir);
    if (nsrc > 1 && !dest_dir) {
        cli_err("%s is not a folder (several sources need a folder destination)", cli_esc(dest));
        get_free(&g);
        return CLI_FAIL;
    }
    cli_progress_init(&g.prog, 0, 0);
    {
        /*
         * A server that cannot be reached yet, or a connection lost while the
         * plan is made, is retried like a connection lost later.
         */
        uint64_t start = ferry_now_ms(), wait_ms;
        unsigned attempt = 0;
        size_t failed0 = g.failed;

        for (;;) {
            rc = cli_connect_session(&g.cc);
            if (rc == 0) {
                rc = plan_sources(&g, argv + optind, nsrc, dest, dest_dir, rec);
                if (rc == 0 || !cli_conn_lost(rc))
                    break;
                plan_reset(&g);
                g.failed = failed0;
            } else if (!cli_conn_lost(rc)) {
                cli_disconnect(&g.cc);
                get_free(&g);
                return CLI_FAIL;
            }
            cli_disconnect(&g.cc);
            if (!ferry_retry_window_open(start, retry_for_ms, ferry_now_ms())) {
                cli_err("cannot reach the server (%s). Run the same command again.",
                        ferry_strerror(rc));
                get_free(&g);
                return CLI_RESUMABLE;
            }
            wait_ms = ferry_backoff_ms(attempt++);
            cli_warn("cannot reach the server (%s); trying again in %.1f s", ferry_strerror(rc),
                     (double)wait_ms / 1000);
            usleep((useconds_t)wait_ms * 1000);
        }
    }
    g.prog.files_total = g.n;
    /* Without the thread, batches are made durable on this one (slower, as safe). */
    if (rc == 0 && cli_flusher_new(&g.fl) != 0)
        g.fl = NULL;
    if (rc == 0)
        rc = run_retrying(&g, retry_for_ms);
    if (resumable(rc))
        requeue_all(&g);
    if (g.cur != NULL)
        abort_current(&g, "interrupted");
    /* Verified before a fault of the server's: placed, but nobody to acknowledge them to. */
    flush(&g, 0);
    cli_dircache_clear(&g.dc);
    /* Folder times last, deepest first: writing files into them changed them. */
    for (k = g.ndirs; rc == 0 && k-- > 0;) {
        struct timespec ts[2];
        int fd = g.dirs[k].rel[0] ? ferry_open_beneath(g.dirs[k].rootfd, g.dirs[k].rel,
                                                       O_RDONLY | O_DIRECTORY, 0)
                                  : dup(g.dirs[k].rootfd);
        if (fd < 0)
            continue;
        cli_mtime_ts(g.dirs[k].mtime, ts);
        futimens(fd, ts);
        close(fd);
    }
    cli_progress_end(&g.prog);
    if (rc != 0) {
        size_t lost = 0;
        for (k = 0; k < g.n; k++)
            if (g.v[k].state < DL_DONE)
                lost++;
        if (resumable(rc))
            cli_err("download interrupted (%s): %zu file%s not received; nothing partial was "
                    "left in place. Run the same command again to resume.",
                    ferry_strerror(rc), lost, lost == 1 ? "" : "s");
        else
            cli_err("download failed (%s): %zu file%s not received; nothing partial was left "
                    "in place.",
                    ferry_strerror(rc), lost, lost == 1 ? "" : "s");
    }
    for (k = 0; k < g.n; k++) {
        if (g.v[k].state == DL_DONE)
            done++;
        ferry_free(g.v[k].rel);
        ferry_free(g.v[k].label);
        if (g.v[k].piece != NULL)
            ferry_piece_sync(g.v[k].piece); /* what arrived stays for a rerun */
        ferry_piece_free(g.v[k].piece);
    }
    for (k = 0; k < g.ndirs; k++)
        ferry_free(g.dirs[k].rel);
    for (k = 0; k < g.nroots; k++)
        close(g.rootfds[k]);
    ferry_free(g.rootfds);
    ferry_free(g.dirs);
    ferry_free(g.v);
    cli_flusher_free(g.fl);
    get_free(&g);
    cli_disconnect(&g.cc);
    if (stats) {
        uint64_t tx, rx;
        cli_wire_totals(&tx, &rx);
        printf("files: %zu received, %zu failed\n"
               "bytes: %llu in all, %llu received, %llu kept from partial files\n"
               "local: %llu taken from files already here\n"
               "wire: %llu sent, %llu received (TLS)\n",
               done, g.failed, (unsigned long long)g.prog.total,
               (unsigned long long)(g.prog.done - g.prog.skipped), (unsigned long long)g.resumed,
               (unsigned long long)g.reused, (unsigned long long)tx, (unsigned long long)rx);
    }
    if (resumable(rc))
        return CLI_RESUMABLE;
    if (rc != 0)
        return CLI_FAIL;
    if (g.failed == 0)
        return CLI_OK;
    /* Some failed (each named above): partial if anything made it. */
    return done > 0 ? CLI_PARTIAL : CLI_FAIL;
}
