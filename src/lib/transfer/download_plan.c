/*
 * The download job's plan: each source asked about in turn (DirInfo with
 * stat), a folder listed recursively, and every entry turned into a local
 * folder or a download. Names from the server are hostile until validated
 * (R-PATH-6), and the listings of one job are capped (R-RECV-7). A link
 * lost while planning throws the plan away; it is made again on the next.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "download_int.h"

/* R-RECV-7: counts an entry of a listing as it arrives; FERRY_ETOOBIG past the caps. */
static int listed(struct ferry_download *g, const char *name)
{
    g->listed++;
    g->listed_bytes += name != NULL ? strlen(name) : 0;
    if (g->listed > DL_LIST_ENTRIES_MAX || g->listed_bytes > DL_LIST_BYTES_MAX)
        return FERRY_ETOOBIG;
    return 0;
}

static int add_dl(struct ferry_download *g, int64_t file_id, uint64_t size, int rootfd,
                  const char *rel, const char *label, const char *cid)
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
    if (d->rel == NULL || d->label == NULL) {
        ferry_free(d->rel);
        ferry_free(d->label);
        return -ENOMEM;
    }
    g->n++;
    g->prog.bytes_total += size;
    return 0;
}

static int add_dir(struct ferry_download *g, int rootfd, const char *rel, int64_t mtime)
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

static int add_root(struct ferry_download *g, int fd)
{
    int *nv = ferry_realloc(g->rootfds, (g->nroots + 1) * sizeof(*nv));

    if (nv == NULL) {
        close(fd);
        return -ENOMEM;
    }
    g->rootfds = nv;
    g->rootfds[g->nroots++] = fd;
    return 0;
}

/* Asks about the next source, or ends the plan. */
static void ask(struct ferry_download *g)
{
    int rc;

    dl_unclaim(g, g->plan_id);
    g->plan_id[0] = '\0';
    if (g->plan_i >= g->nsrc) {
        g->planned = 1;
        g->prog.files_total = g->n;
        dl_progress(g);
        return; /* the caller pumps: the downloads begin */
    }
    g->plan_step = 0;
    rc = dl_request(g, g->plan_id, FERRY_MSG_DIRINFO,
                    json_pack("{s:s, s:b}", "path", g->srcs[g->plan_i], "stat", 1));
    if (rc != 0)
        g->fatal = rc; /* the caller's pump ends the job */
}

static void next_source(struct ferry_download *g)
{
    g->plan_i++;
    ask(g);
}

/* The answer to a source's DirInfo: a file to download, or a folder to list. */
static int stat_reply(struct ferry_download *g, const struct ferry_cmd *m)
{
    const char *src = g->srcs[g->plan_i], *dest = g->dest, *type;
    char tmp[FERRY_PATH_MAX + 1], target[PATH_MAX], *base;
    json_t *e = json_array_get(json_object_get(m->body, "entries"), 0);
    int is_dir, rootfd, rc = 0;

    type = json_string_value(json_object_get(e, "type"));
    is_dir = type != NULL && strcmp(type, "dir") == 0;
    snprintf(tmp, sizeof(tmp), "%s", src);
    base = basename(tmp);
    if (strcmp(base, "/") == 0 || strcmp(base, ".") == 0 || base[0] == '\0')
        base = "ferry-root";
    if (g->dest_dir)
        snprintf(target, sizeof(target), "%s/%s", dest, base);
    else
        snprintf(target, sizeof(target), "%s", dest);
    if (!is_dir && !g->dest_dir && dest[0] != '\0' && dest[strlen(dest) - 1] == '/') {
        /* R-CLI-8: "dir/" names a folder; as cp says, a file is not one. */
        dl_fail(g, dest, strerror(ENOTDIR));
    } else if (!is_dir) {
        char dcopy[PATH_MAX], bcopy[PATH_MAX];
        snprintf(dcopy, sizeof(dcopy), "%s", target);
        snprintf(bcopy, sizeof(bcopy), "%s", target);
        rootfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0 || add_root(g, rootfd) != 0) {
            dl_fail(g, target, strerror(errno));
        } else {
            rc = add_dl(g, json_integer_value(json_object_get(e, "id")),
                        (uint64_t)json_integer_value(json_object_get(e, "size")), rootfd,
                        basename(bcopy), src, json_string_value(json_object_get(e, "hash")));
        }
    } else if (!g->rec) {
        dl_fail(g, src, "is a folder (use -r)");
    } else if (mkdir(target, 0777) != 0 && errno != EEXIST) {
        dl_fail(g, target, strerror(errno));
    } else if ((rootfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
               add_root(g, rootfd) != 0) {
        dl_fail(g, target, strerror(errno));
    } else {
        if ((rc = add_dir(g, rootfd, "", json_integer_value(json_object_get(e, "mtime")))) != 0)
            return rc;
        /* One recursive listing of the folder, page by page. */
        dl_unclaim(g, g->plan_id);
        g->plan_step = 1;
        g->plan_rootfd = rootfd;
        return dl_request(g, g->plan_id, FERRY_MSG_DIRINFO,
                          json_pack("{s:s, s:b}", "path", src, "recursive", 1));
    }
    if (rc == 0)
        next_source(g);
    return rc;
}

/* A page of a recursive listing, turned into local folders and downloads. */
static int page_reply(struct ferry_download *g, const struct ferry_cmd *m)
{
    char norm[FERRY_PATH_MAX + 1];
    const char *src = g->srcs[g->plan_i];
    int rootfd = g->plan_rootfd, rc = 0;
    json_t *e;
    size_t i;

    json_array_foreach(json_object_get(m->body, "entries"), i, e)
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
            dl_fail(g, name != NULL ? name : "?", "refused an unsafe name from the server");
            continue;
        }
        if (strcmp(type, "dir") == 0) {
            if ((fd = ferry_mkdirs_beneath(rootfd, norm)) < 0) {
                dl_fail_rc(g, norm, "cannot create the folder", fd);
                continue;
            }
            close(fd);
            if ((rc = add_dir(g, rootfd, norm, mt)) != 0)
                break;
        } else if ((rc = add_dl(g, fid, (uint64_t)json_integer_value(json_object_get(e, "size")),
                                rootfd, norm, norm,
                                json_string_value(json_object_get(e, "hash")))) != 0) {
            break;
        }
    }
    if (rc == FERRY_ETOOBIG) {
        char text[FERRY_PATH_MAX + 200];
        snprintf(text, sizeof(text),
                 "the listing of %s holds more than this client accepts (%u entries or %u MiB "
                 "of names); get its folders one by one",
                 src, DL_LIST_ENTRIES_MAX, DL_LIST_BYTES_MAX >> 20);
        if (g->ops->on_note != NULL)
            g->ops->on_note(g->arg, text);
        return rc;
    }
    if (rc == 0 && json_is_true(json_object_get(m->body, "last")))
        next_source(g);
    return rc;
}

int dl_plan_reply(struct ferry_download *g, const struct ferry_cmd *m)
{
    const char *ref = json_string_value(json_object_get(m->body, "ref"));

    if (g->planned || ref == NULL || strcmp(ref, g->plan_id) != 0)
        return 0; /* the answer to a request of a plan thrown away */
    return g->plan_step == 0 ? stat_reply(g, m) : page_reply(g, m);
}

int dl_plan_error(struct ferry_download *g, const char *ref, int rc, const char *msg)
{
    const char *src;

    if (g->planned || g->plan_id[0] == '\0' || strcmp(ref, g->plan_id) != 0)
        return 0;
    src = g->srcs[g->plan_i];
    if (g->plan_step == 1) {
        dl_fail(g, src, msg);
        next_source(g);
        return 1;
    }
    dl_fail(g, src, ferry_strerror(rc));
    if (rc == FERRY_ENOTFOUND || rc == FERRY_EPATH || rc == FERRY_ENOTDIR) {
        next_source(g);
    } else {
        g->fatal = rc; /* the caller's pump ends the job */
    }
    return 1;
}

void dl_plan_start(struct ferry_download *g)
{
    g->plan_i = 0;
    g->plan_failed = g->failed;
    ask(g);
}

void dl_plan_free(struct ferry_download *g)
{
    size_t k;

    for (k = 0; k < g->ndirs; k++)
        ferry_free(g->dirs[k].rel);
    g->ndirs = 0;
    for (k = 0; k < g->nroots; k++)
        close(g->rootfds[k]);
    g->nroots = 0;
    ferry_free(g->dirs);
    g->dirs = NULL;
    g->capdirs = 0;
    ferry_free(g->rootfds);
    g->rootfds = NULL;
}

void dl_plan_reset(struct ferry_download *g)
{
    size_t k;

    for (k = 0; k < g->n; k++) {
        ferry_free(g->v[k].rel);
        ferry_free(g->v[k].label);
        ferry_piece_free(g->v[k].piece);
    }
    g->n = 0;
    dl_plan_free(g);
    dl_unclaim(g, g->plan_id);
    g->plan_id[0] = '\0';
    g->prog.bytes_total = 0;
    g->failed = g->plan_failed;
    g->listed = g->listed_bytes = 0; /* R-RECV-7: the plan is made again from nothing */
}
