/*
 * The SQLite backend of the metadata table (ferry/store.h): its table of
 * operations and the constructors that set it. They sit above every file
 * that implements an operation (meta.c, meta_admin.c, chunks.c, list.c),
 * so no file of the store calls back up into another.
 */
#include <errno.h>
#include <stdio.h>

#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/store.h"
#include "meta_int.h"

const struct ferry_meta_ops ferry_meta_sqlite_ops = {
    .name = "sqlite",
    .close = ferry_sqlite_close,
    .begin = ferry_sqlite_begin,
    .read_begin = ferry_sqlite_read_begin,
    .read_end = ferry_sqlite_read_end,
    .commit = ferry_sqlite_commit,
    .rollback = ferry_sqlite_rollback,
    .savepoint = ferry_sqlite_savepoint,
    .release = ferry_sqlite_release,
    .rollback_to = ferry_sqlite_rollback_to,
    .check = ferry_sqlite_check,
    .user_create = ferry_sqlite_user_create,
    .user_get = ferry_sqlite_user_get,
    .user_pwhash = ferry_sqlite_user_pwhash,
    .user_set_pwhash = ferry_sqlite_user_set_pwhash,
    .user_pwhash_is = ferry_sqlite_user_pwhash_is,
    .device_seen = ferry_sqlite_device_seen,
    .session_put = ferry_sqlite_session_put,
    .session_get = ferry_sqlite_session_get,
    .session_delete = ferry_sqlite_session_delete,
    .session_delete_user = ferry_sqlite_session_delete_user,
    .busy_timeout = ferry_sqlite_busy_timeout,
    .admin_init = ferry_sqlite_admin_init,
    .admin_gen = ferry_sqlite_admin_gen,
    .users_list = ferry_sqlite_users_list,
    .user_disabled = ferry_sqlite_user_disabled,
    .user_disable = ferry_sqlite_user_disable,
    .user_enable = ferry_sqlite_user_enable,
    .user_passwd = ferry_sqlite_user_passwd,
    .devices_list = ferry_sqlite_devices_list,
    .devices_count = ferry_sqlite_devices_count,
    .device_revoke = ferry_sqlite_device_revoke,
    .session_info = ferry_sqlite_session_info,
    .lookup = ferry_sqlite_lookup,
    .node_by_id = ferry_sqlite_node_by_id,
    .mkdirs = ferry_sqlite_mkdirs,
    .put_file = ferry_sqlite_put_file,
    .used = ferry_sqlite_used,
    .usage = ferry_sqlite_usage,
    .quota_room = ferry_sqlite_quota_room,
    .content_inline = ferry_sqlite_content_inline,
    .remove = ferry_sqlite_remove,
    .move = ferry_sqlite_move,
    .op_done = ferry_sqlite_op_done,
    .op_record = ferry_sqlite_op_record,
    .content_has = ferry_sqlite_content_has,
    .list = ferry_sqlite_list,
    .cursor_next = ferry_sqlite_cursor_next,
    .gc = ferry_sqlite_gc,
    .chunk_has = ferry_sqlite_chunk_has,
    .chunk_loc = ferry_sqlite_chunk_loc,
    .chunk_put = ferry_sqlite_chunk_put,
    .chunks_ref = ferry_sqlite_chunks_ref,
    .pack_next = ferry_sqlite_pack_next,
    .pack_grow = ferry_sqlite_pack_grow,
};

int ferry_meta_open(const char *path, int readonly, struct ferry_meta **out)
{
    struct ferry_meta *m;
    int rc;

    *out = NULL;
    if ((m = ferry_calloc(1, sizeof(*m))) == NULL)
        return -ENOMEM;
    m->ops = &ferry_meta_sqlite_ops;
    if ((rc = ferry_sqlite_init(m, path, readonly)) != 0) {
        ferry_meta_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

int ferry_meta_open_reader(const char *path, int cache_kib, struct ferry_meta **out)
{
    char sql[64];
    int rc;

    if ((rc = ferry_meta_open(path, 1, out)) != 0)
        return rc;
    /* SQLite's page cache is per connection: a reader of its own keeps it small. */
    snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%d", cache_kib);
    if (sqlite3_exec((*out)->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        ferry_meta_close(*out);
        *out = NULL;
        return FERRY_EINTERNAL;
    }
    return 0;
}
