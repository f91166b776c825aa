/*
 * Unit tests for the client's state store (ferry/state.h, issue 10 item 4):
 * a new file gets every table, 0600 and the schema version; a file written
 * before the store had a version keeps its records and loses only what
 * cannot be trusted; a newer file and anything but a regular file are
 * refused; two processes migrating one old file at once both succeed; a
 * resume record written on one thread never lends its relaxed sync setting
 * to another thread's commits on the shared handle.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/err.h"
#include "ferry/part.h"
#include "ferry/state.h"

struct fx {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-state-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    free(f);
    return system(cmd) == 0 ? 0 : -1;
}

/* One integer the query returns, or -1. */
static long long one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err != NULL ? err : "?");
}

/* Writes one row in every table, as the CLI's modules do. */
static void write_all(sqlite3 *db)
{
    exec_ok(db, "INSERT OR REPLACE INTO known_servers VALUES('h:1', 'ID1');"
                "INSERT OR REPLACE INTO session VALUES(1, 'h:1', 'ID1', 'u', 'tok');"
                "INSERT OR REPLACE INTO file_index VALUES(1, 2, 3, 4, 5, 6, x'00');"
                "INSERT INTO partials VALUES(1, 2, 'p', 'c', 7, 8, 9);"
                "INSERT INTO partial_chunks VALUES(1, 2, 'p', 'c', x'01', 8, 9);"
                "INSERT INTO tasks(server, user, cwd, argv, started, args, pid, pid_start,"
                " dest_dir) VALUES('h:1', 'u', '/', '[]', 1, x'00', 2, 3, 1);");
}

/* Issue 10 item 4: a new store has every table, mode 0600 and this build's schema. */
static void test_new_store(void **state)
{
    struct fx *f = *state;
    struct ferry_state *st;
    struct stat sb;
    sqlite3 *db;

    assert_int_equal(ferry_state_open(f->path, &st, NULL, 0), 0);
    db = ferry_state_db(st);
    assert_non_null(db);
    assert_int_equal(one(db, "PRAGMA user_version"), FERRY_STATE_SCHEMA);
    write_all(db);
    assert_int_equal(one(db, "SELECT COUNT(*) FROM tasks WHERE dest_dir = 1"), 1);
    ferry_state_close(st);
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* Opened again: nothing changes, nothing is lost. */
    assert_int_equal(ferry_state_open(f->path, &st, NULL, 0), 0);
    db = ferry_state_db(st);
    assert_int_equal(one(db, "SELECT COUNT(*) FROM partials"), 1);
    assert_int_equal(one(db, "SELECT COUNT(*) FROM session"), 1);
    ferry_state_close(st);
}

/* A file as the CLI left it before the store had a version: five modules' own tables. */
static void make_legacy(const char *path)
{
    sqlite3 *db;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=WAL;"
                "CREATE TABLE known_servers(addr TEXT PRIMARY KEY, server_id TEXT NOT NULL) STRICT;"
                "CREATE TABLE session(one INTEGER PRIMARY KEY CHECK(one = 1), addr TEXT NOT NULL,"
                " server_id TEXT NOT NULL, user TEXT NOT NULL, token TEXT NOT NULL) STRICT;"
                "CREATE TABLE file_index(dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
                " size INTEGER NOT NULL, mtime INTEGER NOT NULL, ctime INTEGER NOT NULL,"
                " recorded INTEGER NOT NULL, list BLOB NOT NULL, PRIMARY KEY(dev, ino)) STRICT;"
                /* The first task format: argv as JSON, no args, pid or dest_dir. */
                "CREATE TABLE tasks(id INTEGER PRIMARY KEY, server TEXT NOT NULL,"
                " user TEXT NOT NULL, cwd TEXT NOT NULL, argv TEXT NOT NULL,"
                " started INTEGER NOT NULL) STRICT;"
                /* Resume records from before they were bound to the part file's identity. */
                "CREATE TABLE partials(dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
                " name TEXT NOT NULL, cid TEXT NOT NULL, durable INTEGER NOT NULL,"
                " PRIMARY KEY(dev, ino, name)) STRICT;"
                "INSERT INTO known_servers VALUES('h:1', 'ID1');"
                "INSERT INTO session VALUES(1, 'h:1', 'ID1', 'alice', 'tok');"
                "INSERT INTO file_index VALUES(1, 2, 3, 4, 5, 6, x'0102');"
                "INSERT INTO tasks VALUES(7, 'h:1', 'alice', '/w', '[\"put\"]', 99);"
                "INSERT INTO partials VALUES(1, 2, '.ferry-x.part', 'sha256:c', 4096);");
    sqlite3_close(db);
}

/*
 * Issue 10 item 4, R-RECV-2: an old file keeps its pins, session, index
 * and tasks (the tasks gaining the later columns); its resume records
 * without identity go; it is then at this build's schema.
 */
static void test_migrates_legacy(void **state)
{
    struct fx *f = *state;
    struct ferry_state *st;
    sqlite3 *db;

    make_legacy(f->path);
    assert_int_equal(ferry_state_open(f->path, &st, NULL, 0), 0);
    db = ferry_state_db(st);
    assert_int_equal(one(db, "PRAGMA user_version"), FERRY_STATE_SCHEMA);
    assert_int_equal(one(db, "SELECT COUNT(*) FROM known_servers WHERE server_id = 'ID1'"), 1);
    assert_int_equal(one(db, "SELECT COUNT(*) FROM session WHERE user = 'alice'"), 1);
    assert_int_equal(one(db, "SELECT length(list) FROM file_index WHERE ino = 2"), 2);
    assert_int_equal(one(db, "SELECT started FROM tasks WHERE id = 7"), 99);
    assert_int_equal(one(db, "SELECT pid + pid_start FROM tasks WHERE id = 7"), 0);
    assert_int_equal(one(db, "SELECT dest_dir IS NULL AND args IS NULL FROM tasks WHERE id = 7"),
                     1);
    assert_int_equal(one(db, "SELECT COUNT(*) FROM partials"), 0);
    assert_int_equal(one(db, "SELECT COUNT(*) FROM partial_chunks"), 0);
    write_all(db); /* every table in its current form */
    ferry_state_close(st);
}

/* A file a newer ferry wrote is refused, and left as it was. */
static void test_newer_refused(void **state)
{
    struct fx *f = *state;
    struct ferry_state *st = (struct ferry_state *)1;
    char why[128], sql[64];
    sqlite3 *db;

    assert_int_equal(ferry_state_open(f->path, &st, NULL, 0), 0);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", FERRY_STATE_SCHEMA + 1);
    exec_ok(ferry_state_db(st), sql);
    ferry_state_close(st);
    assert_int_equal(ferry_state_open(f->path, &st, why, sizeof(why)), FERRY_EVERSION);
    assert_null(st);
    assert_non_null(strstr(why, "newer ferry"));
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(one(db, "PRAGMA user_version"), FERRY_STATE_SCHEMA + 1);
    sqlite3_close(db);
}

/* Something planted at the path — a symlink, a folder — is never opened through. */
static void test_planted_refused(void **state)
{
    struct fx *f = *state;
    struct ferry_state *st;
    char target[160];
    struct stat sb;

    snprintf(target, sizeof(target), "%s/elsewhere.db", f->dir);
    assert_int_equal(symlink(target, f->path), 0);
    assert_int_equal(ferry_state_open(f->path, &st, NULL, 0), -ELOOP);
    assert_null(st);
    assert_int_equal(lstat(target, &sb), -1); /* nothing was created through the link */
    assert_int_equal(unlink(f->path), 0);
    assert_int_equal(mkdir(f->path, 0700), 0);
    assert_int_equal(ferry_state_open(f->path, &st, NULL, 0), -ELOOP);
    assert_int_equal(rmdir(f->path), 0);
}

/* Two processes opening one old file at once both succeed; it is migrated once. */
static void test_concurrent_migration(void **state)
{
    struct fx *f = *state;
    struct ferry_state *st;
    int go[2], status, k;
    pid_t kids[2];
    char c = 'x';

    make_legacy(f->path);
    assert_int_equal(pipe(go), 0);
    for (k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(go[1]);
            /* Both start together, once the parent closes the pipe. */
            while (read(go[0], &c, 1) > 0)
                ;
            _exit(ferry_state_open(f->path, &st, NULL, 0) == 0 ? 0 : 1);
        }
    }
    close(go[0]);
    close(go[1]);
    for (k = 0; k < 2; k++) {
        assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(ferry_state_open(f->path, &st, NULL, 0), 0);
    assert_int_equal(one(ferry_state_db(st), "SELECT COUNT(*) FROM tasks WHERE id = 7"), 1);
    assert_int_equal(one(ferry_state_db(st), "PRAGMA user_version"), FERRY_STATE_SCHEMA);
    ferry_state_close(st);
}

struct recorder {
    struct ferry_state *st;
    int dirfd;
    int done;
    int failed;
};

static void *record_loop(void *arg)
{
    struct recorder *r = arg;
    struct ferry_part_id id = {.dev = 1, .ino = 2, .born = 3};
    char cid[FERRY_CID_LEN + 1];
    int i;

    memset(cid, 'a', FERRY_CID_LEN);
    cid[FERRY_CID_LEN] = '\0';
    for (i = 0; i < 400; i++)
        if (ferry_part_record(r->st, r->dirfd, "part", cid, &id, (uint64_t)i) != 0)
            r->failed++;
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/*
 * A resume record is committed with synchronous=NORMAL (R-RECV-2), a
 * setting of the whole handle: another thread asking meanwhile must still
 * find FULL, which every other commit of the store relies on. Without the
 * span of ferry_state_enter the main thread here sees NORMAL within a few
 * hundred records.
 */
static void test_record_setting_private(void **state)
{
    struct fx *f = *state;
    struct recorder r = {0};
    pthread_t t;
    long long v;
    int seen = 0, relaxed = 0;

    assert_int_equal(ferry_state_open(f->path, &r.st, NULL, 0), 0);
    r.dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(r.dirfd >= 0);
    assert_int_equal(pthread_create(&t, NULL, record_loop, &r), 0);
    while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE)) {
        v = one(ferry_state_db(r.st), "PRAGMA synchronous");
        seen++;
        if (v != 2)
            relaxed++;
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.failed, 0);
    assert_true(seen > 0);
    assert_int_equal(relaxed, 0);
    assert_int_equal(one(ferry_state_db(r.st), "SELECT durable FROM partials"), 399);
    close(r.dirfd);
    ferry_state_close(r.st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_legacy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_planted_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_setting_private, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
