/* ferry serve: options, data directory, listener, signals and shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>
#include <sodium.h>

#include "ferry/path.h"
#include "serve.h"
#include "server.h"

static const char serve_usage[] =
    "usage: ferry serve [options]\n"
    "\n"
    "Runs the ferry server: accounts, sessions and each user's private file tree.\n"
    "\n"
    "  --data DIR              data directory (default $XDG_DATA_HOME/ferry)\n"
    "  --listen HOST:PORT      address to listen on (default 127.0.0.1:7070; port 0 picks one)\n"
    "  --signup open|closed    whether anyone may create an account (default closed)\n"
    "  --auth-timeout SECS     close connections not logged in after this (default 10)\n"
    "  --heartbeat SECS        send a heartbeat after this much silence (default 30)\n"
    "  --idle-timeout SECS     drop a peer silent this long (default 90)\n"
    "  --max-conns N           connections in all (default 1024)\n"
    "  --max-unauth-per-ip N   connections not yet logged in, per source IP (default 16)\n"
    "  --login-rate N          login and sign-up attempts per minute per IP (default 10)\n"
    "  --max-unacked BYTES     upload bytes per connection awaiting commit (default 256M)\n"
    "  --max-file-size BYTES   largest file accepted (default 1T)\n"
    "  --min-free BYTES        free disk space uploads must leave (default 64M)\n"
    "  --hash-queue N          password hashes waiting for the one hashing slot (default 64)\n"
    "  --max-open-uploads N    uploads one connection may have open at once (default 64)\n"
    "  --max-queued-downloads N  downloads one connection may have queued (default 64)\n"
    "  --max-listing BYTES     pages one listing may send before it is refused (default 32M)\n"
    "  --max-listings N        long listings built at once, each with its own snapshot\n"
    "                          (default 32; at most 4 of them for one user)\n"
    "  --quota BYTES           bytes each user may store, files and chunks of unfinished\n"
    "                          uploads together (default 0: no quota)\n"
    "  --partial-ttl SECS      keep chunks of unfinished uploads this long (default 86400)\n"
    "  --max-queued-writes N   writes one connection may have awaiting commit (default 4096)\n"
    "  --max-queued-writes-total N  writes all connections may have awaiting commit\n"
    "                          (default 16384)\n"
    "  --max-unacked-total BYTES  upload bytes all connections may have awaiting commit\n"
    "                          (default 1G)\n"
    "  --max-chunk-lists BYTES chunk lists held in memory for all users (default 256M)\n"
    "  --max-chunk-lists-per-user BYTES  chunk lists held for one user (default 64M)\n"
    "  -v, --verbose           log debug events\n"
    "  -h, --help              show this help\n"
    "\n"
    "Once ready it prints one line: listening on HOST:PORT id SERVER-ID\n";

static void log_stderr(enum ferry_log_level lvl, const char *msg)
{
    static const char *names[] = {"debug", "info", "notice", "warn", "error"};

    fprintf(stderr, "ferry serve: level=%s %s\n", names[lvl], msg);
}

/* Parses 123, 10K, 256M, 1G, 1T (powers of 1024). */
int ferry_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    /* strtoull accepts "-5" and wraps it: only digits may start a size. */
    if (*s < '0' || *s > '9')
        return FERRY_EUSAGE;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return FERRY_EUSAGE;
    switch (*end) {
    case '\0':
        break;
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    case 'T':
    case 't':
        shift = 40;
        break;
    default:
        return FERRY_EUSAGE;
    }
    if (shift != 0 && end[1] != '\0')
        return FERRY_EUSAGE;
    if (v > (UINT64_MAX >> shift))
        return FERRY_EUSAGE;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v > max || s[0] == '-')
        return FERRY_EUSAGE;
    *out = v;
    return 0;
}

int ferry_split_hostport(const char *in, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon;
    size_t hl;

    if (in[0] == '[') {
        const char *rb = strchr(in, ']');
        if (rb == NULL || rb[1] != ':')
            return FERRY_EUSAGE;
        hl = (size_t)(rb - in - 1);
        colon = rb + 1;
        in++;
    } else {
        colon = strrchr(in, ':');
        if (colon == NULL)
            return FERRY_EUSAGE;
        hl = (size_t)(colon - in);
    }
    if (hl == 0 || hl >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap)
        return FERRY_EUSAGE;
    memcpy(host, in, hl);
    host[hl] = '\0';
    snprintf(port, pcap, "%s", colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return FERRY_EUSAGE;
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    struct srv *srv = arg;

    if (uv_is_closing(h))
        return;
    if (h->type == UV_TCP && h != (uv_handle_t *)&srv->listener && h->data != NULL) {
        struct sess *s = h->data;
        ferry_conn_close(&s->conn);
    }
}

static void stop_cb(uv_signal_t *sig, int signum)
{
    struct srv *srv = sig->data;

    (void)signum;
    if (srv->stopping)
        return;
    srv->stopping = 1;
    ferry_log(FERRY_LOG_NOTICE, "stopping signal=%d", signum);
    uv_close((uv_handle_t *)&srv->listener, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    /* Connections close after flushing; commit jobs in flight finish first. */
    uv_walk(srv->loop, close_walk, srv);
    uv_timer_stop(&srv->kick);
    uv_close((uv_handle_t *)&srv->kick, NULL);
    /* Ops queued in this loop turn waited for the timer just closed: start them now. */
    srv_kick_cb(&srv->kick);
}

/* Leftover temp files are uploads a crash interrupted: never visible, removed. */
static void sweep_tmp(int tmpfd)
{
    int fd = dup(tmpfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;

    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "up-", 3) == 0 || strncmp(e->d_name, "ck-", 3) == 0)
            unlinkat(tmpfd, e->d_name, 0);
    closedir(d);
}

static int open_data(struct srv *srv)
{
    const char *dir = srv->cfg.data;
    char dbpath[4200], iddir[4200];
    int fd, rc;

    if ((rc = ferry_mkdirs(dir, 0700)) != 0) {
        fprintf(stderr, "ferry serve: cannot create %s: %s\n", dir, ferry_strerror(rc));
        return rc;
    }
    if ((srv->datafd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = -errno;
        fprintf(stderr, "ferry serve: cannot open %s: %s\n", dir, strerror(errno));
        return rc;
    }
    /* One server per data directory. */
    srv->lockfd = openat(srv->datafd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (srv->lockfd < 0 || flock(srv->lockfd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "ferry serve: %s is in use by another ferry serve\n", dir);
        return FERRY_EBUSY;
    }
    mkdirat(srv->datafd, "tmp", 0700);
    mkdirat(srv->datafd, "blobs", 0700);
    mkdirat(srv->datafd, "packs", 0700);
    /* The commit fsyncs what it adds beneath these; their own names are made durable here. */
    fsync(srv->datafd);
    if ((srv->tmpfd = ferry_open_beneath(srv->datafd, "tmp", O_RDONLY | O_DIRECTORY, 0)) < 0 ||
        (fd = ferry_open_beneath(srv->datafd, "blobs", O_RDONLY | O_DIRECTORY, 0)) < 0) {
        fprintf(stderr, "ferry serve: %s/tmp and %s/blobs must be plain directories\n", dir, dir);
        return FERRY_EPATH;
    }
    close(fd);
    sweep_tmp(srv->tmpfd);
    snprintf(iddir, sizeof(iddir), "%s/identity", dir);
    if ((rc = ferry_identity_load_or_create(iddir, &srv->id)) != 0) {
        fprintf(stderr, "ferry serve: identity in %s: %s\n", iddir, ferry_strerror(rc));
        return rc;
    }
    snprintf(dbpath, sizeof(dbpath), "%s/ferry.db", dir);
    if ((rc = ferry_meta_open(dbpath, 0, &srv->wdb)) != 0 ||
        (rc = ferry_meta_open(dbpath, 1, &srv->rdb)) != 0) {
        fprintf(stderr, "ferry serve: database %s: %s\n", dbpath, ferry_strerror(rc));
        return rc;
    }
    return 0;
}

static int listen_on(struct srv *srv)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    struct sockaddr_storage ss;
    char name[64];
    int len = sizeof(ss), rc, port = 0;

    if (getaddrinfo(srv->cfg.host, srv->cfg.port, &hints, &res) != 0) {
        fprintf(stderr, "ferry serve: cannot resolve %s\n", srv->cfg.host);
        return FERRY_ENOTFOUND;
    }
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    rc = uv_tcp_bind(&srv->listener, res->ai_addr, 0);
    freeaddrinfo(res);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 511, srv_on_connection);
    if (rc != 0) {
        fprintf(stderr, "ferry serve: cannot listen on %s:%s: %s\n", srv->cfg.host, srv->cfg.port,
                uv_strerror(rc));
        return rc;
    }
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, name, sizeof(name));
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        printf("listening on [%s]:%d id %s\n", name, port, srv->id.id);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, name, sizeof(name));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        printf("listening on %s:%d id %s\n", name, port, srv->id.id);
    }
    fflush(stdout);
    return 0;
}

int ferry_serve_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"signup", required_argument, NULL, 's'},
        {"auth-timeout", required_argument, NULL, 1},
        {"heartbeat", required_argument, NULL, 2},
        {"idle-timeout", required_argument, NULL, 3},
        {"max-conns", required_argument, NULL, 4},
        {"max-unauth-per-ip", required_argument, NULL, 5},
        {"login-rate", required_argument, NULL, 6},
        {"max-unacked", required_argument, NULL, 7},
        {"max-file-size", required_argument, NULL, 8},
        {"min-free", required_argument, NULL, 9},
        {"hash-queue", required_argument, NULL, 10},
        {"max-open-uploads", required_argument, NULL, 11},
        {"max-queued-downloads", required_argument, NULL, 12},
        {"max-listing", required_argument, NULL, 13},
        {"quota", required_argument, NULL, 14},
        {"partial-ttl", required_argument, NULL, 15},
        {"max-queued-writes", required_argument, NULL, 16},
        {"max-queued-writes-total", required_argument, NULL, 17},
        {"max-unacked-total", required_argument, NULL, 18},
        {"max-chunk-lists", required_argument, NULL, 19},
        {"max-chunk-lists-per-user", required_argument, NULL, 20},
        {"max-listings", required_argument, NULL, 21},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct srv *srv = ferry_calloc(1, sizeof(*srv));
    uint64_t v;
    int c, rc = 1, verbose = 0;

    if (srv == NULL)
        return 1;
    srv->datafd = srv->tmpfd = srv->lockfd = -1;
    srv->cfg = (struct srv_config){
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
        .max_ops_conn = SRV_CONN_OPS_MAX,
        .max_ops = SRV_OPS_MAX,
        .max_unacked_total = SRV_UNACKED_TOTAL,
        .max_lists = SRV_LISTS_MAX,
        .max_lists_user = SRV_LISTS_USER,
        .max_listings = SRV_LISTINGS_MAX,
    };
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:l:s:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            snprintf(srv->cfg.data, sizeof(srv->cfg.data), "%s", optarg);
            break;
        case 'l':
            if (ferry_split_hostport(optarg, srv->cfg.host, sizeof(srv->cfg.host), srv->cfg.port,
                                     sizeof(srv->cfg.port)) != 0)
                goto usage;
            break;
        case 's':
            if (strcmp(optarg, "open") == 0)
                srv->cfg.signup_open = 1;
            else if (strcmp(optarg, "closed") == 0)
                srv->cfg.signup_open = 0;
            else
                goto usage;
            break;
        case 1:
        case 2:
        case 3:
            if (parse_uint(optarg, 86400, &v) != 0 || v == 0)
                goto usage;
            if (c == 1)
                srv->cfg.auth_timeout_ms = v * 1000;
            else if (c == 2)
                srv->cfg.heartbeat_ms = v * 1000;
            else
                srv->cfg.idle_ms = v * 1000;
            break;
        case 4:
        case 5:
        case 6:
            if (parse_uint(optarg, 1000000, &v) != 0 || v == 0)
                goto usage;
            if (c == 4)
                srv->cfg.max_conns = (int)v;
            else if (c == 5)
                srv->cfg.max_unauth_per_ip = (int)v;
            else
                srv->cfg.login_rate = (int)v;
            break;
        case 7:
        case 8:
            if (ferry_parse_size(optarg, &v) != 0 || v == 0)
                goto usage;
            if (c == 7)
                srv->cfg.max_unacked = v;
            else
                srv->cfg.max_file_size = v > INT64_MAX ? INT64_MAX : v;
            break;
        case 9:
            if (ferry_parse_size(optarg, &v) != 0)
                goto usage;
            srv->cfg.min_free = v;
            break;
        case 10:
        case 11:
        case 12:
            if (parse_uint(optarg, 100000, &v) != 0 || v == 0)
                goto usage;
            if (c == 10)
                srv->cfg.hash_queue = (int)v;
            else if (c == 11)
                srv->cfg.max_open_uploads = (int)v;
            else
                srv->cfg.max_downloads = (int)v;
            break;
        case 13:
            if (ferry_parse_size(optarg, &v) != 0 || v < (1u << 20))
                goto usage;
            srv->cfg.max_listing = v;
            break;
        case 14:
            if (ferry_parse_size(optarg, &v) != 0)
                goto usage;
            srv->cfg.quota = v > INT64_MAX ? INT64_MAX : v;
            break;
        case 15:
            if (parse_uint(optarg, 30ull * 86400, &v) != 0 || v == 0)
                goto usage;
            srv->cfg.partial_ttl_ns = (int64_t)v * 1000000000;
            break;
        case 16:
        case 17:
            if (parse_uint(optarg, 1000000, &v) != 0 || v == 0)
                goto usage;
            if (c == 16)
                srv->cfg.max_ops_conn = (int)v;
            else
                srv->cfg.max_ops = (int)v;
            break;
        case 18:
            if (ferry_parse_size(optarg, &v) != 0 || v == 0)
                goto usage;
            srv->cfg.max_unacked_total = v;
            break;
        case 19:
        case 20:
            if (ferry_parse_size(optarg, &v) != 0 || v == 0)
                goto usage;
            if (c == 19)
                srv->cfg.max_lists = v;
            else
                srv->cfg.max_lists_user = v;
            break;
        case 21:
            if (parse_uint(optarg, 100000, &v) != 0 || v == 0)
                goto usage;
            srv->cfg.max_listings = (int)v;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            fputs(serve_usage, stdout);
            rc = 0;
            goto out;
        default:
            goto usage;
        }
    }
    if (optind != argc)
        goto usage;
    if (srv->cfg.data[0] == '\0' &&
        ferry_xdg_dir("XDG_DATA_HOME", ".local/share", srv->cfg.data, sizeof(srv->cfg.data)) != 0) {
        fprintf(stderr, "ferry serve: no --data given and no HOME to default to\n");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    ferry_log_set(log_stderr, verbose ? FERRY_LOG_DEBUG : FERRY_LOG_INFO);
    if (sodium_init() < 0 || open_data(srv) != 0)
        goto out;
    if ((srv->ctx = ferry_tls_ctx_new(&srv->id, 1)) == NULL) {
        fprintf(stderr, "ferry serve: cannot set up TLS\n");
        goto out;
    }
    if (srv_auth_init(srv) != 0)
        goto out;
    srv->loop = uv_default_loop();
    uv_timer_init(srv->loop, &srv->kick);
    srv->kick.data = srv;
    uv_signal_init(srv->loop, &srv->sigint);
    uv_signal_init(srv->loop, &srv->sigterm);
    srv->sigint.data = srv->sigterm.data = srv;
    uv_signal_start(&srv->sigint, stop_cb, SIGINT);
    uv_signal_start(&srv->sigterm, stop_cb, SIGTERM);
    if (listen_on(srv) != 0)
        goto out;
    ferry_log(FERRY_LOG_INFO, "ready data=%s signup=%s", srv->cfg.data,
              srv->cfg.signup_open ? "open" : "closed");
    uv_run(srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(srv->loop);
    ferry_log(FERRY_LOG_INFO, "stopped");
    rc = 0;
    goto out;
usage:
    fputs(serve_usage, stderr);
    rc = 2;
out:
    ferry_meta_close(srv->rdb);
    ferry_meta_close(srv->wdb);
    if (srv->ctx != NULL)
        SSL_CTX_free(srv->ctx);
    ferry_identity_cleanup(&srv->id);
    if (srv->tmpfd >= 0)
        close(srv->tmpfd);
    if (srv->datafd >= 0)
        close(srv->datafd);
    if (srv->lockfd >= 0)
        close(srv->lockfd);
    ferry_free(srv->ips);
    ferry_free(srv->uses);
    ferry_free(srv);
    return rc;
}
