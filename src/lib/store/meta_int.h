/* Internals of the metadata store shared by its source files. */
#ifndef FERRY_META_INT_H
#define FERRY_META_INT_H

#include <sqlite3.h>

#include "ferry/store.h"

#define STMT_CACHE 96

struct ferry_meta {
    const struct ferry_meta_ops *ops; /* first, as in every backend's handle */
    sqlite3 *db;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    /*
     * The directory the last file went into: uploads of a tree arrive
     * folder by folder, so most lookups of a parent repeat the previous
     * one. Dropped by anything that could remove, move or undo a directory.
     */
    int dc_valid;
    /* Read transactions open: nested ones join the outermost's snapshot. */
    int read_depth;
    int64_t dc_uid;
    struct ferry_node dc_node;
    char dc_path[FERRY_PATH_MAX + 1];
};

/* Maps SQLite results onto ferry codes. */
int ferry_meta_sqlrc(struct ferry_meta *m, int rc);
/* Steps a bound statement once and resets it: 1 a row, 0 none, or an error. */
int ferry_meta_row_exists(struct ferry_meta *m, sqlite3_stmt *st);
/* Returns a reset, cached prepared statement for a static SQL string. */
sqlite3_stmt *ferry_meta_stmt(struct ferry_meta *m, const char *sql);
/* Steps a statement that returns no row. */
int ferry_meta_step(struct ferry_meta *m, sqlite3_stmt *st);
/* The columns of a node, in the order ferry_meta_read_node reads them. */
#define FERRY_META_NODE_COLS "id, parent_id, is_dir, exec, size, mtime, smtime, name, cid"
/* Fills n from a row of FERRY_META_NODE_COLS. */
void ferry_meta_read_node(sqlite3_stmt *st, struct ferry_node *n);

/* Opens m's database (m->ops set, m->db not yet): meta.c, for meta_sqlite.c. */
int ferry_sqlite_init(struct ferry_meta *m, const char *path, int readonly);
/* The SQLite backend's operations (ferry_meta_sqlite_ops), one per ferry_meta_* call. */
void ferry_sqlite_close(struct ferry_meta *m);
int ferry_sqlite_begin(struct ferry_meta *m);
int ferry_sqlite_read_begin(struct ferry_meta *m);
void ferry_sqlite_read_end(struct ferry_meta *m);
int ferry_sqlite_commit(struct ferry_meta *m);
void ferry_sqlite_rollback(struct ferry_meta *m);
int ferry_sqlite_savepoint(struct ferry_meta *m);
int ferry_sqlite_release(struct ferry_meta *m);
void ferry_sqlite_rollback_to(struct ferry_meta *m);
int ferry_sqlite_check(struct ferry_meta *m);
int ferry_sqlite_user_create(struct ferry_meta *m, const char *name, const char *pwhash,
                             int64_t now, int64_t *uid);
int ferry_sqlite_user_get(struct ferry_meta *m, const char *name, int64_t *uid, char *pwhash,
                          size_t cap);
int ferry_sqlite_user_pwhash(struct ferry_meta *m, int64_t uid, char *pwhash, size_t cap);
int ferry_sqlite_user_set_pwhash(struct ferry_meta *m, int64_t uid, const char *pwhash);
int ferry_sqlite_user_pwhash_is(struct ferry_meta *m, int64_t uid, const char *verified);
int ferry_sqlite_device_seen(struct ferry_meta *m, int64_t uid, const char *device_id,
                             const char *name, int64_t now);
int ferry_sqlite_session_put(struct ferry_meta *m, int64_t uid, const char *device_id,
                             const uint8_t hash[static 32], int64_t now);
int ferry_sqlite_session_get(struct ferry_meta *m, const uint8_t hash[static 32], int64_t *uid,
                             char device_id[static FERRY_ID_LEN + 1], char *user, size_t usercap);
int ferry_sqlite_session_delete(struct ferry_meta *m, const uint8_t hash[static 32]);
int ferry_sqlite_session_delete_user(struct ferry_meta *m, int64_t uid, const uint8_t *keep);
void ferry_sqlite_busy_timeout(struct ferry_meta *m, int ms);
int ferry_sqlite_admin_init(struct ferry_meta *m);
int ferry_sqlite_admin_gen(struct ferry_meta *m, int64_t *gen);
int ferry_sqlite_users_list(struct ferry_meta *m, ferry_meta_user_fn fn, void *arg);
int ferry_sqlite_user_disabled(struct ferry_meta *m, int64_t uid);
int ferry_sqlite_user_disable(struct ferry_meta *m, int64_t uid, const char *lock_hash,
                              int64_t now);
int ferry_sqlite_user_enable(struct ferry_meta *m, int64_t uid);
int ferry_sqlite_user_passwd(struct ferry_meta *m, int64_t uid, const char *pwhash);
int ferry_sqlite_devices_list(struct ferry_meta *m, int64_t uid, size_t max,
                              ferry_meta_device_fn fn, void *arg);
int ferry_sqlite_devices_count(struct ferry_meta *m, int64_t uid, int64_t *n);
int ferry_sqlite_device_revoke(struct ferry_meta *m, int64_t uid, const char *device_id);
int ferry_sqlite_session_info(struct ferry_meta *m, const uint8_t hash[static 32],
                              struct ferry_device_info *out);
int ferry_sqlite_lookup(struct ferry_meta *m, int64_t uid, const char *path,
                        struct ferry_node *out);
int ferry_sqlite_node_by_id(struct ferry_meta *m, int64_t uid, int64_t id, struct ferry_node *out);
int ferry_sqlite_mkdirs(struct ferry_meta *m, int64_t uid, const char *path, int64_t mtime,
                        int64_t now, int64_t *dir_id);
int ferry_sqlite_put_file(struct ferry_meta *m, int64_t uid, const char *path, int64_t size,
                          const char *cid, int64_t mtime, int exec, int64_t now, const void *data,
                          const void *chunks, size_t chunks_len, uint64_t quota);
int ferry_sqlite_used(struct ferry_meta *m, int64_t uid, uint64_t *used);
int ferry_sqlite_usage(struct ferry_meta *m, int64_t uid, uint64_t *used, uint64_t *loose);
int ferry_sqlite_quota_room(struct ferry_meta *m, int64_t uid, int64_t space, uint64_t quota);
int ferry_sqlite_content_inline(struct ferry_meta *m, int64_t uid, const char *cid, void **data,
                                size_t *len);
int ferry_sqlite_remove(struct ferry_meta *m, int64_t uid, const char *path, int recursive);
int ferry_sqlite_move(struct ferry_meta *m, int64_t uid, const char *from, const char *to,
                      int force, int64_t now);
int ferry_sqlite_op_done(struct ferry_meta *m, int64_t uid, const char *msg_id);
int ferry_sqlite_op_record(struct ferry_meta *m, int64_t uid, const char *msg_id, int64_t now);
int ferry_sqlite_content_has(struct ferry_meta *m, int64_t uid, const char *cid);
int ferry_sqlite_list(struct ferry_meta *m, int64_t uid, int64_t dir_id, int recursive,
                      ferry_meta_list_fn fn, void *arg);
int ferry_sqlite_cursor_next(struct ferry_meta *m, struct ferry_meta_cursor *c, const char **rel,
                             struct ferry_node *n);
int ferry_sqlite_gc(struct ferry_meta *m, int64_t now, int64_t ttl_ns, ferry_meta_gc_fn fn,
                    void *arg);
int ferry_sqlite_chunk_has(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32]);
int ferry_sqlite_chunk_loc(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                           int64_t *pack, int64_t *off, int64_t *size);
int ferry_sqlite_chunk_put(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                           int64_t size, int64_t pack, int64_t off, int64_t now);
int ferry_sqlite_chunks_ref(struct ferry_meta *m, int64_t uid, const uint8_t *list, size_t len,
                            int delta, int64_t cutoff, ferry_meta_gc_fn fn, void *arg);
int ferry_sqlite_pack_next(struct ferry_meta *m, int64_t uid, int64_t *pack, int64_t *end,
                           int *fresh);
int ferry_sqlite_pack_grow(struct ferry_meta *m, int64_t uid, int64_t pack, int64_t end);

#endif
