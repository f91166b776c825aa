/*
 * Planning an upload: the sources stat'ed and folders walked on a worker
 * thread (the loop never waits on the disk), into the list of items the
 * job then moves in order. What a person must hear about (a symlink
 * skipped, a name that cannot travel) is kept, in order, for the loop to
 * say once planning is over.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/path.h"
#include "upload_int.h"

/* Folders deeper than this below a source are skipped (R-PATH's depth is 128 anyway). */
#define PLAN_DEPTH_MAX 128
/* Room for one escaped name (every byte escaped) in a message. */
#define PLAN_ESC_MAX (4 * FERRY_PATH_MAX + 64)

/* A name from the disk is hostile on a terminal: escaped as the CLI escapes names. */
static char *esc(const char *s, char buf[static PLAN_ESC_MAX])
{
    ferry_escape(s, strlen(s), 0, buf, PLAN_ESC_MAX);
    return buf;
}

static int add_msg(struct up_plan *p, int kind, int rc, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int add_msg(struct up_plan *p, int kind, int rc, const char *label, const char *fmt, ...)
{
    struct up_msg *m;
    va_list ap;
    char text[2 * PLAN_ESC_MAX];

    if (p->nmsgs == p->mcap) {
        size_t ncap = p->mcap ? p->mcap * 2 : 16;
        struct up_msg *nv = ferry_realloc(p->msgs, ncap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        p->msgs = nv;
        p->mcap = ncap;
    }
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    m = &p->msgs[p->nmsgs];
    *m = (struct up_msg){.kind = kind, .rc = rc};
    m->text = ferry_strdup(text);
    m->label = label != NULL ? ferry_strdup(label) : NULL;
    if (m->text == NULL || (label != NULL && m->label == NULL)) {
        ferry_free(m->text);
        ferry_free(m->label);
        return -ENOMEM;
    }
    p->nmsgs++;
    if (kind == MSG_ITEM || rc != 0)
        p->failed++;
    return 0;
}

static int add_item(struct up_plan *p, int kind, const char *local, const char *remote,
                    const struct stat *st)
{
    struct up_item *it;

    if (p->n == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 256;
        struct up_item *nv = ferry_realloc(p->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return -ENOMEM;
        p->v = nv;
        p->cap = ncap;
    }
    it = &p->v[p->n];
    *it = (struct up_item){.kind = kind, .size = kind == UP_FILE ? (uint64_t)st->st_size : 0};
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
 * folder everything in it with it. 1 when refused, < 0 on memory.
 */
static int name_refused(struct up_plan *p, const char *local, const char *name, const char *remote,
                        int is_dir)
{
    char norm[FERRY_PATH_MAX + 1];
    const char *why = ferry_name_problem(name, strlen(name));
    int rc;

    if (why == NULL && ferry_path_normalize(remote, strlen(remote), norm, sizeof(norm)) != 0)
        why = "its remote path would be longer than 4096 bytes or deeper than 128 folders";
    if (why == NULL)
        return 0;
    rc = add_msg(p, MSG_ITEM, FERRY_EPATH, local, "%s: %s",
                 is_dir ? "folder not uploaded, nor anything in it" : "not uploaded", why);
    return rc != 0 ? rc : 1;
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
static int walk(struct up_plan *p, const char *local, const char *remote, int depth)
{
    char e1[PLAN_ESC_MAX];
    DIR *d;
    struct dirent *e;
    struct stat st;
    int rc = 0, r;

    if (depth > PLAN_DEPTH_MAX)
        return add_msg(p, MSG_NOTE, FERRY_ETOOBIG, NULL, "%s: too deep, skipped", esc(local, e1));
    if ((d = opendir(local)) == NULL) {
        int err = errno;
        return add_msg(p, MSG_NOTE, -err, NULL, "%s: %s", esc(local, e1), strerror(err));
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char *l, *r2;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        l = join(local, e->d_name);
        r2 = join(remote, e->d_name);
        if (l == NULL || r2 == NULL) {
            rc = -ENOMEM;
        } else if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            int err = errno;
            rc = add_msg(p, MSG_NOTE, -err, NULL, "%s: %s", esc(l, e1), strerror(err));
        } else if (S_ISLNK(st.st_mode)) {
            rc = add_msg(p, MSG_NOTE, 0, NULL, "skipping symlink %s", esc(l, e1));
        } else if (S_ISDIR(st.st_mode)) {
            if ((r = name_refused(p, l, e->d_name, r2, 1)) < 0)
                rc = r;
            else if (r == 0 && (rc = add_item(p, UP_DIR, l, r2, &st)) == 0)
                rc = walk(p, l, r2, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            if ((r = name_refused(p, l, e->d_name, r2, 0)) < 0)
                rc = r;
            else if (r == 0)
                rc = add_item(p, UP_FILE, l, r2, &st);
        } else {
            rc = add_msg(p, MSG_NOTE, 0, NULL, "skipping special file %s", esc(l, e1));
        }
        ferry_free(l);
        ferry_free(r2);
    }
    closedir(d);
    return rc;
}

/* One source as given: a file, or with recursive a folder and what it holds. */
static int plan_source(struct up_plan *p, const char *src)
{
    struct ferry_upload *u = p->u;
    char tmp[PATH_MAX], real[PATH_MAX], rbase[FERRY_PATH_MAX + 1], e1[PLAN_ESC_MAX];
    const char *dest = u->dest;
    char *base, *remote;
    struct stat st;
    int rc = 0, r;

    if (lstat(src, &st) != 0) {
        int err = errno;
        return add_msg(p, MSG_ITEM, -err, src, "%s", strerror(err));
    }
    snprintf(tmp, sizeof(tmp), "%s", src);
    base = basename(tmp);
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(base, "/") == 0) {
        if (realpath(src, real) == NULL || strcmp(real, "/") == 0)
            return add_msg(p, MSG_ITEM, FERRY_EUSAGE, src,
                           "give a destination name for this folder");
        base = basename(real);
    }
    remote = u->into || dest[strlen(dest) - 1] == '/' ? join(dest, base) : ferry_strdup(dest);
    if (remote == NULL)
        return -ENOMEM;
    if (S_ISLNK(st.st_mode)) {
        rc = add_msg(p, MSG_NOTE, 0, NULL, "skipping symlink %s", esc(src, e1));
    } else if (S_ISDIR(st.st_mode)) {
        if (!u->recursive)
            rc = add_msg(p, MSG_ITEM, FERRY_EISDIR, NULL, "%s is a folder (use -r)", esc(src, e1));
        else if ((r = name_refused(p, src, remote_base(remote, rbase), remote, 1)) < 0)
            rc = r;
        else if (r == 0 && (rc = add_item(p, UP_DIR, src, remote, &st)) == 0)
            rc = walk(p, src, remote, 0);
    } else if (S_ISREG(st.st_mode)) {
        if ((r = name_refused(p, src, remote_base(remote, rbase), remote, 0)) < 0)
            rc = r;
        else if (r == 0)
            rc = add_item(p, UP_FILE, src, remote, &st);
    } else {
        rc = add_msg(p, MSG_NOTE, 0, NULL, "skipping special file %s", esc(src, e1));
    }
    ferry_free(remote);
    return rc;
}

int up_plan_work(void *arg)
{
    struct up_plan *p = arg;
    size_t i;
    int rc = 0;

    for (i = 0; i < p->u->nsources && rc == 0; i++)
        rc = plan_source(p, p->u->sources[i]);
    p->rc = rc;
    return rc;
}

void up_plan_free(struct up_plan *p)
{
    size_t i;

    if (p == NULL)
        return;
    for (i = 0; i < p->n; i++) {
        ferry_free(p->v[i].local);
        ferry_free(p->v[i].remote);
    }
    for (i = 0; i < p->nmsgs; i++) {
        ferry_free(p->msgs[i].label);
        ferry_free(p->msgs[i].text);
    }
    ferry_free(p->v);
    ferry_free(p->msgs);
    ferry_free(p);
}
