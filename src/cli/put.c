/* ferry put: upload files and folders, pipelined, confirmed only when durable. */
#include <dirent.h>
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
#include "ferry/index.h"
#include "ferry/manifest.h"
#include "ferry/path.h"
#include "ferry/reader.h"

enum { ITEM_DIR, ITEM_FILE };
enum { ST_QUEUED, ST_SENT, ST_DONE, ST_FAILED };

struct item {
    int kind;
    int state;
    char *local;
    char *remote;
    uint64_t size;
    int64_t mtime;
    int exec;
    uint8_t tid[FERRY_TID_LEN];
    char id[FERRY_UUID_STR_LEN + 1];
    uint64_t counted; /* bytes this item added to the progress line */
    int attempts;     /* chunked: commits refused for a missing chunk */
};

/* The chunked file being sent (R-CHUNK): one at a time, pipelined with the rest. */
struct cfile {
    struct item *it;
    int fd;
    struct stat st;
    struct ferry_index_id fid;
    int64_t recorded; /* wall clock before the file was read (the racy rule) */
    int indexed;      /* the list came from the local index: nothing was read */
    int scanning;
    int list_done;
    int failed;
    uint8_t *list;
    size_t list_cap;
    uint64_t *offs;
    size_t offs_cap;
    uint32_t nent;     /* entries known */
    uint32_t sent;     /* entries sent */
    uint32_t answered; /* entries covered by ChunkNeed */
    uint32_t *need;    /* indices still to send, need[need_head..need_n) */
    size_t need_n;
    size_t need_head;
    size_t need_cap;
    /* R-CHUNK-13: per entry, 1 + the extra connection that carries it until stored. */
    uint8_t *via;
    size_t via_cap;
    uint32_t pending_x; /* chunks sent on extra connections, not yet stored */
};

/* Connections of one put, the first included (R-CHUNK-13). */
#define PUT_CONNECTIONS_MAX     16
#define PUT_CONNECTIONS_DEFAULT 4

struct put {
    struct cli_conn cc;
    /* Extra connections of the same session that carry chunks (R-CHUNK-13). */
    struct cli_conn xc[PUT_CONNECTIONS_MAX - 1];
    int xc_up[PUT_CONNECTIONS_MAX - 1];
    int nxc;
    struct item *v;
    size_t n;
    size_t cap;
    size_t unresolved;
    size_t scan; /* items before this are all resolved */
    size_t failed;
    struct cli_progress prog;
    uint8_t *buf;
    /* Big files are read and hashed on this thread while the main one sends. */
    struct ferry_reader *rd;
    /* Chunked files are read, chunked and hashed on this one. */
    struct ferry_scan *sc;
    struct cfile cf;
    uint64_t bytes_read; /* of local files, for --stats: an indexed file costs none */
    uint64_t bwlimit;    /* bytes per second; 0: none */
    uint64_t bw_sent;
    uint64_t bw_start_ms;
};

/* Files from this size on go through the reader thread. */
#define PUT_THREADED_MIN (1u << 20)
/* Files from this size on travel as chunks to a 1.1 server (R-CHUNK). */
#define CLI_CHUNKED_MIN (1u << 20)
/* Commits refused for a missing chunk before the file counts as failed. */
#define PUT_CHUNK_ATTEMPTS 3
/* Entries taken from the scanner between two looks at the network. */
#define PUT_SCAN_BATCH 256

/* Every chunk fits one ferry_client_send_chunk_fd. */
_Static_assert((FERRY_CHUNK_MAX + FERRY_DATA_MAX - 1) / FERRY_DATA_MAX <= FERRY_CLIENT_CHUNK_IOV,
               "a chunk has more frames than ferry_client_send_chunk_fd takes");

static const char put_usage[] =
    "usage: ferry put [-r] [-q] [--retry-for SECS] [--bwlimit RATE] LOCAL... [REMOTE]\n"
    "\n"
    "Uploads files (and with -r, folders) to your remote tree. The last argument is\n"
    "the destination, as with cp and scp; with a single argument the upload goes to\n"
    "your remote root. A file is confirmed only once the server has made it durable;\n"
    "an existing remote file is replaced atomically. Symlinks are skipped.\n"
    "\n"
    "Files of 1 MiB and more travel as content-defined chunks: only the chunks the\n"
    "server does not hold are sent, so an unchanged or slightly changed file costs\n"
    "little, and an interrupted upload resumes where it stopped when run again.\n"
    "\n"
    "  -r, --recursive    upload folders and everything in them (empty ones too)\n"
    "  -q, --quiet        no progress line\n"
    "  --retry-for SECS   reconnect and carry on for this long after the connection\n"
    "                     is lost (default 60; 0: give up at once)\n"
    "  --bwlimit RATE     send at most RATE bytes per second (K, M, G suffixes)\n"
    "  --stats            print files, bytes sent and skipped, and TLS bytes at the end\n"
    "  --connections N    spread chunks over N connections (1-16, default 4)\n"
    "\n"
    "Exit status: 0 all uploaded, 1 failure, 2 usage, 3 some files failed (each\n"
    "named), 4 interrupted: run the same command again to resume.\n";

static int add_item(struct put *p, int kind, const char *local, const char *remote,
                    const struct stat *st)
{
    struct item *it;

    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 256;
        struct item *nv = ferry_realloc(p->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        p->v = nv;
        p->cap = ncap;
    }
    it = &p->v[p->n];
    *it = (struct item){.kind = kind, .size = kind == ITEM_FILE ? (uint64_t)st->st_size : 0};
    it->mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    it->exec = (st->st_mode & S_IXUSR) != 0;
    it->local = ferry_strdup(local);
    it->remote = ferry_strdup(remote);
    if (it->local == NULL || it->remote == NULL) {
        ferry_free(it->local);
        ferry_free(it->remote);
        return -ENOMEM;
    }
    p->n++;
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] == '/';
    char *s = ferry_malloc(la + lb + 2);

    if (s != NULL)
        snprintf(s, la + lb + 2, "%s%s%s", a, slash ? "" : "/", b);
    return s;
}

/*
 * R-NAME-1: a name the protocol cannot carry (R-PATH-3) is refused here,
 * by name, before anything of it is sent: one failed item, and for a
 * folder everything in it with it. Returns 1 when refused.
 */
static int name_refused(struct put *p, const char *local, const char *name, const char *remote,
                        int is_dir)
{
    char norm[FERRY_PATH_MAX + 1];
    const char *why = cli_name_problem(name, strlen(name));

    if (why == NULL && ferry_path_normalize(remote, strlen(remote), norm, sizeof(norm)) != 0)
        why = "its remote path would be longer than 4096 bytes or deeper than 128 folders";
    if (why == NULL)
        return 0;
    p->failed++;
    cli_err("%s: %s: %s", cli_esc(local),
            is_dir ? "folder not uploaded, nor anything in it" : "not uploaded", why);
    return 1;
}

/* The last component of a remote path into out ("" for the root). */
static const char *remote_base(const char *remote, char out[static FERRY_PATH_MAX + 1])
{
    size_t n = strlen(remote), k;

    while (n > 0 && remote[n - 1] == '/')
        n--;
    for (k = n; k > 0 && remote[k - 1] != '/'; k--)
        ;
    snprintf(out, FERRY_PATH_MAX + 1, "%.*s", (int)(n - k), remote + k);
    return out;
}

/* Collects a folder's entries depth-first; symlinks and devices are skipped. */
static int walk(struct put *p, const char *local, const char *remote, int depth)
{
    DIR *d;
    struct dirent *e;
    struct stat st;
    int rc = 0;

    if (depth > 128) {
        cli_warn("%s: too deep, skipped", cli_esc(local));
        p->failed++;
        return 0;
    }
    if ((d = opendir(local)) == NULL) {
        cli_warn("%s: %s", cli_esc(local), strerror(errno));
        p->failed++;
        return 0;
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char *l, *r;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        l = join(local, e->d_name);
        r = join(remote, e->d_name);
        if (l == NULL || r == NULL) {
            rc = -ENOMEM;
        } else if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            cli_warn("%s: %s", cli_esc(l), strerror(errno));
            p->failed++;
        } else if (S_ISLNK(st.st_mode)) {
            cli_warn("skipping symlink %s", cli_esc(l));
        } else if (S_ISDIR(st.st_mode)) {
            if (!name_refused(p, l, e->d_name, r, 1) &&
                (rc = add_item(p, ITEM_DIR, l, r, &st)) == 0)
                rc = walk(p, l, r, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            if (!name_refused(p, l, e->d_name, r, 0))
                rc = add_item(p, ITEM_FILE, l, r, &st);
        } else {
            cli_warn("skipping special file %s", cli_esc(l));
        }
        ferry_free(l);
        ferry_free(r);
    }
    closedir(d);
    return rc;
}

static void fail_item(struct put *p, struct item *it, const char *why)
{
    if (it->state == ST_DONE || it->state == ST_FAILED)
        return;
    if (it->state == ST_SENT)
        p->unresolved--;
    it->state = ST_FAILED;
    p->failed++;
    cli_err("%s: %s", cli_esc(it->local), why);
}

static void resolve(struct put *p, struct item *it)
{
    if (it->state != ST_SENT)
        return;
    it->state = ST_DONE;
    p->cc.progress++; /* R-CLI-3 */
    p->unresolved--;
    if (it->kind == ITEM_FILE)
        p->prog.files_done++;
}

static struct item *by_tid(struct put *p, const uint8_t tid[static FERRY_TID_LEN])
{
    size_t i;

    while (p->scan < p->n && p->v[p->scan].state != ST_SENT && p->v[p->scan].state != ST_QUEUED)
        p->scan++;
    for (i = p->scan; i < p->n; i++)
        if (p->v[i].kind == ITEM_FILE && memcmp(p->v[i].tid, tid, FERRY_TID_LEN) == 0)
            return &p->v[i];
    return NULL;
}

static struct item *by_ref(struct put *p, const char *ref)
{
    size_t i;

    for (i = p->scan; ref != NULL && i < p->n; i++)
        if (strcmp(p->v[i].id, ref) == 0)
            return &p->v[i];
    return NULL;
}

static uint32_t ent_len(const struct cfile *cf, uint32_t i)
{
    return ferry_get_be32(cf->list + (size_t)i * FERRY_CHUNK_ENT_LEN);
}

static void progress_add(struct put *p, struct item *it, uint64_t n, int skipped)
{
    p->prog.done += n;
    if (skipped)
        p->prog.skipped += n;
    it->counted += n;
}

static int need_reserve(struct cfile *cf, size_t more)
{
    uint32_t *nv;
    size_t ncap;

    if (cf->need_n + more <= cf->need_cap)
        return 0;
    ncap = cf->need_cap ? cf->need_cap : 1024;
    while (ncap < cf->need_n + more)
        ncap *= 2;
    if ((nv = ferry_realloc(cf->need, ncap * sizeof(*nv))) == NULL)
        return -ENOMEM;
    cf->need = nv;
    cf->need_cap = ncap;
    return 0;
}

/* R-CHUNK-5: the server's answer for one group of the list. */
static int on_need(struct put *p, const struct ferry_cmd *m)
{
    struct cfile *cf = &p->cf;
    json_t *need = json_object_get(m->body, "need"), *v;
    json_int_t first = json_integer_value(json_object_get(m->body, "first"));
    json_int_t count = json_integer_value(json_object_get(m->body, "count"));
    json_int_t prev = first - 1, k;
    uint8_t tid[FERRY_TID_LEN];
    const char *ts = json_string_value(json_object_get(m->body, "tid"));
    size_t i;

    if (ts == NULL || ferry_hex_decode(ts, tid, FERRY_TID_LEN) != 0)
        return FERRY_EPROTO;
    /* A stale answer for a file given up on is dropped. */
    if (cf->it == NULL || memcmp(tid, cf->it->tid, FERRY_TID_LEN) != 0)
        return 0;
    if (first != cf->answered || count < 1 || count > FERRY_NEED_GROUP ||
        first + count > cf->nent || !json_is_array(need) || json_array_size(need) > (size_t)count)
        return FERRY_EPROTO;
    if (need_reserve(cf, (size_t)count) != 0)
        return -ENOMEM;
    json_array_foreach(need, i, v)
    {
        k = json_integer_value(v);
        if (!json_is_integer(v) || k <= prev || k >= first + count)
            return FERRY_EPROTO;
        /* Chunks between two needed ones are on the server already. */
        for (prev++; prev < k; prev++)
            progress_add(p, cf->it, ent_len(cf, (uint32_t)prev), 1);
        cf->need[cf->need_n++] = (uint32_t)k;
    }
    for (prev++; prev < first + count; prev++)
        progress_add(p, cf->it, ent_len(cf, (uint32_t)prev), 1);
    cf->answered = (uint32_t)(first + count);
    return 0;
}

/* Handles every reply that has arrived, without waiting. */
static int take_replies(struct put *p)
{
    struct ferry_frame f;
    struct ferry_cmd m;
    uint8_t tid[FERRY_TID_LEN];
    int rc;

    while ((rc = ferry_client_next_frame(p->cc.c, &f)) == 1) {
        if (f.type != FERRY_FRAME_COMMAND || ferry_cmd_decode(f.payload, f.payload_len, &m) != 0)
            return FERRY_EPROTO;
        if (m.type == FERRY_MSG_COMMITTED) {
            json_t *tids = json_object_get(m.body, "tids"), *t;
            size_t i;
            json_array_foreach(tids, i, t)
            {
                struct item *it;
                if (json_is_string(t) && ferry_hex_decode(json_string_value(t), tid, 16) == 0 &&
                    (it = by_tid(p, tid)) != NULL)
                    resolve(p, it);
            }
        } else if (m.type == FERRY_MSG_CHUNK_NEED) {
            if ((rc = on_need(p, &m)) != 0) {
                ferry_cmd_cleanup(&m);
                return rc;
            }
        } else if (m.type == FERRY_MSG_CHUNK_STORED) {
            /* Durable on the server; asking again after a break will say so. */
            p->cc.progress++;
        } else if (m.type == FERRY_MSG_OK) {
            struct item *it = by_ref(p, json_string_value(json_object_get(m.body, "ref")));
            if (it != NULL)
                resolve(p, it);
        } else if (m.type == FERRY_MSG_ERROR) {
            const char *msg, *ts = json_string_value(json_object_get(m.body, "tid"));
            struct item *it = NULL;
            int code = cli_error_rc(&m, &msg);
            if (ts != NULL && ferry_hex_decode(ts, tid, 16) == 0)
                it = by_tid(p, tid);
            if (it == NULL)
                it = by_ref(p, json_string_value(json_object_get(m.body, "ref")));
            if (it != NULL && code == FERRY_ENOTFOUND && it->state == ST_SENT && it != p->cf.it &&
                ++it->attempts < PUT_CHUNK_ATTEMPTS) {
                /* R-CHUNK-8: a chunk went missing before the commit: ask again. */
                it->state = ST_QUEUED;
                p->unresolved--;
                p->prog.done -= it->counted;
                it->counted = 0;
            } else if (it != NULL) {
                if (it == p->cf.it)
                    p->cf.failed = 1;
                fail_item(p, it,
                          code == FERRY_EHASH && json_object_get(m.body, "index")
                              ? "changed while being read; run the upload again"
                              : msg);
            } else {
                cli_err("server: %s", msg);
                ferry_cmd_cleanup(&m);
                return code;
            }
        }
        ferry_cmd_cleanup(&m);
    }
    return rc;
}

/* Sends and reads until the queued output is below the high mark. */
static int drain(struct put *p, size_t below)
{
    int rc;

    while (ferry_client_pending(p->cc.c) > below) {
        if (cli_interrupted)
            return -EINTR; /* R-CLI-13 */
        if ((rc = ferry_client_pump(p->cc.c, 1000, 0)) != 0 && rc != FERRY_ETIMEDOUT)
            return rc;
        if ((rc = take_replies(p)) != 0)
            return rc;
        if (ferry_now_ms() - ferry_client_last_rx_ms(p->cc.c) > cli_idle_ms() &&
            ferry_now_ms() - ferry_client_last_tx_ms(p->cc.c) > cli_idle_ms())
            return FERRY_ETIMEDOUT;
        cli_progress_update(&p->prog, 0);
    }
    return 0;
}

/*
 * --bwlimit: a sender ahead of RATE waits here, still reading replies, so
 * the average over the run stays at RATE.
 */
static int throttle(struct put *p, size_t n)
{
    uint64_t due, now;
    int rc;

    if (p->bwlimit == 0)
        return 0;
    if (p->bw_start_ms == 0)
        p->bw_start_ms = ferry_now_ms();
    p->bw_sent += n;
    due = p->bw_start_ms + p->bw_sent * 1000 / p->bwlimit;
    while ((now = ferry_now_ms()) < due) {
        if (cli_interrupted)
            return -EINTR;
        if ((rc = ferry_client_pump(p->cc.c, (int)(due - now), 0)) != 0 && rc != FERRY_ETIMEDOUT)
            return rc;
        if ((rc = take_replies(p)) != 0)
            return rc;
        cli_progress_update(&p->prog, 0);
    }
    return 0;
}

static int cf_append(struct cfile *cf, const struct ferry_chunk_ent *e, uint64_t off)
{
    if ((size_t)(cf->nent + 1) * FERRY_CHUNK_ENT_LEN > cf->list_cap) {
        size_t ncap = cf->list_cap ? cf->list_cap * 2 : 1024 * FERRY_CHUNK_ENT_LEN;
        uint8_t *nl = ferry_realloc(cf->list, ncap);
        if (nl == NULL)
            return -ENOMEM;
        cf->list = nl;
        cf->list_cap = ncap;
    }
    if (cf->nent + 1u > cf->offs_cap) {
        size_t ncap = cf->offs_cap ? cf->offs_cap * 2 : 1024;
        uint64_t *no = ferry_realloc(cf->offs, ncap * sizeof(*no));
        if (no == NULL)
            return -ENOMEM;
        cf->offs = no;
        cf->offs_cap = ncap;
    }
    ferry_chunk_ent_encode(cf->list + (size_t)cf->nent * FERRY_CHUNK_ENT_LEN, e);
    cf->offs[cf->nent++] = off;
    return 0;
}

/* Opens the extra connections that are down; one that fails stays down. */
static void xc_open(struct put *p)
{
    int k;

    /* An extra connection that cannot be had is no error: the first one carries on. */
    cli_err_muted = 1;
    for (k = 0; k < p->nxc; k++) {
        if (p->xc_up[k])
            continue;
        if (cli_connect_session(&p->xc[k]) == 0)
            p->xc_up[k] = 1;
        else
            cli_disconnect(&p->xc[k]);
    }
    cli_err_muted = 0;
}

/*
 * An extra connection is gone: the chunks it carried and had not had
 * stored go back to the queue, for another connection (R-CHUNK-13).
 */
static void xc_close(struct put *p, int k)
{
    struct cfile *cf = &p->cf;
    uint32_t i;

    if (!p->xc_up[k])
        return;
    p->xc_up[k] = 0;
    cli_disconnect(&p->xc[k]);
    if (cf->it == NULL || cf->via == NULL)
        return;
    /* via covers only the entries known when chunks were last sent. */
    for (i = 0; i < cf->via_cap && i < cf->nent; i++) {
        if (cf->via[i] != k + 1)
            continue;
        cf->via[i] = 0;
        cf->pending_x--;
        if (need_reserve(cf, 1) == 0) {
            cf->need[cf->need_n++] = i;
            p->prog.done -= ent_len(cf, i);
            cf->it->counted -= ent_len(cf, i);
        } else {
            cf->failed = 1;
        }
    }
}

/* Replies on extra connection k: ChunkStored and the Errors of its chunks. */
static int xc_replies(struct put *p, int k)
{
    struct cfile *cf = &p->cf;
    struct ferry_frame f;
    struct ferry_cmd m;
    uint8_t tid[FERRY_TID_LEN];
    int rc;

    while ((rc = ferry_client_next_frame(p->xc[k].c, &f)) == 1) {
        const char *ts;
        json_int_t idx;
        int mine;

        if (f.type != FERRY_FRAME_COMMAND || ferry_cmd_decode(f.payload, f.payload_len, &m) != 0)
            return FERRY_EPROTO;
        ts = json_string_value(json_object_get(m.body, "tid"));
        idx = json_integer_value(json_object_get(m.body, "index"));
        mine = ts != NULL && ferry_hex_decode(ts, tid, FERRY_TID_LEN) == 0 && cf->it != NULL &&
               memcmp(tid, cf->it->tid, FERRY_TID_LEN) == 0 && idx >= 0 && idx < cf->nent &&
               cf->via != NULL && (size_t)idx < cf->via_cap && cf->via[idx] == k + 1;
        if (m.type == FERRY_MSG_CHUNK_STORED && mine) {
            cf->via[idx] = 0;
            cf->pending_x--;
            p->cc.progress++;
        } else if (m.type == FERRY_MSG_ERROR && mine) {
            const char *msg;
            cli_error_rc(&m, &msg);
            cf->failed = 1;
            fail_item(p, cf->it, msg);
        } else if (m.type == FERRY_MSG_ERROR && ts == NULL) {
            ferry_cmd_cleanup(&m);
            return FERRY_EPROTO; /* a fault of the connection itself: drop it */
        }
        ferry_cmd_cleanup(&m);
    }
    return rc;
}

/* Moves bytes on every extra connection without waiting. */
static void xc_pump(struct put *p)
{
    int k, rc;

    for (k = 0; k < p->nxc; k++) {
        if (!p->xc_up[k])
            continue;
        rc = ferry_client_pump(p->xc[k].c, 0, 0);
        if (rc == 0 || rc == FERRY_ETIMEDOUT)
            rc = xc_replies(p, k);
        if (rc != 0 && rc != FERRY_ETIMEDOUT) {
            cli_warn("an extra connection was lost (%s); carrying on without it",
                     ferry_strerror(rc));
            xc_close(p, k);
            continue;
        }
        cli_heartbeat(&p->xc[k]);
    }
}

/* The connection with the least output queued: 0 the first, k + 1 an extra. */
static int pick_conn(struct put *p, size_t *pending)
{
    int best = 0, k;
    size_t n;

    *pending = ferry_client_pending(p->cc.c);
    for (k = 0; k < p->nxc; k++) {
        if (!p->xc_up[k])
            continue;
        n = ferry_client_pending(p->xc[k].c);
        if (n < *pending) {
            *pending = n;
            best = k + 1;
        }
    }
    return best;
}

/* Sends needed chunks while the output has room. */
static int send_needed(struct put *p)
{
    struct cfile *cf = &p->cf;
    uint32_t idx, len;
    size_t pending;
    int conn, rc;

    /* The list grows while the scanner runs; via must cover every entry sent. */
    if (cf->via == NULL || cf->via_cap < cf->nent) {
        size_t ncap = cf->via_cap ? cf->via_cap : 1024;
        uint8_t *nv;

        while (ncap < cf->nent)
            ncap *= 2;
        if ((nv = ferry_realloc(cf->via, ncap)) == NULL)
            return -ENOMEM;
        memset(nv + cf->via_cap, 0, ncap - cf->via_cap);
        cf->via = nv;
        cf->via_cap = ncap;
    }
    while (!cf->failed && cf->need_head < cf->need_n &&
           ((conn = pick_conn(p, &pending)), pending < CLI_OUT_HIGH)) {
        idx = cf->need[cf->need_head++];
        len = ent_len(cf, idx);
        /* Read from the file straight into the connection's output. */
        rc = ferry_client_send_chunk_fd(conn > 0 ? p->xc[conn - 1].c : p->cc.c, cf->it->tid, idx,
                                        cf->fd, cf->offs[idx], len);
        if (rc != 0 && rc != FERRY_ETOOBIG && rc != -ENOMEM) {
            /* The file, not the connection: it shrank or could not be read. */
            cf->failed = 1;
            fail_item(p, cf->it,
                      rc == FERRY_ECANCELED ? "changed while being read" : ferry_strerror(rc));
            return 0;
        }
        if (rc != 0 && conn == 0)
            return rc;
        if (rc != 0) {
            xc_close(p, conn - 1);
            cf->need_head--;
            continue;
        }
        p->bytes_read += len;
        if (conn > 0) {
            /* Waits for its ChunkStored before TransferComplete (R-CHUNK-13). */
            cf->via[idx] = (uint8_t)conn;
            cf->pending_x++;
        }
        if ((rc = throttle(p, len)) != 0)
            return rc;
        progress_add(p, cf->it, len, 0);
    }
    return 0;
}

static void cf_reset(struct put *p)
{
    struct cfile *cf = &p->cf;

    if (cf->scanning)
        ferry_scan_end(p->sc);
    if (cf->fd >= 0)
        close(cf->fd);
    ferry_free(cf->list);
    ferry_free(cf->offs);
    ferry_free(cf->need);
    ferry_free(cf->via);
    *cf = (struct cfile){.fd = -1};
}

/* Takes the entries the scanner has (waiting for one if block), sends them. */
static int cf_produce(struct put *p, int block)
{
    struct cfile *cf = &p->cf;
    struct ferry_chunk_ent e;
    uint64_t off;
    int r = 0, n = 0, rc;

    while (cf->scanning && n < PUT_SCAN_BATCH) {
        r = block && n == 0 ? ferry_scan_next(p->sc, &e, &off) : ferry_scan_poll(p->sc, &e, &off);
        if (r != 1)
            break;
        if ((rc = cf_append(cf, &e, off)) != 0)
            return rc;
        n++;
    }
    if (cf->scanning && r == 0) {
        ferry_scan_end(p->sc);
        cf->scanning = 0;
        cf->list_done = 1;
    } else if (cf->scanning && r < 0 && r != FERRY_EBUSY) {
        ferry_scan_end(p->sc);
        cf->scanning = 0;
        cf->failed = 1;
        fail_item(p, cf->it, r == FERRY_ECANCELED ? "changed while being read" : strerror(-r));
        return 0;
    }
    /*
     * R-CHUNK-4: the list as data frames of the tid, in order, 64 entries or
     * more at a time so entries share records; the first FERRY_NEED_FIRST at
     * once, as the server answers them at once (R-CHUNK-5).
     */
    if (cf->sent < cf->nent &&
        (cf->nent - cf->sent >= (cf->sent < FERRY_NEED_FIRST ? FERRY_NEED_FIRST : 64) ||
         !cf->scanning)) {
        rc = ferry_client_send_data(p->cc.c, cf->it->tid, (uint64_t)cf->sent * FERRY_CHUNK_ENT_LEN,
                                    cf->list + (size_t)cf->sent * FERRY_CHUNK_ENT_LEN,
                                    (size_t)(cf->nent - cf->sent) * FERRY_CHUNK_ENT_LEN);
        if (rc != 0)
            return rc;
        cf->sent = cf->nent;
    }
    return 0;
}

/*
 * R-CHUNK-4..8: the list (from the local index, or read, chunked and hashed
 * on the scanner thread while it goes out), then the chunks the server
 * asks for, then TransferComplete. Nothing waits per chunk.
 */
static int send_chunked(struct put *p, struct item *it)
{
    struct cfile *cf = &p->cf;
    char cid[FERRY_CID_LEN + 1], tidhex[33];
    uint8_t *list = NULL;
    size_t len = 0, i;
    struct stat after;
    struct timespec now;
    int rc = 0, idle, opened = 0;

    cf_reset(p);
    cf->it = it;
    cf->fd = open(it->local, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (cf->fd < 0) {
        fail_item(p, it, strerror(errno));
        goto out;
    }
    if (fstat(cf->fd, &cf->st) != 0 || !S_ISREG(cf->st.st_mode)) {
        fail_item(p, it, "not a regular file");
        goto out;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    cf->recorded = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    ferry_index_id_from_stat(&cf->fid, &cf->st);
    it->size = (uint64_t)cf->st.st_size;
    it->mtime = cf->fid.mtime;
    ferry_random(it->tid, sizeof(it->tid));
    ferry_hex_encode(it->tid, FERRY_TID_LEN, tidhex);
    ferry_uuid_new(it->id);
    rc = ferry_client_send_cmd(p->cc.c, FERRY_MSG_CHUNKED_UPLOAD,
                               json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "id", it->id, "tid",
                                         tidhex, "path", it->remote, "size", (json_int_t)it->size,
                                         "mtime", (json_int_t)it->mtime, "exec", it->exec));
    it->state = ST_SENT;
    p->unresolved++;
    opened = 1;
    if (rc != 0)
        goto out;
    if (ferry_index_get(cli_state(), &cf->fid, &list, &len) == 0 &&
        ferry_chunk_list_check(list, len, it->size) == 0) {
        /* Unchanged since it was indexed: not a byte of it is read. */
        struct ferry_chunk_ent e;
        uint64_t off = 0;

        for (i = 0; i + FERRY_CHUNK_ENT_LEN <= len && rc == 0; i += FERRY_CHUNK_ENT_LEN) {
            ferry_chunk_ent_decode(list + i, &e);
            rc = cf_append(cf, &e, off);
            off += e.len;
        }
        cf->indexed = 1;
        cf->list_done = 1;
    } else if (it->size == 0) {
        cf->list_done = 1;
    } else if ((p->sc != NULL || (rc = ferry_scan_new(&p->sc)) == 0) &&
               (rc = ferry_scan_begin(p->sc, cf->fd, it->size)) == 0) {
        cf->scanning = 1;
        p->bytes_read += it->size;
    }
    ferry_free(list);
    if (rc != 0)
        goto out;
    for (;;) {
        if (cli_interrupted) {
            rc = -EINTR;
            break;
        }
        if ((rc = cf_produce(p, 0)) != 0 || cf->failed)
            break;
        if ((rc = ferry_client_pump(p->cc.c, 0, 0)) != 0 && rc != FERRY_ETIMEDOUT)
            break;
        xc_pump(p);
        if ((rc = take_replies(p)) != 0 || (rc = send_needed(p)) != 0 || cf->failed)
            break;
        if (ferry_client_pending(p->cc.c) > CLI_OUT_HIGH && p->nxc == 0 &&
            (rc = drain(p, CLI_OUT_HIGH / 2)) != 0)
            break;
        /* Done when every chunk went out and those of extra connections are stored. */
        if (cf->list_done && cf->answered == cf->nent && cf->need_head == cf->need_n &&
            cf->pending_x == 0)
            break;
        cli_progress_update(&p->prog, 0);
        /* Nothing to send: wait for the scanner, or else for the server. */
        idle = cf->need_head == cf->need_n && ferry_client_pending(p->cc.c) == 0;
        if (idle && cf->scanning) {
            if ((rc = cf_produce(p, 1)) != 0)
                break;
        } else if (idle || p->nxc > 0) {
            /* With extra connections, wait briefly so that theirs are served too. */
            if ((rc = ferry_client_pump(p->cc.c, p->nxc > 0 ? 5 : 1000, 0)) != 0 &&
                rc != FERRY_ETIMEDOUT)
                break;
            rc = 0;
            if (ferry_now_ms() - ferry_client_last_rx_ms(p->cc.c) > cli_idle_ms()) {
                rc = FERRY_ETIMEDOUT;
                break;
            }
            cli_heartbeat(&p->cc);
        }
    }
    if (rc != 0 || cf->failed)
        goto out;
    /* A file that changed while it was read is not committed half old, half new. */
    if (fstat(cf->fd, &after) != 0 || after.st_size != cf->st.st_size ||
        after.st_mtim.tv_sec != cf->st.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != cf->st.st_mtim.tv_nsec ||
        after.st_ctim.tv_sec != cf->st.st_ctim.tv_sec ||
        after.st_ctim.tv_nsec != cf->st.st_ctim.tv_nsec) {
        rc = ferry_client_send_cmd(p->cc.c, FERRY_MSG_TRANSFER_CANCEL,
                                   json_pack("{s:s}", "tid", tidhex));
        fail_item(p, it, "changed while being read; run the upload again");
        goto out;
    }
    if ((rc = ferry_chunk_list_cid(cf->list, (size_t)cf->nent * FERRY_CHUNK_ENT_LEN, cid)) != 0)
        goto out;
    rc = ferry_client_send_cmd(p->cc.c, FERRY_MSG_TRANSFER_COMPLETE,
                               json_pack("{s:s, s:s}", "tid", tidhex, "hash", cid));
    /* The index is a cache of what the bytes were: right even if the upload fails. */
    if (!cf->indexed)
        ferry_index_put(cli_state(), &cf->fid, cf->recorded, cf->list,
                        (size_t)cf->nent * FERRY_CHUNK_ENT_LEN);
out:
    if (cf->failed && it->state == ST_SENT)
        fail_item(p, it, "failed");
    /* R-XFER-4: a given-up upload ends with TransferCancel, its last word. */
    if (cf->failed && opened && rc == 0)
        rc = ferry_client_send_cmd(p->cc.c, FERRY_MSG_TRANSFER_CANCEL,
                                   json_pack("{s:s}", "tid", tidhex));
    cf_reset(p);
    return rc;
}

static int send_file(struct put *p, struct item *it)
{
    char cid[FERRY_CID_LEN + 1], tidhex[33];
    struct ferry_sha256 sha;
    struct stat st;
    uint64_t off = 0;
    ssize_t n;
    int fd, rc;

    fd = open(it->local, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        fail_item(p, it, strerror(errno));
        return 0;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        fail_item(p, it, "not a regular file");
        return 0;
    }
    it->size = (uint64_t)st.st_size;
    it->mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    ferry_random(it->tid, sizeof(it->tid));
    ferry_hex_encode(it->tid, FERRY_TID_LEN, tidhex);
    ferry_uuid_new(it->id);
    if ((rc = ferry_sha256_init(&sha)) != 0) {
        close(fd);
        return rc;
    }
    rc = ferry_client_send_cmd(p->cc.c, FERRY_MSG_UPLOAD,
                               json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "id", it->id, "tid",
                                         tidhex, "path", it->remote, "size", (json_int_t)it->size,
                                         "mtime", (json_int_t)it->mtime, "exec", it->exec));
    it->state = ST_SENT;
    p->unresolved++;
    if (rc == 0 && it->size >= PUT_THREADED_MIN &&
        (p->rd != NULL || ferry_reader_new(&p->rd) == 0) &&
        ferry_reader_begin(p->rd, fd, it->size) == 0) {
        const uint8_t *b;
        size_t len;
        int more, end;

        while (rc == 0 && (more = ferry_reader_next(p->rd, &b, &len)) == 1) {
            rc = ferry_client_send_data(p->cc.c, it->tid, off, b, len);
            ferry_reader_release(p->rd, b);
            off += len;
            p->bytes_read += len;
            p->prog.done += len;
            if (rc == 0 && ferry_client_pending(p->cc.c) > CLI_OUT_HIGH)
                rc = drain(p, CLI_OUT_HIGH / 2);
        }
        end = ferry_reader_end(p->rd, cid);
        if (rc == 0 && end == 0) {
            ferry_sha256_cleanup(&sha);
            goto complete;
        }
        off = 0; /* a read error or a shrunk file: reported as changed below */
    }
    while (rc == 0 && off < it->size) {
        size_t want = it->size - off > CLI_READ_CHUNK ? CLI_READ_CHUNK : (size_t)(it->size - off);
        n = read(fd, p->buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ferry_sha256_update(&sha, p->buf, (size_t)n);
        if ((rc = ferry_client_send_data(p->cc.c, it->tid, off, p->buf, (size_t)n)) != 0)
            break;
        off += (uint64_t)n;
        p->bytes_read += (uint64_t)n;
        p->prog.done += (uint64_t)n;
        if (ferry_client_pending(p->cc.c) > CLI_OUT_HIGH)
            rc = drain(p, CLI_OUT_HIGH / 2);
    }
    if (rc == 0 && off == it->size && ferry_sha256_final_cid(&sha, cid) != 0)
        rc = FERRY_EINTERNAL;
complete:
    if (rc == 0) {
        struct stat after;
        /* A file that changed while it was read is not sent half old, half new. */
        if (off != it->size || fstat(fd, &after) != 0 || after.st_size != st.st_size ||
            after.st_mtim.tv_sec != st.st_mtim.tv_sec ||
            after.st_mtim.tv_nsec != st.st_mtim.tv_nsec) {
            rc = ferry_client_send_cmd(p->cc.c, FERRY_MSG_TRANSFER_CANCEL,
                                       json_pack("{s:s}", "tid", tidhex));
            fail_item(p, it, "changed while being read; run the upload again");
        } else {
            rc = ferry_client_send_cmd(p->cc.c, FERRY_MSG_TRANSFER_COMPLETE,
                                       json_pack("{s:s, s:s}", "tid", tidhex, "hash", cid));
        }
    }
    ferry_sha256_cleanup(&sha);
    close(fd);
    return rc;
}

/* One pass over the queued items on the current connection. */
static int send_all(struct put *p)
{
    size_t k;
    int rc = 0;

    for (k = 0; k < p->n && rc == 0; k++) {
        struct item *it = &p->v[k];

        if (it->state != ST_QUEUED)
            continue;
        if (cli_interrupted) {
            rc = -EINTR;
            break;
        }
        cli_progress_state(&p->prog, NULL);
        if (it->kind == ITEM_FILE)
            cli_progress_file(&p->prog, it->local);
        if (it->kind == ITEM_DIR) {
            ferry_uuid_new(it->id);
            it->state = ST_SENT;
            p->unresolved++;
            rc = ferry_client_send_cmd(p->cc.c, FERRY_MSG_MKDIR,
                                       json_pack("{s:s, s:s, s:I}", "id", it->id, "path",
                                                 it->remote, "mtime", (json_int_t)it->mtime));
        } else if (p->cc.minor >= 1 && it->size >= CLI_CHUNKED_MIN) {
            rc = send_chunked(p, it);
        } else {
            rc = send_file(p, it);
        }
        if (rc == 0 && ferry_client_pending(p->cc.c) > CLI_OUT_HIGH)
            rc = drain(p, CLI_OUT_HIGH / 2);
    }
    if (rc == 0)
        rc = drain(p, 0);
    /* Wait until the server has made everything durable. */
    cli_progress_file(&p->prog, NULL);
    cli_progress_state(&p->prog, "verifying");
    while (rc == 0 && p->unresolved > 0) {
        if (cli_interrupted) {
            rc = -EINTR;
            break;
        }
        cli_heartbeat(&p->cc);
        if ((rc = ferry_client_pump(p->cc.c, 1000, 0)) != 0 && rc != FERRY_ETIMEDOUT)
            break;
        rc = take_replies(p);
        if (rc == 0 && ferry_now_ms() - ferry_client_last_rx_ms(p->cc.c) > cli_idle_ms())
            rc = FERRY_ETIMEDOUT;
        cli_progress_update(&p->prog, 0);
    }
    return rc;
}

static int any_queued(const struct put *p)
{
    size_t k;

    for (k = 0; k < p->n; k++)
        if (p->v[k].state == ST_QUEUED)
            return 1;
    return 0;
}

/*
 * Issue 4: a lost connection is not the end. Reconnect with backoff for up
 * to retry_for_ms and send again what was not confirmed; chunked files
 * resume, since the server answers which chunks it already holds.
 */
static int run(struct put *p, uint64_t retry_for_ms)
{
    size_t k;
    int rc;

    for (;;) {
        rc = send_all(p);
        if (rc == 0 && any_queued(p))
            continue; /* files whose commit found a chunk missing: asked again */
        /* R-CLI-3: only a lost connection is worth another; a fault would come back. */
        if (rc >= 0 || !cli_conn_lost(rc))
            return rc;
        for (k = 0; k < (size_t)p->nxc; k++)
            xc_close(p, (int)k);
        cf_reset(p);
        for (k = 0; k < p->n; k++) {
            struct item *it = &p->v[k];
            if (it->state == ST_SENT) {
                it->state = ST_QUEUED;
                p->prog.done -= it->counted;
                it->counted = 0;
            }
        }
        p->unresolved = 0;
        p->scan = 0;
        if ((rc = cli_reconnect(&p->cc, rc, ferry_now_ms(), retry_for_ms)) != 0)
            return rc;
        xc_open(p);
    }
}

/*
 * Connects and asks once whether the destination is an existing folder.
 * A server that cannot be reached is retried for retry_for_ms like a
 * connection lost later (FERRY_ENOTCONN when that runs out).
 */
static int stat_dest(struct put *p, const char *dest, uint64_t retry_for_ms, int *exists,
                     int *is_dir)
{
    uint64_t start = ferry_now_ms(), wait_ms;
    unsigned attempt = 0;
    struct ferry_cmd reply;
    int rc;

    for (;;) {
        rc = cli_connect_session(&p->cc);
        if (rc == 0) {
            rc = cli_call(&p->cc, FERRY_MSG_DIRINFO,
                          json_pack("{s:s, s:b}", "path", dest, "stat", 1), &reply);
            if (rc == 0) {
                json_t *e = json_array_get(json_object_get(reply.body, "entries"), 0);
                const char *type = json_string_value(json_object_get(e, "type"));
                *exists = 1;
                *is_dir = type != NULL && strcmp(type, "dir") == 0;
                ferry_cmd_cleanup(&reply);
                return 0;
            }
            if (rc == FERRY_ENOTFOUND)
                return 0;
            if (!cli_conn_lost(rc) && rc != -EINTR) {
                cli_err("%s: %s", cli_esc(dest), ferry_strerror(rc));
                return rc;
            }
        } else if (!cli_conn_lost(rc) && rc != -EINTR) {
            return rc;
        }
        cli_disconnect(&p->cc);
        if (rc == -EINTR || cli_interrupted)
            return FERRY_ENOTCONN; /* R-CLI-13: nothing started, so nothing to undo */
        if (!ferry_retry_window_open(start, retry_for_ms, ferry_now_ms())) {
            cli_err("cannot reach the server (%s). Run the same command again.",
                    ferry_strerror(rc));
            return FERRY_ENOTCONN;
        }
        wait_ms = ferry_backoff_ms(attempt++);
        cli_warn("cannot reach the server (%s); trying again in %.1f s", ferry_strerror(rc),
                 (double)wait_ms / 1000);
        usleep((useconds_t)wait_ms * 1000);
        if (cli_interrupted)
            return FERRY_ENOTCONN; /* R-CLI-13: nothing started, so nothing to undo */
    }
}

int cmd_put(int argc, char **argv)
{
    static const struct option opts[] = {
        {"recursive", no_argument, NULL, 'r'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"retry-for", required_argument, NULL, 1},
        {"bwlimit", required_argument, NULL, 2},
        {"stats", no_argument, NULL, 3},
        {"connections", required_argument, NULL, 4},
        {NULL, 0, NULL, 0},
    };
    struct put p = {.cf = {.fd = -1}, .nxc = PUT_CONNECTIONS_DEFAULT - 1};
    uint64_t retry_for_ms = 60000, v;
    const char *dest = "/";
    int c, rec = 0, nsrc, i, rc = 0, dest_is_dir = 0, dest_exists = 0, resumable = 0, stats = 0;
    int into;
    uint64_t total = 0;
    size_t k, nfiles = 0, done = 0;

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
            fputs(put_usage, stdout);
            return CLI_OK;
        case 1:
            if (ferry_parse_size(optarg, &v) != 0 || v > 86400 * 7) {
                cli_err("--retry-for: give whole seconds, at most a week");
                return CLI_USAGE;
            }
            retry_for_ms = v * 1000;
            break;
        case 2:
            if (ferry_parse_size(optarg, &v) != 0 || v == 0) {
                cli_err("--bwlimit: give bytes per second, e.g. 500K or 10M");
                return CLI_USAGE;
            }
            p.bwlimit = v;
            break;
        case 3:
            stats = 1;
            break;
        case 4:
            if (ferry_parse_size(optarg, &v) != 0 || v < 1 || v > PUT_CONNECTIONS_MAX) {
                cli_err("--connections: give 1 to %d", PUT_CONNECTIONS_MAX);
                return CLI_USAGE;
            }
            p.nxc = (int)v - 1;
            break;
        default:
            fputs(put_usage, stderr);
            return CLI_USAGE;
        }
    }
    nsrc = argc - optind;
    if (nsrc < 1) {
        fputs(put_usage, stderr);
        return CLI_USAGE;
    }
    if (nsrc >= 2) {
        dest = argv[argc - 1];
        nsrc--;
    }
    /* Is the destination an existing folder? One round trip for the whole put. */
    if ((rc = stat_dest(&p, dest, retry_for_ms, &dest_exists, &dest_is_dir)) != 0) {
        resumable = rc == FERRY_ENOTCONN;
        rc = CLI_FAIL;
        goto out;
    }
    /* Only a 1.1 server takes chunks on several connections (R-CHUNK-13). */
    if (p.cc.minor >= 1)
        xc_open(&p);
    else
        p.nxc = 0;
    rc = 0;
    /*
     * R-CLI-9: sources go inside dest when it is a folder, as with cp. A
     * re-run of an unfinished put keeps the first run's answer: that run
     * may have created dest, and must not now be nested inside it.
     */
    into = dest_is_dir;
    if (cli_task_dest_dir() >= 0)
        into = cli_task_dest_dir();
    else
        cli_task_set_dest_dir(dest_is_dir);
    if (dest[strlen(dest) - 1] == '/' && dest_exists && !dest_is_dir) {
        cli_err("%s is not a folder", cli_esc(dest));
        rc = CLI_FAIL;
        goto out;
    }
    if (nsrc > 1 && !into && dest[strlen(dest) - 1] != '/') {
        cli_err("%s is not a folder (several sources need a folder destination)", cli_esc(dest));
        rc = CLI_FAIL;
        goto out;
    }
    for (i = 0; i < nsrc && rc == 0; i++) {
        const char *src = argv[optind + i];
        char tmp[PATH_MAX], real[PATH_MAX], rbase[FERRY_PATH_MAX + 1], *base, *remote;
        struct stat st;

        if (lstat(src, &st) != 0) {
            cli_err("%s: %s", cli_esc(src), strerror(errno));
            p.failed++;
            continue;
        }
        snprintf(tmp, sizeof(tmp), "%s", src);
        base = basename(tmp);
        if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(base, "/") == 0) {
            if (realpath(src, real) == NULL || strcmp(real, "/") == 0) {
                cli_err("%s: give a destination name for this folder", cli_esc(src));
                p.failed++;
                continue;
            }
            base = basename(real);
        }
        remote = into || dest[strlen(dest) - 1] == '/' ? join(dest, base) : ferry_strdup(dest);
        if (remote == NULL) {
            rc = -ENOMEM;
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            cli_warn("skipping symlink %s", cli_esc(src));
        } else if (S_ISDIR(st.st_mode)) {
            if (!rec) {
                cli_err("%s is a folder (use -r)", cli_esc(src));
                p.failed++;
            } else if (!name_refused(&p, src, remote_base(remote, rbase), remote, 1) &&
                       (rc = add_item(&p, ITEM_DIR, src, remote, &st)) == 0) {
                rc = walk(&p, src, remote, 0);
            }
        } else if (S_ISREG(st.st_mode)) {
            if (!name_refused(&p, src, remote_base(remote, rbase), remote, 0))
                rc = add_item(&p, ITEM_FILE, src, remote, &st);
        } else {
            cli_warn("skipping special file %s", cli_esc(src));
        }
        ferry_free(remote);
    }
    if (rc != 0)
        goto out;
    for (k = 0; k < p.n; k++) {
        if (p.v[k].kind == ITEM_FILE) {
            total += p.v[k].size;
            nfiles++;
        }
    }
    if ((p.buf = ferry_malloc(CLI_READ_CHUNK)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    cli_progress_init(&p.prog, total, nfiles);
    rc = run(&p, retry_for_ms);
    cli_progress_end(&p.prog);
out:
    if (rc < 0 && rc != FERRY_EUSAGE && rc != FERRY_EAUTH) {
        size_t lost = 0;
        for (k = 0; k < p.n; k++)
            if (p.v[k].state == ST_SENT || p.v[k].state == ST_QUEUED)
                lost++;
        /* R-CLI-3: exit 4 ("run it again") only where running it again can help. */
        resumable = cli_conn_lost(rc) || rc == -EINTR;
        if (resumable)
            cli_err("interrupted (%s): %zu item%s not confirmed; nothing partial is visible on "
                    "the server. Run the same command again to resume: chunks already stored "
                    "are not sent again.",
                    rc == -EINTR ? "Ctrl-C" : ferry_strerror(rc), lost, lost == 1 ? "" : "s");
        else
            cli_err("stopped (%s): %zu item%s not confirmed; nothing partial is visible on "
                    "the server.",
                    ferry_strerror(rc), lost, lost == 1 ? "" : "s");
    }
    for (k = 0; k < p.n; k++) {
        if (p.v[k].state == ST_DONE)
            done++;
        ferry_free(p.v[k].local);
        ferry_free(p.v[k].remote);
    }
    ferry_free(p.v);
    ferry_free(p.buf);
    ferry_reader_free(p.rd);
    cf_reset(&p);
    for (i = 0; i < p.nxc; i++)
        xc_close(&p, i);
    ferry_scan_free(p.sc);
    cli_disconnect(&p.cc);
    if (stats) {
        uint64_t tx, rx;
        cli_wire_totals(&tx, &rx);
        printf("files: %zu uploaded, %zu failed\n"
               "bytes: %llu in all, %llu sent, %llu already on the server\n"
               "wire: %llu sent, %llu received (TLS)\n"
               "read: %llu bytes of local files\n",
               done, p.failed, (unsigned long long)total,
               (unsigned long long)(p.prog.done - p.prog.skipped),
               (unsigned long long)p.prog.skipped, (unsigned long long)tx, (unsigned long long)rx,
               (unsigned long long)p.bytes_read);
    }
    if (resumable)
        return CLI_RESUMABLE;
    if (rc == CLI_FAIL || rc < 0)
        return CLI_FAIL;
    if (p.failed == 0)
        return CLI_OK;
    /* Some failed (each named above): partial if anything made it. */
    return done > 0 ? CLI_PARTIAL : CLI_FAIL;
}
