/* ferry: one binary, a dispatch table of subcommands. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "server/serve.h"

int cli_quiet;
const char *cli_prog = "ferry";

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
    {"mv", cmd_mv, "move or rename a remote file or folder"},
    {"resume", cmd_resume, "list and finish interrupted puts and gets"},
};

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: ferry COMMAND [options] [args]\n\n"
               "ferry moves files between machines over TLS 1.3, safely and fast.\n\n"
               "Commands:\n");
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'ferry COMMAND --help' for a command's options.\n"
               "Exit codes: 0 ok, 1 failure, 2 usage, 3 some files failed, 4 interrupted\n"
               "(run the same command again, or 'ferry resume').\n");
}

int main(int argc, char **argv)
{
    size_t i;

    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        fprintf(stderr, "ferry: cannot initialise libsodium\n");
        return CLI_FAIL;
    }
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("ferry %s (protocol %d)\n", FERRY_VERSION_STR, FERRY_PROTO_VERSION);
        return CLI_OK;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        int rc, j, help = 0;

        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (commands[i].fn != cmd_put && commands[i].fn != cmd_get)
            return commands[i].fn(argc - 1, argv + 1);
        for (j = 2; j < argc; j++)
            help |= strcmp(argv[j], "-h") == 0 || strcmp(argv[j], "--help") == 0;
        /* Transfers are tasks: what does not finish is left for `ferry resume`. */
        if (!help)
            cli_task_begin(argc - 1, argv + 1);
        rc = commands[i].fn(argc - 1, argv + 1);
        if (!help)
            cli_task_end(rc);
        return rc;
    }
    fprintf(stderr, "ferry: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
