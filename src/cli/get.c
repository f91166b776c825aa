/*
 * ferry get: a shell over the library's download job (ferry/download.h).
 * It reads the command line, runs the job on the runner's loop and hub, and
 * says what happened: the progress line, each file that failed, the end.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "ferry/download.h"

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

struct get_shell {
    struct cli_progress prog;
    const char *shown_name; /* the job's name pointer the line shows, escaped in prog */
    int done, rc;
    int interrupted; /* Ctrl-C cancelled the job */
};

static void get_progress(void *arg, const struct ferry_job_progress *p)
{
    struct get_shell *sh = arg;

    sh->prog.total = p->bytes_total;
    sh->prog.done = p->bytes_done;
    sh->prog.skipped = p->bytes_skipped;
    sh->prog.files_total = p->files_total;
    sh->prog.files_done = p->files_done;
    /* Escaping a name is not free: only when it changes. */
    if (p->name != sh->shown_name) {
        cli_progress_file(&sh->prog, p->name);
        sh->shown_name = p->name;
    }
    if (p->state != sh->prog.state)
        cli_progress_state(&sh->prog, p->state);
    cli_progress_update(&sh->prog, 0);
}

static void get_item(void *arg, const char *label, int rc, const char *why)
{
    (void)arg;
    (void)rc;
    /* R-CLI-13: a message starts on a line of its own, never on the progress line. */
    cli_progress_clear();
    fprintf(stderr, "ferry: ");
    cli_print_name(stderr, label);
    fputs(": ", stderr);
    cli_print_name(stderr, why); /* R-ERR-2: the server's words, escaped */
    fputc('\n', stderr);
}

static void get_note(void *arg, const char *text)
{
    (void)arg;
    cli_err("%s", text);
}

static void get_done(void *arg, int rc)
{
    struct get_shell *sh = arg;

    sh->done = 1;
    sh->rc = rc;
}

static const struct ferry_job_ops get_ops = {
    .on_progress = get_progress,
    .on_item = get_item,
    .on_note = get_note,
    .on_done = get_done,
};

static int job_over(const struct cli_rpc *rpc, void *arg)
{
    const struct get_shell *sh = arg;

    (void)rpc;
    return sh->done;
}

/* Whether running the same command again may get further (a lost connection, not a fault). */
static int resumable(int rc)
{
    return rc < 0 && rc != FERRY_EPROTO && rc != FERRY_EAUTH && rc != FERRY_EPIN &&
           rc != FERRY_ETOOBIG && rc != FERRY_ECANCELED;
}

int cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {
        {"recursive", no_argument, NULL, 'r'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},      {"retry-for", required_argument, NULL, 1},
        {"stats", no_argument, NULL, 2},       {NULL, 0, NULL, 0},
    };
    struct get_shell sh = {.rc = 0};
    struct ferry_download_spec spec = {0};
    struct ferry_download_stats st;
    struct ferry_download *job = NULL;
    struct cli_rpc rpc;
    uint64_t retry_for_ms = 60000, v;
    int stats = 0;
    const char *dest = ".";
    struct stat dst;
    int c, rec = 0, nsrc, rc = 0, dest_dir;
    mode_t mask;

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
    mask = umask(022);
    umask(mask);
    dest_dir = stat(dest, &dst) == 0 && S_ISDIR(dst.st_mode);
    /* R-CLI-9: a re-run of an unfinished get keeps the destination its first run chose. */
    if (cli_task_dest_dir() >= 0)
        dest_dir = cli_task_dest_dir();
    else
        cli_task_set_dest_dir(dest_dir);
    if (nsrc > 1 && !dest_dir) {
        cli_err("%s is not a folder (several sources need a folder destination)", cli_esc(dest));
        return CLI_FAIL;
    }
    if (cli_state() == NULL)
        return CLI_FAIL;
    /* A server that cannot be reached yet is retried like a connection lost later. */
    if ((rc = cli_rpc_open_retrying(&rpc, retry_for_ms)) != 0)
        return cli_conn_lost(rc) ? CLI_RESUMABLE : CLI_FAIL;
    spec.srcs = (const char *const *)(argv + optind);
    spec.nsrc = nsrc;
    spec.dest = dest;
    spec.dest_dir = dest_dir;
    spec.recursive = rec;
    spec.umask = mask;
    spec.state = cli_state();
    cli_progress_init(&sh.prog, 0, 0);
    rc = ferry_download_new(rpc.hub, &rpc.loop, &spec, &get_ops, &sh, &job);
    if (rc == 0)
        rc = ferry_download_start(job);
    if (rc != 0) {
        cli_err("cannot start the download: %s", ferry_strerror(rc));
        ferry_download_free(job);
        cli_rpc_close(&rpc);
        return CLI_FAIL;
    }
    /*
     * R-CLI-13: Ctrl-C stops the job, which keeps what is durable. The end of
     * the session is the job's to report: it still places what it verified.
     */
    while (!sh.done) {
        if (!sh.interrupted && cli_rpc_run(&rpc, job_over, &sh) == -EINTR) {
            ferry_download_cancel(job);
            sh.interrupted = 1;
        } else if (!sh.done) {
            uv_run(&rpc.loop, UV_RUN_ONCE);
        }
    }
    rc = sh.rc;
    if (rc == FERRY_ECANCELED && sh.interrupted)
        rc = -EINTR;
    cli_progress_end(&sh.prog);
    ferry_download_stats(job, &st);
    if (rc != 0) {
        uint64_t lost = st.files_left;
        if (resumable(rc))
            cli_err("download interrupted (%s): %llu file%s not received; nothing partial was "
                    "left in place. Run the same command again to resume.",
                    ferry_strerror(rc), (unsigned long long)lost, lost == 1 ? "" : "s");
        else
            cli_err("download failed (%s): %llu file%s not received; nothing partial was left "
                    "in place.",
                    ferry_strerror(rc), (unsigned long long)lost, lost == 1 ? "" : "s");
    }
    ferry_download_free(job);
    cli_rpc_close(&rpc);
    if (stats) {
        uint64_t tx, rx;
        cli_wire_totals(&tx, &rx);
        printf("files: %llu received, %llu failed\n"
               "bytes: %llu in all, %llu received, %llu kept from partial files\n"
               "local: %llu taken from files already here\n"
               "wire: %llu sent, %llu received (TLS)\n",
               (unsigned long long)st.job.files_done, (unsigned long long)st.job.files_failed,
               (unsigned long long)st.job.bytes_total, (unsigned long long)st.job.bytes_moved,
               (unsigned long long)st.job.bytes_resumed, (unsigned long long)st.job.bytes_reused,
               (unsigned long long)tx, (unsigned long long)rx);
    }
    if (resumable(rc))
        return CLI_RESUMABLE;
    if (rc != 0)
        return CLI_FAIL;
    if (st.job.files_failed == 0)
        return CLI_OK;
    /* Some failed (each named above): partial if anything made it. */
    return st.job.files_done > 0 ? CLI_PARTIAL : CLI_FAIL;
}
