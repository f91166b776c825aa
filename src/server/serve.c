/* ferry serve: its options, data directory, listener, signals and shutdown. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "admin.h"
#include "config.h"
#include "ferry/core.h"
#include "ferry/path.h"
#include "host.h"
#include "serve.h"
#include "server.h"

static void serve_usage(FILE *f)
{
    fputs(
        "usage: ferry serve [options]\n"
        "       ferry serve user add|list|disable|enable|passwd ...   (ferry serve user --help)\n"
        "       ferry serve device list|revoke ...                   (ferry serve device --help)\n"
        "\n"
        "Runs the ferry server: accounts, sessions and each user's private file tree.\n"
        "The user and device commands administer the data directory, also while the\n"
        "server runs.\n"
        "\n",
        f);
    srv_config_usage(f, srv_opts, srv_nopts);
    fputs("\nOnce ready it prints one line: listening on HOST:PORT id SERVER-ID\n", f);
}

static void close_one(struct ferry_conn *c, void *arg)
{
    (void)arg;
    ferry_conn_close(c);
}

static void stop_cb(uv_signal_t *sig, int signum)
{
    struct srv *srv = sig->data;

    (void)signum;
    if (srv->stopping)
        return;
    srv->stopping = 1;
    srv_log_turns_stop(srv);
    ferry_log(FERRY_LOG_NOTICE, "stopping signal=%d", signum);
    srv_notify("STOPPING=1"); /* R-ADMIN-3 */
    srv_admin_watch_stop(srv);
    ferry_listener_stop(srv->listener);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    /* Connections close after flushing; commit jobs in flight finish first. */
    ferry_listener_each(srv->listener, close_one, NULL);
    uv_timer_stop(&srv->kick);
    uv_close((uv_handle_t *)&srv->kick, NULL);
    /* Ops queued in this loop turn waited for the timer just closed: start them now. */
    srv_kick_cb(&srv->kick);
}

/*
 * The content store. FERRY_TEST_BLOB_FAULTS, for tests only, wraps it in
 * the fault-injecting store (ferry_blob_fault_open: which calls fail how).
 */
static int open_blobs(struct srv *srv)
{
    const char *faults = getenv("FERRY_TEST_BLOB_FAULTS");
    struct ferry_blob_store *pack = NULL;
    int rc;

    if ((rc = ferry_blob_pack_open(srv->datafd, &pack)) != 0) {
        fprintf(stderr, "ferry serve: %s/tmp and %s/blobs must be plain directories\n",
                srv->cfg.data, srv->cfg.data);
        return rc;
    }
    if (faults == NULL || faults[0] == '\0') {
        srv->blobs = pack;
        return 0;
    }
    if ((rc = ferry_blob_fault_open(pack, faults, &srv->blobs)) != 0) {
        fprintf(stderr, "ferry serve: FERRY_TEST_BLOB_FAULTS: cannot parse %s\n", faults);
        ferry_blob_close(pack);
        return rc;
    }
    ferry_log(FERRY_LOG_WARN, "content store with injected faults: %s", faults);
    return 0;
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
    srv_data_modes(srv->datafd, dir);
    /* One server per data directory. */
    srv->lockfd = openat(srv->datafd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (srv->lockfd < 0 || flock(srv->lockfd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "ferry serve: %s is in use by another ferry serve\n", dir);
        return FERRY_EBUSY;
    }
    if ((rc = open_blobs(srv)) != 0)
        return rc;
    snprintf(iddir, sizeof(iddir), "%s/identity", dir);
    if ((rc = ferry_identity_load_or_create(iddir, &srv->id)) != 0) {
        fprintf(stderr, "ferry serve: identity in %s: %s\n", iddir, ferry_strerror(rc));
        return rc;
    }
    snprintf(dbpath, sizeof(dbpath), "%s/ferry.db", dir);
    /*
     * R-ADMIN-1: SQLite would create the database under the umask alone;
     * made 0600 here, its WAL and shared-memory files copy that mode.
     */
    if ((fd = openat(srv->datafd, "ferry.db", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) <
        0) {
        rc = -errno;
        fprintf(stderr, "ferry serve: cannot open %s: %s\n", dbpath, strerror(errno));
        return rc;
    }
    close(fd);
    if ((rc = ferry_meta_open(dbpath, 0, &srv->wdb)) != 0 ||
        (rc = ferry_meta_admin_init(srv->wdb)) != 0 ||
        (rc = ferry_meta_open(dbpath, 1, &srv->rdb)) != 0) {
        fprintf(stderr, "ferry serve: database %s: %s\n", dbpath, ferry_strerror(rc));
        return rc;
    }
    return 0;
}

static int listen_on(struct srv *srv)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    struct ferry_conn_cfg cfg = {.ctx = srv->ctx,
                                 .ops = &srv_sess_ops,
                                 .heartbeat_ms = srv->cfg.heartbeat_ms,
                                 .idle_ms = srv->cfg.idle_ms};
    struct sockaddr_storage ss;
    char name[64], state[200];
    int rc, port = 0;

    if (getaddrinfo(srv->cfg.host, srv->cfg.port, &hints, &res) != 0) {
        fprintf(stderr, "ferry serve: cannot resolve %s\n", srv->cfg.host);
        return FERRY_ENOTFOUND;
    }
    rc = ferry_listener_open(srv->loop, res->ai_addr, &cfg, srv_on_connection, srv, &srv->listener);
    freeaddrinfo(res);
    if (rc != 0) {
        fprintf(stderr, "ferry serve: cannot listen on %s:%s: %s\n", srv->cfg.host, srv->cfg.port,
                uv_strerror(rc));
        return rc;
    }
    ferry_listener_addr(srv->listener, &ss);
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
    /* R-ADMIN-3: ready once the line is out and connections are accepted. */
    snprintf(state, sizeof(state), "READY=1\nSTATUS=listening on %s port %d id %s", name, port,
             srv->id.id);
    srv_notify(state);
    return 0;
}

int ferry_serve_main(int argc, char **argv)
{
    unsigned char given[SRV_OPTS_MAX] = {0};
    struct srv *srv;
    int rc = 1;

    if (argc >= 2 && (strcmp(argv[1], "user") == 0 || strcmp(argv[1], "device") == 0))
        return srv_admin_main(argc - 1, argv + 1);
    if ((srv = ferry_calloc(1, sizeof(*srv))) == NULL)
        return 1;
    srv->datafd = srv->lockfd = -1;
    srv_config_defaults(&srv->cfg);
    switch (srv_config_parse(srv_opts, srv_nopts, argc, argv, &srv->cfg, given)) {
    case 0:
        break;
    case 1:
        serve_usage(stdout);
        rc = 0;
        goto out;
    default:
        rc = 2; /* the one line saying why is printed */
        goto out;
    }
    if (srv->cfg.data[0] == '\0' &&
        ferry_xdg_dir("XDG_DATA_HOME", ".local/share", srv->cfg.data, sizeof(srv->cfg.data)) != 0) {
        fprintf(stderr, "ferry serve: no --data given and no HOME to default to\n");
        goto out;
    }
    /* R-ADMIN-1: nothing the server creates is for anyone but its owner. */
    umask(077);
    signal(SIGPIPE, SIG_IGN);
    ferry_log_set(srv_log_sink, srv->cfg.verbose ? FERRY_LOG_DEBUG : FERRY_LOG_INFO);
    if (srv_nofile_check(&srv->cfg, given[srv_opt_find(srv_opts, srv_nopts, "max-conns")]) != 0)
        goto out;
    /* R-SESS-8: the reserve is a part of --max-conns (as the open-file limit left it). */
    if (srv->cfg.reserve_conns >= srv->cfg.max_conns) {
        fprintf(stderr, "ferry serve: --reserve-conns must be below --max-conns (%d)\n",
                srv->cfg.max_conns);
        rc = 2;
        goto out;
    }
    if (sodium_init() < 0 || open_data(srv) != 0)
        goto out;
    if ((srv->ctx = ferry_tls_ctx_new(&srv->id, 1)) == NULL) {
        fprintf(stderr, "ferry serve: cannot set up TLS\n");
        goto out;
    }
    /* The services: accounts, files, uploads and downloads, devices. */
    if (srv_auth_init(srv) != 0 || srv_files_init(srv) != 0 || srv_transfer_init(srv) != 0 ||
        srv_devices_init(srv) != 0)
        goto out;
    srv->loop = uv_default_loop();
    uv_timer_init(srv->loop, &srv->kick);
    srv->kick.data = srv;
    uv_signal_init(srv->loop, &srv->sigint);
    uv_signal_init(srv->loop, &srv->sigterm);
    srv->sigint.data = srv->sigterm.data = srv;
    uv_signal_start(&srv->sigint, stop_cb, SIGINT);
    uv_signal_start(&srv->sigterm, stop_cb, SIGTERM);
    if (srv_admin_watch_start(srv) != 0 || listen_on(srv) != 0)
        goto out;
    ferry_log(FERRY_LOG_INFO, "ready data=%s signup=%s max-conns=%d", srv->cfg.data,
              srv->cfg.signup_open ? "open" : "closed", srv->cfg.max_conns);
    srv_log_turns_start(srv);
    uv_run(srv->loop, UV_RUN_DEFAULT);
    ferry_listener_free(srv->listener); /* its socket was closed at the stop */
    srv->listener = NULL;
    srv_log_turns_stop(srv);
    uv_loop_close(srv->loop);
    ferry_log(FERRY_LOG_INFO, "stopped");
    rc = 0;
out:
    ferry_meta_close(srv->rdb);
    ferry_meta_close(srv->wdb);
    if (srv->ctx != NULL)
        SSL_CTX_free(srv->ctx);
    ferry_identity_cleanup(&srv->id);
    ferry_blob_close(srv->blobs);
    if (srv->datafd >= 0)
        close(srv->datafd);
    if (srv->lockfd >= 0)
        close(srv->lockfd);
    srv_throttle_cleanup(srv);
    ferry_free(srv->uses);
    ferry_free(srv);
    return rc;
}
