/* ferry ls | rm | mv: browsing and changing the remote tree. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "ferry/path.h"

/* What ls -l adds up for its total line. */
struct ls_totals {
    uint64_t files;
    uint64_t dirs;
    uint64_t bytes;
};

static void print_entry(const json_t *e, int longfmt, int human, struct ls_totals *t)
{
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *type = json_string_value(json_object_get(e, "type"));
    int is_dir = type != NULL && strcmp(type, "dir") == 0;

    if (name == NULL)
        return;
    if (longfmt) {
        json_int_t size = json_integer_value(json_object_get(e, "size"));
        json_int_t mtime = json_integer_value(json_object_get(e, "mtime"));
        time_t tt = (time_t)(mtime / 1000000000);
        struct tm tm;
        char when[32] = "?", sz[32];

        if (localtime_r(&tt, &tm) != NULL)
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
        /* R-CLI-14: sizes for people on a terminal, exact bytes for programs. */
        if (human)
            cli_human_size(sz, sizeof(sz), (double)(size > 0 ? size : 0));
        else
            snprintf(sz, sizeof(sz), "%lld", (long long)size);
        printf("%c%s %*s %s ", is_dir ? 'd' : '-',
               json_is_true(json_object_get(e, "exec")) ? "x" : "-", human ? 10 : 12, sz, when);
        if (is_dir) {
            t->dirs++;
        } else {
            t->files++;
            t->bytes += size > 0 ? (uint64_t)size : 0;
        }
    }
    cli_print_name(stdout, name);
    if (is_dir)
        putchar('/');
    putchar('\n');
}

static const char ls_usage[] = "usage: ferry ls [-l] [-R] [--bytes] [--json] [PATH]\n";

/* One listing as its pages arrive. */
struct ls_run {
    const char *path;
    int longfmt, human, as_json, first;
    int rc; /* the Error's code, or 0 */
    struct ls_totals tot;
};

/* Pages stream back to back; the last one says so (R-PIPE-1). */
static int ls_page(struct cli_rpc *rpc, int rc, const struct ferry_cmd *m, void *arg)
{
    struct ls_run *ls = arg;
    const char *msg;
    json_t *entries, *e;
    size_t i;

    (void)rpc;
    if (m == NULL)
        return 0; /* the connection ended: cli_rpc_wait says how */
    if (rc != 0) {
        ls->rc = cli_error_rc(m, &msg);
        cli_err("%s: %s", cli_esc(ls->path), msg);
        return 0;
    }
    entries = json_object_get(m->body, "entries");
    json_array_foreach(entries, i, e)
    {
        if (ls->as_json) {
            char *t = json_dumps(e, JSON_COMPACT | JSON_ENSURE_ASCII);
            printf("%s%s", ls->first ? "\n" : ",\n", t != NULL ? t : "null");
            free(t);
            ls->first = 0;
        } else {
            print_entry(e, ls->longfmt, ls->human, &ls->tot);
        }
    }
    return json_is_true(json_object_get(m->body, "last")) ? 0 : 1;
}

int cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        {"long", no_argument, NULL, 'l'}, {"recursive", no_argument, NULL, 'R'},
        {"json", no_argument, NULL, 'j'}, {"bytes", no_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *path = "/";
    struct cli_rpc rpc;
    struct ls_run ls = {0};
    int c, longfmt = 0, rec = 0, as_json = 0, rc, human = isatty(STDOUT_FILENO);

    optind = 1;
    while ((c = getopt_long(argc, argv, "lRh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            longfmt = 1;
            break;
        case 'R':
            rec = 1;
            break;
        case 'j':
            as_json = 1;
            break;
        case 'b':
            human = 0;
            break;
        case 'h':
            printf("%s\n"
                   "Lists a remote folder (default: your root). Names are shown escaped\n"
                   "(\\xHH for control characters and bytes that are not UTF-8, \\\\ for a\n"
                   "backslash).\n"
                   "  -l        long format: type, exec bit, size, modification time, and a\n"
                   "            total line; sizes in KiB, MiB... on a terminal\n"
                   "  -R        list the whole subtree\n"
                   "  --bytes   with -l, sizes in bytes even on a terminal\n"
                   "  --json    one JSON array of entries: id, dir_id, name, type, size,\n"
                   "            hash, mtime and smtime (ns since the epoch), exec\n",
                   ls_usage);
            return CLI_OK;
        default:
            fputs(ls_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (argc - optind > 1) {
        fputs(ls_usage, stderr);
        return CLI_USAGE;
    }
    if (optind < argc)
        path = argv[optind];
    if (cli_rpc_open_session(&rpc) != 0)
        return CLI_FAIL;
    ls = (struct ls_run){
        .path = path, .longfmt = longfmt, .human = human, .as_json = as_json, .first = 1};
    rc = cli_rpc_start(&rpc, FERRY_MSG_DIRINFO,
                       json_pack("{s:s, s:b}", "path", path, "recursive", rec), ls_page, &ls);
    if (rc == FERRY_EUSAGE)
        cli_err("%s: not a path the server can take", cli_esc(path));
    if (as_json && rc == 0)
        printf("[");
    if (rc == 0 && (rc = cli_rpc_wait(&rpc)) == 0)
        rc = ls.rc;
    if (as_json && rc == 0)
        printf("\n]\n");
    if (longfmt && !as_json && rc == 0) {
        char sz[32];

        if (human)
            cli_human_size(sz, sizeof(sz), (double)ls.tot.bytes);
        else
            snprintf(sz, sizeof(sz), "%llu bytes", (unsigned long long)ls.tot.bytes);
        printf("total %llu file%s, %llu folder%s, %s\n", (unsigned long long)ls.tot.files,
               ls.tot.files == 1 ? "" : "s", (unsigned long long)ls.tot.dirs,
               ls.tot.dirs == 1 ? "" : "s", sz);
    }
    if (rc != 0 && rc != FERRY_ENOTFOUND && rc != FERRY_EPATH && rc != FERRY_ENOTDIR &&
        rc != FERRY_EUSAGE)
        cli_err("listing failed: %s", ferry_strerror(rc));
    cli_rpc_close(&rpc);
    return rc == 0 ? CLI_OK : CLI_FAIL;
}

/* One request of a pipeline and what came back for it. */
struct req {
    char id[FERRY_UUID_STR_LEN + 1];
    int done;
    int rc;         /* 0 or the Error's code */
    char msg[1100]; /* the Error's text, escaped */
    json_t *entry;  /* DirInfo with stat: the entry (a reference), or NULL */
};

/* A reply to one request of a pipeline. */
static int pipe_reply(struct cli_rpc *rpc, int rc, const struct ferry_cmd *m, void *arg)
{
    struct req *rq = arg;
    const char *msg;

    (void)rpc;
    if (m == NULL)
        return 0; /* the connection ended: cli_rpc_wait says how */
    if (rc != 0) {
        rq->rc = cli_error_rc(m, &msg);
        snprintf(rq->msg, sizeof(rq->msg), "%s", msg);
    } else if (m->type == FERRY_MSG_DIRPAGE) {
        json_decref(rq->entry);
        rq->entry = json_incref(json_array_get(json_object_get(m->body, "entries"), 0));
        /* stat answers with one page; a longer listing is not ours to wait for */
        if (!json_is_true(json_object_get(m->body, "last")))
            return 1;
    }
    rq->done = 1;
    return 0;
}

/*
 * Sends every request at once, then collects the replies (R-PIPE-1). Takes
 * the references to bodies. 0, or < 0 when the connection failed.
 */
static int pipeline(struct cli_rpc *rpc, int32_t type, json_t **bodies, struct req *rq, int n)
{
    int i, rc = 0;

    for (i = 0; i < n; i++) {
        if (rc == 0)
            rc = cli_rpc_start(rpc, type, bodies[i], pipe_reply, &rq[i]);
        else
            json_decref(bodies[i]);
    }
    if (rc == 0)
        rc = cli_rpc_wait(rpc);
    if (rc != 0)
        cli_err("connection lost: %s", ferry_strerror(rc));
    return rc;
}

static void reqs_free(struct req *rq, int n)
{
    int i;

    for (i = 0; rq != NULL && i < n; i++)
        json_decref(rq[i].entry);
    ferry_free(rq);
}

static const char rm_usage[] = "usage: ferry rm [-r] PATH...\n";

int cmd_rm(int argc, char **argv)
{
    static const struct option opts[] = {
        {"recursive", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cli_rpc rpc;
    struct req *rq = NULL;
    json_t **bodies = NULL;
    int *idx = NULL;
    int c, rec = 0, i, k, n, sent = 0, rc = CLI_FAIL, failed = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "rRh", opts, NULL)) != -1) {
        if (c == 'r' || c == 'R') {
            rec = 1;
        } else if (c == 'h') {
            printf("%s\nRemoves remote files. A folder, empty or not, needs -r, which removes\n"
                   "it with everything in it.\n",
                   rm_usage);
            return CLI_OK;
        } else {
            fputs(rm_usage, stderr);
            return CLI_USAGE;
        }
    }
    n = argc - optind;
    if (n < 1) {
        fputs(rm_usage, stderr);
        return CLI_USAGE;
    }
    if (cli_rpc_open_session(&rpc) != 0)
        return CLI_FAIL;
    if ((bodies = ferry_calloc((size_t)n, sizeof(*bodies))) == NULL ||
        (rq = ferry_calloc((size_t)n, sizeof(*rq))) == NULL ||
        (idx = ferry_calloc((size_t)n, sizeof(*idx))) == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        char norm[FERRY_PATH_MAX + 1];
        const char *a = argv[optind + i];

        /* A path the server would refuse (R-PATH), or that JSON cannot carry, is not sent. */
        if (ferry_path_normalize(a, strlen(a), norm, sizeof(norm)) != 0) {
            cli_err("%s: invalid path name", cli_esc(a));
            failed++;
            continue;
        }
        idx[sent] = i;
        bodies[sent++] = json_pack("{s:s, s:b}", "path", a, "recursive", rec);
    }
    if (sent > 0 && pipeline(&rpc, FERRY_MSG_REMOVE, bodies, rq, sent) != 0)
        goto out;
    for (k = 0; k < sent; k++) {
        if (rq[k].rc == 0)
            continue;
        failed++;
        /* R-CLI-12, section 6.3: Remove of a folder without recursive is Error 12. */
        cli_err("%s: %s", cli_esc(argv[optind + idx[k]]),
                rq[k].rc == FERRY_EISDIR ? "is a folder (use -r)" : rq[k].msg);
    }
    rc = failed == 0 ? CLI_OK : failed == n ? CLI_FAIL : CLI_PARTIAL;
out:
    ferry_free(idx);
    ferry_free(bodies);
    reqs_free(rq, n);
    cli_rpc_close(&rpc);
    return rc;
}

static const char mv_usage[] = "usage: ferry mv [-f] [-T] FROM... TO\n";

/* A remote path in normal form for messages: with its leading '/'. */
static const char *shown(const char *norm)
{
    static char buf[4][FERRY_PATH_MAX + 2];
    static unsigned next;
    char *b = buf[next++ % 4];

    snprintf(b, FERRY_PATH_MAX + 2, "/%s", norm);
    return cli_esc(b);
}

/* The parent of a normalised path ("" for the root's children). */
static void parent_of(const char *norm, char out[static FERRY_PATH_MAX + 1])
{
    const char *slash = strrchr(norm, '/');

    snprintf(out, FERRY_PATH_MAX + 1, "%.*s", slash != NULL ? (int)(slash - norm) : 0, norm);
}

/* One source of mv: its paths and what became of it. */
struct mv_src {
    char from[FERRY_PATH_MAX + 1];
    char to[FERRY_PATH_MAX + 1];
    int ok; /* both paths valid, from exists, a Move is to be sent */
    int is_dir;
};

/*
 * R-CLI-11: the destination is resolved as mv(1) does, here and not by the
 * server, whose Move is a plain rename: sources go into an existing folder
 * under their own names; otherwise the one source takes TO as its name.
 * Each source's failure names the path at fault.
 */
static int mv_plan(struct cli_rpc *rpc, char **args, int nsrc, const char *dest, int no_target,
                   struct mv_src *v, int *failed)
{
    char dnorm[FERRY_PATH_MAX + 1];
    struct req *rq = NULL;
    json_t **bodies = NULL;
    const char *type;
    int *valid = NULL;
    int i, rc = 0, is_dir = 0, dest_dir = 0;
    int slash = dest[0] != '\0' && dest[strlen(dest) - 1] == '/';

    if (ferry_path_normalize(dest, strlen(dest), dnorm, sizeof(dnorm)) != 0) {
        cli_err("%s: invalid path name", cli_esc(dest));
        *failed = nsrc;
        return 0;
    }
    if ((bodies = ferry_calloc((size_t)nsrc + 1, sizeof(*bodies))) == NULL ||
        (rq = ferry_calloc((size_t)nsrc + 1, sizeof(*rq))) == NULL ||
        (valid = ferry_calloc((size_t)nsrc, sizeof(*valid))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < nsrc; i++) {
        valid[i] =
            ferry_path_normalize(args[i], strlen(args[i]), v[i].from, sizeof(v[i].from)) == 0;
        if (!valid[i])
            cli_err("%s: invalid path name", cli_esc(args[i]));
        else if (v[i].from[0] == '\0')
            cli_err("%s: the root cannot move", cli_esc(args[i]));
        if (!valid[i] || v[i].from[0] == '\0') {
            valid[i] = 0;
            (*failed)++;
        }
    }
    /* One round trip: is TO a folder, and does each FROM exist? */
    bodies[0] = json_pack("{s:s, s:b}", "path", dnorm, "stat", 1);
    for (i = 0; i < nsrc; i++)
        bodies[i + 1] = json_pack("{s:s, s:b}", "path", valid[i] ? v[i].from : "", "stat", 1);
    if ((rc = pipeline(rpc, FERRY_MSG_DIRINFO, bodies, rq, nsrc + 1)) != 0)
        goto out;
    if (rq[0].rc == 0 && rq[0].entry != NULL) {
        type = json_string_value(json_object_get(rq[0].entry, "type"));
        is_dir = type != NULL && strcmp(type, "dir") == 0;
        dest_dir = is_dir && !no_target;
    }
    if (nsrc > 1 && !dest_dir) {
        cli_err("%s: not a folder (several sources need an existing folder)", shown(dnorm));
        *failed = nsrc;
        goto out;
    }
    if (slash && !is_dir) {
        /* "x/" names a folder; mv says the same: not a directory. */
        cli_err("%s: not a folder", cli_esc(dest));
        *failed = nsrc;
        goto out;
    }
    for (i = 0; i < nsrc; i++) {
        struct mv_src *s = &v[i];
        struct req *r = &rq[i + 1];
        size_t flen;

        if (!valid[i])
            continue;
        if (r->rc != 0 || r->entry == NULL) {
            cli_err("%s: %s", shown(s->from), r->rc != 0 ? r->msg : "not found");
            (*failed)++;
            continue;
        }
        type = json_string_value(json_object_get(r->entry, "type"));
        s->is_dir = type != NULL && strcmp(type, "dir") == 0;
        if (dest_dir) {
            const char *base = strrchr(s->from, '/');
            base = base != NULL ? base + 1 : s->from;
            if ((size_t)snprintf(s->to, sizeof(s->to), "%s%s%s", dnorm, dnorm[0] ? "/" : "",
                                 base) >= sizeof(s->to)) {
                cli_err("cannot move %s into %s: the path would be too long", shown(s->from),
                        shown(dnorm));
                (*failed)++;
                continue;
            }
        } else {
            snprintf(s->to, sizeof(s->to), "%s", dnorm);
        }
        flen = strlen(s->from);
        if (s->is_dir && strncmp(s->to, s->from, flen) == 0 && s->to[flen] == '/') {
            cli_err("cannot move %s to %s: a folder cannot move into itself", shown(s->from),
                    shown(s->to));
            (*failed)++;
            continue;
        }
        if (strcmp(s->to, s->from) == 0) {
            cli_err("%s and %s are the same", shown(s->from), shown(s->to));
            (*failed)++;
            continue;
        }
        s->ok = 1;
    }
out:
    ferry_free(valid);
    ferry_free(bodies);
    reqs_free(rq, nsrc + 1);
    return rc;
}

/* A refused Move, said about the path at fault (FROM existed a moment ago). */
static void mv_report(const struct mv_src *s, const struct req *r, int force)
{
    char parent[FERRY_PATH_MAX + 1];

    parent_of(s->to, parent);
    switch (r->rc) {
    case FERRY_ENOTFOUND:
        cli_err("cannot move %s to %s: %s: no such folder", shown(s->from), shown(s->to),
                shown(parent));
        break;
    case FERRY_ENOTDIR:
        cli_err("cannot move %s to %s: %s is not a folder", shown(s->from), shown(s->to),
                shown(parent));
        break;
    case FERRY_EEXIST:
        cli_err("cannot move %s to %s: it already exists%s", shown(s->from), shown(s->to),
                force ? "" : " (-f replaces it)");
        break;
    case FERRY_EISDIR:
        cli_err("cannot move %s to %s: a file cannot replace a folder", shown(s->from),
                shown(s->to));
        break;
    case FERRY_ENOTEMPTY:
        cli_err("cannot move %s to %s: the folder there is not empty", shown(s->from),
                shown(s->to));
        break;
    default:
        cli_err("cannot move %s to %s: %s", shown(s->from), shown(s->to), r->msg);
    }
}

int cmd_mv(int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'},
        {"no-target-directory", no_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cli_rpc rpc;
    struct mv_src *v = NULL;
    struct req *rq = NULL;
    json_t **bodies = NULL;
    int c, force = 0, no_target = 0, rc = CLI_FAIL, nsrc, i, k, n = 0, failed = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "fTh", opts, NULL)) != -1) {
        if (c == 'f') {
            force = 1;
        } else if (c == 'T') {
            no_target = 1;
        } else if (c == 'h') {
            printf("%s\n"
                   "Moves or renames remote files and folders, as mv does: when TO is an\n"
                   "existing folder, each FROM moves into it under its own name; otherwise\n"
                   "the one FROM is renamed to TO. A folder cannot move into itself.\n"
                   "  -f   replace what is at the destination: a file with a file, an empty\n"
                   "       folder with a folder\n"
                   "  -T   TO is the new name even when it is a folder (with -f, an empty\n"
                   "       folder there is replaced)\n",
                   mv_usage);
            return CLI_OK;
        } else {
            fputs(mv_usage, stderr);
            return CLI_USAGE;
        }
    }
    nsrc = argc - optind - 1;
    if (nsrc < 1 || (no_target && nsrc > 1)) {
        fputs(mv_usage, stderr);
        return CLI_USAGE;
    }
    if (cli_rpc_open_session(&rpc) != 0)
        return CLI_FAIL;
    if ((v = ferry_calloc((size_t)nsrc, sizeof(*v))) == NULL ||
        (bodies = ferry_calloc((size_t)nsrc, sizeof(*bodies))) == NULL ||
        (rq = ferry_calloc((size_t)nsrc, sizeof(*rq))) == NULL)
        goto out;
    if (mv_plan(&rpc, argv + optind, nsrc, argv[argc - 1], no_target, v, &failed) != 0)
        goto out;
    for (i = 0; i < nsrc; i++)
        if (v[i].ok)
            bodies[n++] =
                json_pack("{s:s, s:s, s:b}", "from", v[i].from, "to", v[i].to, "force", force);
    if (n > 0 && pipeline(&rpc, FERRY_MSG_MOVE, bodies, rq, n) != 0)
        goto out;
    for (i = 0, k = 0; i < nsrc; i++) {
        if (!v[i].ok)
            continue;
        if (rq[k].rc != 0) {
            mv_report(&v[i], &rq[k], force);
            failed++;
        }
        k++;
    }
    rc = failed == 0 ? CLI_OK : failed == nsrc ? CLI_FAIL : CLI_PARTIAL;
out:
    ferry_free(v);
    ferry_free(bodies);
    reqs_free(rq, nsrc > 0 ? nsrc : 0);
    cli_rpc_close(&rpc);
    return rc;
}
