/*
 * ferry serve user|device: accounts and devices administered on the data
 * directory itself, safe while a server runs on it (R-ADMIN-4..6).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "admin.h"
#include "config.h"
#include "server.h"

/* R-ADMIN-4: how long a change waits for the running server's writer. */
#define ADMIN_BUSY_MS 30000
/* Room for a password line: the longest accepted (R-AUTH-2) plus a margin to detect more. */
#define ADMIN_PW_BUF (SRV_PASSWORD_MAX + 64)

static const char user_usage[] =
    "usage: ferry serve user add NAME [--password-stdin] [--data DIR | --config FILE]\n"
    "       ferry serve user list [--data DIR | --config FILE]\n"
    "       ferry serve user disable NAME [--data DIR | --config FILE]\n"
    "       ferry serve user enable NAME [--data DIR | --config FILE]\n"
    "       ferry serve user passwd NAME [--password-stdin] [--data DIR | --config FILE]\n"
    "\n"
    "Administers the accounts of a ferry data directory, also while ferry serve runs\n"
    "on it. Run it as the user the server runs as (for example sudo -u ferry ...).\n"
    "\n"
    "  add NAME           create an account (the password is asked twice)\n"
    "  list               list the accounts: state, devices, sessions, bytes stored\n"
    "  disable NAME       end the account's sessions and refuse its logins; its files stay\n"
    "  enable NAME        let a disabled account log in again\n"
    "  passwd NAME        set a new password; ends every session of the account\n"
    "\n"
    "  --data DIR         the data directory (default $XDG_DATA_HOME/ferry)\n"
    "  --config FILE      take the data directory from ferry serve's config file\n"
    "  --password-stdin   read the password from the first line of standard input\n"
    "\n"
    "A running server closes the connections of ended sessions within a second.\n";

static const char device_usage[] =
    "usage: ferry serve device list [USER] [--data DIR | --config FILE]\n"
    "       ferry serve device revoke USER DEVICE [--data DIR | --config FILE]\n"
    "\n"
    "Administers the devices that log in to a ferry data directory, also while\n"
    "ferry serve runs on it. Run it as the user the server runs as.\n"
    "\n"
    "  list [USER]          the devices of USER (or of every user), most recently seen\n"
    "                       first: whether each holds a session, when it was last seen\n"
    "  revoke USER DEVICE   end the session of USER's DEVICE (its ID, or its name if no\n"
    "                       other device of USER has it) and forget the device; it may\n"
    "                       log in again with the password\n"
    "\n"
    "  --data DIR           the data directory (default $XDG_DATA_HOME/ferry)\n"
    "  --config FILE        take the data directory from ferry serve's config file\n"
    "\n"
    "A running server closes the connections of ended sessions within a second.\n";

struct admin {
    int is_user;
    int pw_stdin;
    const char *verb;
    char **args;
    int nargs;
    char data[4096];
    struct ferry_meta *m;
};

static void when(int64_t ns, char *out, size_t cap)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;

    if (ns <= 0 || localtime_r(&t, &tm) == NULL || strftime(out, cap, "%Y-%m-%d %H:%M", &tm) == 0)
        snprintf(out, cap, "-");
}

static void human(int64_t v, char *out, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    int u = 0;

    while (d >= 1024 && u < 5) {
        d /= 1024;
        u++;
    }
    snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", d, units[u]);
}

/* R-ADMIN-4: only the data directory's owner, so no file of the server changes hands. */
static int open_db(struct admin *a, int create)
{
    char path[4200];
    struct stat st;
    int fd, rc;

    if (stat(a->data, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "ferry serve: no data directory %s (give --data DIR or --config FILE)\n",
                a->data);
        return FERRY_ENOTFOUND;
    }
    if (st.st_uid != geteuid()) {
        struct passwd *pw = getpwuid(st.st_uid);
        fprintf(stderr,
                "ferry serve: %s belongs to %s, not to you: run this as its owner"
                " (sudo -u %s ferry serve ...)\n",
                a->data, pw != NULL ? pw->pw_name : "another user",
                pw != NULL ? pw->pw_name : "OWNER");
        return FERRY_EDENIED;
    }
    snprintf(path, sizeof(path), "%s/ferry.db", a->data);
    /* R-ADMIN-1: made 0600 before SQLite sees it, as the server does. */
    fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
        if (errno == ENOENT)
            fprintf(stderr, "ferry serve: no ferry database in %s (is it the data directory?)\n",
                    a->data);
        else
            fprintf(stderr, "ferry serve: cannot open %s: %s\n", path, strerror(errno));
        return -errno;
    }
    close(fd);
    if ((rc = ferry_meta_open(path, 0, &a->m)) != 0) {
        fprintf(stderr, "ferry serve: database %s: %s\n", path, ferry_strerror(rc));
        return rc;
    }
    ferry_meta_busy_timeout(a->m, ADMIN_BUSY_MS);
    if ((rc = ferry_meta_admin_init(a->m)) != 0)
        fprintf(stderr, "ferry serve: database %s: %s\n", path, ferry_strerror(rc));
    return rc;
}

/* One password line (R-AUTH-2), with the CLI's words for what went wrong. */
static int read_password(const char *prompt, int from_stdin, char *buf, size_t cap)
{
    int rc = ferry_read_password(prompt, from_stdin, buf, cap);

    if (rc == -ENOTTY)
        fprintf(stderr, "ferry serve: no terminal to ask for the password; use --password-stdin\n");
    else if (rc != 0)
        fprintf(stderr, "ferry serve: empty password\n");
    return rc == 0 ? 0 : FERRY_EUSAGE;
}

/* A new password, from the terminal (asked twice) or one line of stdin (R-AUTH-2). */
static int read_new_password(const struct admin *a, char *pw, size_t cap)
{
    char again[ADMIN_PW_BUF];
    size_t n;
    int rc = FERRY_EUSAGE;

    if (read_password("New password: ", a->pw_stdin, pw, cap) != 0)
        return FERRY_EUSAGE;
    n = strlen(pw);
    if (n < SRV_PASSWORD_MIN || n > SRV_PASSWORD_MAX) {
        fprintf(stderr, "ferry serve: a password has %d to %d bytes\n", SRV_PASSWORD_MIN,
                SRV_PASSWORD_MAX);
        goto out;
    }
    if (!a->pw_stdin) {
        if (read_password("Repeat password: ", 0, again, sizeof(again)) != 0)
            goto out;
        if (strcmp(pw, again) != 0) {
            fprintf(stderr, "ferry serve: the passwords do not match\n");
            goto out;
        }
    }
    rc = 0;
out:
    sodium_memzero(again, sizeof(again));
    if (rc != 0)
        sodium_memzero(pw, cap);
    return rc;
}

/* R-AUTH-3: the same Argon2id parameters as the server's own hashing. */
static int hash_password(const char *pw, size_t len, char out[static crypto_pwhash_STRBYTES])
{
    if (crypto_pwhash_str(out, pw, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        fprintf(stderr, "ferry serve: out of memory while hashing the password\n");
        return -ENOMEM;
    }
    return 0;
}

/* Looks NAME up; prints why not. */
static int find_user(struct admin *a, const char *name, int64_t *uid)
{
    char pwhash[crypto_pwhash_STRBYTES];
    int rc;

    if (!srv_user_name_valid(name)) {
        fprintf(stderr,
                "ferry serve: '%.100s' is not a user name (1-64 of a-z 0-9 . _ -, starting with"
                " a letter or digit)\n",
                name);
        return FERRY_EUSAGE;
    }
    rc = ferry_meta_user_get(a->m, name, uid, pwhash, sizeof(pwhash));
    sodium_memzero(pwhash, sizeof(pwhash));
    if (rc == FERRY_ENOTFOUND)
        fprintf(stderr, "ferry serve: no user %s in %s\n", name, a->data);
    else if (rc != 0)
        fprintf(stderr, "ferry serve: database: %s\n", ferry_strerror(rc));
    return rc;
}

/* Ends the transaction: commits unless rc < 0, and returns rc or the commit's failure. */
static int finish(struct admin *a, int rc)
{
    int crc;

    if (rc < 0) {
        ferry_meta_rollback(a->m);
        return rc;
    }
    if ((crc = ferry_meta_commit(a->m)) != 0) {
        fprintf(stderr, "ferry serve: cannot commit: %s\n", ferry_strerror(crc));
        ferry_meta_rollback(a->m);
        return crc;
    }
    return rc;
}

static int begin(struct admin *a)
{
    int rc = ferry_meta_begin(a->m);

    if (rc != 0)
        fprintf(stderr, "ferry serve: cannot start a transaction: %s\n", ferry_strerror(rc));
    return rc;
}

static int user_add(struct admin *a)
{
    const char *name = a->args[0];
    char pw[ADMIN_PW_BUF], hash[crypto_pwhash_STRBYTES];
    int64_t uid = 0;
    int rc;

    if (!srv_user_name_valid(name)) {
        fprintf(stderr,
                "ferry serve: '%.100s' is not a user name (1-64 of a-z 0-9 . _ -, starting with"
                " a letter or digit)\n",
                name);
        return FERRY_EUSAGE;
    }
    if ((rc = read_new_password(a, pw, sizeof(pw))) != 0)
        return rc;
    /* Hashed before the transaction: the server's writer never waits for Argon2id. */
    rc = hash_password(pw, strlen(pw), hash);
    sodium_memzero(pw, sizeof(pw));
    if (rc != 0 || (rc = open_db(a, 1)) != 0 || (rc = begin(a)) != 0)
        goto out;
    rc = ferry_meta_user_create(a->m, name, hash, ferry_wall_ns(), &uid);
    if (rc == FERRY_EEXIST)
        fprintf(stderr, "ferry serve: user %s exists already\n", name);
    else if (rc != 0)
        fprintf(stderr, "ferry serve: cannot create %s: %s\n", name, ferry_strerror(rc));
    if ((rc = finish(a, rc)) == 0)
        printf("user %s added\n", name);
out:
    sodium_memzero(hash, sizeof(hash));
    return rc;
}

static int print_user(void *arg, const struct ferry_user_info *u)
{
    char created[32], used[32];

    (void)arg;
    when(u->created, created, sizeof(created));
    human(u->used, used, sizeof(used));
    printf("%-20s %-8s %7d %8d %10s  %s\n", u->name, u->disabled ? "disabled" : "enabled",
           u->devices, u->sessions, used, created);
    return 0;
}

static int user_list(struct admin *a)
{
    int rc;

    if ((rc = open_db(a, 0)) != 0)
        return rc;
    printf("%-20s %-8s %7s %8s %10s  %s\n", "USER", "STATE", "DEVICES", "SESSIONS", "USED",
           "CREATED");
    if ((rc = ferry_meta_users_list(a->m, print_user, NULL)) != 0)
        fprintf(stderr, "ferry serve: database: %s\n", ferry_strerror(rc));
    return rc;
}

/* R-ADMIN-5: the stand-in hash is of a secret nobody ever sees. */
static int user_disable(struct admin *a)
{
    const char *name = a->args[0];
    char hash[crypto_pwhash_STRBYTES];
    uint8_t secret[32];
    int64_t uid;
    int rc;

    ferry_random(secret, sizeof(secret));
    rc = hash_password((const char *)secret, sizeof(secret), hash);
    sodium_memzero(secret, sizeof(secret));
    if (rc != 0 || (rc = open_db(a, 0)) != 0 || (rc = begin(a)) != 0)
        return rc;
    if ((rc = find_user(a, name, &uid)) == 0)
        rc = ferry_meta_user_disable(a->m, uid, hash, ferry_wall_ns());
    if (rc < 0 && rc != FERRY_ENOTFOUND && rc != FERRY_EUSAGE)
        fprintf(stderr, "ferry serve: cannot disable %s: %s\n", name, ferry_strerror(rc));
    if ((rc = finish(a, rc)) == 1)
        printf("user %s was disabled already\n", name);
    else if (rc == 0)
        printf("user %s disabled: its sessions ended, its logins are refused\n", name);
    return rc < 0 ? rc : 0;
}

static int user_enable(struct admin *a)
{
    const char *name = a->args[0];
    int64_t uid;
    int rc;

    if ((rc = open_db(a, 0)) != 0 || (rc = begin(a)) != 0)
        return rc;
    if ((rc = find_user(a, name, &uid)) == 0)
        rc = ferry_meta_user_enable(a->m, uid);
    if (rc < 0 && rc != FERRY_ENOTFOUND && rc != FERRY_EUSAGE)
        fprintf(stderr, "ferry serve: cannot enable %s: %s\n", name, ferry_strerror(rc));
    if ((rc = finish(a, rc)) == 1)
        printf("user %s was not disabled\n", name);
    else if (rc == 0)
        printf("user %s enabled\n", name);
    return rc < 0 ? rc : 0;
}

static int user_passwd(struct admin *a)
{
    const char *name = a->args[0];
    char pw[ADMIN_PW_BUF], hash[crypto_pwhash_STRBYTES];
    int64_t uid;
    int rc, disabled = 0;

    /* Checked before the prompt, so a typo does not cost a password. */
    if ((rc = open_db(a, 0)) != 0 || (rc = find_user(a, name, &uid)) != 0)
        return rc;
    if ((rc = read_new_password(a, pw, sizeof(pw))) != 0)
        return rc;
    rc = hash_password(pw, strlen(pw), hash);
    sodium_memzero(pw, sizeof(pw));
    if (rc != 0 || (rc = begin(a)) != 0)
        goto out;
    /* Looked up again inside the transaction: the name is the user's, not a row id's. */
    if ((rc = find_user(a, name, &uid)) == 0 &&
        (rc = disabled = ferry_meta_user_disabled(a->m, uid)) >= 0)
        rc = ferry_meta_user_passwd(a->m, uid, hash);
    if (rc < 0 && rc != FERRY_ENOTFOUND)
        fprintf(stderr, "ferry serve: cannot set the password of %s: %s\n", name,
                ferry_strerror(rc));
    if ((rc = finish(a, rc)) == 0)
        printf("password of %s changed; its sessions ended%s\n", name,
               disabled == 1 ? " (the user stays disabled)" : "");
out:
    sodium_memzero(hash, sizeof(hash));
    return rc;
}

static int print_device(void *arg, const struct ferry_device_info *d)
{
    char seen[32], name[4 * FERRY_PATH_MAX + 64];

    (void)arg;
    when(d->last_seen, seen, sizeof(seen));
    /* A device names itself: escaped, like every name the CLI prints (R-CLI-1). */
    ferry_escape(d->name, strlen(d->name), 0, name, sizeof(name));
    printf("%-20s %-7s %-16s  %s  %s\n", d->user, d->session ? "yes" : "no", seen, d->id, name);
    return 0;
}

static int device_list(struct admin *a)
{
    int64_t uid = 0;
    int rc;

    if ((rc = open_db(a, 0)) != 0)
        return rc;
    if (a->nargs == 1 && (rc = find_user(a, a->args[0], &uid)) != 0)
        return rc;
    printf("%-20s %-7s %-16s  %-52s  %s\n", "USER", "SESSION", "LAST-SEEN", "DEVICE", "NAME");
    if ((rc = ferry_meta_devices_list(a->m, uid, 0, print_device, NULL)) != 0)
        fprintf(stderr, "ferry serve: database: %s\n", ferry_strerror(rc));
    return rc;
}

struct match {
    const char *want; /* an ID (any case) or a name */
    char id[FERRY_ID_LEN + 1];
    int by_id;
    int by_name;
};

static int match_device(void *arg, const struct ferry_device_info *d)
{
    struct match *mt = arg;

    if (strcasecmp(d->id, mt->want) == 0) {
        snprintf(mt->id, sizeof(mt->id), "%s", d->id);
        mt->by_id++;
    } else if (strcmp(d->name, mt->want) == 0) {
        if (mt->by_id == 0)
            snprintf(mt->id, sizeof(mt->id), "%s", d->id);
        mt->by_name++;
    }
    return 0;
}

static int device_revoke(struct admin *a)
{
    const char *name = a->args[0];
    struct match mt = {.want = a->args[1]};
    int64_t uid;
    int rc;

    if ((rc = open_db(a, 0)) != 0 || (rc = begin(a)) != 0)
        return rc;
    if ((rc = find_user(a, name, &uid)) != 0)
        return finish(a, rc);
    if ((rc = ferry_meta_devices_list(a->m, uid, 0, match_device, &mt)) != 0) {
        fprintf(stderr, "ferry serve: database: %s\n", ferry_strerror(rc));
        return finish(a, rc);
    }
    if (mt.by_id == 0 && mt.by_name > 1) {
        fprintf(stderr, "ferry serve: %s has %d devices named '%s': give the device's ID\n", name,
                mt.by_name, mt.want);
        return finish(a, FERRY_EUSAGE);
    }
    if (mt.by_id == 0 && mt.by_name == 0) {
        fprintf(stderr, "ferry serve: %s has no device '%s' (see ferry serve device list %s)\n",
                name, mt.want, name);
        return finish(a, FERRY_ENOTFOUND);
    }
    if ((rc = ferry_meta_device_revoke(a->m, uid, mt.id)) != 0)
        fprintf(stderr, "ferry serve: cannot revoke %s: %s\n", mt.id, ferry_strerror(rc));
    if ((rc = finish(a, rc)) == 0)
        printf("device %s of %s revoked: its session ended\n", mt.id, name);
    return rc;
}

/* Where the data is: --data, else --config's data key, else the server's default. */
static int data_dir(struct admin *a, const char *data, const char *config)
{
    unsigned char given[SRV_OPTS_MAX] = {0};
    struct srv_config cfg;

    srv_config_defaults(&cfg);
    if (config != NULL && srv_config_load(srv_opts, srv_nopts, config, &cfg, given) != 0)
        return FERRY_EUSAGE;
    if (data != NULL)
        snprintf(a->data, sizeof(a->data), "%s", data);
    else if (cfg.data[0] != '\0')
        snprintf(a->data, sizeof(a->data), "%s", cfg.data);
    else if (ferry_xdg_dir("XDG_DATA_HOME", ".local/share", a->data, sizeof(a->data)) != 0) {
        fprintf(stderr, "ferry serve: no --data given and no HOME to default to\n");
        return FERRY_EUSAGE;
    }
    return 0;
}

/* The verb and how many arguments it takes (min, max). */
static int verb_ok(const struct admin *a)
{
    static const struct {
        int user;
        const char *verb;
        int min, max;
    } verbs[] = {
        {1, "add", 1, 1},    {1, "list", 0, 0}, {1, "disable", 1, 1}, {1, "enable", 1, 1},
        {1, "passwd", 1, 1}, {0, "list", 0, 1}, {0, "revoke", 2, 2},
    };
    size_t i;

    for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (verbs[i].user == a->is_user && strcmp(verbs[i].verb, a->verb) == 0)
            return a->nargs >= verbs[i].min && a->nargs <= verbs[i].max;
    return 0;
}

int srv_admin_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"password-stdin", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct admin a = {.is_user = strcmp(argv[0], "user") == 0};
    const char *usage = a.is_user ? user_usage : device_usage;
    const char *data = NULL, *config = NULL;
    int c, rc;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            data = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'p':
            a.pw_stdin = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case ':':
            fprintf(stderr, "ferry serve %s: %s needs a value\n", argv[0], argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "ferry serve %s: unknown option '%s'; see 'ferry serve %s --help'\n",
                    argv[0], argv[optind - 1], argv[0]);
            return 2;
        }
    }
    if (optind >= argc) {
        fputs(usage, stderr);
        return 2;
    }
    a.verb = argv[optind];
    a.args = argv + optind + 1;
    a.nargs = argc - optind - 1;
    if (!verb_ok(&a)) {
        fprintf(stderr,
                "ferry serve %s: '%s' with %d argument%s is not a command; see"
                " 'ferry serve %s --help'\n",
                argv[0], a.verb, a.nargs, a.nargs == 1 ? "" : "s", argv[0]);
        return 2;
    }
    if (data_dir(&a, data, config) != 0)
        return 2;
    /* R-ADMIN-1: the database files this may create are the owner's alone. */
    umask(077);
    if (strcmp(a.verb, "add") == 0)
        rc = user_add(&a);
    else if (strcmp(a.verb, "disable") == 0)
        rc = user_disable(&a);
    else if (strcmp(a.verb, "enable") == 0)
        rc = user_enable(&a);
    else if (strcmp(a.verb, "passwd") == 0)
        rc = user_passwd(&a);
    else if (strcmp(a.verb, "revoke") == 0)
        rc = device_revoke(&a);
    else if (a.is_user)
        rc = user_list(&a);
    else
        rc = device_list(&a);
    ferry_meta_close(a.m);
    return rc == 0 ? 0 : rc == FERRY_EUSAGE ? 2 : 1;
}
