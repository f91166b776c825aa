/* ferry whoami | devices: this device's session and the account's devices (R-ADMIN-7..10). */
#include <getopt.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"

/* R-ADMIN-10: the first protocol minor version that has these messages. */
#define CLI_ADMIN_MINOR 2

static void print_when(int64_t ns)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    char buf[32];

    if (ns <= 0 || localtime_r(&t, &tm) == NULL ||
        strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M", &tm) == 0)
        fputs("-", stdout);
    else
        fputs(buf, stdout);
}

/* An age in the largest unit that fits, as "3 d 4 h" or "12 min". */
static void print_age(int64_t ns)
{
    int64_t s = ns > 0 ? ns / 1000000000 : 0;

    if (s >= 86400)
        printf("%lld d %lld h", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    else if (s >= 3600)
        printf("%lld h %lld min", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else if (s >= 60)
        printf("%lld min", (long long)(s / 60));
    else
        printf("%lld s", (long long)s);
}

static int too_old(const struct cli_rpc *cc, const char *what)
{
    cli_err("the server at %s speaks protocol 1.%d; %s needs 1.%d (a newer ferry serve)",
            cc->r.addr, cc->minor, what, CLI_ADMIN_MINOR);
    return CLI_FAIL;
}

int cmd_whoami(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cli_rpc cc;
    struct ferry_cmd reply;
    const char *s;
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("usage: ferry whoami\n\n"
                   "Shows the server this device is logged in to, its identity, the user,\n"
                   "this device's ID and name, and how old its session is.\n");
            return CLI_OK;
        }
        fprintf(stderr, "usage: ferry whoami\n");
        return CLI_USAGE;
    }
    if (optind != argc) {
        fprintf(stderr, "usage: ferry whoami\n");
        return CLI_USAGE;
    }
    if (cli_rpc_open_session(&cc) != 0)
        return CLI_FAIL;
    printf("server   %s\nid       %s\n", cc.r.addr, cc.r.server_id);
    if (cc.minor < CLI_ADMIN_MINOR) {
        printf("user     %s\ndevice   %s (this server does not report more)\n", cc.r.user,
               cc.id.id);
        cli_rpc_close(&cc);
        return CLI_OK;
    }
    cc.verbose_errors = 1;
    rc = cli_rpc_call(&cc, FERRY_MSG_WHOAMI, json_object(), &reply);
    if (rc == 0) {
        int64_t created = json_integer_value(json_object_get(reply.body, "session_created"));
        int64_t now = json_integer_value(json_object_get(reply.body, "now"));

        s = json_string_value(json_object_get(reply.body, "user"));
        fputs("user     ", stdout);
        cli_print_name(stdout, s != NULL ? s : "?");
        printf("\ndevice   %s", cc.id.id);
        s = json_string_value(json_object_get(reply.body, "device_name"));
        if (s != NULL && s[0] != '\0') {
            fputs(" (", stdout);
            cli_print_name(stdout, s);
            putchar(')');
        }
        fputs("\nsession  ", stdout);
        /* R-ADMIN-7: the age by the server's clock, not ours. */
        print_age(now - created);
        fputs(" old, since ", stdout);
        print_when(created);
        putchar('\n');
        ferry_cmd_cleanup(&reply);
    }
    cli_rpc_close(&cc);
    return rc == 0 ? CLI_OK : CLI_FAIL;
}

/* Fetches the Devices reply (R-ADMIN-8). */
static int fetch_devices(struct cli_rpc *cc, struct ferry_cmd *reply)
{
    json_t *arr;
    int rc;

    if ((rc = cli_rpc_call(cc, FERRY_MSG_DEVICE_LIST, json_object(), reply)) != 0)
        return rc;
    arr = json_object_get(reply->body, "devices");
    /* A server that breaks the cap is not believed (R-ADMIN-8). */
    if (!json_is_array(arr) || json_array_size(arr) > FERRY_DEVICES_MAX) {
        cli_err("the server sent a malformed device list");
        ferry_cmd_cleanup(reply);
        return FERRY_EPROTO;
    }
    return 0;
}

static void list_devices(const struct ferry_cmd *reply)
{
    json_t *arr = json_object_get(reply->body, "devices"), *e;
    json_int_t total = json_integer_value(json_object_get(reply->body, "total"));
    size_t i;

    printf("  %-52s  %-7s  %-16s  %s\n", "DEVICE", "SESSION", "LAST-SEEN", "NAME");
    json_array_foreach(arr, i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        const char *name = json_string_value(json_object_get(e, "name"));

        printf("%c ", json_is_true(json_object_get(e, "current")) ? '*' : ' ');
        cli_print_name(stdout, id != NULL ? id : "?");
        printf("  %-7s  ", json_is_true(json_object_get(e, "session")) ? "yes" : "no");
        print_when(json_integer_value(json_object_get(e, "last_seen")));
        fputs("  ", stdout);
        cli_print_name(stdout, name != NULL ? name : "");
        putchar('\n');
    }
    if (total > (json_int_t)json_array_size(arr))
        printf("(%lld more, seen longer ago)\n",
               (long long)(total - (json_int_t)json_array_size(arr)));
    printf("* this device\n");
}

/* A device ID (any case) or a name that only one device has, from the list. */
static int resolve_device(const struct ferry_cmd *reply, const char *want, char *id, size_t cap)
{
    json_t *arr = json_object_get(reply->body, "devices"), *e;
    int by_name = 0;
    size_t i;

    json_array_foreach(arr, i, e)
    {
        const char *eid = json_string_value(json_object_get(e, "id"));
        const char *name = json_string_value(json_object_get(e, "name"));

        if (eid == NULL)
            continue;
        if (strcasecmp(eid, want) == 0) {
            snprintf(id, cap, "%s", eid);
            return 0;
        }
        if (name != NULL && strcmp(name, want) == 0 && by_name++ == 0)
            snprintf(id, cap, "%s", eid);
    }
    if (by_name == 1)
        return 0;
    if (by_name > 1)
        cli_err("%d devices are named '%s': give the device's ID (ferry devices)", by_name, want);
    else if (strlen(want) == FERRY_ID_LEN) {
        /* Not among those listed (R-ADMIN-8 lists 64): the server knows. */
        for (i = 0; i < FERRY_ID_LEN; i++)
            id[i] = (char)(want[i] >= 'a' && want[i] <= 'z' ? want[i] - 'a' + 'A' : want[i]);
        id[FERRY_ID_LEN] = '\0';
        return 0;
    } else
        cli_err("no device '%s' (ferry devices lists them)", want);
    return FERRY_ENOTFOUND;
}

int cmd_devices(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char usage[] = "usage: ferry devices [revoke ID|NAME]\n";
    char id[FERRY_ID_LEN + 1];
    struct cli_rpc cc;
    struct ferry_cmd reply, ok;
    int c, rc, revoke = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            printf("%s\n"
                   "Lists the devices of your account: the ID, whether it is logged in,\n"
                   "when it last logged in, and its name; * marks this device.\n"
                   "  revoke ID|NAME   log that device out and forget it (by its ID, or by\n"
                   "                   its name if no other device has it); it can log in\n"
                   "                   again with the password. This device logs out with\n"
                   "                   ferry logout.\n",
                   usage);
            return CLI_OK;
        }
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    if (optind < argc && strcmp(argv[optind], "revoke") == 0 && argc - optind == 2)
        revoke = 1;
    else if (optind != argc) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    if (cli_rpc_open_session(&cc) != 0)
        return CLI_FAIL;
    if (cc.minor < CLI_ADMIN_MINOR) {
        rc = too_old(&cc, "ferry devices");
        cli_rpc_close(&cc);
        return rc;
    }
    cc.verbose_errors = 1;
    if ((rc = fetch_devices(&cc, &reply)) != 0)
        goto out;
    if (!revoke) {
        list_devices(&reply);
        ferry_cmd_cleanup(&reply);
        goto out;
    }
    rc = resolve_device(&reply, argv[optind + 1], id, sizeof(id));
    ferry_cmd_cleanup(&reply);
    if (rc != 0)
        goto out;
    if (strcmp(id, cc.id.id) == 0) {
        cli_err("that is this device: log it out with ferry logout");
        rc = FERRY_EDENIED;
        goto out;
    }
    if ((rc = cli_rpc_call(&cc, FERRY_MSG_DEVICE_REVOKE, json_pack("{s:s}", "device", id), &ok)) ==
        0) {
        ferry_cmd_cleanup(&ok);
        if (!cli_quiet)
            printf("device %s revoked: it is logged out\n", id);
    }
out:
    cli_rpc_close(&cc);
    return rc == 0 ? CLI_OK : CLI_FAIL;
}
