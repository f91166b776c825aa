/* The ferry command-line client: shared state, connection and output helpers. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/hub.h"
#include "ferry/net.h"
#include "ferry/session.h"
#include "ferry/wire.h"

/* A connection could not be made or was lost, so retrying may help. */
#define FERRY_ENOTCONN (-ENOTCONN)
/*
 * R-CLI-3: 1 for a lost or unreachable connection (a system error on the
 * socket, silence), which is worth a reconnect; 0 for an answer, a
 * protocol fault, a local error or Ctrl-C, which a reconnect cannot mend.
 */
int cli_conn_lost(int rc);

/* Exit codes (README; R-CLI-13 for Ctrl-C). */
#define CLI_OK      0
#define CLI_FAIL    1
#define CLI_USAGE   2
#define CLI_PARTIAL 3
/* The connection was lost and --retry-for ran out, or Ctrl-C: run the command again. */
#define CLI_RESUMABLE 4

/* How long to wait for the TCP + TLS handshake. */
#define CLI_CONNECT_TIMEOUT_MS 10000
/* R-SESS-4, R-CLI-2: a server that sent no whole frame for this long is gone. */
#define CLI_IDLE_TIMEOUT_MS 90000
/* CLI_IDLE_TIMEOUT_MS, or FERRY_IDLE_TIMEOUT_MS from the environment (for tests). */
uint64_t cli_idle_ms(void);
/* R-SESS-4: send a heartbeat after this much of our own silence. */
#define CLI_HEARTBEAT_MS 30000

struct cli_remote {
    char addr[300]; /* host:port as the user gave it */
    char host[256];
    char port[16];
    char server_id[FERRY_ID_LEN + 1];
    char user[65];
    char token[64];
};

/* Global flags every command shares. */
extern int cli_quiet;
extern const char *cli_prog;
/* R-CLI-13: set by Ctrl-C during a put or get; the loops stop with -EINTR. */
extern volatile sig_atomic_t cli_interrupted;

struct sqlite3;
struct ferry_state;
/*
 * The state store (ferry/state.h), opened on first use (and migrated) and
 * shared by every module until cli_state_close; never closed by callers.
 * cli_state returns NULL when it cannot be opened (the reason was printed):
 * the library's part files and local index then keep no records.
 */
struct ferry_state *cli_state(void);
/* Its SQLite handle: 0, or the error cli_state met. */
int cli_state_db(struct sqlite3 **db);
void cli_state_close(void);

/* State directory ($XDG_STATE_HOME/ferry), created 0700. */
int cli_state_dir(char *out, size_t cap);
/* The saved session (after login): 0, or FERRY_ENOTFOUND. */
int cli_session_load(struct cli_remote *r);
int cli_session_save(const struct cli_remote *r);
int cli_session_clear(void);
/* Pinned server IDs, by host:port. */
int cli_known_get(const char *addr, char *id, size_t cap);
int cli_known_put(const char *addr, const char *id);

/*
 * Parses [ID@]HOST[:PORT] into r: host, port (default 7070, R-CLI-4), addr
 * (canonical HOST:PORT, brackets around IPv6) and server_id if given.
 * FERRY_EUSAGE for a bad ID, host or port.
 */
int cli_parse_server(const char *in, struct cli_remote *r);
/* A server ID in canonical form (base32 upper case, R-CLI-5), or FERRY_EUSAGE. */
int cli_server_id_canon(const char *in, char out[static FERRY_ID_LEN + 1]);

/* TLS bytes sent and received by the connections closed so far. */
void cli_wire_totals(uint64_t *sent, uint64_t *received);
/* Starts the counts again (each task `ferry resume` runs reports its own). */
void cli_wire_reset(void);
/* Counts a closed connection's TLS bytes into those totals. */
void cli_wire_add(uint64_t sent, uint64_t received);

/*
 * What every way of connecting shares, so that people read the same words
 * whichever path a command takes: the device identity, the pin and its
 * record, the trust prompt and the messages of a failed connection.
 */
/* The device identity from the state directory (created on first use). Prints its errors. */
int cli_load_identity(struct ferry_identity *id);
/* R-TLS-4: trust on first use, only when a person can answer on the terminal; 1: trusted. */
int cli_ask_trust(const char *addr, const char *id);
/* The pin in use for r: the ID given, else the known one, else NULL (ask). */
struct cli_pin {
    char known[FERRY_ID_LEN + 1];
    int have_known;
    const char *pin; /* points into r or known; NULL: none */
};
void cli_pin_choose(const struct cli_remote *r, struct cli_pin *p);
/* A handshake showed seen and it was accepted: remember it for r's address, and in r. */
void cli_pin_confirmed(struct cli_remote *r, const struct cli_pin *p, const char *seen);
/* Where a connection attempt stopped. */
enum cli_stage {
    CLI_AT_TLS,     /* connecting or the handshake (a pin mismatch among them) */
    CLI_AT_TRUST,   /* the person did not trust an unknown server */
    CLI_AT_CONNECT, /* Connect was answered by an Error, or the link broke before Accept */
    CLI_AT_ACCEPT,  /* Accept came without the user a logged-in command needs */
};
/* Says why a connection failed (R-TLS-3, R-SESS-11); nothing for Ctrl-C. */
void cli_connect_failed(const struct cli_remote *r, const char *pin, const char *seen,
                        enum cli_stage stage, int rc);

/*
 * The one-shot commands (ls, rm, mv, signup, login, passwd, logout,
 * whoami, devices) talk to the server through a library session
 * (ferry/session.h) on a loop of their own (rpc.c): they block in
 * cli_rpc_wait() or cli_rpc_call() until their calls are answered. Fields
 * above the line are the commands'; those below the runner's.
 */
struct cli_rpc {
    struct cli_remote r;
    struct ferry_identity id;
    int verbose_errors;    /* cli_rpc_call prints the server's Error text */
    int minor;             /* the server's protocol minor version, from Accept */
    int acks;              /* R-XFER-3: download acknowledgements it remembers */
    uint64_t retry_for_ms; /* R-CLI-3: how long an outage is retried (0: never) */
    /* --- */
    uv_loop_t loop;
    uv_timer_t tick; /* wakes the loop to see Ctrl-C (cli_interrupted) */
    int loop_open;
    SSL_CTX *ctx;
    struct ferry_hub *hub;
    struct ferry_session *s; /* the hub's */
    int up, ever_up, closed, close_rc;
    int pending;        /* calls started and not finished */
    int lost;           /* a call of this wait was ended by the session's end */
    uint64_t active_ms; /* when the loop last ran: the link's last chance of traffic */
};
/* A reply as ferry_reply_fn has it, for a call started with cli_rpc_start(). */
typedef int (*cli_reply_fn)(struct cli_rpc *rpc, int rc, const struct ferry_cmd *reply, void *arg);
/*
 * Connects to rpc->r: TLS pinning r.server_id or the known pin (asking on a
 * terminal on first use), then Connect with r.token; with need_auth, fails
 * unless the session is accepted for a user. Prints its own errors, after
 * which nothing is left to release.
 */
int cli_rpc_open(struct cli_rpc *rpc, int need_auth);
/*
 * R-CLI-6: settles the identity of r's server as cli_rpc_open does (the
 * pin, or the person's yes on a terminal) and closes again, leaving it in
 * r->server_id, so that a password is asked for only once the server is
 * known to be the right one. Nothing but an anonymous Connect is sent, so
 * a server that turns the device away is said before any prompt too.
 */
int cli_rpc_probe(struct cli_remote *r);
/* The saved session's server, logged in. */
int cli_rpc_open_session(struct cli_rpc *rpc);
/* The same, redialling lost links for up to retry_for_ms (R-CLI-3): put, get, resume. */
int cli_rpc_open_retrying(struct cli_rpc *rpc, uint64_t retry_for_ms);
/* Starts a call (takes body); fn sees each reply (return 1 to stay for more). */
int cli_rpc_start(struct cli_rpc *rpc, int32_t type, json_t *body, cli_reply_fn fn, void *arg);
/*
 * Runs the loop until every call started has finished: 0, -EINTR on
 * Ctrl-C, or why the session ended (its calls were told FERRY_ECANCELED).
 */
int cli_rpc_wait(struct cli_rpc *rpc);
/* One call and its one reply: an Error is rc < 0 (its text in cli_last_error()). */
int cli_rpc_call(struct cli_rpc *rpc, int32_t type, json_t *body, struct ferry_cmd *reply);
/* Disconnects (if connected) and frees what the runner holds; safe to call twice. */
void cli_rpc_close(struct cli_rpc *rpc);
/*
 * Runs the loop until done(rpc, arg) holds: 0; -EINTR on Ctrl-C (the
 * caller cancels its jobs and runs again until they end); why the session
 * ended if it did.
 */
int cli_rpc_run(struct cli_rpc *rpc, int (*done)(const struct cli_rpc *rpc, void *arg), void *arg);

/* The atime and mtime pair futimens(2) wants for a file time in ns. */
static inline void cli_mtime_ts(int64_t ns, struct timespec ts[2])
{
    ts[0].tv_sec = ts[1].tv_sec = (time_t)(ns / 1000000000);
    /* Before 1970 only whole seconds: a negative nanosecond part is invalid. */
    ts[0].tv_nsec = ts[1].tv_nsec = ns < 0 ? 0 : (long)(ns % 1000000000);
}
/* The local code for an Error message; *msg (if not NULL) its text, escaped. */
int cli_error_rc(const struct ferry_cmd *cmd, const char **msg);
/* The text of the last Error read, escaped ("" if none): valid until the next one. */
const char *cli_last_error(void);

/* R-AUTH-2: a password is 8 to 1024 bytes. */
#define CLI_PASSWORD_MIN 8
#define CLI_PASSWORD_MAX 1024
/* Reads a password from the TTY (no echo) or one line of stdin. */
int cli_read_password(const char *prompt, int from_stdin, char *buf, size_t cap);

/* Progress line on stderr when it is a TTY and not --quiet. */
struct cli_progress {
    int on;
    uint64_t total;
    uint64_t done;
    uint64_t skipped; /* part of done that did not travel (already on the server) */
    uint64_t files_done;
    uint64_t files_total;
    uint64_t start_ms;
    uint64_t last_ms;
    const char *state; /* e.g. "verifying" (a string constant), or NULL */
    char name[512];    /* the current file, escaped; "" for none */
};
void cli_progress_init(struct cli_progress *p, uint64_t total, uint64_t files);
void cli_progress_update(struct cli_progress *p, int force);
void cli_progress_end(struct cli_progress *p);
/* The file being transferred (escaped and shortened for the line); NULL for none. */
void cli_progress_file(struct cli_progress *p, const char *name);
/* What the transfer waits for, shown after the counts: "verifying", or NULL. */
void cli_progress_state(struct cli_progress *p, const char *state);
/* Erases the progress line if one is shown, so that a message starts at column 0. */
void cli_progress_clear(void);

/*
 * Messages on stderr, "ferry: " first: the progress line is erased before,
 * and the text is escaped (R-CLI-1) except for its line breaks.
 */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int cli_err_muted;
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Text shown to people (text.c). */
/* s escaped into one of a few rotating static buffers: for one message's arguments. */
const char *cli_esc(const char *s);
/* Prints s escaped: names from a peer, or from the local disk, are hostile. */
void cli_print_name(FILE *f, const char *s);
/* Columns an escaped string takes (one per code point). */
size_t cli_text_width(const char *s);
/* R-NAME-1: why a local name cannot travel (a phrase), or NULL if it can. */
const char *cli_name_problem(const char *name, size_t len);
/* 1536 -> "1.5 KiB" (powers of 1024). */
void cli_human_size(char *out, size_t cap, double v);

int cmd_signup(int argc, char **argv);
int cmd_login(int argc, char **argv);
int cmd_passwd(int argc, char **argv);
int cmd_logout(int argc, char **argv);
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_mv(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_whoami(int argc, char **argv);
int cmd_devices(int argc, char **argv);

/*
 * The task list (tasks.c): put and get record themselves until they end.
 * R-CLI-10: an unfinished record of the same command (arguments byte for
 * byte, folder, server, user) not running elsewhere is taken over rather
 * than duplicated; every end but "interrupted" (exit 4) forgets it.
 */
void cli_task_begin(int argc, char **argv);
void cli_task_end(int exit_code);
/*
 * R-CLI-9: how the task's first run resolved its destination: 1 an
 * existing folder (sources go inside it), 0 not, -1 not known yet. A run
 * that knows it uses it instead of what it finds now, so a re-run finishes
 * the same tree; cli_task_set_dest_dir records it once known.
 */
int cli_task_dest_dir(void);
void cli_task_set_dest_dir(int is_dir);
/*
 * How `ferry resume` runs a task's command line (argv[0] "put" or "get")
 * in this process: set by the program, which knows the commands.
 */
extern int (*cli_task_runner)(int argc, char **argv);

#endif
