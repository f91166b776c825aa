/*
 * ferry serve: the server log (docs/serverlog.md). One event per line, as
 * key=value pairs after "event=", values a peer chose escaped (R-LOG-1);
 * kinds of lines a peer can cause in volume limited per second (R-LOG-3).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ferry/path.h"
#include "server.h"

/*
 * R-LOG-7: the loop thread's lines, gathered and written with one write(2)
 * before the server next sends on any connection, or before the loop waits
 * again: a download of 10,000 small files wrote 10,000 lines one system
 * call each. Other threads, and every thread once the loop stops, write at
 * once.
 */
#define SRV_LOG_TURN_BUF (64u << 10)
/* A line: ferry_log's 1 KiB message, the prefix and the newline. */
#define SRV_LOG_LINE_MAX 1100

static struct {
    pthread_mutex_t mu;
    char buf[SRV_LOG_TURN_BUF];
    size_t len;
    int on;           /* gathering: the loop runs */
    pthread_t thread; /* the loop's */
} turn = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Writes what is gathered; with turn.mu held. */
static void turn_write(void)
{
    size_t off = 0;
    ssize_t n;

    while (off < turn.len) {
        n = write(STDERR_FILENO, turn.buf + off, turn.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* nowhere to write the log to: it is lost, the server goes on */
        off += (size_t)n;
    }
    turn.len = 0;
}

void srv_log_sink(enum ferry_log_level lvl, const char *msg)
{
    static const char *const names[] = {"debug", "info", "notice", "warn", "error"};
    char line[SRV_LOG_LINE_MAX];
    int n = snprintf(line, sizeof(line), "ferry serve: level=%s %s\n", names[lvl], msg);

    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    pthread_mutex_lock(&turn.mu);
    if (SRV_LOG_TURN_BUF - turn.len < (size_t)n)
        turn_write();
    memcpy(turn.buf + turn.len, line, (size_t)n);
    turn.len += (size_t)n;
    if (!turn.on || !pthread_equal(pthread_self(), turn.thread))
        turn_write();
    pthread_mutex_unlock(&turn.mu);
}

/* Before a socket write, and at the end of a loop turn: what was gathered goes out. */
static void turn_drain(void)
{
    pthread_mutex_lock(&turn.mu);
    if (turn.len > 0)
        turn_write();
    pthread_mutex_unlock(&turn.mu);
}

static void turn_end_cb(uv_prepare_t *h)
{
    (void)h;
    turn_drain();
}

void srv_log_turns_start(struct srv *srv)
{
    uv_prepare_init(srv->loop, &srv->log_turn);
    uv_prepare_start(&srv->log_turn, turn_end_cb);
    /* It runs every turn but keeps no loop alive: the loop ends when the server stops. */
    uv_unref((uv_handle_t *)&srv->log_turn);
    pthread_mutex_lock(&turn.mu);
    turn.thread = pthread_self();
    turn.on = 1;
    pthread_mutex_unlock(&turn.mu);
    ferry_conn_set_before_send(turn_drain);
}

void srv_log_turns_stop(struct srv *srv)
{
    pthread_mutex_lock(&turn.mu);
    if (turn.on && !uv_is_closing((uv_handle_t *)&srv->log_turn))
        uv_close((uv_handle_t *)&srv->log_turn, NULL);
    turn.on = 0;
    turn_write();
    pthread_mutex_unlock(&turn.mu);
    ferry_conn_set_before_send(NULL);
}

/* Characters a value may hold without quotes: nothing a parser could trip on. */
static int bare_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == ':' || c == '/' || c == '@' || c == '+';
}

/*
 * R-LOG-1: s as one value. Bare when every byte is a plain character;
 * otherwise in double quotes with '"' and '\' escaped and every byte outside
 * printable ASCII written as \xHH, so a value never ends a line, a pair or
 * a quoted string early. At most max bytes of s are shown, then "...".
 */
const char *srv_log_val(char *out, size_t cap, const char *s, size_t max)
{
    size_t i, o = 0, n = strlen(s);
    int bare = n > 0 && n <= max;

    for (i = 0; bare && i < n; i++)
        bare = bare_char((unsigned char)s[i]);
    if (bare && n < cap) {
        memcpy(out, s, n + 1);
        return out;
    }
    /* Room for the worst byte (4), the ellipsis (3), the closing quote and NUL. */
    out[o++] = '"';
    for (i = 0; i < n && i < max && o + 9 < cap; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static const char *const kind_names[SRV_LOG_KINDS] = {"refused", "fault", "throttled"};

/* Ends kind's window if its second is over, writing what it suppressed. */
static void window_roll(struct srv *srv, int kind, uint64_t now)
{
    struct srv_log_limit *l = &srv->logl;

    if (now - l->window_ms[kind] < 1000)
        return;
    if (l->suppressed[kind] > 0)
        ferry_log(FERRY_LOG_NOTICE, "event=suppressed what=%s count=%llu", kind_names[kind],
                  (unsigned long long)l->suppressed[kind]);
    l->window_ms[kind] = now;
    l->lines[kind] = 0;
    l->suppressed[kind] = 0;
}

int srv_log_allow(struct srv *srv, enum srv_log_kind kind)
{
    struct srv_log_limit *l = &srv->logl;

    window_roll(srv, kind, ferry_now_ms());
    if (l->lines[kind] < SRV_LOG_BURST) {
        l->lines[kind]++;
        return 1;
    }
    l->suppressed[kind]++;
    return 0;
}

void srv_log_flush(struct srv *srv)
{
    uint64_t now = ferry_now_ms();
    int k;

    for (k = 0; k < SRV_LOG_KINDS; k++)
        if (srv->logl.suppressed[k] > 0)
            window_roll(srv, k, now);
}

void srv_log_fault(struct sess *s, const char *reason)
{
    char user[80], why[300];

    if (!srv_log_allow(s->srv, SRV_LOG_FAULT))
        return;
    ferry_log(FERRY_LOG_NOTICE, "event=fault ip=%s user=%s device=%s reason=%s",
              ferry_conn_peer_ip(s->conn),
              s->authed ? srv_log_val(user, sizeof(user), s->user, SRV_USER_MAX) : "-",
              ferry_conn_peer_id(s->conn)[0] != '\0' ? ferry_conn_peer_id(s->conn) : "-",
              srv_log_val(why, sizeof(why), reason, 200));
}

/*
 * The path of node file_id of user uid, "/a/b", built from the leaf up on
 * the loop thread's read-only connection; "-" when it is gone. Within the
 * download pump's read transaction, the folder path of the last file is
 * kept: the next file of that folder costs one lookup, not one per level.
 */
static const char *node_path(struct srv *srv, int64_t uid, int64_t file_id, char *buf, size_t cap)
{
    struct ferry_node n;
    size_t pos = cap - 1, len;
    int64_t id = file_id, dir_id = 0;
    int depth = 0, cached;

    buf[pos] = '\0';
    for (;;) {
        if (depth++ > FERRY_PATH_DEPTH_MAX || ferry_meta_node_by_id(srv->rdb, uid, id, &n) != 0)
            return "-"; /* gone meanwhile, or deeper than a path may be */
        if (n.parent_id == 0)
            break; /* the root */
        len = strlen(n.name);
        if (len + 1 > pos)
            return "-";
        pos -= len;
        memcpy(buf + pos, n.name, len);
        buf[--pos] = '/';
        id = n.parent_id;
        if (dir_id != 0)
            continue;
        dir_id = id;
        cached = srv->rsnap_open && srv->logdir.snap == srv->rsnap && srv->logdir.uid == uid &&
                 srv->logdir.dir_id == dir_id;
        if (cached) {
            len = strlen(srv->logdir.path);
            if (len > pos)
                return "-";
            pos -= len;
            memcpy(buf + pos, srv->logdir.path, len);
            return buf + pos;
        }
    }
    if (pos == cap - 1)
        return "/";
    if (srv->rsnap_open) {
        /* The folder's path: everything before the file's own slash ("" for the root). */
        len = (size_t)(strrchr(buf + pos, '/') - (buf + pos));
        if (len < sizeof(srv->logdir.path)) {
            memcpy(srv->logdir.path, buf + pos, len);
            srv->logdir.path[len] = '\0';
            srv->logdir.snap = srv->rsnap;
            srv->logdir.uid = uid;
            srv->logdir.dir_id = dir_id;
        }
    }
    return buf + pos;
}

void srv_log_transfer(struct sess *s, const char *dir, const char *path, int64_t file_id,
                      uint64_t size, uint64_t sent, uint64_t t0_ms, int rc, const char *result)
{
    char user[80], where[FERRY_PATH_MAX + 2], shown[512], sentkv[40] = "", err[120] = "";
    uint64_t ms = ferry_now_ms() - t0_ms;

    if (path == NULL && file_id != 0)
        path = node_path(s->srv, s->uid, file_id, where, sizeof(where));
    else if (path != NULL && path[0] != '/') {
        snprintf(where, sizeof(where), "/%s", path);
        path = where;
    }
    if (sent != size)
        snprintf(sentkv, sizeof(sentkv), " sent=%llu", (unsigned long long)sent);
    if (rc != 0)
        snprintf(err, sizeof(err), " error=%d reason=\"%s\"", ferry_err_to_wire(rc),
                 ferry_strerror(rc));
    ferry_log(
        FERRY_LOG_INFO,
        "event=%s result=%s user=%s ip=%s device=%s path=%s bytes=%llu%s seconds=%llu.%03llu%s",
        dir, result, srv_log_val(user, sizeof(user), s->user, SRV_USER_MAX),
        ferry_conn_peer_ip(s->conn), ferry_conn_peer_id(s->conn),
        srv_log_val(shown, sizeof(shown), path != NULL ? path : "-", 400), (unsigned long long)size,
        sentkv, (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000), err);
}
