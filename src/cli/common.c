/* ferry CLI: client state, connecting with a pinned identity, replies, output. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "cli.h"
#include "ferry/state.h"

/* Set while opening optional extra connections: their failures are not the user's. */
/* The CLI's process-wide settings, set by main.c (the program) from its flags and signals. */
int cli_quiet;
const char *cli_prog = "ferry";
volatile sig_atomic_t cli_interrupted;
int cli_err_muted;

/*
 * Every message goes through here: the progress line is erased first, and
 * whatever control characters or invalid UTF-8 reached the text (a name
 * not passed through cli_esc) are escaped (R-CLI-1, R-ERR-2).
 */
static void emit(const char *prefix, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void emit(const char *prefix, const char *fmt, va_list ap)
{
    char small[1024], *big = NULL, *text = small, *out;
    va_list aq;
    size_t cap;
    int n;

    va_copy(aq, ap);
    n = vsnprintf(small, sizeof(small), fmt, aq);
    va_end(aq);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(small) && (big = ferry_malloc((size_t)n + 1)) != NULL) {
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        text = big;
    }
    cap = strlen(text) * 4 + 1;
    if ((out = ferry_malloc(cap)) != NULL)
        ferry_escape(text, strlen(text), 1, out, cap);
    cli_progress_clear();
    fprintf(stderr, "%s%s\n", prefix, out != NULL ? out : "(out of memory)");
    ferry_free(out);
    ferry_free(big);
}

void cli_err(const char *fmt, ...)
{
    va_list ap;

    if (cli_err_muted)
        return;
    va_start(ap, fmt);
    emit("ferry: ", fmt, ap);
    va_end(ap);
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    emit("ferry: warning: ", fmt, ap);
    va_end(ap);
}

int cli_state_dir(char *out, size_t cap)
{
    int rc = ferry_xdg_dir("XDG_STATE_HOME", ".local/state", out, cap);

    if (rc != 0)
        return rc;
    return ferry_mkdirs(out, 0700);
}

/*
 * The state store (ferry/state.h), opened on first use and kept for the
 * rest of the process: every module's records go through this one handle.
 */
static struct ferry_state *state_store;

/* Opens the store if it is not open yet: 0, or the error printed. */
static int state_open(void)
{
    char dir[4096], path[4200], why[256];
    int rc;

    if (state_store != NULL)
        return 0;
    if ((rc = cli_state_dir(dir, sizeof(dir))) != 0)
        return rc;
    snprintf(path, sizeof(path), "%s/state.db", dir);
    if ((rc = ferry_state_open(path, &state_store, why, sizeof(why))) != 0) {
        cli_err("state database %s: %s", path,
                why[0] != '\0'         ? why
                : rc < 0 && rc > -4096 ? strerror(-rc)
                                       : ferry_strerror(rc));
        return rc;
    }
    return 0;
}

struct ferry_state *cli_state(void)
{
    return state_open() == 0 ? state_store : NULL;
}

int cli_state_db(sqlite3 **db)
{
    int rc;

    *db = NULL;
    if ((rc = state_open()) != 0)
        return rc;
    *db = ferry_state_db(state_store);
    return 0;
}

void cli_state_close(void)
{
    ferry_state_close(state_store);
    state_store = NULL;
}

static int state_exec(const char *sql, const char *a, const char *b, const char *c, const char *d)
{
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = cli_state_db(&db)) != 0)
        return rc;
    rc = FERRY_EINTERNAL;
    ferry_state_enter(db);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, d, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto rollback;
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        rc = 0;
    goto out;
rollback:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
    sqlite3_finalize(st);
    ferry_state_leave(db);
    return rc;
}

int cli_session_load(struct cli_remote *r)
{
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = cli_state_db(&db)) != 0)
        return rc;
    rc = FERRY_ENOTFOUND;
    if (sqlite3_prepare_v2(db, "SELECT addr, server_id, user, token FROM session", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        rc = cli_parse_server((const char *)sqlite3_column_text(st, 0), r);
        snprintf(r->server_id, sizeof(r->server_id), "%s", sqlite3_column_text(st, 1));
        snprintf(r->user, sizeof(r->user), "%s", sqlite3_column_text(st, 2));
        snprintf(r->token, sizeof(r->token), "%s", sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    return rc;
}

int cli_session_save(const struct cli_remote *r)
{
    return state_exec("INSERT OR REPLACE INTO session(one, addr, server_id, user, token)"
                      " VALUES(1, ?1, ?2, ?3, ?4)",
                      r->addr, r->server_id, r->user, r->token);
}

int cli_session_clear(void)
{
    /* state_exec binds four parameters; this statement has none and ignores them. */
    return state_exec("DELETE FROM session", NULL, NULL, NULL, NULL);
}

int cli_known_get(const char *addr, char *id, size_t cap)
{
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = cli_state_db(&db)) != 0)
        return rc;
    rc = FERRY_ENOTFOUND;
    if (sqlite3_prepare_v2(db, "SELECT server_id FROM known_servers WHERE addr = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, addr, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            snprintf(id, cap, "%s", sqlite3_column_text(st, 0));
            rc = 0;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int cli_known_put(const char *addr, const char *id)
{
    return state_exec("INSERT OR REPLACE INTO known_servers(addr, server_id) VALUES(?1, ?2)", addr,
                      id, NULL, NULL);
}

int cli_server_id_canon(const char *in, char out[static FERRY_ID_LEN + 1])
{
    size_t i;

    /* R-CLI-5: RFC 4648 base32 is case-insensitive: a lower-case ID is the same ID. */
    if (strlen(in) != FERRY_ID_LEN)
        return FERRY_EUSAGE;
    for (i = 0; i < FERRY_ID_LEN; i++) {
        char c = in[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7')))
            return FERRY_EUSAGE;
        out[i] = c;
    }
    out[FERRY_ID_LEN] = '\0';
    return 0;
}

int cli_parse_server(const char *in, struct cli_remote *r)
{
    const char *at = strchr(in, '@');
    const char *hp = in;
    char id[FERRY_ID_LEN + 1];
    int rc;

    memset(r, 0, sizeof(*r));
    if (at != NULL) {
        if ((size_t)(at - in) != FERRY_ID_LEN)
            return FERRY_EUSAGE;
        memcpy(id, in, FERRY_ID_LEN);
        id[FERRY_ID_LEN] = '\0';
        if (cli_server_id_canon(id, r->server_id) != 0)
            return FERRY_EUSAGE;
        hp = at + 1;
    }
    /* R-CLI-4: one port parser; an address without a port means the default port. */
    rc = ferry_parse_hostport(hp, FERRY_PORT_DEFAULT, 0, r->host, sizeof(r->host), r->port,
                              sizeof(r->port));
    if (rc != 0)
        return rc;
    /* Pins are kept by HOST:PORT: one spelling per address. */
    snprintf(r->addr, sizeof(r->addr), strchr(r->host, ':') != NULL ? "[%s]:%s" : "%s:%s", r->host,
             r->port);
    return 0;
}

int cli_load_identity(struct ferry_identity *id)
{
    char dir[4096], dev[4200];
    int rc;

    if ((rc = cli_state_dir(dir, sizeof(dir))) != 0) {
        cli_err("no state directory: set HOME or XDG_STATE_HOME");
        return rc;
    }
    snprintf(dev, sizeof(dev), "%s/device", dir);
    if ((rc = ferry_identity_load_or_create(dev, id)) != 0)
        cli_err("device identity in %s: %s", dev, ferry_strerror(rc));
    return rc;
}

int cli_ask_trust(const char *addr, const char *id)
{
    char line[16];
    FILE *tty;
    int ok = 0;

    if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO) || (tty = fopen("/dev/tty", "r+e")) == NULL)
        return 0;
    fprintf(tty,
            "The server at %s is not known yet.\nIts identity is %s\n"
            "Compare it with the line 'ferry serve' printed. Trust it? [y/N] ",
            addr, id);
    fflush(tty);
    if (fgets(line, sizeof(line), tty) != NULL && (line[0] == 'y' || line[0] == 'Y'))
        ok = 1;
    fclose(tty);
    return ok;
}

void cli_pin_choose(const struct cli_remote *r, struct cli_pin *p)
{
    memset(p, 0, sizeof(*p));
    p->have_known = cli_known_get(r->addr, p->known, sizeof(p->known)) == 0;
    /* R-TLS-4: the ID the user gave, else the known one, else the person decides. */
    if (r->server_id[0] != '\0')
        p->pin = r->server_id;
    else if (p->have_known)
        p->pin = p->known;
}

void cli_pin_confirmed(struct cli_remote *r, const struct cli_pin *p, const char *seen)
{
    if (!p->have_known || strcmp(p->known, seen) != 0)
        cli_known_put(r->addr, seen);
    snprintf(r->server_id, sizeof(r->server_id), "%s", seen);
}

void cli_connect_failed(const struct cli_remote *r, const char *pin, const char *seen,
                        enum cli_stage stage, int rc)
{
    if (rc == -EINTR)
        return; /* Ctrl-C says it all */
    switch (stage) {
    case CLI_AT_TLS:
        if (rc == FERRY_EPIN) {
            /* R-TLS-3: loud, and never overridden silently. */
            cli_err("SERVER IDENTITY MISMATCH for %s\n"
                    "  expected: %s\n  received: %s\n"
                    "Someone may be intercepting the connection, or the server's data directory\n"
                    "was replaced. If you are sure the server changed, log in again with\n"
                    "--server-id %s.",
                    r->addr, pin, seen, seen);
        } else if (rc == FERRY_EAUTH) {
            cli_err("cannot connect to %s: the TLS handshake failed (the server may be busy or\n"
                    "refusing this address, or it is not a ferry server)",
                    r->addr);
        } else if (rc == -ECONNRESET) {
            /* R-SESS-11: past its refusal budget a full server closes before TLS. */
            cli_err("cannot connect to %s: the server closed the connection (it may be busy);\n"
                    "try again later",
                    r->addr);
        } else {
            cli_err("cannot connect to %s: %s", r->addr, ferry_strerror(rc));
        }
        break;
    case CLI_AT_TRUST:
        cli_err("refusing to trust the unknown server %s\n  its identity is %s\n"
                "Check it against the 'listening on' line of 'ferry serve', then pass\n"
                "--server-id %s (or %s@%s).",
                r->addr, seen, seen, seen, r->addr);
        break;
    case CLI_AT_CONNECT:
        if (rc == FERRY_EBUSY)
            /* R-SESS-11: a full server answers Connect with Error 9 before it closes. */
            cli_err("server %s is busy (too many connections); try again later", r->addr);
        else
            cli_err("server %s refused the connection: %s", r->addr, ferry_strerror(rc));
        break;
    case CLI_AT_ACCEPT:
        cli_err("your session on %s has ended (logged out, password changed, or revoked).\n"
                "Run: ferry login --server %s --user %s",
                r->addr, r->addr, r->user[0] ? r->user : "NAME");
        break;
    }
}

/* TLS bytes of every connection this process closed (--stats). */
static uint64_t wire_tx, wire_rx;

void cli_wire_add(uint64_t sent, uint64_t received)
{
    wire_tx += sent;
    wire_rx += received;
}

void cli_wire_reset(void)
{
    wire_tx = wire_rx = 0;
}

void cli_wire_totals(uint64_t *sent, uint64_t *received)
{
    *sent = wire_tx;
    *received = wire_rx;
}

uint64_t cli_idle_ms(void)
{
    static uint64_t ms;
    const char *env;
    uint64_t v;

    /* FERRY_IDLE_TIMEOUT_MS is for tests, which cannot wait 90 s for a silent server. */
    if (ms == 0) {
        env = getenv("FERRY_IDLE_TIMEOUT_MS");
        ms = env != NULL && ferry_parse_size(env, &v) == 0 && v >= 100 && v <= 86400000
                 ? v
                 : CLI_IDLE_TIMEOUT_MS;
    }
    return ms;
}

/* The text of the last Error read, escaped. */
static char last_error[1100];

const char *cli_last_error(void)
{
    return last_error;
}

int cli_error_rc(const struct ferry_cmd *cmd, const char **msg)
{
    /* R-ERR-2: text from a peer reaches the terminal only escaped (R-CLI-1). */
    char *clean = last_error;
    const size_t cap = sizeof(last_error);
    json_t *code = json_object_get(cmd->body, "code");
    json_t *m = json_object_get(cmd->body, "message");
    const char *t = json_is_string(m) ? json_string_value(m) : "error";
    json_int_t wire = json_is_integer(code) ? json_integer_value(code) : 10;

    ferry_escape(t, strlen(t), 0, clean, cap);
    if (msg != NULL)
        *msg = clean;
    /* R-ERR-3: a code beyond int is unknown too, never cut down to a known one (2^32 + 9 to 9). */
    return ferry_err_from_wire(wire >= INT_MIN && wire <= INT_MAX ? (int)wire : 10);
}

int cli_read_password(const char *prompt, int from_stdin, char *buf, size_t cap)
{
    int rc = ferry_read_password(prompt, from_stdin, buf, cap);

    if (rc == -ENOTTY)
        cli_err("no terminal to ask for the password; use --password-stdin");
    else if (rc != 0)
        cli_err("empty password");
    return rc == 0 ? 0 : FERRY_EUSAGE;
}

/* The progress line now on the terminal, if any: other output erases it first. */
static struct cli_progress *shown;

void cli_progress_init(struct cli_progress *p, uint64_t total, uint64_t files)
{
    *p = (struct cli_progress){.total = total, .files_total = files};
    p->on = !cli_quiet && isatty(STDERR_FILENO) && getenv("TERM") != NULL &&
            strcmp(getenv("TERM"), "dumb") != 0;
    p->start_ms = p->last_ms = ferry_now_ms();
}

void cli_progress_file(struct cli_progress *p, const char *name)
{
    /* Escaped once here, not at every redraw (R-CLI-1). */
    if (name == NULL)
        p->name[0] = '\0';
    else
        ferry_escape(name, strlen(name), 0, p->name, sizeof(p->name));
}

void cli_progress_state(struct cli_progress *p, const char *state)
{
    /* A new state shows at once: it may last less than a redraw period. */
    if (state != p->state) {
        p->state = state;
        if (state != NULL)
            cli_progress_update(p, 1);
    }
}

void cli_progress_clear(void)
{
    if (shown == NULL)
        return;
    /* Back to column 0 and erase: the next update draws the line again below. */
    fputs("\r\033[K", stderr);
    shown = NULL;
}

/* Columns of the terminal on stderr, 80 when it does not say. */
static size_t term_cols(void)
{
    struct winsize ws;

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

void cli_progress_update(struct cli_progress *p, int force)
{
    uint64_t now = ferry_now_ms();
    double secs, rate;
    char done[32], tot[32], rt[32], eta[32] = "--:--", line[256];
    const char *name = p->name;
    size_t cols, used, room;

    if (!p->on || (!force && now - p->last_ms < 250))
        return;
    p->last_ms = now;
    secs = (double)(now - p->start_ms) / 1000.0;
    /* Bytes the server already held count as done but not toward the rate. */
    rate = secs > 0 ? (double)(p->done - p->skipped) / secs : 0;
    cli_human_size(done, sizeof(done), (double)p->done);
    cli_human_size(tot, sizeof(tot), (double)p->total);
    cli_human_size(rt, sizeof(rt), rate);
    if (rate > 0 && p->total >= p->done) {
        uint64_t left = (uint64_t)((double)(p->total - p->done) / rate);
        snprintf(eta, sizeof(eta), "%02llu:%02llu", (unsigned long long)(left / 60),
                 (unsigned long long)(left % 60));
    }
    snprintf(line, sizeof(line), "%s / %s  %s/s  ETA %s  files %llu/%llu%s%s", done, tot, rt, eta,
             (unsigned long long)p->files_done, (unsigned long long)p->files_total,
             p->state != NULL ? "  " : "", p->state != NULL ? p->state : "");
    /* The current file, its tail if the line would wrap: a wrapped line cannot be redrawn. */
    cols = term_cols();
    used = strlen(line);
    room = cols > used + 3 ? cols - used - 3 : 0;
    if (room < 8 || name[0] == '\0') {
        name = "";
    } else if (cli_text_width(name) > room) {
        while (*name != '\0' && cli_text_width(name) > room - 3)
            name++;
        while ((*name & 0xc0) == 0x80)
            name++;
    }
    fprintf(stderr, "\r%s%s%s%s\033[K", line, name[0] != '\0' ? "  " : "",
            name != p->name && name[0] != '\0' ? "..." : "", name);
    shown = p;
}

void cli_progress_end(struct cli_progress *p)
{
    if (!p->on)
        return;
    cli_progress_file(p, NULL);
    cli_progress_state(p, NULL);
    cli_progress_update(p, 1);
    fputc('\n', stderr);
    shown = NULL;
}

int cli_conn_lost(int rc)
{
    /* The library's rule, so that the session and these loops redial alike. */
    return ferry_conn_lost(rc);
}
