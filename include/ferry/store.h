/* Server store: metadata in SQLite, content in a per-user blob directory. */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/crypto.h"
#include "ferry/path.h"

struct ferry_meta;

/* Opens (creating and migrating) the database; readonly for reader connections. */
int ferry_meta_open(const char *path, int readonly, struct ferry_meta **out);
void ferry_meta_close(struct ferry_meta *m);

int ferry_meta_begin(struct ferry_meta *m);
/* A read transaction: every query until ferry_meta_read_end sees one snapshot. */
int ferry_meta_read_begin(struct ferry_meta *m);
void ferry_meta_read_end(struct ferry_meta *m);
int ferry_meta_commit(struct ferry_meta *m);
void ferry_meta_rollback(struct ferry_meta *m);
/* Savepoints let one failed operation in a batch undo only itself. */
int ferry_meta_savepoint(struct ferry_meta *m);
int ferry_meta_release(struct ferry_meta *m);
void ferry_meta_rollback_to(struct ferry_meta *m);
/* Runs PRAGMA integrity_check; 0 when it says ok. */
int ferry_meta_check(struct ferry_meta *m);

/* Users. R-AUTH-1 names are validated by the caller. */
int ferry_meta_user_create(struct ferry_meta *m, const char *name, const char *pwhash, int64_t now,
                           int64_t *uid);
int ferry_meta_user_get(struct ferry_meta *m, const char *name, int64_t *uid, char *pwhash,
                        size_t cap);
int ferry_meta_user_pwhash(struct ferry_meta *m, int64_t uid, char *pwhash, size_t cap);
int ferry_meta_user_set_pwhash(struct ferry_meta *m, int64_t uid, const char *pwhash);

/* Devices and sessions (R-AUTH-6..8). */
int ferry_meta_device_seen(struct ferry_meta *m, int64_t uid, const char *device_id,
                           const char *name, int64_t now);
int ferry_meta_session_put(struct ferry_meta *m, int64_t uid, const char *device_id,
                           const uint8_t hash[static 32], int64_t now);
int ferry_meta_session_get(struct ferry_meta *m, const uint8_t hash[static 32], int64_t *uid,
                           char device_id[static FERRY_ID_LEN + 1], char *user, size_t usercap);
int ferry_meta_session_delete(struct ferry_meta *m, const uint8_t hash[static 32]);
/* Deletes every session of uid except keep (NULL: all). */
int ferry_meta_session_delete_user(struct ferry_meta *m, int64_t uid, const uint8_t *keep);

/* The tree. Paths are normalised (ferry_path_normalize); "" is the root. */
struct ferry_node {
    int64_t id;
    int64_t parent_id;
    int is_dir;
    int exec;
    int64_t size;
    int64_t mtime;
    int64_t smtime;
    char name[FERRY_NAME_MAX + 1];
    char cid[FERRY_CID_LEN + 1];
};

int ferry_meta_lookup(struct ferry_meta *m, int64_t uid, const char *path, struct ferry_node *out);
int ferry_meta_node_by_id(struct ferry_meta *m, int64_t uid, int64_t id, struct ferry_node *out);
/* Creates path and its missing parents as directories; returns the dir id. */
int ferry_meta_mkdirs(struct ferry_meta *m, int64_t uid, const char *path, int64_t mtime,
                      int64_t now, int64_t *dir_id);
/*
 * Points path at content cid (creating parents, replacing a file there) and
 * adjusts reference counts. FERRY_EISDIR if a directory is in the way. With
 * data (size bytes), new content is stored inline in its row (R-STORE-9).
 */
int ferry_meta_put_file(struct ferry_meta *m, int64_t uid, const char *path, int64_t size,
                        const char *cid, int64_t mtime, int exec, int64_t now, const void *data,
                        const void *chunks, size_t chunks_len, uint64_t quota);
/* R-CHUNK-9: the user's logical bytes (sum of file sizes). */
int ferry_meta_used(struct ferry_meta *m, int64_t uid, uint64_t *used);
/*
 * Returns 1 and a copy (ferry_free it) of inline content, 2 and a copy of
 * the chunk list of chunked content, 0 when the content lives in a blob
 * file, FERRY_ENOTFOUND when uid has no such content.
 */
int ferry_meta_content_inline(struct ferry_meta *m, int64_t uid, const char *cid, void **data,
                              size_t *len);
int ferry_meta_remove(struct ferry_meta *m, int64_t uid, const char *path, int recursive);
int ferry_meta_move(struct ferry_meta *m, int64_t uid, const char *from, const char *to, int force,
                    int64_t now);
/*
 * R-STORE-10: Remove and Move are idempotent by message id. op_done says
 * whether uid's message msg_id was already applied; op_record notes that it
 * was (in the same transaction) and forgets ids older than a week.
 */
#define FERRY_OPS_DONE_KEEP_NS (7ll * 86400 * 1000000000)
int ferry_meta_op_done(struct ferry_meta *m, int64_t uid, const char *msg_id);
int ferry_meta_op_record(struct ferry_meta *m, int64_t uid, const char *msg_id, int64_t now);
/* Whether uid already holds content cid (rows are the truth, not files). */
int ferry_meta_content_has(struct ferry_meta *m, int64_t uid, const char *cid);

/* Listing: calls fn for each child of dir (and descendants if recursive). */
typedef int (*ferry_meta_list_fn)(void *arg, const char *relpath, const struct ferry_node *n);
int ferry_meta_list(struct ferry_meta *m, int64_t uid, int64_t dir_id, int recursive,
                    ferry_meta_list_fn fn, void *arg);

/*
 * Collects content rows whose count fell to zero (dropping their chunk
 * references) and unreferenced chunks older than ttl_ns, deleting their
 * rows; fn gets the data-dir relative path of each file to unlink once the
 * transaction has committed.
 */
typedef void (*ferry_meta_gc_fn)(void *arg, const char *relpath);
int ferry_meta_gc(struct ferry_meta *m, int64_t now, int64_t ttl_ns, ferry_meta_gc_fn fn,
                  void *arg);

/* The chunk store (R-CHUNK-7). Chunks are per user; rows are the truth. */
int ferry_meta_chunk_has(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32]);
/* Records a stored chunk (unreferenced, TTL from now), or refreshes its TTL. */
int ferry_meta_chunk_put(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                         int64_t size, int64_t now);
/*
 * Adds (+1: FERRY_ENOTFOUND when a chunk is missing) or drops (-1: deleting
 * chunks left with no reference and last stored before cutoff, reporting
 * their files to fn) one reference per entry of an encoded chunk list.
 */
int ferry_meta_chunks_ref(struct ferry_meta *m, int64_t uid, const uint8_t *list, size_t len,
                          int delta, int64_t cutoff, ferry_meta_gc_fn fn, void *arg);

/* Longest relative path of a blob or chunk file. */
#define FERRY_BLOB_RELPATH_MAX 160
/* Blob paths relative to the data dir: blobs/<uid>/<hh>/<64 hex>. */
int ferry_blob_relpath(int64_t uid, const char *cid, char *out, size_t cap);
/* Chunk paths relative to the data dir: chunks/<uid>/<hh>/<64 hex>. */
int ferry_chunk_relpath(int64_t uid, const uint8_t hash[static 32], char *out, size_t cap);

#endif
