/* Server metadata: the per-user chunk store (R-CHUNK-7, R-CHUNK-8, R-CHUNK-11). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ferry/core.h"
#include "ferry/store.h"
#include "ferry/wire.h"
#include "meta_int.h"

int ferry_chunk_relpath(int64_t uid, const uint8_t hash[static 32], char *out, size_t cap)
{
    char hex[65];
    int n;

    ferry_hex_encode(hash, 32, hex);
    n = snprintf(out, cap, "chunks/%lld/%.2s/%s", (long long)uid, hex, hex);
    return n > 0 && (size_t)n < cap ? 0 : FERRY_ETOOBIG;
}

int ferry_pack_relpath(int64_t uid, int64_t pack, char *out, size_t cap)
{
    int n = snprintf(out, cap, "packs/%lld/%lld.pack", (long long)uid, (long long)pack);

    return n > 0 && (size_t)n < cap ? 0 : FERRY_ETOOBIG;
}

int ferry_sqlite_chunk_has(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32])
{
    static const char sql[] = "SELECT 1 FROM chunks WHERE user_id = ?1 AND hash = ?2";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
    return ferry_meta_row_exists(m, st);
}

int ferry_sqlite_chunk_loc(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                           int64_t *pack, int64_t *off, int64_t *size)
{
    static const char sql[] = "SELECT pack, off, size FROM chunks WHERE user_id = ?1 AND hash = ?2";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *pack = sqlite3_column_int64(st, 0);
        *off = sqlite3_column_int64(st, 1);
        *size = sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : ferry_meta_sqlrc(m, rc);
}

int ferry_sqlite_chunk_put(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                           int64_t size, int64_t pack, int64_t off, int64_t now)
{
    static const char sql_ins[] =
        "INSERT INTO chunks(user_id, hash, size, refs, touched, pack, off)"
        " VALUES(?1, ?2, ?3, 0, ?4, ?5, ?6)"
        " ON CONFLICT(user_id, hash) DO NOTHING";
    /* A chunk stored again restarts its TTL (R-CHUNK-11): a resumed upload keeps it. */
    static const char sql_touch[] =
        "UPDATE chunks SET touched = ?3 WHERE user_id = ?1 AND hash = ?2";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_ins);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, size);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, pack);
    sqlite3_bind_int64(st, 6, off);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    if (sqlite3_changes(m->db) == 1)
        return 0;
    if ((st = ferry_meta_stmt(m, sql_touch)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    return 1;
}

int ferry_sqlite_pack_next(struct ferry_meta *m, int64_t uid, int64_t *pack, int64_t *end,
                           int *fresh)
{
    static const char sql_last[] =
        "SELECT id, size FROM packs WHERE user_id = ?1 ORDER BY id DESC LIMIT 1";
    static const char sql_seq[] = "SELECT last_pack FROM users WHERE id = ?1";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_last);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_int64(st, 1) < FERRY_PACK_MAX) {
        *pack = sqlite3_column_int64(st, 0);
        *end = sqlite3_column_int64(st, 1);
        *fresh = 0;
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return ferry_meta_sqlrc(m, rc);
    if ((st = ferry_meta_stmt(m, sql_seq)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *pack = sqlite3_column_int64(st, 0) + 1;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? FERRY_ENOTFOUND : ferry_meta_sqlrc(m, rc);
    *end = 0;
    *fresh = 1;
    return 0;
}

int ferry_sqlite_pack_grow(struct ferry_meta *m, int64_t uid, int64_t pack, int64_t end)
{
    static const char sql_pack[] =
        "INSERT INTO packs(user_id, id, size, live) VALUES(?1, ?2, ?3, 0)"
        " ON CONFLICT(user_id, id) DO UPDATE SET size = MAX(size, ?3)";
    static const char sql_seq[] =
        "UPDATE users SET last_pack = ?2 WHERE id = ?1 AND last_pack < ?2";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql_pack);
    int rc;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, pack);
    sqlite3_bind_int64(st, 3, end);
    if ((rc = ferry_meta_step(m, st)) != 0)
        return rc;
    if ((st = ferry_meta_stmt(m, sql_seq)) == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_int64(st, 2, pack);
    return ferry_meta_step(m, st);
}

static int chunk_delete(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                        ferry_meta_gc_fn fn, void *arg)
{
    static const char sql[] =
        "DELETE FROM chunks WHERE user_id = ?1 AND hash = ?2 RETURNING pack, off, size";
    sqlite3_stmt *st = ferry_meta_stmt(m, sql);
    char rel[FERRY_BLOB_RELPATH_MAX];
    int64_t pack = 0, off = 0, size = 0;
    int rc, found = 0;

    if (st == NULL)
        return FERRY_EINTERNAL;
    sqlite3_bind_int64(st, 1, uid);
    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pack = sqlite3_column_int64(st, 0);
        off = sqlite3_column_int64(st, 1);
        size = sqlite3_column_int64(st, 2);
        found = 1;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return ferry_meta_sqlrc(m, rc);
    if (fn == NULL || !found)
        return 0;
    /* A chunk of a pack frees its blocks; one of the old layout its file. */
    if (pack != 0 && ferry_pack_relpath(uid, pack, rel, sizeof(rel)) == 0)
        fn(arg, rel, off, FERRY_PACK_ROUND(size));
    else if (pack == 0 && ferry_chunk_relpath(uid, hash, rel, sizeof(rel)) == 0)
        fn(arg, rel, 0, 0);
    return 0;
}

int ferry_sqlite_chunks_ref(struct ferry_meta *m, int64_t uid, const uint8_t *list, size_t len,
                            int delta, int64_t cutoff, ferry_meta_gc_fn fn, void *arg)
{
    static const char sql_up[] =
        "UPDATE chunks SET refs = refs + 1 WHERE user_id = ?1 AND hash = ?2";
    static const char sql_down[] = "UPDATE chunks SET refs = refs - 1"
                                   " WHERE user_id = ?1 AND hash = ?2 RETURNING refs, touched";
    struct ferry_chunk_ent e;
    sqlite3_stmt *st;
    size_t off;
    int rc;

    for (off = 0; off + FERRY_CHUNK_ENT_LEN <= len; off += FERRY_CHUNK_ENT_LEN) {
        ferry_chunk_ent_decode(list + off, &e);
        if (delta > 0) {
            if ((st = ferry_meta_stmt(m, sql_up)) == NULL)
                return FERRY_EINTERNAL;
            sqlite3_bind_int64(st, 1, uid);
            sqlite3_bind_blob(st, 2, e.hash, 32, SQLITE_STATIC);
            if ((rc = ferry_meta_step(m, st)) != 0)
                return rc;
            /* R-CHUNK-8: a file is committed only when every chunk is held. */
            if (sqlite3_changes(m->db) != 1)
                return FERRY_ENOTFOUND;
            continue;
        }
        if ((st = ferry_meta_stmt(m, sql_down)) == NULL)
            return FERRY_EINTERNAL;
        sqlite3_bind_int64(st, 1, uid);
        sqlite3_bind_blob(st, 2, e.hash, 32, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            int64_t refs = sqlite3_column_int64(st, 0);
            int64_t touched = sqlite3_column_int64(st, 1);
            sqlite3_reset(st);
            /*
             * R-CHUNK-11: with its last reference gone, a chunk goes in this
             * commit, unless an upload stored it within the TTL and may still
             * count on it; the TTL sweep takes it later.
             */
            if (refs <= 0 && touched < cutoff && (rc = chunk_delete(m, uid, e.hash, fn, arg)) != 0)
                return rc;
            continue;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return ferry_meta_sqlrc(m, rc);
        /* A chunk already gone (a duplicate entry of one list): nothing to drop. */
    }
    return 0;
}

int ferry_sqlite_gc(struct ferry_meta *m, int64_t now, int64_t ttl_ns, ferry_meta_gc_fn fn,
                    void *arg)
{
    static const char sql_sel[] =
        "SELECT user_id, cid, data IS NULL, chunks FROM content WHERE refs <= 0";
    static const char sql_del[] = "DELETE FROM content WHERE refs <= 0";
    static const char sql_old[] =
        "SELECT user_id, hash FROM chunks WHERE refs <= 0 AND touched < ?1 LIMIT 1000";
    static const char sql_packs[] = "DELETE FROM packs WHERE live <= 0 RETURNING user_id, id";
    sqlite3_stmt *st;
    char rel[FERRY_BLOB_RELPATH_MAX];
    uint8_t *list = NULL;
    size_t i, n = 0;
    int rc = 0;
    struct {
        int64_t uid;
        uint8_t hash[32];
    } old[64];

    if ((st = ferry_meta_stmt(m, sql_sel)) == NULL)
        return FERRY_EINTERNAL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t uid = sqlite3_column_int64(st, 0);
        const char *cid = (const char *)sqlite3_column_text(st, 1);
        int no_data = sqlite3_column_int(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 3);

        if (sqlite3_column_type(st, 3) == SQLITE_BLOB) {
            /* Copied: the statements below reuse the connection. */
            if ((list = ferry_malloc(len > 0 ? len : 1)) == NULL) {
                rc = -ENOMEM;
                break;
            }
            memcpy(list, sqlite3_column_blob(st, 3), len);
            rc = ferry_meta_chunks_ref(m, uid, list, len, -1, now - ttl_ns, fn, arg);
            ferry_free(list);
            list = NULL;
            if (rc != 0)
                break;
        } else if (no_data && ferry_blob_relpath(uid, cid, rel, sizeof(rel)) == 0) {
            fn(arg, rel, 0, 0);
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != 0)
        return rc > 0 ? ferry_meta_sqlrc(m, rc) : rc;
    if ((rc = ferry_meta_step(m, ferry_meta_stmt(m, sql_del))) != 0)
        return rc;
    /* R-CHUNK-11: chunks of uploads that never completed, past their TTL. */
    do {
        if ((st = ferry_meta_stmt(m, sql_old)) == NULL)
            return FERRY_EINTERNAL;
        sqlite3_bind_int64(st, 1, now - ttl_ns);
        n = 0;
        while (n < sizeof(old) / sizeof(old[0]) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            old[n].uid = sqlite3_column_int64(st, 0);
            memcpy(old[n].hash, sqlite3_column_blob(st, 1), 32);
            n++;
        }
        sqlite3_reset(st);
        for (i = 0; i < n; i++)
            if ((rc = chunk_delete(m, old[i].uid, old[i].hash, fn, arg)) != 0)
                return rc;
    } while (n == sizeof(old) / sizeof(old[0]));
    /*
     * A pack no row points into goes whole: holes punched in it would
     * leave its blocks of metadata and its name. A batch's new pack whose
     * chunks all failed goes the same way.
     */
    if ((st = ferry_meta_stmt(m, sql_packs)) == NULL)
        return FERRY_EINTERNAL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (ferry_pack_relpath(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1), rel,
                               sizeof(rel)) == 0)
            fn(arg, rel, 0, 0);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : ferry_meta_sqlrc(m, rc);
}
