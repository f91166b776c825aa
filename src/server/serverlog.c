/*
 * ferry serve: the server log (docs/serverlog.md). One event per line, as
 * key=value pairs after "event=", values a peer chose escaped (R-LOG-1);
 * kinds of lines a peer can cause in volume limited per second (R-LOG-3).
 */
#include <string.h>

#include "ferry/path.h"
#include "server.h"

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
    ferry_log(FERRY_LOG_NOTICE, "event=fault ip=%s user=%s device=%s reason=%s", s->conn.peer_ip,
              s->authed ? srv_log_val(user, sizeof(user), s->user, SRV_USER_MAX) : "-",
              s->conn.peer_id[0] != '\0' ? s->conn.peer_id : "-",
              srv_log_val(why, sizeof(why), reason, 200));
}

/*
 * The path of node file_id of user uid, "/a/b", built from the leaf up on
 * the loop thread's read-only connection; "-" when it is gone.
 */
static const char *node_path(struct srv *srv, int64_t uid, int64_t file_id, char *buf, size_t cap)
{
    struct ferry_node n;
    size_t pos = cap - 1, len;
    int64_t id = file_id;
    int depth = 0;

    buf[pos] = '\0';
    while (id != 0 && depth++ <= FERRY_PATH_DEPTH_MAX &&
           ferry_meta_node_by_id(srv->rdb, uid, id, &n) == 0) {
        if (n.parent_id == 0)
            return pos == cap - 1 ? "/" : buf + pos; /* the root */
        len = strlen(n.name);
        if (len + 1 > pos)
            break;
        pos -= len;
        memcpy(buf + pos, n.name, len);
        buf[--pos] = '/';
        id = n.parent_id;
    }
    return "-";
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
        dir, result, srv_log_val(user, sizeof(user), s->user, SRV_USER_MAX), s->conn.peer_ip,
        s->conn.peer_id, srv_log_val(shown, sizeof(shown), path != NULL ? path : "-", 400),
        (unsigned long long)size, sentkv, (unsigned long long)(ms / 1000),
        (unsigned long long)(ms % 1000), err);
}
