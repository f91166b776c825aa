/* ferry: one binary, a dispatch table of subcommands. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "server/serve.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"serve", ferry_serve_main, "run a server"},
    {"signup", cmd_signup, "create an account on a server and log in"},
    {"login", cmd_login, "log this device in to a server"},
    {"passwd", cmd_passwd, "change your password (logs out your other devices)"},
    {"logout", cmd_logout, "end this device's session (--all: every device's)"},
    {"whoami", cmd_whoami, "show the server, user, device and session in use"},
    {"devices", cmd_devices, "list your account's devices, or revoke one"},
    {"put", cmd_put, "upload files and folders"},
    {"get", cmd_get, "download files and folders"},
    {"ls", cmd_ls, "list a remote folder"},
    {"rm", cmd_rm, "remove remote files or folders"},
    {"mv", cmd_mv, "move or rename remote files and folders"},
    {"resume", cmd_resume, "list and finish interrupted puts and gets"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: ferry COMMAND [options] [args]\n"
               "       ferry help COMMAND | -h | --help | -V | --version\n\n"
               "ferry moves files between machines over TLS 1.3, safely and fast.\n\n"
               "Commands:\n");
    for (i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nOptions:\n"
               "  -h, --help     this help; 'ferry help COMMAND' or 'ferry COMMAND --help'\n"
               "                 shows a command's options\n"
               "  -V, --version  ferry's version and its protocol's\n"
               "\nExit codes: 0 ok, 1 failure, 2 usage, 3 some files failed, 4 interrupted\n"
               "(the connection was lost, or Ctrl-C: run the same command again, or\n"
               "'ferry resume', to continue).\n");
}

/*
 * R-CLI-13: Ctrl-C during a put or get stops it cleanly: what is durable
 * stays (a re-run goes on from there), the task stays on the list, and the
 * command says how to continue and exits 4. A second Ctrl-C ends it at once.
 */
static void on_sigint(int sig)
{
    (void)sig;
    cli_interrupted = 1;
    signal(SIGINT, SIG_DFL);
}

static int run_transfer(int (*fn)(int, char **), int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = on_sigint};
    int rc, j, help = 0;

    for (j = 1; j < argc; j++)
        help |= strcmp(argv[j], "-h") == 0 || strcmp(argv[j], "--help") == 0;
    if (help)
        return fn(argc, argv);
    /* No SA_RESTART: a blocked poll or sleep returns, and the loops see the flag. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    /* Transfers are tasks: what does not finish is left for `ferry resume`. */
    cli_task_begin(argc, argv);
    rc = fn(argc, argv);
    if (cli_interrupted && rc == CLI_RESUMABLE)
        cli_err("interrupted: run the same command again, or 'ferry resume', to continue "
                "from where it stopped");
    cli_task_end(rc);
    return rc;
}

/* `ferry resume` runs its tasks in this process, through the same wrapper as a command line. */
static int run_task_line(int argc, char **argv)
{
    if (strcmp(argv[0], "put") == 0)
        return run_transfer(cmd_put, argc, argv);
    if (strcmp(argv[0], "get") == 0)
        return run_transfer(cmd_get, argc, argv);
    return CLI_FAIL; /* only the two resumable commands are ever recorded */
}

static int run(int argc, char **argv)
{
    size_t i;

    cli_task_runner = run_task_line;

    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        (strcmp(argv[1], "help") == 0 && argc == 2)) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0 ||
        strcmp(argv[1], "version") == 0) {
        printf("ferry %s (protocol %d, messages %s)\n", FERRY_VERSION_STR, FERRY_PROTO_VERSION,
               FERRY_MSG_VERSION);
        return CLI_OK;
    }
    if (strcmp(argv[1], "help") == 0) {
        /* ferry help COMMAND: the command's own --help. */
        char *args[] = {argv[2], "--help", NULL};

        if (argc > 3) {
            usage(stderr);
            return CLI_USAGE;
        }
        for (i = 0; i < NCOMMANDS; i++)
            if (strcmp(argv[2], commands[i].name) == 0)
                return commands[i].fn(2, args);
        fprintf(stderr, "ferry: no command '%s'\n\n", cli_esc(argv[2]));
        usage(stderr);
        return CLI_USAGE;
    }
    for (i = 0; i < NCOMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (commands[i].fn == cmd_put || commands[i].fn == cmd_get)
            return run_transfer(commands[i].fn, argc - 1, argv + 1);
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "ferry: unknown command '%s'\n\n", cli_esc(argv[1]));
    usage(stderr);
    return CLI_USAGE;
}

int main(int argc, char **argv)
{
    int rc;

    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        fprintf(stderr, "ferry: cannot initialise libsodium\n");
        return CLI_FAIL;
    }
    rc = run(argc, argv);
    /* The state store was opened once for the whole command (cli_state_db). */
    cli_state_close();
    return rc;
}
