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
};

struct put {
    struct cli_conn cc;
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
};

/* Files from this size on go through the reader thread. */
#define PUT_THREADED_MIN (1u << 20)

static const char put_usage[] =
    "usage: ferry put [-r] [-q] LOCAL... [REMOTE]\n"
    "\n"
    "Uploads files (and with -r, folders) to your remote tree. The last argument is\n"
    "the destination, as with cp and scp; with a single argument the upload goes to\n"
    "your remote root. A file is confirmed only once the server has made it durable;\n"
    "an existing remote file is replaced atomically. Symlinks are skipped.\n"
    "\n"
    "  -r, --recursive   upload folders and everything in them (empty ones too)\n"
    "  -q, --quiet       no progress line\n";

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

/* Collects a folder's entries depth-first; symlinks and devices are skipped. */
static int walk(struct put *p, const char *local, const char *remote, int depth)
{
    DIR *d;
    struct dirent *e;
    struct stat st;
    int rc = 0;

    if (depth > 128) {
        cli_warn("%s: too deep, skipped", local);
        p->failed++;
        return 0;
    }
    if ((d = opendir(local)) == NULL) {
        cli_warn("%s: %s", local, strerror(errno));
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
            cli_warn("%s: %s", l, strerror(errno));
            p->failed++;
        } else if (S_ISLNK(st.st_mode)) {
            cli_warn("skipping symlink %s", l);
        } else if (S_ISDIR(st.st_mode)) {
            if ((rc = add_item(p, ITEM_DIR, l, r, &st)) == 0)
                rc = walk(p, l, r, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            rc = add_item(p, ITEM_FILE, l, r, &st);
        } else {
            cli_warn("skipping special file %s", l);
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
    fprintf(stderr, "ferry: ");
    cli_print_name(stderr, it->local);
    fprintf(stderr, ": %s\n", why);
}

static void resolve(struct put *p, struct item *it)
{
    if (it->state != ST_SENT)
        return;
    it->state = ST_DONE;
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

/* Handles every reply that has arrived, without waiting. */
static int take_replies(struct put *p)
{
    struct ferry_frame f;
    struct ferry_cmd m;
    uint8_t tid[FERRY_TID_LEN];
    int rc;

    while ((rc = ferry_client_next_frame(&p->cc.c, &f)) == 1) {
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
            if (it != NULL) {
                fail_item(p, it, msg);
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

    while (ferry_client_pending(&p->cc.c) > below) {
        if ((rc = ferry_client_pump(&p->cc.c, 1000, 0)) != 0 && rc != FERRY_ETIMEDOUT)
            return rc;
        if ((rc = take_replies(p)) != 0)
            return rc;
        if (ferry_now_ms() - p->cc.c.last_rx_ms > CLI_IDLE_TIMEOUT_MS &&
            ferry_now_ms() - p->cc.c.last_tx_ms > CLI_IDLE_TIMEOUT_MS)
            return FERRY_ETIMEDOUT;
        cli_progress_update(&p->prog, 0);
    }
    return 0;
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
    rc = ferry_client_send_cmd(&p->cc.c, FERRY_MSG_UPLOAD,
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
            rc = ferry_client_send_data(&p->cc.c, it->tid, off, b, len);
            ferry_reader_release(p->rd, b);
            off += len;
            p->prog.done += len;
            if (rc == 0 && ferry_client_pending(&p->cc.c) > CLI_OUT_HIGH)
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
        if ((rc = ferry_client_send_data(&p->cc.c, it->tid, off, p->buf, (size_t)n)) != 0)
            break;
        off += (uint64_t)n;
        p->prog.done += (uint64_t)n;
        if (ferry_client_pending(&p->cc.c) > CLI_OUT_HIGH)
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
            rc = ferry_client_send_cmd(&p->cc.c, FERRY_MSG_TRANSFER_CANCEL,
                                       json_pack("{s:s}", "tid", tidhex));
            fail_item(p, it, "changed while being read; run the upload again");
        } else {
            rc = ferry_client_send_cmd(&p->cc.c, FERRY_MSG_TRANSFER_COMPLETE,
                                       json_pack("{s:s, s:s}", "tid", tidhex, "hash", cid));
        }
    }
    ferry_sha256_cleanup(&sha);
    close(fd);
    return rc;
}

int cmd_put(int argc, char **argv)
{
    static const struct option opts[] = {
        {"recursive", no_argument, NULL, 'r'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct put p = {0};
    struct ferry_cmd reply;
    const char *dest = "/";
    int c, rec = 0, nsrc, i, rc = 0, dest_is_dir = 0, dest_exists = 0;
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
    if (cli_connect_session(&p.cc) != 0)
        return CLI_FAIL;
    /* Is the destination an existing folder? One round trip for the whole put. */
    rc = cli_call(&p.cc, FERRY_MSG_DIRINFO, json_pack("{s:s, s:b}", "path", dest, "stat", 1),
                  &reply);
    if (rc == 0) {
        json_t *e = json_array_get(json_object_get(reply.body, "entries"), 0);
        const char *type = json_string_value(json_object_get(e, "type"));
        dest_exists = 1;
        dest_is_dir = type != NULL && strcmp(type, "dir") == 0;
        ferry_cmd_cleanup(&reply);
    } else if (rc != FERRY_ENOTFOUND) {
        cli_err("%s: %s", dest, ferry_strerror(rc));
        rc = CLI_FAIL;
        goto out;
    }
    rc = 0;
    if (dest[strlen(dest) - 1] == '/' && dest_exists && !dest_is_dir) {
        cli_err("%s is not a folder", dest);
        rc = CLI_FAIL;
        goto out;
    }
    if (nsrc > 1 && !dest_is_dir && dest[strlen(dest) - 1] != '/') {
        cli_err("%s is not a folder (several sources need a folder destination)", dest);
        rc = CLI_FAIL;
        goto out;
    }
    for (i = 0; i < nsrc && rc == 0; i++) {
        const char *src = argv[optind + i];
        char tmp[PATH_MAX], real[PATH_MAX], *base, *remote;
        struct stat st;

        if (lstat(src, &st) != 0) {
            cli_err("%s: %s", src, strerror(errno));
            p.failed++;
            continue;
        }
        snprintf(tmp, sizeof(tmp), "%s", src);
        base = basename(tmp);
        if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(base, "/") == 0) {
            if (realpath(src, real) == NULL || strcmp(real, "/") == 0) {
                cli_err("%s: give a destination name for this folder", src);
                p.failed++;
                continue;
            }
            base = basename(real);
        }
        remote =
            dest_is_dir || dest[strlen(dest) - 1] == '/' ? join(dest, base) : ferry_strdup(dest);
        if (remote == NULL) {
            rc = -ENOMEM;
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            cli_warn("skipping symlink %s", src);
        } else if (S_ISDIR(st.st_mode)) {
            if (!rec) {
                cli_err("%s is a folder (use -r)", src);
                p.failed++;
            } else if ((rc = add_item(&p, ITEM_DIR, src, remote, &st)) == 0) {
                rc = walk(&p, src, remote, 0);
            }
        } else if (S_ISREG(st.st_mode)) {
            rc = add_item(&p, ITEM_FILE, src, remote, &st);
        } else {
            cli_warn("skipping special file %s", src);
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
    /* Everything goes out back to back; replies are read as they come (R-PIPE-1). */
    for (k = 0; k < p.n && rc == 0; k++) {
        struct item *it = &p.v[k];

        if (it->kind == ITEM_DIR) {
            ferry_uuid_new(it->id);
            it->state = ST_SENT;
            p.unresolved++;
            rc = ferry_client_send_cmd(&p.cc.c, FERRY_MSG_MKDIR,
                                       json_pack("{s:s, s:s, s:I}", "id", it->id, "path",
                                                 it->remote, "mtime", (json_int_t)it->mtime));
        } else {
            rc = send_file(&p, it);
        }
        if (rc == 0 && ferry_client_pending(&p.cc.c) > CLI_OUT_HIGH)
            rc = drain(&p, CLI_OUT_HIGH / 2);
    }
    if (rc == 0)
        rc = drain(&p, 0);
    /* Wait until the server has made everything durable. */
    while (rc == 0 && p.unresolved > 0) {
        cli_heartbeat(&p.cc);
        if ((rc = ferry_client_pump(&p.cc.c, 1000, 0)) != 0 && rc != FERRY_ETIMEDOUT)
            break;
        rc = take_replies(&p);
        if (rc == 0 && ferry_now_ms() - p.cc.c.last_rx_ms > CLI_IDLE_TIMEOUT_MS)
            rc = FERRY_ETIMEDOUT;
        cli_progress_update(&p.prog, 0);
    }
    cli_progress_end(&p.prog);
out:
    if (rc < 0 && rc != FERRY_EUSAGE) {
        size_t lost = 0;
        for (k = 0; k < p.n; k++)
            if (p.v[k].state == ST_SENT || p.v[k].state == ST_QUEUED)
                lost++;
        cli_err("connection to the server lost (%s): %zu item%s not confirmed; nothing "
                "partial is visible on the server. Run the same command again.",
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
    cli_disconnect(&p.cc);
    if (rc == CLI_FAIL || rc < 0)
        return CLI_FAIL;
    if (p.failed == 0)
        return CLI_OK;
    /* Some failed (each named above): partial if anything made it. */
    return done > 0 ? CLI_PARTIAL : CLI_FAIL;
}
