/*
 * The client's task list (issue 4): every put and get is recorded before it
 * starts and forgotten when it ends, unless it ended interrupted (exit 4)
 * or never ended (the process was killed). `ferry resume` lists what is
 * left and runs each again; the server's ChunkNeed answers make a re-run
 * upload continue from its last durable chunk.
 *
 * R-CLI-9, R-CLI-10: the same command run again (same arguments, folder,
 * server and user) takes over the record of its unfinished run instead of
 * adding one, reuses the destination as that run resolved it, and so
 * finishes what it started; its end forgets the record.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "cli.h"
#include "ferry/state.h"

/* Tasks listed and resumed by one `ferry resume`. */
#define CLI_TASKS_MAX 1000
/* Bytes of one task's recorded arguments: far above any real command line. */
#define CLI_TASK_ARGS_MAX (1u << 20)

static int64_t task_id;
/* -1 until the destination is known; then 1 for an existing folder, 0 for anything else. */
static int task_dest_dir = -1;

/* The tasks table and its columns are the state store's (src/lib/store/state.c). */

/* The kernel's start time of a process (clock ticks since boot), 0 if it is gone. */
static int64_t proc_start(pid_t pid)
{
    char path[64], buf[1024], *p;
    FILE *f;
    size_t n;
    int field;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "re")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Field 22, counted after the command name, which may hold spaces and ')'. */
    if ((p = strrchr(buf, ')')) == NULL)
        return 0;
    for (field = 2; *p != '\0' && field < 22; p++)
        if (*p == ' ')
            field++;
    return strtoll(p, NULL, 10);
}

/* A task still running elsewhere is not taken over: its process is alive and the same one. */
static int task_running(sqlite3_stmt *st, int pid_col, int start_col)
{
    pid_t pid = (pid_t)sqlite3_column_int64(st, pid_col);
    int64_t start = sqlite3_column_int64(st, start_col);

    return pid > 0 && pid != getpid() && start != 0 && proc_start(pid) == start;
}

/* The arguments, each with its NUL, in one buffer (ferry_free it). */
static uint8_t *pack_args(int argc, char **argv, size_t *len)
{
    size_t n = 0, k;
    uint8_t *b;
    int i;

    for (i = 0; i < argc; i++)
        n += strlen(argv[i]) + 1;
    if (n > CLI_TASK_ARGS_MAX || (b = ferry_malloc(n > 0 ? n : 1)) == NULL)
        return NULL;
    for (i = 0, n = 0; i < argc; i++) {
        k = strlen(argv[i]) + 1;
        memcpy(b + n, argv[i], k);
        n += k;
    }
    *len = n;
    return b;
}

/* Version 1's argv text for the same arguments, to recognise its rows. */
static char *legacy_argv(int argc, char **argv)
{
    json_t *a = json_array();
    char *text = NULL;
    int i;

    for (i = 0; a != NULL && i < argc; i++)
        json_array_append_new(a, json_string(argv[i])); /* NULL (not UTF-8) was dropped */
    if (a != NULL)
        text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return text;
}

static void bind_key(sqlite3_stmt *st, const struct cli_remote *r, const char *cwd,
                     const uint8_t *args, size_t alen, const char *legacy)
{
    sqlite3_bind_text(st, 1, r->addr, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cwd, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, args, (int)alen, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, legacy != NULL ? legacy : "", -1, SQLITE_STATIC);
}

#define KEY_WHERE                                                                                  \
    "server = ?1 AND user = ?2 AND cwd = ?3 AND (args = ?4 OR (args IS NULL AND argv = ?5))"

/* The task of this process: the one `ferry resume` gave, an unfinished identical one, or new. */
static int64_t adopt_or_insert(sqlite3 *db, const char *env_id, const struct cli_remote *r,
                               const char *cwd, const uint8_t *args, size_t alen,
                               const char *legacy)
{
    sqlite3_stmt *st = NULL;
    int64_t id = 0, me = proc_start(getpid());

    ferry_state_enter(db);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    if (env_id != NULL) {
        /* `ferry resume` runs a task again under the id it already has. */
        if (sqlite3_prepare_v2(db, "SELECT id, dest_dir FROM tasks WHERE id = ?1", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_int64(st, 1, strtoll(env_id, NULL, 10));
            if (sqlite3_step(st) == SQLITE_ROW)
                id = sqlite3_column_int64(st, 0);
        }
    } else if (sqlite3_prepare_v2(db,
                                  "SELECT id, dest_dir, pid, pid_start FROM tasks WHERE " KEY_WHERE
                                  " ORDER BY id DESC",
                                  -1, &st, NULL) == SQLITE_OK) {
        bind_key(st, r, cwd, args, alen, legacy);
        while (id == 0 && sqlite3_step(st) == SQLITE_ROW)
            if (!task_running(st, 2, 3))
                id = sqlite3_column_int64(st, 0);
    }
    if (id != 0 && sqlite3_column_type(st, 1) != SQLITE_NULL)
        task_dest_dir = sqlite3_column_int(st, 1) != 0;
    sqlite3_finalize(st);
    st = NULL;
    if (id != 0) {
        if (sqlite3_prepare_v2(db, "UPDATE tasks SET pid = ?2, pid_start = ?3 WHERE id = ?1", -1,
                               &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, id);
            sqlite3_bind_int64(st, 2, (int64_t)getpid());
            sqlite3_bind_int64(st, 3, me);
            sqlite3_step(st);
        }
    } else if (env_id == NULL &&
               sqlite3_prepare_v2(db,
                                  "INSERT INTO tasks(server, user, cwd, argv, started, args, pid,"
                                  " pid_start) VALUES(?1, ?2, ?3, '', ?6, ?4, ?7, ?8)",
                                  -1, &st, NULL) == SQLITE_OK) {
        bind_key(st, r, cwd, args, alen, NULL);
        sqlite3_bind_int64(st, 6, (int64_t)time(NULL));
        sqlite3_bind_int64(st, 7, (int64_t)getpid());
        sqlite3_bind_int64(st, 8, me);
        if (sqlite3_step(st) == SQLITE_DONE)
            id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        id = 0;
        task_dest_dir = -1;
    }
out:
    ferry_state_leave(db);
    return id;
}

void cli_task_begin(int argc, char **argv)
{
    struct cli_remote r = {0};
    char cwd[PATH_MAX], *legacy = NULL;
    uint8_t *args = NULL;
    sqlite3 *db = NULL;
    size_t alen = 0;

    task_id = 0;
    task_dest_dir = -1;
    if (cli_session_load(&r) != 0 || getcwd(cwd, sizeof(cwd)) == NULL ||
        (args = pack_args(argc, argv, &alen)) == NULL || (legacy = legacy_argv(argc, argv)) == NULL)
        goto out;
    if (cli_state_db(&db) != 0)
        goto out;
    task_id = adopt_or_insert(db, getenv("FERRY_TASK_ID"), &r, cwd, args, alen, legacy);
out:
    /* A task list that cannot be written costs `ferry resume`, not the transfer. */
    ferry_free(args);
    free(legacy);
    sodium_memzero(r.token, sizeof(r.token));
}

int cli_task_dest_dir(void)
{
    return task_dest_dir;
}

void cli_task_set_dest_dir(int is_dir)
{
    sqlite3_stmt *st = NULL;
    sqlite3 *db = NULL;

    if (task_id <= 0 || task_dest_dir >= 0)
        return;
    task_dest_dir = is_dir != 0;
    if (cli_state_db(&db) == 0 &&
        sqlite3_prepare_v2(db, "UPDATE tasks SET dest_dir = ?2 WHERE id = ?1", -1, &st, NULL) ==
            SQLITE_OK) {
        sqlite3_bind_int64(st, 1, task_id);
        sqlite3_bind_int(st, 2, task_dest_dir);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
}

void cli_task_end(int exit_code)
{
    sqlite3_stmt *st = NULL, *rows = NULL;
    sqlite3 *db = NULL;

    if (task_id <= 0)
        return;
    if (cli_state_db(&db) != 0)
        goto out;
    if (exit_code == CLI_RESUMABLE) {
        /* Left for a re-run or `ferry resume`, which may start at once. */
        if (sqlite3_prepare_v2(db, "UPDATE tasks SET pid = 0, pid_start = 0 WHERE id = ?1", -1, &st,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, task_id);
            sqlite3_step(st);
        }
        goto out;
    }
    /*
     * Finished (well or not): forget it, and every unfinished record of the
     * same command not running elsewhere, since this run did their work.
     */
    ferry_state_enter(db);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        ferry_state_leave(db);
        goto out;
    }
    if (sqlite3_prepare_v2(db,
                           "SELECT t.id, t.pid, t.pid_start FROM tasks t, tasks me WHERE me.id = ?1"
                           " AND t.server = me.server AND t.user = me.user AND t.cwd = me.cwd AND"
                           " (t.args = me.args OR (t.args IS NULL AND t.argv = me.argv))",
                           -1, &rows, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "DELETE FROM tasks WHERE id = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(rows, 1, task_id);
        while (sqlite3_step(rows) == SQLITE_ROW) {
            if (sqlite3_column_int64(rows, 0) != task_id && task_running(rows, 1, 2))
                continue;
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, sqlite3_column_int64(rows, 0));
            sqlite3_step(st);
        }
    }
    sqlite3_finalize(rows);
    rows = NULL;
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    ferry_state_leave(db);
out:
    sqlite3_finalize(rows);
    sqlite3_finalize(st);
    task_id = 0;
}

static const char resume_usage[] =
    "usage: ferry resume [-l | --forget] [ID... | --all]\n"
    "\n"
    "Lists the puts and gets that did not finish (interrupted, or the process was\n"
    "killed) and runs each again, in the folder it was started from, with the\n"
    "destination its first run chose. An upload continues from the chunks the\n"
    "server already made durable; a download from what it already wrote. Running\n"
    "the same command again does the same and takes the task off the list.\n"
    "\n"
    "  -l, --list   only list them\n"
    "  --forget     take tasks off the list without running them (IDs, or --all)\n"
    "  --all        with --forget: every task\n"
    "  ID...        only these tasks\n"
    "\n"
    "Exit status: the worst of the tasks run (4 interrupted, 3 some files failed,\n"
    "1 failure); 0 when all finished or there was nothing to do.\n";

struct task {
    int64_t id;
    char *cwd;
    char **args; /* NULL-terminated, from one allocation */
    char *server;
    char *user;
    int64_t started;
};

/* A row's arguments as a NULL-terminated vector in one allocation (ferry_free it). */
static char **row_args(sqlite3_stmt *st, int blob_col, int json_col)
{
    const uint8_t *b = sqlite3_column_blob(st, blob_col);
    size_t len = (size_t)sqlite3_column_bytes(st, blob_col), n = 0, i, k;
    json_t *a = NULL, *v;
    char **out = NULL, *text;

    if (b == NULL || len == 0) {
        /* A row of version 1: the JSON array. */
        const unsigned char *j = sqlite3_column_text(st, json_col);
        if (j == NULL || (a = json_loads((const char *)j, 0, NULL)) == NULL || !json_is_array(a))
            goto out;
        for (i = 0, len = 0; i < json_array_size(a); i++) {
            v = json_array_get(a, i);
            if (!json_is_string(v))
                goto out;
            len += strlen(json_string_value(v)) + 1;
        }
        n = json_array_size(a);
    } else {
        if (b[len - 1] != '\0' || len > CLI_TASK_ARGS_MAX)
            goto out; /* not written by us */
        for (i = 0; i < len; i++)
            n += b[i] == '\0';
    }
    if ((out = ferry_malloc((n + 1) * sizeof(*out) + len)) == NULL)
        goto out;
    text = (char *)(out + n + 1);
    for (i = 0, k = 0; i < n; i++) {
        const char *s = a != NULL ? json_string_value(json_array_get(a, i)) : (const char *)b + k;
        size_t sl = strlen(s) + 1;
        memcpy(text, s, sl);
        out[i] = text;
        text += sl;
        k += sl;
    }
    out[n] = NULL;
out:
    json_decref(a);
    return out;
}

/* How a task's command line runs in this process (set by main.c, which knows the commands). */
int (*cli_task_runner)(int argc, char **argv);

/* Set once Ctrl-C stopped a task: no other starts. */
static int resume_stop;

/*
 * Runs a task in this process, in the folder it was started from, as the
 * record it is (FERRY_TASK_ID): the command's job does the work on a loop
 * of its own, and the next task starts once it is over.
 */
static int run_task(const struct task *t)
{
    char idbuf[32];
    size_t n = 0;
    int cwd = -1, quiet = cli_quiet, rc = CLI_FAIL;

    while (t->args != NULL && t->args[n] != NULL)
        n++;
    if (n == 0 || cli_task_runner == NULL)
        return CLI_FAIL;
    if ((cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        cli_err("task %lld: cannot remember the current folder: %s", (long long)t->id,
                strerror(errno));
        return CLI_FAIL;
    }
    if (chdir(t->cwd) != 0) {
        cli_err("task %lld: cannot enter %s: %s", (long long)t->id, cli_esc(t->cwd),
                strerror(errno));
        goto out;
    }
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)t->id);
    setenv("FERRY_TASK_ID", idbuf, 1);
    /* The task's own options decide, as on its first run: not resume's -q. */
    cli_quiet = 0;
    cli_wire_reset();
    fflush(NULL);
    rc = cli_task_runner((int)n, t->args);
    fflush(NULL);
    cli_quiet = quiet;
    unsetenv("FERRY_TASK_ID");
    /* Ctrl-C stopped this task; no other starts. */
    if (cli_interrupted)
        resume_stop = 1;
    if (fchdir(cwd) != 0 && rc == CLI_OK)
        rc = CLI_FAIL;
out:
    close(cwd);
    return rc;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);

    return ferry_strdup(s != NULL ? (const char *)s : "");
}

static void print_task(const struct task *t)
{
    size_t k;

    printf("%lld  %s@%s  in %s: ferry", (long long)t->id, cli_esc(t->user), cli_esc(t->server),
           cli_esc(t->cwd));
    for (k = 0; t->args != NULL && t->args[k] != NULL; k++)
        printf(" %s", cli_esc(t->args[k]));
    if (t->args == NULL)
        printf(" (arguments unreadable)");
    printf("\n");
    fflush(stdout);
}

/* Takes tasks off the list: the chosen ones, or with all every one. */
static int forget(sqlite3 *db, struct task *v, size_t n, char **ids, int nids, int all)
{
    sqlite3_stmt *st = NULL;
    int j, rc = CLI_OK, found;
    size_t i;

    if (sqlite3_prepare_v2(db, "DELETE FROM tasks WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return CLI_FAIL;
    for (i = 0; i < n; i++) {
        int chosen = all;
        for (j = 0; j < nids; j++)
            chosen |= strtoll(ids[j], NULL, 10) == v[i].id;
        if (!chosen)
            continue;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, v[i].id);
        if (sqlite3_step(st) != SQLITE_DONE) {
            rc = CLI_FAIL;
            continue;
        }
        if (!cli_quiet)
            printf("forgot task %lld\n", (long long)v[i].id);
    }
    for (j = 0; j < nids; j++) {
        for (i = 0, found = 0; i < n; i++)
            found |= strtoll(ids[j], NULL, 10) == v[i].id;
        if (!found) {
            cli_err("no task %s", cli_esc(ids[j]));
            rc = CLI_FAIL;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int cmd_resume(int argc, char **argv)
{
    static const struct option opts[] = {
        {"list", no_argument, NULL, 'l'}, {"forget", no_argument, NULL, 'f'},
        {"all", no_argument, NULL, 'a'},  {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    struct task *v = NULL;
    sqlite3_stmt *st = NULL;
    sqlite3 *db = NULL;
    size_t n = 0, i;
    int c, list = 0, do_forget = 0, all = 0, rc = CLI_OK, worst = CLI_OK, j, ids;
    char *end;

    optind = 1;
    while ((c = getopt_long(argc, argv, "lqh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            list = 1;
            break;
        case 'f':
            do_forget = 1;
            break;
        case 'a':
            all = 1;
            break;
        case 'q':
            cli_quiet = 1;
            break;
        case 'h':
            fputs(resume_usage, stdout);
            return CLI_OK;
        default:
            fputs(resume_usage, stderr);
            return CLI_USAGE;
        }
    }
    for (j = optind; j < argc; j++) {
        if (strtoll(argv[j], &end, 10) <= 0 || *end != '\0') {
            cli_err("'%s' is not a task id (ferry resume --list shows them)", cli_esc(argv[j]));
            return CLI_USAGE;
        }
    }
    if ((all && !do_forget) || (do_forget && list) || (do_forget && all == (optind < argc))) {
        fputs(resume_usage, stderr);
        return CLI_USAGE;
    }
    if (cli_state_db(&db) != 0)
        return CLI_FAIL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, cwd, args, server, user, started, argv FROM tasks"
                           " ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK ||
        (v = ferry_calloc(CLI_TASKS_MAX, sizeof(*v))) == NULL) {
        rc = CLI_FAIL;
        goto out;
    }
    while (n < CLI_TASKS_MAX && sqlite3_step(st) == SQLITE_ROW) {
        v[n].id = sqlite3_column_int64(st, 0);
        v[n].cwd = dup_col(st, 1);
        v[n].args = row_args(st, 2, 6);
        v[n].server = dup_col(st, 3);
        v[n].user = dup_col(st, 4);
        v[n].started = sqlite3_column_int64(st, 5);
        n++;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (do_forget) {
        rc = forget(db, v, n, argv + optind, argc - optind, all);
        goto out;
    }
    if (n == 0) {
        if (!cli_quiet)
            printf("nothing to resume\n");
        goto out;
    }
    /* Ctrl-C reaches the running task's loop (cli_interrupted); it stops, and so does the list. */
    /* The tasks run in this process and parse their own command lines: optind moves. */
    ids = optind;
    for (i = 0; i < n && !resume_stop; i++) {
        int chosen = ids == argc;

        for (j = ids; j < argc; j++)
            if (strtoll(argv[j], NULL, 10) == v[i].id)
                chosen = 1;
        if (!chosen)
            continue;
        print_task(&v[i]);
        if (list)
            continue;
        rc = run_task(&v[i]);
        /* The worst outcome decides: interrupted (4) beats partial (3) beats failure. */
        if (rc == CLI_RESUMABLE || (worst != CLI_RESUMABLE && rc > worst))
            worst = rc;
    }
    rc = resume_stop ? CLI_RESUMABLE : worst;
out:
    for (i = 0; v != NULL && i < n; i++) {
        ferry_free(v[i].cwd);
        ferry_free(v[i].args);
        ferry_free(v[i].server);
        ferry_free(v[i].user);
    }
    ferry_free(v);
    sqlite3_finalize(st);
    return rc;
}
