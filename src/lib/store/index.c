/* The client's local index: file identity to chunk list (ferry/index.h, issue 4, R-CHUNK-2). */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/err.h"
#include "ferry/index.h"
#include "ferry/state.h"

void ferry_index_id_from_stat(struct ferry_index_id *id, const struct stat *st)
{
    id->dev = (uint64_t)st->st_dev;
    id->ino = (uint64_t)st->st_ino;
    id->size = (uint64_t)st->st_size;
    id->mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    id->ctime = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

int ferry_index_get(struct ferry_state *state, const struct ferry_index_id *id, uint8_t **list,
                    size_t *len)
{
    static const char sql[] = "SELECT list, recorded FROM file_index WHERE dev = ?1 AND ino = ?2"
                              " AND size = ?3 AND mtime = ?4 AND ctime = ?5";
    sqlite3_stmt *st = NULL;
    sqlite3 *db = ferry_state_db(state);
    int rc = FERRY_ENOTFOUND;

    *list = NULL;
    *len = 0;
    if (db == NULL || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id->dev);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id->ino);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)id->size);
    sqlite3_bind_int64(st, 4, id->mtime);
    sqlite3_bind_int64(st, 5, id->ctime);
    if (sqlite3_step(st) != SQLITE_ROW)
        goto out;
    /*
     * git's racy rule: a change made in the same clock tick as the indexing
     * leaves mtime as it was, so such an entry proves nothing. (ctime only
     * has to match: it catches an mtime set back by hand.)
     */
    if (id->mtime > sqlite3_column_int64(st, 1) - FERRY_INDEX_RACY_NS)
        goto out;
    *len = (size_t)sqlite3_column_bytes(st, 0);
    if ((*list = ferry_malloc(*len > 0 ? *len : 1)) == NULL) {
        *len = 0;
        rc = -ENOMEM;
        goto out;
    }
    if (*len > 0)
        memcpy(*list, sqlite3_column_blob(st, 0), *len);
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

int ferry_index_put(struct ferry_state *state, const struct ferry_index_id *id, int64_t recorded,
                    const uint8_t *list, size_t len)
{
    static const char sql[] =
        "INSERT OR REPLACE INTO file_index(dev, ino, size, mtime, ctime, recorded, list)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    sqlite3_stmt *st = NULL;
    sqlite3 *db = ferry_state_db(state);
    int rc = FERRY_EINTERNAL;

    if (db == NULL || len > INT32_MAX || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)id->dev);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id->ino);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)id->size);
    sqlite3_bind_int64(st, 4, id->mtime);
    sqlite3_bind_int64(st, 5, id->ctime);
    sqlite3_bind_int64(st, 6, recorded);
    sqlite3_bind_blob(st, 7, len > 0 ? (const void *)list : "", (int)len, SQLITE_STATIC);
    /* An index is a cache: losing the last entries to a crash costs a re-read only. */
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}
