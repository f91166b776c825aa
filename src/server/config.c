/*
 * ferry serve: reads options from the command line and from a config file
 * through one table (R-CONF), and says in one line what was wrong.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "serve.h"

/* Option values used for the entries getopt knows that are not in the table. */
#define OPT_VAL_BASE   256
#define OPT_VAL_CONFIG 1
#define OPT_VAL_HELP   'h'

int srv_opt_find(const struct srv_opt *opts, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* A size for humans: 1M rather than 1048576 when it is a whole number of units. */
static void size_text(uint64_t v, char *out, size_t cap)
{
    static const char units[] = "KMGT";
    int u = -1;

    while (u < 3 && v != 0 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    if (u < 0)
        snprintf(out, cap, "%llu", (unsigned long long)v);
    else
        snprintf(out, cap, "%llu%c", (unsigned long long)v, units[u]);
}

/* What an option accepts, to end the error line (R-CONF-3, R-CONF-4). */
static void form_text(const struct srv_opt *o, int in_file, char *out, size_t cap)
{
    char lo[32];

    switch (o->kind) {
    case SRV_OPT_SECS:
        snprintf(out, cap, "whole seconds from %llu to %llu", (unsigned long long)o->min,
                 (unsigned long long)o->max);
        break;
    case SRV_OPT_COUNT:
        snprintf(out, cap, "a whole number from %llu to %llu", (unsigned long long)o->min,
                 (unsigned long long)o->max);
        break;
    case SRV_OPT_SIZE:
        size_text(o->min, lo, sizeof(lo));
        snprintf(out, cap,
                 "a size in bytes, or with a K, M, G or T suffix (powers of 1024), "
                 "of at least %s",
                 lo);
        break;
    case SRV_OPT_PATH:
        snprintf(out, cap, "a path of 1 to %zu bytes", o->size - 1);
        break;
    case SRV_OPT_HOSTPORT:
        snprintf(out, cap, "HOST:PORT, such as 127.0.0.1:7070 or [::1]:7070 (port 0 picks one)");
        break;
    case SRV_OPT_SIGNUP:
        snprintf(out, cap, "open or closed");
        break;
    case SRV_OPT_FLAG:
        snprintf(out, cap, in_file ? "yes or no" : "no value");
        break;
    }
}

/* Digits only: strtoull alone would take "-5", " 5" and "+5". */
static int parse_number(const char *s, uint64_t *out)
{
    unsigned long long v;
    char *end;

    if (*s < '0' || *s > '9')
        return FERRY_EUSAGE;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return FERRY_EUSAGE;
    *out = v;
    return 0;
}

static void store(struct srv_config *cfg, const struct srv_opt *o, uint64_t v)
{
    char *p = (char *)cfg + o->off;

    if (o->size == sizeof(int)) {
        int iv = (int)v;
        memcpy(p, &iv, sizeof(iv));
    } else {
        /* 64-bit fields, signed or not: every value stored here is <= INT64_MAX. */
        memcpy(p, &v, sizeof(v));
    }
}

/* Sets one option from its text; 0 or FERRY_EUSAGE. */
static int apply(const struct srv_opt *o, const char *val, int in_file, struct srv_config *cfg)
{
    uint64_t v = 0;

    switch (o->kind) {
    case SRV_OPT_SECS:
    case SRV_OPT_COUNT:
    case SRV_OPT_SIZE:
        if ((o->kind == SRV_OPT_SIZE ? ferry_parse_size(val, &v) : parse_number(val, &v)) != 0 ||
            v < o->min || v > o->max)
            return FERRY_EUSAGE;
        /* The ranges keep v * scale far below 2^63; sizes stop there. */
        if (o->scale > 1)
            v *= o->scale;
        store(cfg, o, v > INT64_MAX ? INT64_MAX : v);
        return 0;
    case SRV_OPT_PATH:
        if (val[0] == '\0' || strlen(val) >= o->size)
            return FERRY_EUSAGE;
        memcpy((char *)cfg + o->off, val, strlen(val) + 1);
        return 0;
    case SRV_OPT_HOSTPORT:
        return ferry_split_hostport(val, cfg->host, sizeof(cfg->host), cfg->port,
                                    sizeof(cfg->port)) == 0
                   ? 0
                   : FERRY_EUSAGE;
    case SRV_OPT_SIGNUP:
        if (strcmp(val, "open") == 0)
            store(cfg, o, 1);
        else if (strcmp(val, "closed") == 0)
            store(cfg, o, 0);
        else
            return FERRY_EUSAGE;
        return 0;
    case SRV_OPT_FLAG:
        if (!in_file || strcmp(val, "yes") == 0)
            store(cfg, o, 1);
        else if (strcmp(val, "no") == 0)
            store(cfg, o, 0);
        else
            return FERRY_EUSAGE;
        return 0;
    }
    return FERRY_EUSAGE;
}

/* R-CONF-3, R-CONF-4: one line naming where, the option, the value and what it takes. */
static void bad_value(const char *where, const struct srv_opt *o, const char *val, int in_file)
{
    char form[160];

    form_text(o, in_file, form, sizeof(form));
    fprintf(stderr, "ferry serve: %s%s%s '%.100s': expected %s\n", where, in_file ? "" : "--",
            o->name, val, form);
}

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

int srv_config_load(const struct srv_opt *opts, size_t n, const char *path, struct srv_config *cfg,
                    unsigned char *given)
{
    char line[SRV_CONF_LINE_MAX + 2], where[4200], *key, *val, *eq;
    unsigned char seen[SRV_OPTS_MAX] = {0};
    unsigned lineno = 0;
    struct stat st;
    FILE *f;
    int i, rc = FERRY_EUSAGE;

    if ((f = fopen(path, "re")) == NULL) {
        fprintf(stderr, "ferry serve: --config %s: %s\n", path, strerror(errno));
        return FERRY_EUSAGE;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "ferry serve: --config %s: not a regular file\n", path);
        goto out;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        snprintf(where, sizeof(where), "%s:%u: ", path, lineno);
        if (strchr(line, '\n') == NULL && !feof(f)) {
            fprintf(stderr, "ferry serve: %sline longer than %d bytes\n", where, SRV_CONF_LINE_MAX);
            goto out;
        }
        key = trim(line);
        /* R-CONF-1: blank lines and lines that start with # say nothing. */
        if (key[0] == '\0' || key[0] == '#')
            continue;
        if ((eq = strchr(key, '=')) == NULL) {
            fprintf(stderr, "ferry serve: %sexpected KEY = VALUE, not '%.100s'\n", where, key);
            goto out;
        }
        *eq = '\0';
        key = trim(key);
        val = trim(eq + 1);
        if ((i = srv_opt_find(opts, n, key)) < 0) {
            fprintf(stderr,
                    "ferry serve: %sunknown key '%.100s' (the keys are the flags of "
                    "'ferry serve --help' without their --)\n",
                    where, key);
            goto out;
        }
        if (seen[i]) {
            fprintf(stderr, "ferry serve: %s%s is set twice in this file\n", where, key);
            goto out;
        }
        seen[i] = 1;
        if (apply(&opts[i], val, 1, cfg) != 0) {
            bad_value(where, &opts[i], val, 1);
            goto out;
        }
        given[i] = 1;
    }
    if (ferror(f)) {
        fprintf(stderr, "ferry serve: --config %s: read error\n", path);
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

void srv_config_usage(FILE *f, const struct srv_opt *opts, size_t n)
{
    char flag[64];
    size_t i;

    for (i = 0; i < n; i++) {
        const struct srv_opt *o = &opts[i];
        int k = 0;

        if (o->shortopt != 0)
            k = snprintf(flag, sizeof(flag), "-%c, ", o->shortopt);
        else
            k = snprintf(flag, sizeof(flag), "    ");
        snprintf(flag + k, sizeof(flag) - (size_t)k, "--%s%s%s", o->name,
                 o->kind == SRV_OPT_FLAG ? "" : " ", o->kind == SRV_OPT_FLAG ? "" : o->arg);
        fprintf(f, "  %-30s %s\n", flag, o->help);
    }
    fprintf(f, "  %-30s %s\n", "    --config FILE",
            "read options from FILE: KEY = VALUE lines, # comments;");
    fprintf(f, "  %-30s %s\n", "", "the keys are these flags without --; flags win");
    fprintf(f, "  %-30s %s\n", "-h, --help", "show this help");
}

/* Names the option getopt refused, in the words the user typed it. */
static void unknown_option(const struct srv_opt *opts, char **argv)
{
    const char *a = argv[optind - 1];

    /* A value given to an option that takes none: --verbose=yes. */
    if (optopt >= OPT_VAL_BASE)
        fprintf(stderr, "ferry serve: --%s takes no value\n", opts[optopt - OPT_VAL_BASE].name);
    else if (optopt != 0 && (a == NULL || a[1] != '-'))
        fprintf(stderr, "ferry serve: unknown option '-%c'; see 'ferry serve --help'\n", optopt);
    else
        fprintf(stderr, "ferry serve: unknown option '%.100s'; see 'ferry serve --help'\n",
                a != NULL ? a : "?");
}

/* Names the option that came without its value. */
static void missing_value(const struct srv_opt *opts, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if ((int)(OPT_VAL_BASE + i) == optopt ||
            (opts[i].shortopt != 0 && opts[i].shortopt == optopt)) {
            fprintf(stderr, "ferry serve: --%s needs a value (%s)\n", opts[i].name, opts[i].arg);
            return;
        }
    }
    fprintf(stderr, "ferry serve: --config needs a value (FILE)\n");
}

int srv_config_parse(const struct srv_opt *opts, size_t n, int argc, char **argv,
                     struct srv_config *cfg, unsigned char *given)
{
    struct option lopts[SRV_OPTS_MAX + 3];
    char shorts[2 * SRV_OPTS_MAX + 8];
    const char *config = NULL;
    size_t i, k = 0, s = 0;
    int c, pass;

    if (n > SRV_OPTS_MAX)
        return FERRY_EUSAGE;
    shorts[s++] = ':'; /* a missing value is ':', not '?' */
    for (i = 0; i < n; i++) {
        int has_arg = opts[i].kind == SRV_OPT_FLAG ? no_argument : required_argument;

        lopts[k++] = (struct option){opts[i].name, has_arg, NULL, (int)(OPT_VAL_BASE + i)};
        if (opts[i].shortopt != 0) {
            shorts[s++] = opts[i].shortopt;
            if (has_arg == required_argument)
                shorts[s++] = ':';
        }
    }
    lopts[k++] = (struct option){"config", required_argument, NULL, OPT_VAL_CONFIG};
    lopts[k++] = (struct option){"help", no_argument, NULL, OPT_VAL_HELP};
    lopts[k] = (struct option){NULL, 0, NULL, 0};
    shorts[s++] = 'h';
    shorts[s] = '\0';
    /*
     * R-CONF-2: the first pass finds --config, --help and any mistake; the
     * file is applied; the second pass applies the flags over it.
     */
    for (pass = 0; pass < 2; pass++) {
        optind = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, shorts, lopts, NULL)) != -1) {
            const struct srv_opt *o = NULL;

            if (c == '?') {
                unknown_option(opts, argv);
                return FERRY_EUSAGE;
            }
            if (c == ':') {
                missing_value(opts, n);
                return FERRY_EUSAGE;
            }
            if (c == OPT_VAL_HELP)
                return 1;
            if (c == OPT_VAL_CONFIG) {
                config = optarg;
                continue;
            }
            for (i = 0; i < n; i++)
                if ((int)(OPT_VAL_BASE + i) == c || (c < OPT_VAL_BASE && opts[i].shortopt == c))
                    o = &opts[i];
            if (o == NULL)
                return FERRY_EUSAGE;
            if (pass == 0)
                continue;
            if (apply(o, optarg, 0, cfg) != 0) {
                bad_value("", o, optarg != NULL ? optarg : "", 0);
                return FERRY_EUSAGE;
            }
            given[o - opts] = 1;
        }
        if (pass == 0 && optind != argc) {
            fprintf(stderr, "ferry serve: unexpected argument '%.100s'; see 'ferry serve --help'\n",
                    argv[optind]);
            return FERRY_EUSAGE;
        }
        if (pass == 0 && config != NULL && srv_config_load(opts, n, config, cfg, given) != 0)
            return FERRY_EUSAGE;
    }
    return 0;
}

/* The defaults of every setting, before flags and the --config file (R-CONF). */
void srv_config_defaults(struct srv_config *cfg)
{
    *cfg = (struct srv_config){
        .host = "127.0.0.1",
        .port = "7070",
        .auth_timeout_ms = 10000,
        .heartbeat_ms = 30000,
        .idle_ms = 90000,
        .max_conns = 1024,
        .max_unauth_per_ip = 16,
        .login_rate = 10,
        .max_unacked = 256ull << 20,
        .max_file_size = 1ull << 40,
        .min_free = 64ull << 20,
        .hash_queue = SRV_HASH_QUEUE_MAX,
        .max_open_uploads = SRV_OPEN_UPLOADS_MAX,
        .max_downloads = SRV_DOWNLOADS_MAX,
        .max_listing = SRV_LISTING_OUT_MAX,
        .partial_ttl_ns = 86400ll * 1000000000,
        .max_conns_per_ip = 128,
        .max_conns_per_user = 64,
        .reserve_conns = -1,
        .max_ops_conn = SRV_CONN_OPS_MAX,
        .max_ops = SRV_OPS_MAX,
        .max_unacked_total = SRV_UNACKED_TOTAL,
        .max_lists = SRV_LISTS_MAX,
        .max_lists_user = SRV_LISTS_USER,
        .max_listings = SRV_LISTINGS_MAX,
    };
}
