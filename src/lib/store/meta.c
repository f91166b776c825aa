/* Server metadata in SQLite: users, devices, sessions, the tree, content counts. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>
#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/store.h"
#include "meta_int.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS users("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, pwhash TEXT NOT NULL,"
    " created INTEGER NOT NULL) STRICT;"
    "CREATE TABLE IF NOT EXISTS devices("
    " user_id INTEGER NOT NULL REFERENCES users(id), device_id TEXT NOT NULL,"
    " name TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    " PRIMARY KEY(user_id, device_id)) STRICT;"
    "CREATE TABLE IF NOT EXISTS sessions("
    " token_hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    " device_id TEXT NOT NULL, created INTEGER NOT NULL,"
    " UNIQUE(user_id, device_id)) STRICT;"
    "CREATE TABLE IF NOT EXISTS nodes("
    " id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    " parent_id INTEGER NOT NULL, name TEXT NOT NULL, is_dir INTEGER NOT NULL,"
    " size INTEGER NOT NULL DEFAULT 0, cid TEXT, mtime INTEGER NOT NULL,"
    " smtime INTEGER NOT NULL, exec INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE(user_id, parent_id, name)) STRICT;"
    "CREATE TABLE IF NOT EXISTS content("
    " user_id INTEGER NOT NULL, cid TEXT NOT NULL, size INTEGER NOT NULL,"
    " refs INTEGER NOT NULL, data BLOB, PRIMARY KEY(user_id, cid)) STRICT;"
    "CREATE INDEX IF NOT EXISTS content_unref ON content(refs) WHERE refs <= 0;"
    /* R-STORE-10: Remove and Move already applied, by message id. */
    "CREATE TABLE IF NOT EXISTS ops_done("
    " user_id INTEGER NOT NULL, msg_id TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY(user_id, msg_id)) STRICT, WITHOUT ROWID;";

/*
 * Version 2: chunked content (R-CHUNK), per-user usage for quotas
 * (R-CHUNK-9), kept current by triggers so no code path can forget it.
 */
static const char schema_v2[] =
    "ALTER TABLE content ADD COLUMN chunks BLOB;"
    "ALTER TABLE users ADD COLUMN used INTEGER NOT NULL DEFAULT 0;"
    "UPDATE users SET used = (SELECT COALESCE(SUM(size), 0) FROM nodes"
    " WHERE nodes.user_id = users.id AND is_dir = 0);"
    "CREATE TABLE chunks("
    " user_id INTEGER NOT NULL, hash BLOB NOT NULL, size INTEGER NOT NULL,"
    " refs INTEGER NOT NULL, touched INTEGER NOT NULL,"
    " PRIMARY KEY(user_id, hash)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX chunks_unref ON chunks(touched) WHERE refs <= 0;"
    "CREATE TRIGGER used_ins AFTER INSERT ON nodes WHEN NEW.is_dir = 0 BEGIN"
    " UPDATE users SET used = used + NEW.size WHERE id = NEW.user_id; END;"
    "CREATE TRIGGER used_del AFTER DELETE ON nodes WHEN OLD.is_dir = 0 BEGIN"
    " UPDATE users SET used = used - OLD.size WHERE id = OLD.user_id; END;"
    "CREATE TRIGGER used_upd AFTER UPDATE OF size ON nodes WHEN NEW.is_dir = 0 BEGIN"
    " UPDATE users SET used = used + NEW.size - OLD.size WHERE id = NEW.user_id; END;"
    "PRAGMA user_version=2;";

/*
 * Version 3: chunks in per-user packs (R-CHUNK-7) instead of a file each.
 * A chunk row says where its bytes are (pack 0: its file of version 2,
 * which stays where it is); a pack row its committed end and how many
 * chunk rows point into it, kept by triggers like users.used. last_pack
 * makes pack ids never come back, so a reader that checks its chunk's row
 * after reading knows the bytes it read were that chunk's.
 */
static const char schema_v3[] =
    "ALTER TABLE chunks ADD COLUMN pack INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE chunks ADD COLUMN off INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN last_pack INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE packs("
    " user_id INTEGER NOT NULL, id INTEGER NOT NULL, size INTEGER NOT NULL,"
    " live INTEGER NOT NULL, PRIMARY KEY(user_id, id)) STRICT, WITHOUT ROWID;"
    "CREATE TRIGGER pack_ins AFTER INSERT ON chunks WHEN NEW.pack != 0 BEGIN"
    " UPDATE packs SET live = live + 1 WHERE user_id = NEW.user_id AND id = NEW.pack; END;"
    "CREATE TRIGGER pack_del AFTER DELETE ON chunks WHEN OLD.pack != 0 BEGIN"
    " UPDATE packs SET live = live - 1 WHERE user_id = OLD.user_id AND id = OLD.pack; END;"
    "PRAGMA user_version=3;";

/*
 * Version 4: R-QUOTA-1. users.loose is the space of the user's chunks that
 * no content refers to, each rounded up to the 4096-byte blocks
 * (FERRY_PACK_ALIGN) it takes in its pack. Kept by triggers on chunks, like
 * users.used on nodes: a chunk counts from its insert while no reference
 * holds it, stops when its first reference comes, counts again when its
 * last one goes, and stops when its row is deleted.
 */
#define LOOSE_SPACE(col) "((" col " + 4095) / 4096 * 4096)"
static const char schema_v4[] =
    "ALTER TABLE users ADD COLUMN loose INTEGER NOT NULL DEFAULT 0;"
    "UPDATE users SET loose = (SELECT COALESCE(SUM(" LOOSE_SPACE(
        "size") "), 0) FROM chunks"
                " WHERE chunks.user_id = users.id AND refs <= 0);"
                "CREATE TRIGGER loose_ins AFTER INSERT ON chunks WHEN NEW.refs <= 0 BEGIN"
                " UPDATE users SET loose = loose + " LOOSE_SPACE(
                    "NEW.size") " WHERE id = NEW.user_id; END;"
                                "CREATE TRIGGER loose_del AFTER DELETE ON chunks WHEN OLD.refs <= "
                                "0 BEGIN"
                                " UPDATE users SET loose = loose - " LOOSE_SPACE(
                                    "OLD.size") " WHERE id = OLD.user_id; END;"
                                                "CREATE TRIGGER loose_upd AFTER UPDATE OF refs ON "
                                                "chunks"
                                                " WHEN (OLD.refs <= 0) != (NEW.refs <= 0) BEGIN"
                                                " UPDATE users SET loose = loose + (CASE WHEN "
                                                "NEW.refs <= 0 THEN 1 ELSE -1 END) * " LOOSE_SPACE(
                                                    "NEW.size") " WHERE id = NEW.user_id; END;"
                                                                "PRAGMA user_version=4;";

static int exec(struct ferry_meta *m, const char *sql);

static int user_version(struct ferry_meta *m)
{
    sqlite3_stmt *st = NULL;
    int v = -1;

    if (sqlite3_prepare_v2(m->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Brings the schema to the current version in one transaction. */
static int migrate(struct ferry_meta *m)
{
    int rc, v;

    if ((rc = exec(m, "BEGIN IMMEDIATE")) != 0)
        return rc;
    if ((rc = exec(m, schema)) != 0)
        goto fail;
    v = user_version(m);
    if (v < 0) {
        rc = FERRY_EINTERNAL;
        goto fail;
    }
    if (v < 2 && (rc = exec(m, schema_v2)) != 0)
        goto fail;
    if (v < 3 && (rc = exec(m, schema_v3)) != 0)
        goto fail;
    if (v < 4 && (rc = exec(m, schema_v4)) != 0)
        goto fail;
    if (v > 4) {
        ferry_log(FERRY_LOG_ERR, "database schema %d is newer than this ferry (4)", v);
        rc = FERRY_EVERSION;
        goto fail;
    }
    return exec(m, "COMMIT");
fail:
    sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Maps SQLite results onto ferry codes. */
int ferry_meta_sqlrc(struct ferry_meta *m, int rc)
{
    switch (rc) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_CONSTRAINT:
        return FERRY_EEXIST;
    case SQLITE_FULL:
        return FERRY_ENOSPACE;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return FERRY_EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    default:
        ferry_log(FERRY_LOG_ERR, "sqlite rc=%d msg=\"%s\"", rc, sqlite3_errmsg(m->db));
        return FERRY_EINTERNAL;
    }
}

/* Returns a reset, cached prepared statement for a static SQL string. */
sqlite3_stmt *ferry_meta_stmt(struct ferry_meta *m, const char *sql)
{
    size_t i;

    for (i = 0; i < STMT_CACHE && m->cache[i].sql != NULL; i++) {
        if (m->cache[i].sql == sql) {
            sqlite3_reset(m->cache[i].st);
            sqlite3_clear_bindings(m->cache[i].st);
            return m->cache[i].st;
        }
    }
    if (i == STMT_CACHE)
        return NULL;
    if (sqlite3_prepare_v3(m->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &m->cache[i].st, NULL) !=
        SQLITE_OK) {
        ferry_log(FERRY_LOG_ERR, "sqlite prepare: %s", sqlite3_errmsg(m->db));
        return NULL;
    }
    m->cache[i].sql = sql;
    return m->cache[i].st;
}

static int exec(struct ferry_meta *m, const char *sql)
{
    return ferry_meta_sqlrc(m, sqlite3_exec(m->db, sql, NULL, NULL, NULL));
}

/*
 * Opens the database file of m, whose table meta_sqlite.c has set:
 * creating and migrating it unless readonly.
 */
int ferry_sqlite_init(struct ferry_meta *m, const char *path, int readonly)
{
    int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc;

    flags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &m->db, flags, NULL) != SQLITE_OK)
        return FERRY_EINTERNAL;
    sqlite3_busy_timeout(m->db, 5000);
    sqlite3_extended_result_codes(m->db, 0);
    /*
     * ecosystem.md 3.4: WAL, FULL for commits that back an acknowledgement.
     * Inline content makes the WAL grow fast; checkpointing every 32 MiB
     * instead of 4 MiB keeps small-file uploads from paying for it often.
     * A group commit of a few hundred small files carries a few MiB of
     * inline content: with SQLite's default 2 MiB page cache it spills
     * dirty pages into the WAL before the commit and reads them back, so
     * the writer gets 16 MiB.
     */
    if (!readonly) {
        if ((rc = exec(m, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                          "PRAGMA foreign_keys=ON; PRAGMA journal_size_limit=67108864;"
                          "PRAGMA wal_autocheckpoint=8192; PRAGMA cache_size=-16384;")) != 0)
            return rc;
        return migrate(m);
    }
    return exec(m, "PRAGMA foreign_keys=ON;");
}

void ferry_sqlite_close(struct ferry_meta *m)
{
    size_t i;

    if (m == NULL)
        return;
    for (i = 0; i < STMT_CACHE; i++)
        sqlite3_finalize(m->cache[i].st);
    sqlite3_close(m->db);
    ferry_free(m);
}

int ferry_sqlite_begin(struct ferry_meta *m)
{
    return exec(m, "BEGIN IMMEDIATE");
}

int ferry_sqlite_read_begin(struct ferry_meta *m)
{
    int rc;

    /*
     * The server's download pump holds one for a pass, during which a
     * request it lets in (a DirInfo, a DeviceList) may begin its own.
     */
    if (m->read_depth > 0) {
        m->read_depth++;
        return 0;
    }
    if ((rc = exec(m, "BEGIN DEFERRED")) == 0)
        m->read_depth = 1;
    return rc;
}

void ferry_sqlite_read_end(struct ferry_meta *m)
{
    if (m->read_depth > 0 && --m->read_depth > 0)
        return;
    sqlite3_exec(m->db, "COMMIT", NULL, NULL, NULL);
}

int ferry_sqlite_commit(struct ferry_meta *m)
{
    return exec(m, "COMMIT");
}

void ferry_sqlite_rollback(struct ferry_meta *m)
{
    m->dc_valid = 0;
    sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Prepared once: a batch takes a savepoint per operation. */
static const char sql_savepoint[] = "SAVEPOINT op";
static const char sql_release[] = "RELEASE op";

int ferry_sqlite_savepoint(struct ferry_meta *m)
{
    return ferry_meta_step(m, ferry_meta_stmt(m, sql_savepoint));
}

int ferry_sqlite_release(struct ferry_meta *m)
{
    return ferry_meta_step(m, ferry_meta_stmt(m, sql_release));
}

void ferry_sqlite_rollback_to(struct ferry_meta *m)
{
    m->dc_valid = 0;
    sqlite3_exec(m->db, "ROLLBACK TO op; RELEASE op", NULL, NULL, NULL);
}

int ferry_sqlite_check(struct ferry_meta *m)
{
    sqlite3_stmt *st = NULL;
    int rc = FERRY_EINTERNAL;

    if (sqlite3_prepare_v2(m->db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW &&
        strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0)
        rc = 0;
    sqlite3_finalize(st);
    return rc;
}

/* Steps a statement that returns no row. */
int ferry_meta_step(struct ferry_meta *m, sqlite3_stmt *st)
{
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : ferry_meta_sqlrc(m, rc);
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? (const char *)src : "");
}

/* ---- users, devices, sessions ---- */

static const char sql_user_ins[] = "INSERT INTO users(name, pwhash, created) VALUES(?1, ?2, ?3)";
static const char sql_root_ins[] = "INSERT INTO nodes(user_id, parent_id, name, is_dir, mtime, "
                                   "smtime) VALUES(?1, 0, '', 1, ?2, ?2)";

int ferry_sqlite_user_create(struct ferry_meta *m, const char *name, const char *pwhash,
                             int64_t now, int64_t *uid)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_user_ins);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, pwhash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    *uid = sqlite3_last_insert_rowid(m->db);
    /* Each user's root directory: parent 0, empty name. */
    if ((st = ferry_meta_stmt(m, sql_root_ins)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, *uid);
    sqlite3_bind_int64(st, 2, now);
    return ferry_meta_step(m, st);
}

static const char sql_user_get[] = "SELECT id, pwhash FROM users WHERE name = ?1";

int ferry_sqlite_user_get(struct ferry_meta *m, const char *name, int64_t *uid, char *pwhash,
                          size_t cap)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_user_get);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *uid = sqlite3_column_int64(st, 0);
        copy_text(pwhash, cap, sqlite3_column_text(st, 1));
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return rc;
}

static const char sql_user_pw[] = "SELECT pwhash FROM users WHERE id = ?1";

int ferry_sqlite_user_pwhash(struct ferry_meta *m, int64_t uid, char *pwhash, size_t cap)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_user_pw);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        copy_text(pwhash, cap, sqlite3_column_text(st, 0));
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return rc;
}

int ferry_sqlite_user_pwhash_is(struct ferry_meta *m, int64_t uid, const char *verified)
{
    char cur[FERRY_PWHASH_MAX];
    int rc;

    /* R-AUTH-14: the hash a password was checked against must still be the user's. */
    if ((rc = ferry_meta_user_pwhash(m, uid, cur, sizeof(cur))) != 0)
        return rc == FERRY_ENOTFOUND ? FERRY_EAUTH : rc;
    rc = strcmp(cur, verified) == 0 ? 0 : FERRY_EAUTH;
    sodium_memzero(cur, sizeof(cur));
    return rc;
}

static const char sql_user_setpw[] = "UPDATE users SET pwhash = ?2 WHERE id = ?1";

int ferry_sqlite_user_set_pwhash(struct ferry_meta *m, int64_t uid, const char *pwhash)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_user_setpw);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, pwhash, -1, SQLITE_STATIC);
    return ferry_meta_step(m, st);
}

static const char sql_dev_seen[] =
    "INSERT INTO devices(user_id, device_id, name, first_seen, last_seen) VALUES(?1, ?2, ?3, ?4, "
    "?4)"
    " ON CONFLICT(user_id, device_id) DO UPDATE SET name = ?3, last_seen = ?4";

int ferry_sqlite_device_seen(struct ferry_meta *m, int64_t uid, const char *device_id,
                             const char *name, int64_t now)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_dev_seen);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    return ferry_meta_step(m, st);
}

static const char sql_sess_del_dev[] = "DELETE FROM sessions WHERE user_id = ?1 AND device_id = ?2";
static const char sql_sess_ins[] =
    "INSERT INTO sessions(token_hash, user_id, device_id, created) VALUES(?1, ?2, ?3, ?4)";

int ferry_sqlite_session_put(struct ferry_meta *m, int64_t uid, const char *device_id,
                             const uint8_t hash[static 32], int64_t now)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_sess_del_dev);
    int rc;

    /* R-AUTH-6: one session per (user, device); a new login replaces it. */
    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    if ((st = ferry_meta_stmt(m, sql_sess_ins)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, uid);
    sqlite3_bind_text(st, 3, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    return ferry_meta_step(m, st);
}

static const char sql_sess_get[] = "SELECT s.user_id, s.device_id, u.name FROM sessions s"
                                   " JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1";

int ferry_sqlite_session_get(struct ferry_meta *m, const uint8_t hash[static 32], int64_t *uid,
                             char device_id[static FERRY_ID_LEN + 1], char *user, size_t usercap)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_sess_get);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *uid = sqlite3_column_int64(st, 0);
        copy_text(device_id, FERRY_ID_LEN + 1, sqlite3_column_text(st, 1));
        copy_text(user, usercap, sqlite3_column_text(st, 2));
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return rc;
}

static const char sql_sess_del[] = "DELETE FROM sessions WHERE token_hash = ?1";

int ferry_sqlite_session_delete(struct ferry_meta *m, const uint8_t hash[static 32])
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_sess_del);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
    return ferry_meta_step(m, st);
}

static const char sql_sess_del_user[] =
    "DELETE FROM sessions WHERE user_id = ?1 AND (?2 IS NULL OR token_hash != ?2)";

int ferry_sqlite_session_delete_user(struct ferry_meta *m, int64_t uid, const uint8_t *keep)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_sess_del_user);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    if (keep != NULL)
        sqlite3_bind_blob(st, 2, keep, 32, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    return ferry_meta_step(m, st);
}

/* ---- the tree ---- */

#define NODE_COLS FERRY_META_NODE_COLS

void ferry_meta_read_node(sqlite3_stmt *st, struct ferry_node *n)
{
    n->id = sqlite3_column_int64(st, 0);
    n->parent_id = sqlite3_column_int64(st, 1);
    n->is_dir = sqlite3_column_int(st, 2);
    n->exec = sqlite3_column_int(st, 3);
    n->size = sqlite3_column_int64(st, 4);
    n->mtime = sqlite3_column_int64(st, 5);
    n->smtime = sqlite3_column_int64(st, 6);
    copy_text(n->name, sizeof(n->name), sqlite3_column_text(st, 7));
    copy_text(n->cid, sizeof(n->cid), sqlite3_column_text(st, 8));
}

static const char sql_child[] =
    "SELECT " NODE_COLS " FROM nodes WHERE user_id = ?1 AND parent_id = ?2 AND name = ?3";

static int child(struct ferry_meta *m, int64_t uid, int64_t parent, const char *name, size_t len,
                 struct ferry_node *out)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_child);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, parent);
    sqlite3_bind_text(st, 3, name, (int)len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ferry_meta_read_node(st, out);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return rc;
}

int ferry_sqlite_node_by_id(struct ferry_meta *m, int64_t uid, int64_t id, struct ferry_node *out)
{
    static const char sql[] = "SELECT " NODE_COLS " FROM nodes WHERE user_id = ?1 AND id = ?2";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ferry_meta_read_node(st, out);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return rc;
}

static int root(struct ferry_meta *m, int64_t uid, struct ferry_node *out)
{
    return child(m, uid, 0, "", 0, out);
}

/* Walks a normalised path; on FERRY_ENOTFOUND, *last is the deepest node found. */
static int walk(struct ferry_meta *m, int64_t uid, const char *path, struct ferry_node *out,
                const char **rest)
{
    const char *p = path, *slash;
    int rc;

    if ((rc = root(m, uid, out)) != 0)
        return rc;
    while (*p != '\0') {
        struct ferry_node next;
        size_t len;

        if (!out->is_dir)
            return FERRY_ENOTDIR;
        slash = strchr(p, '/');
        len = slash != NULL ? (size_t)(slash - p) : strlen(p);
        rc = child(m, uid, out->id, p, len, &next);
        if (rc != 0) {
            if (rest != NULL)
                *rest = p;
            return rc;
        }
        *out = next;
        p += len;
        if (*p == '/')
            p++;
    }
    if (rest != NULL)
        *rest = p;
    return 0;
}

int ferry_sqlite_lookup(struct ferry_meta *m, int64_t uid, const char *path, struct ferry_node *out)
{
    return walk(m, uid, path, out, NULL);
}

static const char sql_mkdir[] = "INSERT INTO nodes(user_id, parent_id, name, is_dir, mtime, smtime)"
                                " VALUES(?1, ?2, ?3, 1, ?4, ?5)";

/* Creates the missing directories of path below what walk found. */
static int make_dirs(struct ferry_meta *m, int64_t uid, const char *path, int64_t mtime,
                     int64_t now, struct ferry_node *dir)
{
    const char *rest = NULL, *slash;
    int rc = walk(m, uid, path, dir, &rest);

    if (rc == 0)
        return dir->is_dir ? 0 : FERRY_EEXIST;
    if (rc != FERRY_ENOTFOUND)
        return rc;
    while (*rest != '\0') {
        sqlite3_stmt *st = ferry_meta_stmt(m, sql_mkdir);
        size_t len;

        slash = strchr(rest, '/');
        len = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
        if (st == NULL)
            return FERRY_EINTERNAL;
        sqlite3_bind_int64(st, 1, uid);
        sqlite3_bind_int64(st, 2, dir->id);
        sqlite3_bind_text(st, 3, rest, (int)len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, slash == NULL ? mtime : now);
        sqlite3_bind_int64(st, 5, now);
        if ((rc = ferry_meta_step(m, st)) != 0)
            return rc;
        *dir = (struct ferry_node){.id = sqlite3_last_insert_rowid(m->db),
                                   .parent_id = dir->id,
                                   .is_dir = 1,
                                   .mtime = slash == NULL ? mtime : now,
                                   .smtime = now};
        rest += len;
        if (*rest == '/')
            rest++;
    }
    return 0;
}

int ferry_sqlite_mkdirs(struct ferry_meta *m, int64_t uid, const char *path, int64_t mtime,
                        int64_t now, int64_t *dir_id)
{
    struct ferry_node d;
    int rc = make_dirs(m, uid, path, mtime, now, &d);

    if (rc == 0)
        *dir_id = d.id;
    return rc;
}

static const char sql_ref[] =
    "INSERT INTO content(user_id, cid, size, refs, data, chunks) VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
    " ON CONFLICT(user_id, cid) DO UPDATE SET refs = refs + ?4";

/*
 * R-STORE-4: counts change in the same transaction as the tree. Small
 * content (R-STORE-9) rides in the row itself, so the commit makes it
 * durable. Chunked content (R-CHUNK-8) takes a reference on each of its
 * chunks when its row is created; the chunks must all be there.
 */
static int content_ref(struct ferry_meta *m, int64_t uid, const char *cid, int64_t size, int delta,
                       const void *data, const void *chunks, size_t chunks_len)
{
    static const char sql_has[] = "SELECT 1 FROM content WHERE user_id = ?1 AND cid = ?2";
    sqlite3_stmt *st;
    int rc;

    if (chunks != NULL && delta > 0) {
        if ((st = ferry_meta_stmt(m, sql_has)) == NULL)
            return FERRY_EINTERNAL;
        sqlite3_bind_int64(st, 1, uid);
        sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE) {
            if ((rc = ferry_meta_chunks_ref(m, uid, chunks, chunks_len, 1, 0, NULL, NULL)) != 0)
                return rc;
        } else if (rc != SQLITE_ROW) {
            return ferry_meta_sqlrc(m, rc);
        }
    }
    if ((st = ferry_meta_stmt(m, sql_ref)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, size);
    sqlite3_bind_int(st, 4, delta);
    if (data != NULL)
        sqlite3_bind_blob(st, 5, size > 0 ? data : "", (int)size, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 5);
    if (chunks != NULL)
        sqlite3_bind_blob(st, 6, chunks_len > 0 ? chunks : "", (int)chunks_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 6);
    return ferry_meta_step(m, st);
}

int ferry_sqlite_content_inline(struct ferry_meta *m, int64_t uid, const char *cid, void **data,
                                size_t *len)
{
    static const char sql[] = "SELECT data, chunks FROM content WHERE user_id = ?1 AND cid = ?2";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);
    int rc, col;

    *data = NULL;
    *len = 0;
    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        rc = 0;
        col = sqlite3_column_type(st, 0) == SQLITE_BLOB   ? 0
              : sqlite3_column_type(st, 1) == SQLITE_BLOB ? 1
                                                          : -1;
        if (col >= 0) {
            const void *p = sqlite3_column_blob(st, col);
            *len = (size_t)sqlite3_column_bytes(st, col);
            /* An empty blob reads back as NULL: nothing to copy. */
            if ((*data = ferry_malloc(*len > 0 ? *len : 1)) == NULL) {
                rc = -ENOMEM;
            } else {
                if (*len > 0)
                    memcpy(*data, p, *len);
                rc = col + 1;
            }
        }
    } else {
        rc = rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return rc;
}

static const char sql_file_ins[] =
    "INSERT INTO nodes(user_id, parent_id, name, is_dir, size, cid, mtime, smtime, exec)"
    " VALUES(?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8)";
static const char sql_file_upd[] =
    "UPDATE nodes SET size = ?2, cid = ?3, mtime = ?4, smtime = ?5, exec = ?6 WHERE id = ?1";

/* R-QUOTA-1: the sizes of the user's files, and the space of its loose chunks. */
static int user_usage(struct ferry_meta *m, int64_t uid, int64_t *used, int64_t *loose)
{
    static const char sql[] = "SELECT used, loose FROM users WHERE id = ?1";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);
    int rc;

    *used = *loose = 0;
    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *used = sqlite3_column_int64(st, 0);
        *loose = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
}

int ferry_sqlite_used(struct ferry_meta *m, int64_t uid, uint64_t *used)
{
    int64_t v = 0, loose = 0;
    int rc = user_usage(m, uid, &v, &loose);

    *used = v > 0 ? (uint64_t)v : 0;
    return rc;
}

int ferry_sqlite_usage(struct ferry_meta *m, int64_t uid, uint64_t *used, uint64_t *loose)
{
    int64_t u = 0, l = 0;
    int rc = user_usage(m, uid, &u, &l);

    *used = u > 0 ? (uint64_t)u : 0;
    *loose = l > 0 ? (uint64_t)l : 0;
    return rc;
}

/*
 * R-QUOTA-3: the file's size, less the one it replaces, added to the whole
 * usage (R-QUOTA-1) must fit the quota, unless the file does not grow. The
 * caller has already taken the file's references on its chunks, so they are
 * no longer loose and do not count twice.
 */
static int quota_check(struct ferry_meta *m, int64_t uid, int64_t size, int64_t replaced,
                       uint64_t quota)
{
    int64_t used = 0, loose = 0;
    int rc;

    if (quota == 0)
        return 0;
    if ((rc = user_usage(m, uid, &used, &loose)) != 0)
        return rc;
    if (used + loose - replaced + size > (int64_t)quota && size > replaced)
        return FERRY_EQUOTA;
    return 0;
}

int ferry_sqlite_quota_room(struct ferry_meta *m, int64_t uid, int64_t space, uint64_t quota)
{
    int64_t used = 0, loose = 0;
    int rc;

    if (quota == 0)
        return 0;
    if ((rc = user_usage(m, uid, &used, &loose)) != 0)
        return rc;
    /* R-QUOTA-2: compared without a sum that could overflow. */
    if (used + loose > (int64_t)quota || space > (int64_t)quota - (used + loose))
        return FERRY_EQUOTA;
    return 0;
}

int ferry_sqlite_put_file(struct ferry_meta *m, int64_t uid, const char *path, int64_t size,
                          const char *cid, int64_t mtime, int exec, int64_t now, const void *data,
                          const void *chunks, size_t chunks_len, uint64_t quota)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(path, '/');
    const char *name = slash != NULL ? slash + 1 : path;
    struct ferry_node dir, old;
    sqlite3_stmt *st;
    int rc;

    if (*name == '\0')
        return FERRY_EPATH;
    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - path) : 0, path);
    if (m->dc_valid && m->dc_uid == uid && strcmp(m->dc_path, parent) == 0) {
        dir = m->dc_node;
    } else {
        if ((rc = make_dirs(m, uid, parent, now, now, &dir)) != 0)
            return rc == FERRY_EEXIST ? FERRY_ENOTDIR : rc;
        m->dc_valid = 1;
        m->dc_uid = uid;
        m->dc_node = dir;
        memcpy(m->dc_path, parent, strlen(parent) + 1);
    }
    if ((rc = content_ref(m, uid, cid, size, 1, data, chunks, chunks_len)) != 0)
        return rc;
    rc = child(m, uid, dir.id, name, strlen(name), &old);
    if (rc == 0) {
        if (old.is_dir)
            return FERRY_EISDIR;
        if ((rc = quota_check(m, uid, size, old.size, quota)) != 0 ||
            (rc = content_ref(m, uid, old.cid, old.size, -1, NULL, NULL, 0)) != 0 ||
            (st = ferry_meta_stmt(m, sql_file_upd)) == NULL)
            return rc != 0 ? rc : FERRY_EINTERNAL;
        sqlite3_bind_int64(st, 1, old.id);
    } else if (rc == FERRY_ENOTFOUND) {
        if ((rc = quota_check(m, uid, size, 0, quota)) != 0)
            return rc;
        if ((st = ferry_meta_stmt(m, sql_file_ins)) == NULL)
            return FERRY_EINTERNAL;
        sqlite3_bind_int64(st, 1, uid);
        sqlite3_bind_int64(st, 2, dir.id);
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, size);
        sqlite3_bind_text(st, 5, cid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, mtime);
        sqlite3_bind_int64(st, 7, now);
        sqlite3_bind_int(st, 8, exec);
        return ferry_meta_step(m, st);
    } else {
        return rc;
    }
    sqlite3_bind_int64(st, 2, size);
    sqlite3_bind_text(st, 3, cid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, mtime);
    sqlite3_bind_int64(st, 5, now);
    sqlite3_bind_int(st, 6, exec);
    return ferry_meta_step(m, st);
}

static const char sql_children[] =
    "SELECT " NODE_COLS " FROM nodes WHERE user_id = ?1 AND parent_id = ?2 ORDER BY name";

/*
 * Reads the children of dir into an array: the statement must be reset
 * before recursing, because the cache holds one instance of it.
 */
static int read_children(struct ferry_meta *m, int64_t uid, int64_t dir, struct ferry_node **out,
                         size_t *count)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_children);
    struct ferry_node *v = NULL, *nv;
    size_t n = 0, cap = 0;
    int rc;

    *out = NULL;
    *count = 0;
    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, dir);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            if ((nv = ferry_realloc(v, cap * sizeof(*v))) == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            v = nv;
        }
        ferry_meta_read_node(st, &v[n++]);
    }
    rc = rc == SQLITE_DONE ? 0 : ferry_meta_sqlrc(m, rc);
out:
    sqlite3_reset(st);
    if (rc != 0) {
        ferry_free(v);
        return rc;
    }
    *out = v;
    *count = n;
    return 0;
}

static int list_rec(struct ferry_meta *m, int64_t uid, int64_t dir, const char *prefix,
                    int recursive, ferry_meta_list_fn fn, void *arg, int depth)
{
    struct ferry_node *v;
    size_t n, i;
    char rel[FERRY_PATH_MAX + 2];
    int rc;

    if (depth > FERRY_PATH_DEPTH_MAX)
        return FERRY_ETOOBIG;
    if ((rc = read_children(m, uid, dir, &v, &n)) != 0)
        return rc;
    for (i = 0; i < n && rc == 0; i++) {
        int w = snprintf(rel, sizeof(rel), "%s%s%s", prefix, *prefix ? "/" : "", v[i].name);
        if (w < 0 || (size_t)w >= sizeof(rel)) {
            rc = FERRY_ETOOBIG;
            break;
        }
        if ((rc = fn(arg, rel, &v[i])) != 0)
            break;
        if (recursive && v[i].is_dir)
            rc = list_rec(m, uid, v[i].id, rel, recursive, fn, arg, depth + 1);
    }
    ferry_free(v);
    return rc;
}

int ferry_sqlite_list(struct ferry_meta *m, int64_t uid, int64_t dir_id, int recursive,
                      ferry_meta_list_fn fn, void *arg)
{
    return list_rec(m, uid, dir_id, "", recursive, fn, arg, 0);
}

static const char sql_del_node[] = "DELETE FROM nodes WHERE id = ?1";

static int delete_tree(struct ferry_meta *m, int64_t uid, const struct ferry_node *n, int depth)
{
    struct ferry_node *v;
    size_t cnt, i;
    sqlite3_stmt *st;
    int rc = 0;

    if (depth > FERRY_PATH_DEPTH_MAX + 1)
        return FERRY_ETOOBIG;
    if (n->is_dir) {
        if ((rc = read_children(m, uid, n->id, &v, &cnt)) != 0)
            return rc;
        for (i = 0; i < cnt && rc == 0; i++)
            rc = delete_tree(m, uid, &v[i], depth + 1);
        ferry_free(v);
        if (rc != 0)
            return rc;
    } else if ((rc = content_ref(m, uid, n->cid, n->size, -1, NULL, NULL, 0)) != 0) {
        return rc;
    }
    if ((st = ferry_meta_stmt(m, sql_del_node)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, n->id);
    return ferry_meta_step(m, st);
}

static int has_children(struct ferry_meta *m, int64_t uid, int64_t dir)
{
    static const char sql[] = "SELECT 1 FROM nodes WHERE user_id = ?1 AND parent_id = ?2 LIMIT 1";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, dir);
    return ferry_meta_row_exists(m, st);
}

int ferry_sqlite_remove(struct ferry_meta *m, int64_t uid, const char *path, int recursive)
{
    struct ferry_node n;
    int rc;

    m->dc_valid = 0;
    if (*path == '\0')
        return FERRY_EPATH; /* the root cannot be removed */
    if ((rc = walk(m, uid, path, &n, NULL)) != 0)
        return rc;
    /* Section 6.3: a folder goes only with recursive, empty or not (as rm -r). */
    if (n.is_dir && !recursive)
        return FERRY_EISDIR;
    return delete_tree(m, uid, &n, 0);
}

static const char sql_move[] =
    "UPDATE nodes SET parent_id = ?2, name = ?3, smtime = ?4 WHERE id = ?1";

int ferry_sqlite_move(struct ferry_meta *m, int64_t uid, const char *from, const char *to,
                      int force, int64_t now)
{
    char parent[FERRY_PATH_MAX + 1];
    const char *slash = strrchr(to, '/');
    const char *name = slash != NULL ? slash + 1 : to;
    struct ferry_node src, dir, dst;
    size_t flen = strlen(from);
    sqlite3_stmt *st;
    int rc;

    m->dc_valid = 0;
    if (*from == '\0' || *to == '\0')
        return FERRY_EPATH;
    if (strcmp(from, to) == 0)
        return 0;
    if ((rc = walk(m, uid, from, &src, NULL)) != 0)
        return rc;
    /* A directory cannot move into its own subtree. */
    if (src.is_dir && strncmp(to, from, flen) == 0 && to[flen] == '/')
        return FERRY_EPATH;
    snprintf(parent, sizeof(parent), "%.*s", slash != NULL ? (int)(slash - to) : 0, to);
    if ((rc = walk(m, uid, parent, &dir, NULL)) != 0)
        return rc;
    if (!dir.is_dir)
        return FERRY_ENOTDIR;
    rc = child(m, uid, dir.id, name, strlen(name), &dst);
    if (rc == 0) {
        if (!force)
            return FERRY_EEXIST;
        if (dst.is_dir != src.is_dir)
            return dst.is_dir ? FERRY_EISDIR : FERRY_ENOTDIR;
        if (dst.is_dir && (rc = has_children(m, uid, dst.id)) != 0)
            return rc < 0 ? rc : FERRY_ENOTEMPTY;
        if ((rc = delete_tree(m, uid, &dst, 0)) != 0)
            return rc;
    } else if (rc != FERRY_ENOTFOUND) {
        return rc;
    }
    if ((st = ferry_meta_stmt(m, sql_move)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, src.id);
    sqlite3_bind_int64(st, 2, dir.id);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    return ferry_meta_step(m, st);
}

int ferry_sqlite_content_has(struct ferry_meta *m, int64_t uid, const char *cid)
{
    static const char sql[] = "SELECT refs FROM content WHERE user_id = ?1 AND cid = ?2";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, cid, -1, SQLITE_STATIC);
    return ferry_meta_row_exists(m, st);
}

int ferry_blob_relpath(int64_t uid, const char *cid, char *out, size_t cap)
{
    int n;

    if (!ferry_cid_valid(cid))
        return FERRY_EPROTO;
    n = snprintf(out, cap, "blobs/%lld/%.2s/%s", (long long)uid, cid + 7, cid + 7);
    return n > 0 && (size_t)n < cap ? 0 : FERRY_ETOOBIG;
}

int ferry_sqlite_op_done(struct ferry_meta *m, int64_t uid, const char *msg_id)
{
    static const char sql[] = "SELECT 1 FROM ops_done WHERE user_id = ?1 AND msg_id = ?2";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, msg_id, -1, SQLITE_STATIC);
    return ferry_meta_row_exists(m, st);
}

int ferry_sqlite_op_record(struct ferry_meta *m, int64_t uid, const char *msg_id, int64_t now)
{
    static const char sql[] = "INSERT OR REPLACE INTO ops_done(user_id, msg_id, at)"
                              " VALUES(?1, ?2, ?3)";
    static const char sql_old[] = "DELETE FROM ops_done WHERE at < ?1";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, msg_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    /* A retry comes within minutes; a week of ids is plenty (R-STORE-10). */
    if ((st = ferry_meta_stmt(m, sql_old)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, now - FERRY_OPS_DONE_KEEP_NS);
    return ferry_meta_step(m, st);
}

int ferry_meta_row_exists(struct ferry_meta *m, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : ferry_meta_sqlrc(m, rc);
}
