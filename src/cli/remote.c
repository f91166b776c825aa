/* ferry ls | rm | mv: browsing and changing the remote tree. */
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void print_entry(const json_t *e, int longfmt)
{
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *type = json_string_value(json_object_get(e, "type"));
    int is_dir = type != NULL && strcmp(type, "dir") == 0;

    if (name == NULL)
        return;
    if (longfmt) {
        json_int_t size = json_integer_value(json_object_get(e, "size"));
        json_int_t mtime = json_integer_value(json_object_get(e, "mtime"));
        time_t t = (time_t)(mtime / 1000000000);
        struct tm tm;
        char when[32] = "?";

        if (localtime_r(&t, &tm) != NULL)
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
        printf("%c%s %12lld %s ", is_dir ? 'd' : '-',
               json_is_true(json_object_get(e, "exec")) ? "x" : "-", (long long)size, when);
    }
    cli_print_name(stdout, name);
    if (is_dir)
        putchar('/');
    putchar('\n');
}

int cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        {"long", no_argument, NULL, 'l'},
        {"recursive", no_argument, NULL, 'R'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = "/";
    char id[FERRY_UUID_STR_LEN + 1];
    struct cli_conn cc;
    struct ferry_cmd m;
    int c, longfmt = 0, rec = 0, as_json = 0, rc, first = 1;

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
        case 'h':
            printf("usage: ferry ls [-l] [-R] [--json] [PATH]\n\n"
                   "Lists a remote folder (default: your root).\n"
                   "  -l        long format: type, exec bit, size, modification time\n"
                   "  -R        list the whole subtree\n"
                   "  --json    one JSON array of entries: id, dir_id, name, type, size,\n"
                   "            hash, mtime and smtime (ns since the epoch), exec\n");
            return CLI_OK;
        default:
            fprintf(stderr, "usage: ferry ls [-l] [-R] [--json] [PATH]\n");
            return CLI_USAGE;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "usage: ferry ls [-l] [-R] [--json] [PATH]\n");
        return CLI_USAGE;
    }
    if (optind < argc)
        path = argv[optind];
    if (cli_connect_session(&cc) != 0)
        return CLI_FAIL;
    ferry_uuid_new(id);
    rc = ferry_client_send_cmd(
        &cc.c, FERRY_MSG_DIRINFO,
        json_pack("{s:s, s:s, s:b}", "id", id, "path", path, "recursive", rec));
    if (as_json)
        printf("[");
    /* Pages stream back to back; the last one says so (R-PIPE-1). */
    while (rc == 0) {
        const char *ref, *msg;
        json_t *entries, *e;
        size_t i;
        int last;

        if ((rc = cli_next(&cc, &m, NULL)) < 0)
            break;
        rc = 0;
        ref = json_string_value(json_object_get(m.body, "ref"));
        if (ref == NULL || strcmp(ref, id) != 0) {
            ferry_cmd_cleanup(&m);
            continue;
        }
        if (m.type == FERRY_MSG_ERROR) {
            rc = cli_error_rc(&m, &msg);
            cli_err("%s: %s", cli_esc(path), msg);
            ferry_cmd_cleanup(&m);
            break;
        }
        entries = json_object_get(m.body, "entries");
        json_array_foreach(entries, i, e)
        {
            if (as_json) {
                char *s = json_dumps(e, JSON_COMPACT | JSON_ENSURE_ASCII);
                printf("%s%s", first ? "\n" : ",\n", s != NULL ? s : "null");
                free(s);
                first = 0;
            } else {
                print_entry(e, longfmt);
            }
        }
        last = json_is_true(json_object_get(m.body, "last"));
        ferry_cmd_cleanup(&m);
        if (last)
            break;
    }
    if (as_json && rc == 0)
        printf("\n]\n");
    if (rc != 0 && rc != FERRY_ENOTFOUND && rc != FERRY_EPATH && rc != FERRY_ENOTDIR)
        cli_err("listing failed: %s", ferry_strerror(rc));
    cli_disconnect(&cc);
    return rc == 0 ? CLI_OK : CLI_FAIL;
}

/* Sends every request at once, then collects the replies (R-PIPE-1). */
static int pipeline(struct cli_conn *cc, int32_t type, json_t **bodies, char **labels, int n)
{
    char(*ids)[FERRY_UUID_STR_LEN + 1] = ferry_calloc((size_t)n, sizeof(*ids));
    int i, rc = 0, pending = n, failed = 0;
    struct ferry_cmd m;

    if (ids == NULL)
        return CLI_FAIL;
    for (i = 0; i < n; i++) {
        ferry_uuid_new(ids[i]);
        json_object_set_new(bodies[i], "id", json_string(ids[i]));
        if (rc == 0)
            rc = ferry_client_send_cmd(&cc->c, type, bodies[i]);
        else
            json_decref(bodies[i]);
    }
    while (rc == 0 && pending > 0) {
        const char *ref, *msg;

        if ((rc = cli_next(cc, &m, NULL)) < 0)
            break;
        rc = 0;
        ref = json_string_value(json_object_get(m.body, "ref"));
        for (i = 0; ref != NULL && i < n; i++) {
            if (strcmp(ref, ids[i]) != 0)
                continue;
            pending--;
            if (m.type == FERRY_MSG_ERROR) {
                cli_error_rc(&m, &msg);
                fprintf(stderr, "ferry: ");
                cli_print_name(stderr, labels[i]);
                fprintf(stderr, ": %s\n", msg);
                failed++;
            }
            break;
        }
        ferry_cmd_cleanup(&m);
    }
    ferry_free(ids);
    if (rc != 0) {
        cli_err("connection lost: %s", ferry_strerror(rc));
        return CLI_FAIL;
    }
    if (failed == 0)
        return CLI_OK;
    return failed == n ? CLI_FAIL : CLI_PARTIAL;
}

int cmd_rm(int argc, char **argv)
{
    static const struct option opts[] = {
        {"recursive", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cli_conn cc;
    json_t **bodies;
    int c, rec = 0, i, n, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "rRh", opts, NULL)) != -1) {
        if (c == 'r' || c == 'R') {
            rec = 1;
        } else if (c == 'h') {
            printf("usage: ferry rm [-r] PATH...\n\nRemoves remote files; -r also removes "
                   "folders and everything in them.\n");
            return CLI_OK;
        } else {
            fprintf(stderr, "usage: ferry rm [-r] PATH...\n");
            return CLI_USAGE;
        }
    }
    n = argc - optind;
    if (n < 1) {
        fprintf(stderr, "usage: ferry rm [-r] PATH...\n");
        return CLI_USAGE;
    }
    if (cli_connect_session(&cc) != 0)
        return CLI_FAIL;
    if ((bodies = ferry_calloc((size_t)n, sizeof(*bodies))) == NULL)
        return CLI_FAIL;
    for (i = 0; i < n; i++)
        bodies[i] = json_pack("{s:s, s:b}", "path", argv[optind + i], "recursive", rec);
    rc = pipeline(&cc, FERRY_MSG_REMOVE, bodies, argv + optind, n);
    ferry_free(bodies);
    cli_disconnect(&cc);
    return rc;
}

int cmd_mv(int argc, char **argv)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cli_conn cc;
    json_t *body;
    int c, force = 0, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
        if (c == 'f') {
            force = 1;
        } else if (c == 'h') {
            printf("usage: ferry mv [-f] FROM TO\n\nMoves or renames a remote file or folder. "
                   "An existing TO is an error\nunless -f, which replaces a file (or an empty "
                   "folder) of the same kind.\n");
            return CLI_OK;
        } else {
            fprintf(stderr, "usage: ferry mv [-f] FROM TO\n");
            return CLI_USAGE;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: ferry mv [-f] FROM TO\n");
        return CLI_USAGE;
    }
    if (cli_connect_session(&cc) != 0)
        return CLI_FAIL;
    body =
        json_pack("{s:s, s:s, s:b}", "from", argv[optind], "to", argv[optind + 1], "force", force);
    rc = pipeline(&cc, FERRY_MSG_MOVE, &body, argv + optind, 1);
    cli_disconnect(&cc);
    return rc;
}
