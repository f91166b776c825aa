/*
 * Server metadata for administration: disabled users, devices, and the
 * generation number that tells a running server to re-check its sessions
 * (docs/protocol.md R-ADMIN-4..9).
 */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/store.h"
#include "meta_int.h"

/*
 * Created if missing rather than by a schema version: they only add to
 * the schema, and a database without them simply has no disabled user
 * and generation 0.
 */
static const char admin_schema[] =
    /* R-ADMIN-5: a row per disabled user, with the password hash kept aside. */
    "CREATE TABLE IF NOT EXISTS disabled_users("
    " user_id INTEGER PRIMARY KEY REFERENCES users(id), pwhash TEXT NOT NULL,"
    " since INTEGER NOT NULL) STRICT;"
    /*
     * R-ADMIN-5: a Login whose password was verified just before the user
     * was disabled must not commit a session after it.
     */
    "CREATE TRIGGER IF NOT EXISTS disabled_no_session BEFORE INSERT ON sessions"
    " WHEN EXISTS(SELECT 1 FROM disabled_users WHERE user_id = NEW.user_id)"
    " BEGIN SELECT RAISE(ABORT, 'user disabled'); END;"
    /* R-ADMIN-6: one row. */
    "CREATE TABLE IF NOT EXISTS admin_state("
    " one INTEGER PRIMARY KEY CHECK(one = 1), gen INTEGER NOT NULL) STRICT;"
    "INSERT OR IGNORE INTO admin_state(one, gen) VALUES(1, 0);";

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? (const char *)src : "");
}

void ferry_sqlite_busy_timeout(struct ferry_meta *m, int ms)
{
    sqlite3_busy_timeout(m->db, ms);
}

int ferry_sqlite_admin_init(struct ferry_meta *m)
{
    return ferry_meta_sqlrc(m, sqlite3_exec(m->db, admin_schema, NULL, NULL, NULL));
}

static const char sql_gen[] = "SELECT gen FROM admin_state WHERE one = 1";
static const char sql_gen_bump[] = "UPDATE admin_state SET gen = gen + 1 WHERE one = 1";

int ferry_sqlite_admin_gen(struct ferry_meta *m, int64_t *gen)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_gen);
    int rc;

    *gen = 0;
    if (st == NULL)
        return FERRY_EINTERNAL;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *gen = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? 0 : ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return rc;
}

/* R-ADMIN-6: in the transaction of the change, so the server sees both or neither. */
static int gen_bump(struct ferry_meta *m)
{
    return ferry_meta_step(m, ferry_meta_stmt(m, sql_gen_bump));
}

static const char sql_users[] = "SELECT u.id, u.name, u.created, u.used,"
                                " EXISTS(SELECT 1 FROM disabled_users d WHERE d.user_id = u.id),"
                                " (SELECT COUNT(*) FROM devices v WHERE v.user_id = u.id),"
                                " (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id)"
                                " FROM users u ORDER BY u.name";

int ferry_sqlite_users_list(struct ferry_meta *m, ferry_meta_user_fn fn, void *arg)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_users);
    struct ferry_user_info u;
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&u, 0, sizeof(u));
        u.id = sqlite3_column_int64(st, 0);
        copy_text(u.name, sizeof(u.name), sqlite3_column_text(st, 1));
        u.created = sqlite3_column_int64(st, 2);
        u.used = sqlite3_column_int64(st, 3);
        u.disabled = sqlite3_column_int(st, 4);
        u.devices = sqlite3_column_int(st, 5);
        u.sessions = sqlite3_column_int(st, 6);
        if ((rc = fn(arg, &u)) != 0)
            goto out;
    }
    rc = rc == SQLITE_DONE ? 0 : ferry_meta_sqlrc(m, rc);
out:
    sqlite3_reset(st);
    return rc;
}

static const char sql_disabled[] = "SELECT 1 FROM disabled_users WHERE user_id = ?1";

int ferry_sqlite_user_disabled(struct ferry_meta *m, int64_t uid)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_disabled);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    return ferry_meta_row_exists(m, st);
}

static const char sql_disable[] = "INSERT INTO disabled_users(user_id, pwhash, since)"
                                  " SELECT id, pwhash, ?2 FROM users WHERE id = ?1";

int ferry_sqlite_user_disable(struct ferry_meta *m, int64_t uid, const char *lock_hash, int64_t now)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = ferry_meta_user_disabled(m, uid)) != 0)
        return rc;
    if ((st = ferry_meta_stmt(m, sql_disable)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, now);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    if (sqlite3_changes(m->db) != 1)
        return FERRY_ENOTFOUND;
    /* R-ADMIN-5: a Login now pays a full verify and fails like a wrong password. */
    if ((rc = ferry_meta_user_set_pwhash(m, uid, lock_hash)) != 0 ||
        (rc = ferry_meta_session_delete_user(m, uid, NULL)) != 0)
        return rc;
    return gen_bump(m);
}

static const char sql_enable[] =
    "UPDATE users SET pwhash = (SELECT pwhash FROM disabled_users WHERE user_id = ?1)"
    " WHERE id = ?1 AND EXISTS(SELECT 1 FROM disabled_users WHERE user_id = ?1)";
static const char sql_enable_del[] = "DELETE FROM disabled_users WHERE user_id = ?1";

int ferry_sqlite_user_enable(struct ferry_meta *m, int64_t uid)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_enable);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    if (sqlite3_changes(m->db) == 0)
        return 1;
    if ((st = ferry_meta_stmt(m, sql_enable_del)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    return ferry_meta_step(m, st);
}

static const char sql_passwd_disabled[] =
    "UPDATE disabled_users SET pwhash = ?2 WHERE user_id = ?1";

int ferry_sqlite_user_passwd(struct ferry_meta *m, int64_t uid, const char *pwhash)
{
    sqlite3_stmt *st;
    int rc;

    if ((rc = ferry_meta_user_disabled(m, uid)) < 0)
        return rc;
    if (rc == 1) {
        /* R-ADMIN-5: a disabled user stays disabled; enable brings this password. */
        if ((st = ferry_meta_stmt(m, sql_passwd_disabled)) == NULL)
            return FERRY_EINTERNAL;
        sqlite3_bind_int64(st, 1, uid);
        sqlite3_bind_text(st, 2, pwhash, -1, SQLITE_STATIC);
        rc = ferry_meta_step(m, st);
    } else {
        rc = ferry_meta_user_set_pwhash(m, uid, pwhash);
    }
    if (rc != 0 || (rc = ferry_meta_session_delete_user(m, uid, NULL)) != 0)
        return rc;
    return gen_bump(m);
}

#define DEVICE_COLS                                                                                \
    "v.user_id, u.name, v.device_id, v.name, v.first_seen, v.last_seen, s.created IS NOT NULL,"    \
    " COALESCE(s.created, 0)"

static const char sql_devices[] =
    "SELECT " DEVICE_COLS " FROM devices v JOIN users u ON u.id = v.user_id"
    " LEFT JOIN sessions s ON s.user_id = v.user_id AND s.device_id = v.device_id"
    " WHERE ?1 = 0 OR v.user_id = ?1 ORDER BY u.name, v.last_seen DESC, v.device_id LIMIT ?2";

static void read_device(sqlite3_stmt *st, struct ferry_device_info *d)
{
    memset(d, 0, sizeof(*d));
    d->uid = sqlite3_column_int64(st, 0);
    copy_text(d->user, sizeof(d->user), sqlite3_column_text(st, 1));
    copy_text(d->id, sizeof(d->id), sqlite3_column_text(st, 2));
    copy_text(d->name, sizeof(d->name), sqlite3_column_text(st, 3));
    d->first_seen = sqlite3_column_int64(st, 4);
    d->last_seen = sqlite3_column_int64(st, 5);
    d->session = sqlite3_column_int(st, 6);
    d->session_created = sqlite3_column_int64(st, 7);
}

int ferry_sqlite_devices_list(struct ferry_meta *m, int64_t uid, size_t max,
                              ferry_meta_device_fn fn, void *arg)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_devices);
    struct ferry_device_info d;
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    /* A negative LIMIT is no limit. */
    sqlite3_bind_int64(st, 2, max == 0 || max > INT64_MAX ? -1 : (int64_t)max);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_device(st, &d);
        if ((rc = fn(arg, &d)) != 0)
            goto out;
    }
    rc = rc == SQLITE_DONE ? 0 : ferry_meta_sqlrc(m, rc);
out:
    sqlite3_reset(st);
    return rc;
}

static const char sql_devices_count[] = "SELECT COUNT(*) FROM devices WHERE ?1 = 0 OR user_id = ?1";

int ferry_sqlite_devices_count(struct ferry_meta *m, int64_t uid, int64_t *n)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_devices_count);
    int rc;

    *n = 0;
    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = ferry_meta_sqlrc(m, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc);
    }
    sqlite3_reset(st);
    return rc;
}

static const char sql_dev_sess_del[] = "DELETE FROM sessions WHERE user_id = ?1 AND device_id = ?2";
static const char sql_dev_del[] = "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2";

int ferry_sqlite_device_revoke(struct ferry_meta *m, int64_t uid, const char *device_id)
{
    sqlite3_stmt *st;
    int rc, changed;

    if ((st = ferry_meta_stmt(m, sql_dev_sess_del)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    changed = sqlite3_changes(m->db);
    if ((st = ferry_meta_stmt(m, sql_dev_del)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_text(st, 2, device_id, -1, SQLITE_STATIC);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    changed += sqlite3_changes(m->db);
    if (changed == 0)
        return FERRY_ENOTFOUND;
    return gen_bump(m);
}

static const char sql_sess_info[] =
    "SELECT s.user_id, u.name, s.device_id, COALESCE(v.name, ''), COALESCE(v.first_seen, 0),"
    " COALESCE(v.last_seen, 0), 1, s.created FROM sessions s JOIN users u ON u.id = s.user_id"
    " LEFT JOIN devices v ON v.user_id = s.user_id AND v.device_id = s.device_id"
    " WHERE s.token_hash = ?1";

int ferry_sqlite_session_info(struct ferry_meta *m, const uint8_t hash[static 32],
                              struct ferry_device_info *out)
{
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_sess_info);
    int rc;

    memset(out, 0, sizeof(*out));
    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_device(st, out);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
    }
    sqlite3_reset(st);
    return rc;
}
