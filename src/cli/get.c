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

#include <sqlite3.h>

#include "../server/serve.h"
#include "cli.h"
#include "ferry/manifest.h"
#include "ferry/path.h"
#include "ferry/writer.h"
#include "getchunks.h"

struct dl {
    int64_t file_id;
    int rootfd;  /* the destination folder this item lives beneath (borrowed) */
    char *rel;   /* path beneath rootfd, validated (R-PATH-6) */
    char *label; /* what to call it in messages */
    char id[FERRY_UUID_STR_LEN + 1];
    int state;                   /* 0 queued, 1 requested, 2 done, 3 failed */
    char cid[FERRY_CID_LEN + 1]; /* content id the listing gave, "" if none */
    uint64_t resume;             /* durable bytes of a partial file, asked to resume */
    /* R-CHUNK-15/16: 1 its list was asked for, 2 some of its chunks. */
    int phase;
    int restarts; /* times it changed on the server mid-way */
    struct cli_patch *patch;
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
    struct cli_progress prog;
    mode_t umask;
    /* the transfer being received */
    struct dl *cur;
    uint8_t tid[FERRY_TID_LEN];
    int have_tid; /* a Transfer was announced and its TransferComplete is due */
    char hash[FERRY_CID_LEN + 1];
    uint64_t size, got, synced;
    int64_t mtime;
    int exec;
    int dirfd, fd;
    char tmpname[48];
    /* Hashing and writing run on the writer's thread while this one receives. */
    struct ferry_writer *wr;
    uint8_t *wb;
    size_t wlen;
    uint64_t unsynced; /* bytes handed to the writer since the last check of what is durable */
    uint64_t recorded; /* durable bytes recorded in the state database */
    uint64_t resumed;  /* bytes not fetched again thanks to partial files (--stats) */
    uint64_t reused;   /* bytes taken from old local files instead (--stats) */
    size_t inflight;   /* Downloads requested and not finished */
};

/* R-CHUNK-14: a partial download becomes durable (and resumable) every this many bytes. */
#define PARTIALS_SQL                                                                               \
    "CREATE TABLE IF NOT EXISTS partials(dev INTEGER NOT NULL, ino INTEGER NOT NULL,"              \
    " name TEXT NOT NULL, cid TEXT NOT NULL, durable INTEGER NOT NULL,"                            \
    " PRIMARY KEY(dev, ino, name)) STRICT"
#define GET_DURABLE_STEP (32u << 20)

static const char get_usage[] =
    "usage: ferry get [-r] [-q] [--retry-for SECS] REMOTE... [LOCAL]\n"
    "\n"
    "Downloads remote files (and with -r, folders). The last argument is the local\n"
    "destination, as with cp and scp; with a single argument it is the current\n"
    "folder. Each file is written to a temporary name, checked against its content\n"
    "id, then renamed into place: nothing half-written is ever visible.\n"
    "\n"
    "  -r, --recursive    download folders and everything in them\n"
    "  -q, --quiet        no progress line\n"
    "  --retry-for SECS   reconnect and carry on for this long after the connection\n"
    "                     is lost (default 60; 0: give up at once)\n"
    "  --stats            print files and bytes received, kept and on the wire\n"
    "\n"
    "A download cut short keeps what was made durable (every 32 MiB) in a\n"
    ".ferry-*.part file beside the destination; running the same get again\n"
    "continues from there.\n"
    "\n"
    "Exit status: 0 all received, 1 failure, 2 usage, 3 some files failed (each\n"
    "named), 4 interrupted: run the same command again.\n";

static void failmsg(struct get *g, const char *label, const char *why)
{
    g->failed++;
    fprintf(stderr, "ferry: ");
    cli_print_name(stderr, label);
    fprintf(stderr, ": %s\n", why);
}

static int add_dl(struct get *g, int64_t file_id, int rootfd, const char *rel, const char *label,
                  const char *cid)
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
    *d = (struct dl){.file_id = file_id, .rootfd = rootfd};
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
    rc = ferry_client_send_cmd(&g->cc.c, FERRY_MSG_DIRINFO,
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

            /* R-PATH-6: a name from the server is hostile until validated. */
            if (name == NULL || type == NULL ||
                ferry_path_normalize(name, strlen(name), norm, sizeof(norm)) != 0 ||
                strcmp(norm, name) != 0 || norm[0] == '\0') {
                failmsg(g, name != NULL ? name : "?", "refused an unsafe name from the server");
                continue;
            }
            if (strcmp(type, "dir") == 0) {
                if ((fd = ferry_mkdirs_beneath(rootfd, norm)) < 0) {
                    failmsg(g, norm, strerror(-fd));
                    continue;
                }
                close(fd);
                if ((rc = add_dir(g, rootfd, norm, mt)) != 0)
                    break;
            } else if ((rc = add_dl(g, fid, rootfd, norm, norm,
                                    json_string_value(json_object_get(e, "hash")))) != 0) {
                break;
            }
            g->prog.total += (uint64_t)json_integer_value(json_object_get(e, "size"));
        }
        last = json_is_true(json_object_get(m.body, "last"));
        ferry_cmd_cleanup(&m);
    }
    return rc;
}

/*
 * R-CHUNK-14: a partial download lives at a name derived from its content
 * id and destination, so a rerun finds it; the state database says how much
 * of it is durable.
 */
static void part_name(const char *cid, const char *rel, char out[48])
{
    struct ferry_sha256 h;
    char full[FERRY_CID_LEN + 1];

    /* A slash-free digest: the part file sits beside the destination. */
    if (ferry_sha256_init(&h) == 0 && ferry_sha256_update(&h, cid, strlen(cid) + 1) == 0 &&
        ferry_sha256_update(&h, rel, strlen(rel)) == 0 && ferry_sha256_final_cid(&h, full) == 0) {
        snprintf(out, 48, ".ferry-%.16s.part", full + 7);
        return;
    }
    snprintf(out, 48, ".ferry-0000000000000000.part");
}

static int part_key(int dirfd, struct stat *st)
{
    return fstat(dirfd, st);
}

/* The durable bytes recorded for a part file, 0 if none or for other content. */
static uint64_t part_get(int dirfd, const char *name, const char *cid)
{
    static const char sql[] = "SELECT durable FROM partials WHERE dev = ?1 AND ino = ?2"
                              " AND name = ?3 AND cid = ?4";
    sqlite3_stmt *st = NULL;
    sqlite3 *db = NULL;
    struct stat ds;
    uint64_t v = 0;

    if (part_key(dirfd, &ds) != 0 || cli_state_open(&db) != 0 ||
        sqlite3_exec(db, PARTIALS_SQL, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)ds.st_dev);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)ds.st_ino);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, cid, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0)
        v = (uint64_t)sqlite3_column_int64(st, 0);
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Records (durable > 0) or forgets (durable == 0) a part file. */
static void part_put(int dirfd, const char *name, const char *cid, uint64_t durable)
{
    static const char sql_put[] =
        "INSERT OR REPLACE INTO partials(dev, ino, name, cid, durable) VALUES(?1, ?2, ?3, ?4, ?5)";
    static const char sql_del[] = "DELETE FROM partials WHERE dev = ?1 AND ino = ?2 AND name = ?3";
    sqlite3_stmt *st = NULL;
    sqlite3 *db = NULL;
    struct stat ds;

    if (part_key(dirfd, &ds) != 0 || cli_state_open(&db) != 0 ||
        sqlite3_exec(db, PARTIALS_SQL, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, durable > 0 ? sql_put : sql_del, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)ds.st_dev);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)ds.st_ino);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    if (durable > 0) {
        sqlite3_bind_text(st, 4, cid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)durable);
    }
    sqlite3_step(st);
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/*
 * Opens the part file without following links; one that is not a plain
 * file of ours with a single link is refused (a planted name).
 */
static int part_open(int dirfd, const char *name)
{
    struct stat st;
    int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
        close(fd);
        return -EPERM;
    }
    return fd;
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
         * what it made durable is recorded here, without waiting for it.
         */
        if (g->unsynced >= GET_DURABLE_STEP && g->wb == NULL) {
            uint64_t durable = ferry_writer_durable(g->wr);
            g->unsynced = 0;
            if (durable > g->recorded) {
                part_put(g->dirfd, g->tmpname, g->hash, durable);
                g->recorded = durable;
            }
        }
    }
    return 0;
}

static void abort_current(struct get *g, const char *why)
{
    char cid[FERRY_CID_LEN + 1];

    if (g->cur == NULL)
        return;
    if (g->fd >= 0) {
        submit(g);
        ferry_writer_end(g->wr, cid);
        close(g->fd);
        unlinkat(g->dirfd, g->tmpname, 0);
        part_put(g->dirfd, g->tmpname, NULL, 0);
    }
    if (g->dirfd >= 0)
        close(g->dirfd);
    g->fd = g->dirfd = -1;
    g->cur->state = 3;
    failmsg(g, g->cur->label, why);
    g->cur = NULL;
}

static int begin(struct get *g, struct dl *d, const struct ferry_cmd *m)
{
    const char *tid = json_string_value(json_object_get(m->body, "tid"));
    const char *hash = json_string_value(json_object_get(m->body, "hash"));
    json_t *size = json_object_get(m->body, "size");
    char parent[FERRY_PATH_MAX + 1], rnd[16], hex[33];
    const char *slash = strrchr(d->rel, '/');

    if (tid == NULL || ferry_hex_decode(tid, g->tid, 16) != 0 || hash == NULL ||
        !ferry_cid_valid(hash) || !json_is_integer(size) || json_integer_value(size) < 0)
        return FERRY_EPROTO;
    g->cur = d;
    g->have_tid = 1;
    g->size = (uint64_t)json_integer_value(size);
    g->got = g->synced = 0;
    g->mtime = json_integer_value(json_object_get(m->body, "mtime"));
    g->exec = json_is_true(json_object_get(m->body, "exec"));
    snprintf(g->hash, sizeof(g->hash), "%s", hash);
    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - d->rel) : 0, d->rel);
    g->fd = -1;
    g->dirfd = ferry_mkdirs_beneath(d->rootfd, parent);
    if (g->dirfd < 0) {
        abort_current(g, "cannot create its folder");
        return 0;
    }
    (void)rnd;
    (void)hex;
    /* R-CHUNK-14: the part file's name follows from the content and the destination. */
    part_name(g->hash, d->rel, g->tmpname);
    /* No symlink followed, ours alone: a planted temp name cannot redirect us. */
    if ((g->fd = part_open(g->dirfd, g->tmpname)) < 0) {
        g->fd = -1;
        abort_current(g, "cannot create its temporary file (a foreign file in the way?)");
        return 0;
    }
    /* Resume only what the server agreed to send the rest of (its Transfer's hash). */
    if (d->resume > 0 && strcmp(d->cid, g->hash) != 0)
        d->resume = 0;
    if (ftruncate(g->fd, (off_t)d->resume) != 0) {
        abort_current(g, strerror(errno));
        return 0;
    }
    /* R-CHUNK-10: a chunked file is checked by re-chunking what arrives. */
    if ((strncmp(g->hash, FERRY_CID_CHUNKS_PREFIX, 7) == 0
             ? ferry_writer_begin_chunked(g->wr, g->fd)
             : ferry_writer_begin(g->wr, g->fd)) != 0 ||
        (d->resume > 0 && ferry_writer_resume(g->wr, d->resume) != 0)) {
        abort_current(g, "cannot start writing");
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

static int finish(struct get *g)
{
    const char *name = strrchr(g->cur->rel, '/');
    char cid[FERRY_CID_LEN + 1], tidhex[33];
    struct timespec ts[2];
    int rc;

    name = name != NULL ? name + 1 : g->cur->rel;
    submit(g);
    if ((rc = ferry_writer_end(g->wr, cid)) != 0) {
        close(g->fd);
        g->fd = -1;
        unlinkat(g->dirfd, g->tmpname, 0);
        abort_current(g, strerror(rc < 0 && rc > -4096 ? -rc : EIO));
        return 0;
    }
    /* Seed 000: the receiver checks the hash before anything is visible. */
    if (g->got != g->size || strcmp(cid, g->hash) != 0) {
        close(g->fd);
        g->fd = -1;
        unlinkat(g->dirfd, g->tmpname, 0);
        part_put(g->dirfd, g->tmpname, NULL, 0);
        abort_current(g, "content did not match its hash; nothing was written");
        return 0;
    }
    cli_mtime_ts(g->mtime, ts);
    if (fchmod(g->fd, (g->exec ? 0777 : 0666) & ~g->umask) != 0 || futimens(g->fd, ts) != 0 ||
        fdatasync(g->fd) != 0) {
        abort_current(g, strerror(errno));
        return 0;
    }
    if (renameat(g->dirfd, g->tmpname, g->dirfd, name) != 0) {
        abort_current(g, strerror(errno));
        return 0;
    }
    part_put(g->dirfd, g->tmpname, NULL, 0);
    close(g->fd);
    close(g->dirfd);
    g->fd = g->dirfd = -1;
    g->cur->state = 2;
    g->cur = NULL;
    g->prog.files_done++;
    /* Seed 000: the receiver acknowledges after its hash check. */
    ferry_hex_encode(g->tid, FERRY_TID_LEN, tidhex);
    return ferry_client_send_cmd(&g->cc.c, FERRY_MSG_TRANSFER_COMPLETE,
                                 json_pack("{s:s, s:s}", "tid", tidhex, "hash", cid));
}

static struct dl *by_ref(struct get *g, const char *ref, size_t from)
{
    size_t i;

    for (i = from; ref != NULL && i < g->n; i++)
        if (g->v[i].state == 1 && strcmp(g->v[i].id, ref) == 0)
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

/*
 * Whether a chunked file has bytes on this disk to build on: a partial
 * download of it, or an old version at its destination (R-CHUNK-16).
 */
static int has_local(const struct dl *x)
{
    char pname[48];
    const char *name;
    struct stat st;
    int dfd, yes = 0;

    if (strncmp(x->cid, FERRY_CID_CHUNKS_PREFIX, 7) != 0)
        return 0;
    if ((dfd = dl_dir(x, 0, &name)) < 0)
        return 0;
    part_name(x->cid, x->rel, pname);
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_size >= (off_t)FERRY_CHUNK_MIN)
        yes = 1;
    else if (fstatat(dfd, pname, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
        yes = cli_patch_has_bitmap(dfd, pname, x->cid) || part_get(dfd, pname, x->cid) > 0;
    close(dfd);
    return yes;
}

/* R-CHUNK-15: asks for the file's chunk list. */
static int ask_list(struct get *g, struct dl *x)
{
    cli_patch_free(x->patch);
    x->patch = NULL;
    ferry_uuid_new(x->id);
    x->state = 1;
    x->phase = 1;
    g->inflight++;
    return ferry_client_send_cmd(
        &g->cc.c, FERRY_MSG_DOWNLOAD,
        json_pack("{s:s, s:I, s:b}", "id", x->id, "file_id", (json_int_t)x->file_id, "list", 1));
}

/* Gives up on a file downloaded by chunks; its verified chunks stay for a rerun. */
static void patch_fail(struct get *g, struct dl *x, const char *why, int discard)
{
    if (g->cur == x)
        g->cur = NULL;
    if (discard && x->patch != NULL)
        cli_patch_discard(x->patch);
    cli_patch_free(x->patch);
    x->patch = NULL;
    x->phase = 0;
    x->state = 3;
    failmsg(g, x->label, why);
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
    x->mtime = json_integer_value(json_object_get(m->body, "mtime"));
    x->exec = json_is_true(json_object_get(m->body, "exec"));
    /* R-CHUNK-15: a list over its cap is refused before anything is allocated. */
    if ((rc = cli_patch_new(hash, size, (uint64_t)json_integer_value(ll), &x->patch)) != 0)
        return rc == -ENOMEM ? rc : FERRY_EPROTO;
    return 0;
}

static int patch_chunks_begin(struct get *g, struct dl *x, const struct ferry_cmd *m)
{
    const char *hash;
    uint64_t size;

    if (x->patch == NULL || patch_transfer(g, x, m, &hash, &size) != 0 || strcmp(hash, x->cid) != 0)
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
    if ((rc = cli_patch_place(x->patch, name, (x->exec ? 0777 : 0666) & ~g->umask, x->mtime)) !=
        0) {
        patch_fail(g, x, strerror(rc < 0 && rc > -4096 ? -rc : EIO), 0);
        return 0;
    }
    cli_patch_free(x->patch);
    x->patch = NULL;
    x->state = 2;
    g->prog.files_done++;
    if (tid == NULL)
        return 0;
    ferry_hex_encode(tid, FERRY_TID_LEN, tidhex);
    return ferry_client_send_cmd(&g->cc.c, FERRY_MSG_TRANSFER_COMPLETE,
                                 json_pack("{s:s, s:s}", "tid", tidhex, "hash", x->cid));
}

/* R-CHUNK-16: asks for the chunks still missing. */
static int patch_request(struct get *g, struct dl *x)
{
    json_t *ranges = cli_patch_ranges(x->patch);

    if (ranges == NULL)
        return -ENOMEM;
    ferry_uuid_new(x->id);
    x->state = 1;
    x->phase = 2;
    g->inflight++;
    return ferry_client_send_cmd(&g->cc.c, FERRY_MSG_DOWNLOAD,
                                 json_pack("{s:s, s:I, s:s, s:o}", "id", x->id, "file_id",
                                           (json_int_t)x->file_id, "hash", x->cid, "chunks",
                                           ranges));
}

/* The list is in: take what is on the disk, ask for the rest. */
static int patch_list_done(struct get *g)
{
    struct dl *x = g->cur;
    const char *name;
    char pname[48];
    uint64_t reused, kept;
    int dfd, rc;

    g->cur = NULL;
    if ((dfd = dl_dir(x, 1, &name)) < 0) {
        patch_fail(g, x, "cannot create its folder", 0);
        return 0;
    }
    part_name(x->cid, x->rel, pname);
    rc = cli_patch_plan(x->patch, dfd, name, pname, part_get(dfd, pname, x->cid),
                        (x->exec ? 0777 : 0666) & ~g->umask, x->mtime);
    close(dfd);
    if (rc == CLI_PATCH_ALREADY) {
        /* The file is already this content (the local index says so): nothing to fetch. */
        g->reused += cli_patch_size(x->patch);
        g->prog.done += cli_patch_size(x->patch);
        g->prog.skipped += cli_patch_size(x->patch);
        cli_patch_free(x->patch);
        x->patch = NULL;
        x->state = 2;
        g->prog.files_done++;
        return 0;
    }
    if (rc == FERRY_EPROTO)
        return rc; /* a list that is not the content's: the server is at fault */
    if (rc != 0) {
        patch_fail(g, x,
                   rc == -EPERM ? "cannot use its temporary file (a foreign file in the way?)"
                                : strerror(rc < 0 && rc > -4096 ? -rc : EIO),
                   0);
        return 0;
    }
    reused = cli_patch_reused(x->patch, &kept);
    g->reused += reused;
    g->resumed += kept;
    x->counted += reused + kept;
    g->prog.done += reused + kept;
    g->prog.skipped += reused + kept;
    cli_progress_update(&g->prog, 0);
    if (cli_patch_complete(x->patch))
        return patch_place(g, x, NULL);
    return patch_request(g, x);
}

/* A chunk frame of the file being received by chunks. */
static int patch_chunk(struct get *g, const struct ferry_chunk_frame *f)
{
    struct dl *x = g->cur;
    uint64_t fresh = 0;
    int rc;

    rc = cli_patch_chunk(x->patch, f, &fresh);
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
        patch_fail(g, x, strerror(rc < 0 && rc > -4096 ? -rc : EIO), 0);
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
    if ((rc = cli_patch_sync(x->patch)) != 0) {
        patch_fail(g, x, strerror(rc < 0 && rc > -4096 ? -rc : EIO), 0);
        return 0;
    }
    if (cli_patch_complete(x->patch))
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
        if (x->patch != NULL)
            cli_patch_sync(x->patch);
        return ask_list(g, x);
    }
    patch_fail(g, x, msg, 0);
    return 0;
}

static int run_downloads(struct get *g)
{
    size_t next = 0, first = 0;
    struct ferry_cmd m;
    struct ferry_data d;
    struct ferry_chunk_frame cf;
    int rc = 0;

    g->inflight = 0;
    while (rc == 0) {
        /* Keep a window of requests ahead of the one being received (R-PIPE-1). */
        while (next < g->n && g->inflight < CLI_DOWNLOADS_IN_FLIGHT) {
            struct dl *x = &g->v[next++];
            if (x->state != 0)
                continue; /* received (or failed) on an earlier connection */
            json_t *req;
            /* R-CHUNK-15: local bytes to build on: ask for the list first. */
            if (g->cc.minor >= 1 && has_local(x)) {
                if ((rc = ask_list(g, x)) != 0)
                    return rc;
                continue;
            }
            ferry_uuid_new(x->id);
            x->state = 1;
            g->inflight++;
            req = json_pack("{s:s, s:I}", "id", x->id, "file_id", (json_int_t)x->file_id);
            x->resume = 0;
            /* R-CHUNK-14: a durable part file of the same content: ask for the rest. */
            if (req != NULL && x->cid[0] != '\0' && g->cc.minor >= 1) {
                char pname[48], parent[FERRY_PATH_MAX + 1];
                const char *slash = strrchr(x->rel, '/');
                int dfd;
                snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - x->rel) : 0,
                         x->rel);
                part_name(x->cid, x->rel, pname);
                dfd = parent[0] ? ferry_open_beneath(x->rootfd, parent, O_RDONLY | O_DIRECTORY, 0)
                                : dup(x->rootfd);
                if (dfd >= 0) {
                    struct stat ps;
                    uint64_t durable = part_get(dfd, pname, x->cid);
                    if (durable > 0 && fstatat(dfd, pname, &ps, AT_SYMLINK_NOFOLLOW) == 0 &&
                        S_ISREG(ps.st_mode) && (uint64_t)ps.st_size >= durable) {
                        x->resume = durable;
                        json_object_set_new(req, "offset", json_integer((json_int_t)durable));
                        json_object_set_new(req, "hash", json_string(x->cid));
                    }
                    close(dfd);
                }
            }
            if ((rc = ferry_client_send_cmd(&g->cc.c, FERRY_MSG_DOWNLOAD, req)) != 0)
                return rc;
        }
        while (first < g->n && g->v[first].state >= 2)
            first++;
        if (first == g->n && g->cur == NULL)
            return 0;
        rc = cli_next_any(&g->cc, &m, &d, &cf);
        if (rc < 0)
            return rc;
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
            if (g->cur != NULL && g->cur->phase == 1 && g->cur->patch != NULL &&
                memcmp(d.tid, g->tid, 16) == 0) {
                if (cli_patch_list_data(g->cur->patch, d.offset, d.bytes, d.len) != 0)
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
            if (g->fd >= 0 && put_bytes(g, d.bytes, d.len) != 0) {
                g->got += d.len;
                abort_current(g, "write failed");
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
            if (t == NULL || ferry_hex_decode(t, tid, 16) != 0)
                rc = FERRY_EPROTO;
            else if (memcmp(tid, g->tid, 16) == 0 && g->have_tid) {
                /* Also for a transfer abandoned locally: its window slot frees now. */
                g->inflight--;
                g->have_tid = 0;
                if (g->cur != NULL && g->cur->patch != NULL)
                    rc = g->cur->phase == 1 ? patch_list_done(g) : patch_chunks_done(g);
                else
                    rc = g->cur != NULL && g->fd >= 0 ? finish(g) : 0;
            }
        } else if (m.type == FERRY_MSG_ERROR) {
            const char *msg, *t = json_string_value(json_object_get(m.body, "tid"));
            struct dl *x = by_ref(g, json_string_value(json_object_get(m.body, "ref")), first);
            int code = cli_error_rc(&m, &msg);
            if (x != NULL) {
                g->inflight--;
                if (x == g->cur)
                    g->have_tid = 0;
                if (x->patch != NULL) {
                    if (x == g->cur)
                        g->cur = NULL;
                    rc = patch_error(g, x, code, msg);
                } else if (x == g->cur) {
                    abort_current(g, msg);
                } else {
                    x->state = 3;
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
                rc = add_dl(g, json_integer_value(json_object_get(e, "id")), rootfd,
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
        cli_patch_free(g->v[k].patch);
    }
    g->n = 0;
    for (k = 0; k < g->ndirs; k++)
        ferry_free(g->dirs[k].rel);
    g->ndirs = 0;
    for (k = 0; k < g->nroots; k++)
        close(g->rootfds[k]);
    g->nroots = 0;
    g->prog.total = 0;
}

/* A download cut by a lost connection goes back to the queue, its temp file gone. */
static void requeue_all(struct get *g)
{
    char cid[FERRY_CID_LEN + 1];
    size_t k;

    if (g->cur != NULL) {
        if (g->fd >= 0) {
            uint64_t durable = 0;
            /* R-CHUNK-14: what is written is made durable and kept for the retry. */
            submit(g);
            if (ferry_writer_sync(g->wr, &durable) == 0 && durable > 0)
                part_put(g->dirfd, g->tmpname, g->hash, durable);
            ferry_writer_end(g->wr, cid);
            close(g->fd);
        }
        if (g->dirfd >= 0)
            close(g->dirfd);
        g->fd = g->dirfd = -1;
        if (g->cur->patch == NULL)
            g->prog.done -= g->got;
        g->cur = NULL;
    }
    g->have_tid = 0;
    for (k = 0; k < g->n; k++) {
        struct dl *x = &g->v[k];
        if (x->state != 1)
            continue;
        x->state = 0;
        /* R-CHUNK-16: what is written becomes durable and recorded for the retry. */
        if (x->patch != NULL) {
            cli_patch_sync(x->patch);
            cli_patch_free(x->patch);
            x->patch = NULL;
        }
        x->phase = 0;
        g->prog.done -= x->counted;
        g->prog.skipped -= x->counted < g->prog.skipped ? x->counted : g->prog.skipped;
        x->counted = 0;
    }
}

/* Issue 4: reconnect with backoff for up to retry_for_ms and carry on. */
static int run_retrying(struct get *g, uint64_t retry_for_ms)
{
    int rc;

    for (;;) {
        rc = run_downloads(g);
        if (rc >= 0 || rc == FERRY_EPROTO || rc == FERRY_EAUTH || rc == FERRY_EPIN)
            return rc;
        requeue_all(g);
        if ((rc = cli_reconnect(&g->cc, rc, ferry_now_ms(), retry_for_ms)) != 0)
            return rc;
    }
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
    if (ferry_writer_new(&g.wr) != 0) {
        cli_err("out of memory");
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
        ferry_writer_free(g.wr);
        return CLI_FAIL;
    }
    cli_progress_init(&g.prog, 0, 0);
    {
        /*
         * A server that cannot be reached yet, or a connection lost while the
         * plan is made, is retried like a connection lost later.
         */
        uint64_t start = ferry_now_ms(), wait_ms = 500;
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
                return CLI_FAIL;
            }
            cli_disconnect(&g.cc);
            if (ferry_now_ms() - start >= retry_for_ms) {
                cli_err("cannot reach the server (%s). Run the same command again.",
                        ferry_strerror(rc));
                return CLI_RESUMABLE;
            }
            cli_warn("cannot reach the server (%s); trying again in %.1f s", ferry_strerror(rc),
                     (double)wait_ms / 1000);
            usleep((useconds_t)wait_ms * 1000);
            wait_ms = wait_ms * 2 > 10000 ? 10000 : wait_ms * 2;
        }
    }
    g.prog.files_total = g.n;
    if (rc == 0)
        rc = run_retrying(&g, retry_for_ms);
    if (rc < 0 && rc != FERRY_EPROTO)
        requeue_all(&g);
    if (g.cur != NULL)
        abort_current(&g, "interrupted");
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
            if (g.v[k].state < 2)
                lost++;
        cli_err("download interrupted (%s): %zu file%s not received; nothing partial was "
                "left in place. Run the same command again to resume.",
                ferry_strerror(rc), lost, lost == 1 ? "" : "s");
    }
    for (k = 0; k < g.n; k++) {
        if (g.v[k].state == 2)
            done++;
        ferry_free(g.v[k].rel);
        ferry_free(g.v[k].label);
        if (g.v[k].patch != NULL)
            cli_patch_sync(g.v[k].patch); /* what arrived stays for a rerun */
        cli_patch_free(g.v[k].patch);
    }
    for (k = 0; k < g.ndirs; k++)
        ferry_free(g.dirs[k].rel);
    for (k = 0; k < g.nroots; k++)
        close(g.rootfds[k]);
    ferry_free(g.rootfds);
    ferry_free(g.dirs);
    ferry_free(g.v);
    ferry_writer_free(g.wr);
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
    if (rc < 0 && rc != FERRY_EPROTO && rc != FERRY_EAUTH && rc != FERRY_EPIN)
        return CLI_RESUMABLE;
    if (rc != 0)
        return CLI_FAIL;
    if (g.failed == 0)
        return CLI_OK;
    /* Some failed (each named above): partial if anything made it. */
    return done > 0 ? CLI_PARTIAL : CLI_FAIL;
}
