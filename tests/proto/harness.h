/* Test harness for black-box protocol tests: a real ferry serve and raw TLS clients. */
#ifndef FERRY_TEST_HARNESS_H
#define FERRY_TEST_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/net.h"
#include "ferry/wire.h"

struct server {
    pid_t pid;
    char dir[256];
    char port[16];
    char id[FERRY_ID_LEN + 1];
    char err_path[300];
};

struct client {
    struct ferry_client *c;
    struct ferry_identity id;
    char last_ref[FERRY_UUID_STR_LEN + 1];
};

static const char *ferry_bin;

/*
 * How long a test waits for a reply, a close or room to send: only a bound
 * against a hang, never what is tested. Generous, as ctest -j8 on a loaded
 * two-core machine with sanitizers can stall a server for seconds.
 */
#define HARNESS_WAIT_MS 60000

/*
 * Servers started and not yet stopped. A failed assertion leaves its test
 * by longjmp, past server_stop: the next server_start and the exit handler
 * kill what is left, so a failing test never leaves `ferry serve` behind.
 */
#define HARNESS_SERVERS_MAX 16
static pid_t harness_pids[HARNESS_SERVERS_MAX];
static char harness_dirs[HARNESS_SERVERS_MAX][256];

__attribute__((unused)) static void harness_forget(pid_t pid)
{
    for (int i = 0; i < HARNESS_SERVERS_MAX; i++)
        if (harness_pids[i] == pid)
            harness_pids[i] = 0;
}

/* Kills and reaps every server still registered, and removes its directory. */
static void harness_reap(void)
{
    char cmd[4200];

    for (int i = 0; i < HARNESS_SERVERS_MAX; i++) {
        if (harness_pids[i] <= 0)
            continue;
        kill(harness_pids[i], SIGKILL);
        waitpid(harness_pids[i], NULL, 0);
        harness_pids[i] = 0;
        if (getenv("FERRY_KEEP") == NULL) {
            snprintf(cmd, sizeof(cmd), "rm -rf %s", harness_dirs[i]);
            if (system(cmd) != 0)
                fprintf(stderr, "harness: cannot remove %s\n", harness_dirs[i]);
        }
    }
}

static void harness_register(const struct server *s)
{
    static int at_exit;

    if (!at_exit && atexit(harness_reap) == 0)
        at_exit = 1;
    for (int i = 0; i < HARNESS_SERVERS_MAX; i++) {
        if (harness_pids[i] == 0) {
            harness_pids[i] = s->pid;
            snprintf(harness_dirs[i], sizeof(harness_dirs[i]), "%s", s->dir);
            return;
        }
    }
    fprintf(stderr, "harness: more than %d servers at once\n", HARNESS_SERVERS_MAX);
    exit(99);
}

static void die(const char *what)
{
    fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
    exit(99);
}

/* Starts ferry serve on s->dir's data and waits for its readiness line (no sleeps). */
static void server_launch(struct server *s, const char *const *extra)
{
    int pfd[2], efd;
    char line[512], datadir[300];
    size_t n = 0;
    FILE *f;

    snprintf(datadir, sizeof(datadir), "%s/data", s->dir);
    snprintf(s->err_path, sizeof(s->err_path), "%s/serve.err", s->dir);
    if (pipe(pfd) != 0)
        die("pipe");
    if ((s->pid = fork()) < 0)
        die("fork");
    if (s->pid == 0) {
        /* The test process dying (a crash, a kill) takes its server with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *argv[32] = {(char *)(uintptr_t)ferry_bin,
                          "serve",
                          "--data",
                          datadir,
                          "--listen",
                          "127.0.0.1:0",
                          "--signup",
                          "open"};
        int i = 8;
        while (extra != NULL && *extra != NULL && i < 31)
            argv[i++] = (char *)(uintptr_t)*extra++;
        argv[i] = NULL;
        efd = open(s->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(pfd[1], 1);
        dup2(efd, 2);
        close(pfd[0]);
        execv(ferry_bin, argv);
        _exit(127);
    }
    harness_register(s);
    close(pfd[1]);
    if ((f = fdopen(pfd[0], "r")) == NULL || fgets(line, sizeof(line), f) == NULL) {
        fprintf(stderr, "harness: ferry serve did not become ready\n");
        exit(99);
    }
    fclose(f);
    /* "listening on 127.0.0.1:PORT id ID" */
    if (sscanf(line, "listening on 127.0.0.1:%15s id %52s", s->port, s->id) != 2) {
        fprintf(stderr, "harness: unexpected readiness line: %s", line);
        exit(99);
    }
    (void)n;
}

/* Starts ferry serve on a new data directory. */
static void server_start(struct server *s, const char *const *extra)
{
    snprintf(s->dir, sizeof(s->dir), "/tmp/ferry-proto-XXXXXX");
    if (mkdtemp(s->dir) == NULL)
        die("mkdtemp");
    server_launch(s, extra);
}

/*
 * A cmocka teardown for tests that each start their own servers: what a
 * failed assertion left running (it skipped server_stop) is killed before
 * the next test. It kills every server still registered, so it is not for
 * a group whose tests share a server started by the group's setup.
 */
__attribute__((unused)) static int harness_teardown(void **state)
{
    (void)state;
    harness_reap();
    return 0;
}

/* A process's resident set in KiB (VmRSS of /proc/PID/status), or -1. */
__attribute__((unused)) static long proc_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0 && sscanf(line + 6, "%ld", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* Stops the server; returns its exit status (0 is a clean, sanitizer-clean stop). */
__attribute__((unused)) static int server_stop(struct server *s)
{
    int st = 0;
    char cmd[600];

    kill(s->pid, SIGTERM);
    waitpid(s->pid, &st, 0);
    harness_forget(s->pid);
    snprintf(cmd, sizeof(cmd),
             "grep -E 'AddressSanitizer|ThreadSanitizer|runtime error|LeakSanitizer' %s >&2 && "
             "exit 1; exit 0",
             s->err_path);
    if (system(cmd) != 0)
        return 98;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 97;
}

static void server_cleanup(struct server *s)
{
    char cmd[400];

    if (getenv("FERRY_KEEP") != NULL) {
        fprintf(stderr, "harness: keeping %s\n", s->dir);
        return;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: cannot remove %s\n", s->dir);
}

/* Opens a TLS connection with a fresh device identity; 0 or an error code. */
__attribute__((unused)) static int client_open(struct client *cl, struct server *s)
{
    char dir[300];
    static int serial;
    int rc;

    memset(cl, 0, sizeof(*cl));
    snprintf(dir, sizeof(dir), "%s/dev%d", s->dir, serial++);
    if ((rc = ferry_identity_load_or_create(dir, &cl->id)) != 0)
        return rc;
    return ferry_client_connect(&cl->c, "127.0.0.1", s->port, &cl->id, s->id, 5000);
}

static void client_close(struct client *cl)
{
    ferry_client_close(&cl->c);
    ferry_identity_cleanup(&cl->id);
}

__attribute__((unused)) static int client_raw(struct client *cl, const void *p, size_t n)
{
    int rc = ferry_client_send_raw(cl->c, p, n);

    return rc != 0 ? rc : ferry_client_pump(cl->c, 5000, 1);
}

static int client_send(struct client *cl, int32_t type, json_t *body)
{
    int rc;

    ferry_uuid_new(cl->last_ref);
    json_object_set_new(body, "id", json_string(cl->last_ref));
    if ((rc = ferry_client_send_cmd(cl->c, type, body)) != 0)
        return rc;
    return ferry_client_pump(cl->c, 5000, 1);
}

/*
 * Reads the next command (skipping data frames). Returns 1 with *out set,
 * 0 on a clean close by the peer, < 0 on timeout or error.
 */
static int client_recv(struct client *cl, struct ferry_cmd *out, int timeout_ms)
{
    uint64_t deadline = ferry_now_ms() + (uint64_t)timeout_ms;
    struct ferry_frame f;
    int rc;

    for (;;) {
        rc = ferry_client_next_frame(cl->c, &f);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            if (f.type != FERRY_FRAME_COMMAND)
                continue;
            return ferry_cmd_decode(f.payload, f.payload_len, out) == 0 ? 1 : FERRY_EPROTO;
        }
        /* Frames that arrived before the close are taken first. */
        if (ferry_client_eof(cl->c))
            return 0;
        if (ferry_now_ms() >= deadline)
            return FERRY_ETIMEDOUT;
        rc = ferry_client_pump(cl->c, (int)(deadline - ferry_now_ms()), 0);
        if (rc != 0 && rc != FERRY_ETIMEDOUT && !ferry_client_eof(cl->c))
            return 0;
    }
}

/* Waits for a message of the given type; returns 1, 0 on close, < 0 otherwise. */
static int client_expect(struct client *cl, int32_t type, struct ferry_cmd *out)
{
    int rc;

    for (;;) {
        rc = client_recv(cl, out, HARNESS_WAIT_MS);
        if (rc != 1)
            return rc;
        if (out->type == type)
            return 1;
        ferry_cmd_cleanup(out);
    }
}

/*
 * The version these tests connect as: 1.3, so that downloads come as
 * Transfer, data and TransferComplete; test_files.c connects as 1.4 to get
 * file frames (R-XFER-7, R-FILE-1).
 */
#define HARNESS_CONNECT_VERSION "1.3"

/* Connect (optionally with a token); returns 1 when Accept arrived. */
static int client_hello(struct client *cl, const char *token)
{
    struct ferry_cmd m;
    json_t *b = json_pack("{s:s, s:s}", "client", "ferry-test", "version", HARNESS_CONNECT_VERSION);
    int rc;

    if (token != NULL)
        json_object_set_new(b, "token", json_string(token));
    if (client_send(cl, FERRY_MSG_CONNECT, b) != 0)
        return -1;
    rc = client_expect(cl, FERRY_MSG_ACCEPT, &m);
    if (rc == 1)
        ferry_cmd_cleanup(&m);
    return rc;
}

/* Connect + Signup; returns 1 on success and copies the token if asked. */
__attribute__((unused)) static int client_signup(struct client *cl, const char *user, char *token,
                                                 size_t cap)
{
    struct ferry_cmd m;
    int rc;

    if (client_hello(cl, NULL) != 1)
        return -1;
    if (client_send(cl, FERRY_MSG_SIGNUP,
                    json_pack("{s:s, s:s, s:s}", "user", user, "password", "correct horse",
                              "device", "test")) != 0)
        return -1;
    rc = client_recv(cl, &m, HARNESS_WAIT_MS);
    if (rc != 1)
        return -1;
    if (m.type != FERRY_MSG_SESSION) {
        ferry_cmd_cleanup(&m);
        return -1;
    }
    if (token != NULL)
        snprintf(token, cap, "%s", json_string_value(json_object_get(m.body, "token")));
    ferry_cmd_cleanup(&m);
    return 1;
}

/* The wire code of an Error message. */
static int err_code(const struct ferry_cmd *m)
{
    return m->type == FERRY_MSG_ERROR ? (int)json_integer_value(json_object_get(m->body, "code"))
                                      : -1;
}

/* Expects one Error with code, then the connection closed by the server. */
__attribute__((unused)) static int expect_error_close(struct client *cl, int code)
{
    struct ferry_cmd m;
    int rc = client_recv(cl, &m, HARNESS_WAIT_MS), got;

    if (rc != 1) {
        fprintf(stderr, "expected Error %d, got rc=%d\n", code, rc);
        return 0;
    }
    got = err_code(&m);
    ferry_cmd_cleanup(&m);
    if (got != code) {
        fprintf(stderr, "expected Error %d, got %d\n", code, got);
        return 0;
    }
    rc = client_recv(cl, &m, HARNESS_WAIT_MS);
    if (rc == 1)
        ferry_cmd_cleanup(&m);
    if (rc != 0)
        fprintf(stderr, "expected close after Error %d, rc=%d\n", code, rc);
    return rc == 0;
}

/* A round trip that proves a connection still works. */
__attribute__((unused)) static int ping_ok(struct client *cl)
{
    struct ferry_cmd m;
    int rc;

    if (client_send(cl, FERRY_MSG_PING, json_object()) != 0)
        return 0;
    rc = client_expect(cl, FERRY_MSG_PONG, &m);
    if (rc == 1)
        ferry_cmd_cleanup(&m);
    return rc == 1;
}

/*
 * The start every protocol test program shares: argv[1] is the ferry binary
 * the servers run; SIGPIPE is ignored (a server that closes must not end the
 * test) and libsodium is ready. 0, or the status main returns (2: usage).
 */
static inline int harness_init(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-TO-FERRY\n", argv[0]);
        return 2;
    }
    ferry_bin = argv[1];
    signal(SIGPIPE, SIG_IGN);
    return sodium_init() < 0 ? 2 : 0;
}

#endif
