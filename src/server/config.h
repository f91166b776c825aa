/* ferry serve: one table of options for the command line and the config file (R-CONF). */
#ifndef FERRY_SERVE_CONFIG_H
#define FERRY_SERVE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "server.h"

/* How an option's value is written, and so how it is read and checked. */
enum srv_opt_kind {
    SRV_OPT_SECS,     /* whole seconds */
    SRV_OPT_COUNT,    /* a whole number */
    SRV_OPT_SIZE,     /* bytes, or a number with K, M, G or T (powers of 1024) */
    SRV_OPT_PATH,     /* a path, stored as text */
    SRV_OPT_HOSTPORT, /* HOST:PORT, stored in host and port */
    SRV_OPT_SIGNUP,   /* open or closed */
    SRV_OPT_FLAG,     /* no value on the command line; yes or no in a file */
};

/*
 * One option of ferry serve. R-CONF-1: the same entry makes the flag --NAME
 * and the config key NAME, so neither can exist without the other.
 */
struct srv_opt {
    const char *name;
    char shortopt; /* a one-letter alias, or 0 */
    enum srv_opt_kind kind;
    const char *arg;  /* the value's name in --help: SECS, N, BYTES ... */
    const char *help; /* one line for --help, with the default */
    size_t off;       /* where the value goes in struct srv_config */
    size_t size;      /* and the size of that field (int or 64 bits) */
    uint64_t min;     /* numbers: the accepted range, in the unit written */
    uint64_t max;
    uint64_t scale; /* numbers: what is stored is the value times this */
};

#define SRV_CFG(field) offsetof(struct srv_config, field), sizeof(((struct srv_config *)0)->field)

/* Options a table may hold (the getopt array is built on the stack). */
#define SRV_OPTS_MAX 64
/* R-CONF-3: the longest line a config file may have, in bytes. */
#define SRV_CONF_LINE_MAX 4096

/*
 * Reads the command line of ferry serve (argv[0] is "serve") over the
 * defaults already in cfg: first the file of --config, then every flag, so
 * that flags win whatever their order (R-CONF-2). given[i] is set for each
 * option the file or a flag set. Returns 0; 1 when --help was printed;
 * FERRY_EUSAGE after printing one line that says what was wrong (R-CONF-3,
 * R-CONF-4).
 */
int srv_config_parse(const struct srv_opt *opts, size_t n, int argc, char **argv,
                     struct srv_config *cfg, unsigned char *given);
/* Applies a config file (R-CONF-1): 0, or FERRY_EUSAGE after one line naming FILE:LINE. */
int srv_config_load(const struct srv_opt *opts, size_t n, const char *path, struct srv_config *cfg,
                    unsigned char *given);
/* Prints the option lines of --help for the table. */
void srv_config_usage(FILE *f, const struct srv_opt *opts, size_t n);
/* The index of the option called name, or -1. */
int srv_opt_find(const struct srv_opt *opts, size_t n, const char *name);

/* The options of ferry serve (serve.c). */
extern const struct srv_opt srv_opts[];
extern const size_t srv_nopts;
/* The defaults every run starts from (serve.c). */
void srv_config_defaults(struct srv_config *cfg);

#endif
