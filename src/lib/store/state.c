/* The client's state store: one file, one handle per process, one schema (ferry/state.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/err.h"
#include "ferry/state.h"

struct ferry_state {
    sqlite3 *db;
};

/*
 * Schema 1: what the CLI kept before the store had a version, in one
 * place. A file from then holds some of these tables (each module created
 * its own on first use), perhaps older forms of two of them; the steps
 * below bring any such file, or a new one, to the same tables.
 */
static const char schema1_sql[] =
    "CREATE TABLE IF NOT EXISTS known_servers(addr TEXT PRIMARY KEY,"
    " server_id TEXT NOT NULL) STRICT;"
    "CREATE TABLE IF NOT EXISTS session(one INTEGER PRIMARY KEY CHECK(one = 1),"
    " addr TEXT NOT NULL, server_id TEXT NOT NULL, user TEXT NOT NULL,"
    " token TEXT NOT NULL) STRICT;"
    /* Issue 4's local index: file identity to chunk list. */
    "CREATE TABLE IF NOT EXISTS file_index(dev INTEGER NOT NULL,"
    " ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,"
    " ctime INTEGER NOT NULL, recorded INTEGER NOT NULL, list BLOB NOT NULL,"
    " PRIMARY KEY(dev, ino)) STRICT;"
    /*
     * R-RECV-2: resume records, keyed by the folder's identity and the part
     * file's name, and bound to the part file's own identity (fino, fborn).
     */
    "CREATE TABLE IF NOT EXISTS partials(dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
    " name TEXT NOT NULL, cid TEXT NOT NULL, durable INTEGER NOT NULL,"
    " fino INTEGER NOT NULL, fborn INTEGER NOT NULL, PRIMARY KEY(dev, ino, name)) STRICT;"
    "CREATE TABLE IF NOT EXISTS partial_chunks(dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
    " name TEXT NOT NULL, cid TEXT NOT NULL, bitmap BLOB NOT NULL,"
    " fino INTEGER NOT NULL, fborn INTEGER NOT NULL, PRIMARY KEY(dev, ino, name)) STRICT;"
    /*
     * Unfinished puts and gets (`ferry resume`): `args` holds each argument
     * with its NUL, byte for byte; `argv` (a JSON array) only in rows of the
     * first task format, which could not hold arguments that are not UTF-8.
     */
    "CREATE TABLE IF NOT EXISTS tasks(id INTEGER PRIMARY KEY, server TEXT NOT NULL,"
    " user TEXT NOT NULL, cwd TEXT NOT NULL, argv TEXT NOT NULL, started INTEGER NOT NULL,"
    " args BLOB, pid INTEGER NOT NULL DEFAULT 0, pid_start INTEGER NOT NULL DEFAULT 0,"
    " dest_dir INTEGER) STRICT;";

/* Columns the first task format lacked, added to a tasks table that has not got them. */
static const char *const tasks_added[][2] = {
    {"args", "ALTER TABLE tasks ADD COLUMN args BLOB"},
    {"pid", "ALTER TABLE tasks ADD COLUMN pid INTEGER NOT NULL DEFAULT 0"},
    {"pid_start", "ALTER TABLE tasks ADD COLUMN pid_start INTEGER NOT NULL DEFAULT 0"},
    {"dest_dir", "ALTER TABLE tasks ADD COLUMN dest_dir INTEGER"},
};

static int has_column(sqlite3 *db, const char *table, const char *col)
{
    sqlite3_stmt *st = NULL;
    char sql[128];
    int ok;

    snprintf(sql, sizeof(sql), "SELECT %s FROM %s LIMIT 0", col, table);
    ok = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    return ok;
}

static int has_table(sqlite3 *db, const char *table)
{
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

/* Inside the caller's transaction: any file of before the schema had a version, to schema 1. */
static int migrate_1(sqlite3 *db)
{
    static const char *const parts[] = {"partials", "partial_chunks"};
    char sql[96];
    size_t i;

    /* R-RECV-2: records without the part file's identity cannot be trusted: they go. */
    for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (!has_table(db, parts[i]) || has_column(db, parts[i], "fborn"))
            continue;
        snprintf(sql, sizeof(sql), "DROP TABLE %s", parts[i]);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            return FERRY_EINTERNAL;
    }
    if (has_table(db, "tasks"))
        for (i = 0; i < sizeof(tasks_added) / sizeof(tasks_added[0]); i++)
            if (!has_column(db, "tasks", tasks_added[i][0]) &&
                sqlite3_exec(db, tasks_added[i][1], NULL, NULL, NULL) != SQLITE_OK)
                return FERRY_EINTERNAL;
    return sqlite3_exec(db, schema1_sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : FERRY_EINTERNAL;
}

static int user_version(sqlite3 *db, int *v)
{
    sqlite3_stmt *st = NULL;
    int rc = FERRY_EINTERNAL;

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        *v = sqlite3_column_int(st, 0);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/*
 * Brings the file to FERRY_STATE_SCHEMA. The version is read again inside
 * the write transaction: two processes opening an old file at once migrate
 * it once, the second finding it done.
 */
static int migrate(sqlite3 *db)
{
    char sql[64];
    int v, rc;

    if ((rc = user_version(db, &v)) != 0)
        return rc;
    if (v == FERRY_STATE_SCHEMA)
        return 0;
    if (v > FERRY_STATE_SCHEMA)
        return FERRY_EVERSION;
    ferry_state_enter(db);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = FERRY_EINTERNAL;
        goto done;
    }
    if ((rc = user_version(db, &v)) != 0)
        goto out;
    if (v > FERRY_STATE_SCHEMA) {
        rc = FERRY_EVERSION;
        goto out;
    }
    if (v < 1 && (rc = migrate_1(db)) != 0)
        goto out;
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", FERRY_STATE_SCHEMA);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = FERRY_EINTERNAL;
out:
    if (rc != 0)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
done:
    ferry_state_leave(db);
    return rc;
}

int ferry_state_open(const char *path, struct ferry_state **out, char *why, size_t whycap)
{
    struct ferry_state *st = NULL;
    struct stat sb;
    int fd, rc = FERRY_EINTERNAL;

    *out = NULL;
    if (why != NULL && whycap > 0)
        why[0] = '\0';
    /*
     * Created 0600 here (SQLite would follow the umask), and only when new:
     * it is opened once per process, but another process may hold it.
     */
    if ((fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) >= 0)
        close(fd);
    else if (errno != EEXIST)
        return -errno;
    else if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return -ELOOP; /* a link or something else planted in our place */
    if ((st = ferry_calloc(1, sizeof(*st))) == NULL)
        return -ENOMEM;
    /* FULLMUTEX: the jobs' pool and writer threads keep their records through this handle. */
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK)
        goto out;
    sqlite3_busy_timeout(st->db, 10000);
    /* FULL: a session token, a pin or a resume record is acknowledged once on disk. */
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
                     NULL) != SQLITE_OK)
        goto out;
    rc = migrate(st->db);
out:
    if (rc != 0) {
        if (why != NULL && whycap > 0)
            snprintf(why, whycap, "%s",
                     rc == FERRY_EVERSION ? "written by a newer ferry"
                     : st->db != NULL     ? sqlite3_errmsg(st->db)
                                          : "cannot open");
        ferry_state_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

struct sqlite3 *ferry_state_db(const struct ferry_state *st)
{
    return st != NULL ? st->db : NULL;
}

void ferry_state_enter(struct sqlite3 *db)
{
    /* The handle's own recursive mutex, the one each call takes. */
    sqlite3_mutex_enter(sqlite3_db_mutex(db));
}

void ferry_state_leave(struct sqlite3 *db)
{
    sqlite3_mutex_leave(sqlite3_db_mutex(db));
}

void ferry_state_close(struct ferry_state *st)
{
    if (st == NULL)
        return;
    sqlite3_close(st->db);
    ferry_free(st);
}
