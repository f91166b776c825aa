/*
 * ferry put: a shell over the upload job (ferry/upload.h). It parses the
 * command line, asks once whether the destination is a folder, runs the
 * job on the runner's loop and hub (rpc.c: pin, trust, redials with the
 * one backoff) and says what became of each item.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ferry/upload.h"

/* What the job told the command, for the progress line and the end. */
struct put {
    struct cli_progress prog;
    const char *shown; /* the name on the progress line (the job's pointer) */
    int done;
    int rc;
};

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

static void put_progress(void *arg, const struct ferry_job_progress *jp)
{
    struct put *p = arg;

    p->prog.total = jp->bytes_total;
    p->prog.files_total = jp->files_total;
    p->prog.done = jp->bytes_done;
    p->prog.skipped = jp->bytes_skipped;
    p->prog.files_done = jp->files_done;
    if (jp->name != p->shown) {
        p->shown = jp->name;
        cli_progress_file(&p->prog, jp->name);
    }
    cli_progress_state(&p->prog, jp->state);
    cli_progress_update(&p->prog, 0);
}

static void put_item(void *arg, const char *label, int rc, const char *why)
{
    (void)arg;
    (void)rc;
    /* A label-less failure names its item in why, already escaped. */
    if (label != NULL)
        cli_err("%s: %s", cli_esc(label), why);
    else
        cli_err("%s", why);
}

static void put_note(void *arg, const char *text)
{
    (void)arg;
    cli_warn("%s", text);
}

static void put_done(void *arg, int rc)
{
    struct put *p = arg;

    p->done = 1;
    p->rc = rc;
}

static const struct ferry_job_ops put_ops = {
    .on_progress = put_progress,
    .on_item = put_item,
    .on_note = put_note,
    .on_done = put_done,
};

static int job_over(const struct cli_rpc *rpc, void *arg)
{
    (void)rpc;
    return ((const struct put *)arg)->done;
}

/*
 * Connects and asks once whether the destination is an existing folder.
 * A server that cannot be reached, or a link lost under the question, is
 * retried for retry_for_ms (FERRY_ENOTCONN when that runs out; -EINTR for
 * Ctrl-C). On success the runner stays open for the job.
 */
static int stat_dest(struct cli_rpc *rpc, const char *dest, uint64_t retry_for_ms, int *exists,
                     int *is_dir)
{
    uint64_t start = ferry_now_ms();
    struct ferry_cmd reply;
    int rc;

    for (;;) {
        if ((rc = cli_rpc_open_retrying(rpc, retry_for_ms)) == 0) {
            rc = cli_rpc_call(rpc, FERRY_MSG_DIRINFO,
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
            cli_rpc_close(rpc);
            if (rc != FERRY_ECANCELED && !cli_conn_lost(rc) && rc != -EINTR) {
                cli_err("%s: %s", cli_esc(dest), ferry_strerror(rc));
                return rc;
            }
        } else if (!cli_conn_lost(rc) && rc != -EINTR) {
            return rc;
        }
        if (rc == -EINTR || cli_interrupted)
            return -EINTR; /* R-CLI-13: nothing started, so nothing to undo */
        if (!ferry_retry_window_open(start, retry_for_ms, ferry_now_ms())) {
            cli_err("cannot reach the server (%s). Run the same command again.",
                    ferry_strerror(rc));
            return FERRY_ENOTCONN;
        }
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
    struct put p = {.rc = 0};
    struct cli_rpc rpc;
    struct ferry_upload_spec spec = {.connections = FERRY_UPLOAD_CONNECTIONS_DEFAULT};
    struct ferry_session_cfg lc;
    struct ferry_upload *job = NULL;
    struct ferry_upload_stats st = {0};
    uint64_t retry_for_ms = 60000, v;
    const char *dest = "/";
    int c, nsrc, rc = 0, dest_is_dir = 0, dest_exists = 0, resumable = 0, stats = 0, opened = 0;
    int into;

    memset(&rpc, 0, sizeof(rpc));
    optind = 1;
    while ((c = getopt_long(argc, argv, "rRqh", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
        case 'R':
            spec.recursive = 1;
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
            spec.bwlimit = v;
            break;
        case 3:
            stats = 1;
            break;
        case 4:
            if (ferry_parse_size(optarg, &v) != 0 || v < 1 || v > FERRY_UPLOAD_CONNECTIONS_MAX) {
                cli_err("--connections: give 1 to %d", FERRY_UPLOAD_CONNECTIONS_MAX);
                return CLI_USAGE;
            }
            spec.connections = (unsigned)v;
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
    if ((rc = stat_dest(&rpc, dest, retry_for_ms, &dest_exists, &dest_is_dir)) != 0) {
        resumable = rc == FERRY_ENOTCONN || rc == -EINTR;
        rc = CLI_FAIL;
        goto out;
    }
    opened = 1;
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
    /* Extra links (R-CHUNK-13) dial as the runner's did, pinned to the server it met. */
    lc = (struct ferry_session_cfg){
        .loop = &rpc.loop,
        .ctx = rpc.ctx,
        .host = rpc.r.host,
        .port = rpc.r.port,
        .pin = ferry_session_server_id(rpc.s),
        .token = rpc.r.token,
        .client = "ferry/" FERRY_VERSION_STR,
        .need_user = 1,
        .heartbeat_ms = CLI_HEARTBEAT_MS,
        .idle_ms = cli_idle_ms(),
        .connect_ms = CLI_CONNECT_TIMEOUT_MS,
    };
    spec.loop = &rpc.loop;
    spec.sources = (const char *const *)&argv[optind];
    spec.nsources = (size_t)nsrc;
    spec.dest = dest;
    spec.into = into;
    spec.link_cfg = &lc;
    spec.state = cli_state();
    cli_progress_init(&p.prog, 0, 0);
    if ((rc = ferry_upload_new(rpc.hub, &spec, &put_ops, &p, &job)) != 0 ||
        (rc = ferry_upload_start(job)) != 0)
        goto out;
    rc = cli_rpc_run(&rpc, job_over, &p);
    if (!p.done) {
        /* R-CLI-13: Ctrl-C (or the session's end) stops the job; on_done comes at once. */
        ferry_upload_cancel(job);
    }
    if (rc == 0 || p.rc != FERRY_ECANCELED)
        rc = p.rc;
    cli_progress_end(&p.prog);
out:
    if (job != NULL)
        ferry_upload_stats(job, &st);
    if (rc < 0 && rc != FERRY_EUSAGE && rc != FERRY_EAUTH) {
        uint64_t lost = st.items_left;
        /* R-CLI-3: exit 4 ("run it again") only where running it again can help. */
        resumable = cli_conn_lost(rc) || rc == -EINTR;
        if (resumable)
            cli_err("interrupted (%s): %llu item%s not confirmed; nothing partial is visible on "
                    "the server. Run the same command again to resume: chunks already stored "
                    "are not sent again.",
                    rc == -EINTR ? "Ctrl-C" : ferry_strerror(rc), (unsigned long long)lost,
                    lost == 1 ? "" : "s");
        else
            cli_err("stopped (%s): %llu item%s not confirmed; nothing partial is visible on "
                    "the server.",
                    ferry_strerror(rc), (unsigned long long)lost, lost == 1 ? "" : "s");
    }
    ferry_upload_free(job);
    cli_wire_add(st.wire_sent, st.wire_received);
    if (opened)
        cli_rpc_close(&rpc);
    if (stats) {
        uint64_t tx, rx;
        cli_wire_totals(&tx, &rx);
        printf("files: %llu uploaded, %llu failed\n"
               "bytes: %llu in all, %llu sent, %llu already on the server\n"
               "wire: %llu sent, %llu received (TLS)\n"
               "read: %llu bytes of local files\n",
               (unsigned long long)st.items_done, (unsigned long long)st.items_failed,
               (unsigned long long)st.job.bytes_total, (unsigned long long)st.job.bytes_moved,
               (unsigned long long)st.job.bytes_resumed, (unsigned long long)tx,
               (unsigned long long)rx, (unsigned long long)st.bytes_read);
    }
    if (resumable)
        return CLI_RESUMABLE;
    if (rc == CLI_FAIL || rc < 0)
        return CLI_FAIL;
    if (st.items_failed == 0)
        return CLI_OK;
    /* Some failed (each named above): partial if anything made it. */
    return st.items_done > 0 ? CLI_PARTIAL : CLI_FAIL;
}
