/*
 * The client's task list (issue 4): every put and get is recorded before it
 * starts and forgotten when it ends, unless it ended interrupted (exit 4)
 * or never ended (the process was killed). `ferry resume` lists what is
 * left and runs each again; the server's ChunkNeed answers make a re-run
 * upload continue from its last durable chunk.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "cli.h"

/* Tasks listed and resumed by one `ferry resume`. */
#define CLI_TASKS_MAX 1000

static int64_t task_id;

static const char tasks_sql[] =
    "CREATE TABLE IF NOT EXISTS tasks(id INTEGER PRIMARY KEY, server TEXT NOT NULL,"
    " user TEXT NOT NULL, cwd TEXT NOT NULL, argv TEXT NOT NULL, started INTEGER NOT NULL)"
    " STRICT";

void cli_task_begin(int argc, char **argv)
{
    struct cli_remote r = {0};
    char cwd[PATH_MAX], *text = NULL;
    const char *env = getenv("FERRY_TASK_ID");
    sqlite3_stmt *st = NULL;
    sqlite3 *db = NULL;
    json_t *a = NULL;
    int i;

    /* `ferry resume` runs a task again under the id it already has. */
    if (env != NULL && (task_id = strtoll(env, NULL, 10)) > 0)
        return;
    task_id = 0;
    if (cli_session_load(&r) != 0 || getcwd(cwd, sizeof(cwd)) == NULL || (a = json_array()) == NULL)
        goto out;
    for (i = 0; i < argc; i++)
        json_array_append_new(a, json_string(argv[i]));
    if ((text = json_dumps(a, JSON_COMPACT)) == NULL || cli_state_open(&db) != 0 ||
        sqlite3_exec(db, tasks_sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO tasks(server, user, cwd, argv, started)"
                           " VALUES(?1, ?2, ?3, ?4, ?5)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, r.addr, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r.user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cwd, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)time(NULL));
    if (sqlite3_step(st) == SQLITE_DONE)
        task_id = sqlite3_last_insert_rowid(db);
out:
    /* A task list that cannot be written costs `ferry resume`, not the transfer. */
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(text);
    json_decref(a);
}

void cli_task_end(int exit_code)
{
    sqlite3_stmt *st = NULL;
    sqlite3 *db = NULL;

    if (task_id <= 0 || exit_code == CLI_RESUMABLE)
        return;
    if (cli_state_open(&db) == 0 &&
        sqlite3_prepare_v2(db, "DELETE FROM tasks WHERE id = ?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, task_id);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static const char resume_usage[] =
    "usage: ferry resume [--list] [ID...]\n"
    "\n"
    "Lists the puts and gets that did not finish (interrupted, or the process was\n"
    "killed) and runs each again, in the folder it was started from. An upload\n"
    "continues from the chunks the server already made durable.\n"
    "\n"
    "  -l, --list   only list them\n"
    "  ID...        resume only these tasks\n";

struct task {
    int64_t id;
    char *cwd;
    char *argv;
    char *server;
    char *user;
    int64_t started;
};

/* Runs one task in a child, so a crash or exit of it cannot end the others. */
static int run_task(const struct task *t)
{
    char idbuf[32], self[PATH_MAX];
    json_t *a = json_loads(t->argv, 0, NULL), *v;
    char **args = NULL;
    size_t n, i;
    pid_t pid;
    int status = 0, rc = CLI_FAIL;
    ssize_t sl;

    if (!json_is_array(a) || (n = json_array_size(a)) == 0 || n > 100000 ||
        (args = ferry_calloc(n + 2, sizeof(*args))) == NULL)
        goto out;
    if ((sl = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0)
        goto out;
    self[sl] = '\0';
    args[0] = self;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v))
            goto out;
        args[i + 1] = (char *)(uintptr_t)json_string_value(v);
    }
    /* Only the two resumable commands are ever recorded. */
    if (strcmp(args[1], "put") != 0 && strcmp(args[1], "get") != 0)
        goto out;
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)t->id);
    fflush(NULL);
    if ((pid = fork()) < 0)
        goto out;
    if (pid == 0) {
        if (chdir(t->cwd) != 0) {
            cli_err("task %lld: cannot enter %s: %s", (long long)t->id, t->cwd, strerror(errno));
            _exit(CLI_FAIL);
        }
        setenv("FERRY_TASK_ID", idbuf, 1);
        execv(self, args);
        _exit(CLI_FAIL);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : CLI_FAIL;
out:
    ferry_free(args);
    json_decref(a);
    return rc;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);

    return ferry_strdup(s != NULL ? (const char *)s : "");
}

int cmd_resume(int argc, char **argv)
{
    static const struct option opts[] = {
        {"list", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct task *v = NULL;
    sqlite3_stmt *st = NULL;
    sqlite3 *db = NULL;
    size_t n = 0, i;
    int c, list = 0, rc = CLI_OK, worst = CLI_OK, j;

    optind = 1;
    while ((c = getopt_long(argc, argv, "lh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            list = 1;
            break;
        case 'h':
            fputs(resume_usage, stdout);
            return CLI_OK;
        default:
            fputs(resume_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (cli_state_open(&db) != 0)
        return CLI_FAIL;
    if (sqlite3_exec(db, tasks_sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT id, cwd, argv, server, user, started FROM tasks ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK ||
        (v = ferry_calloc(CLI_TASKS_MAX, sizeof(*v))) == NULL) {
        rc = CLI_FAIL;
        goto out;
    }
    while (n < CLI_TASKS_MAX && sqlite3_step(st) == SQLITE_ROW) {
        v[n].id = sqlite3_column_int64(st, 0);
        v[n].cwd = dup_col(st, 1);
        v[n].argv = dup_col(st, 2);
        v[n].server = dup_col(st, 3);
        v[n].user = dup_col(st, 4);
        v[n].started = sqlite3_column_int64(st, 5);
        n++;
    }
    sqlite3_finalize(st);
    st = NULL;
    sqlite3_close(db);
    db = NULL;
    if (n == 0) {
        if (!cli_quiet)
            printf("nothing to resume\n");
        goto out;
    }
    for (i = 0; i < n; i++) {
        int chosen = optind == argc;

        for (j = optind; j < argc; j++)
            if (strtoll(argv[j], NULL, 10) == v[i].id)
                chosen = 1;
        if (!chosen)
            continue;
        printf("%lld  %s@", (long long)v[i].id, v[i].user);
        cli_print_name(stdout, v[i].server);
        printf("  in ");
        cli_print_name(stdout, v[i].cwd);
        printf(": ferry");
        {
            json_t *a = json_loads(v[i].argv, 0, NULL), *x;
            size_t k;
            json_array_foreach(a, k, x)
            {
                printf(" ");
                cli_print_name(stdout, json_string_value(x) ? json_string_value(x) : "?");
            }
            json_decref(a);
        }
        printf("\n");
        fflush(stdout);
        if (list)
            continue;
        rc = run_task(&v[i]);
        /* The worst outcome decides: interrupted (4) beats partial (3) beats failure. */
        if (rc == CLI_RESUMABLE || (worst != CLI_RESUMABLE && rc > worst))
            worst = rc;
    }
    rc = worst;
out:
    for (i = 0; v != NULL && i < n; i++) {
        ferry_free(v[i].cwd);
        ferry_free(v[i].argv);
        ferry_free(v[i].server);
        ferry_free(v[i].user);
    }
    ferry_free(v);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
