/* Server store: metadata in SQLite, content in a per-user blob directory. */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ferry/crypto.h"
#include "ferry/path.h"

struct ferry_meta;

/* Opens (creating and migrating) the database; readonly for reader connections. */
int ferry_meta_open(const char *path, int readonly, struct ferry_meta **out);
void ferry_meta_close(struct ferry_meta *m);

int ferry_meta_begin(struct ferry_meta *m);
/*
 * A read transaction: every query until ferry_meta_read_end sees one
 * snapshot. They nest: an inner pair joins the outer one's snapshot, and
 * only the outermost end ends it.
 */
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
/* Room for an Argon2id hash string (crypto_pwhash_STRBYTES is 128). */
#define FERRY_PWHASH_MAX 160
/*
 * 0 if uid's password hash is still verified (the one a password was just
 * checked against), FERRY_EAUTH if it changed since or the user is gone
 * (R-AUTH-14).
 */
int ferry_meta_user_pwhash_is(struct ferry_meta *m, int64_t uid, const char *verified);

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

/*
 * Administration of accounts (src/lib/store/meta_admin.c, R-ADMIN-4..9).
 * None of these begins a transaction: the caller wraps them in one.
 */
/* Longest user or device name kept (R-AUTH-1, R-AUTH-8). */
#define FERRY_META_NAME_MAX 64
/* How long a statement waits for another connection's lock (ferry_meta_open: 5 s). */
void ferry_meta_busy_timeout(struct ferry_meta *m, int ms);
/* Creates the administration tables if they are missing; idempotent. */
int ferry_meta_admin_init(struct ferry_meta *m);
/* R-ADMIN-6: the generation every change that can end a session bumps. */
int ferry_meta_admin_gen(struct ferry_meta *m, int64_t *gen);

struct ferry_user_info {
    int64_t id;
    char name[FERRY_META_NAME_MAX + 1];
    int64_t created; /* ns */
    int64_t used;    /* logical bytes (R-CHUNK-9) */
    int disabled;
    int devices;
    int sessions;
};
typedef int (*ferry_meta_user_fn)(void *arg, const struct ferry_user_info *u);
/* Calls fn for every user, by name; a non-zero return from fn stops and is returned. */
int ferry_meta_users_list(struct ferry_meta *m, ferry_meta_user_fn fn, void *arg);
/* 1 if uid is disabled, 0 if not, or an error. */
int ferry_meta_user_disabled(struct ferry_meta *m, int64_t uid);
/*
 * R-ADMIN-5: keeps uid's password hash aside, puts lock_hash (the hash of
 * a random secret) in its place and deletes its sessions. Returns 1, doing
 * nothing, when uid is disabled already.
 */
int ferry_meta_user_disable(struct ferry_meta *m, int64_t uid, const char *lock_hash, int64_t now);
/* Puts the kept hash back; 1, doing nothing, when uid is not disabled. */
int ferry_meta_user_enable(struct ferry_meta *m, int64_t uid);
/* A new password hash (kept aside while disabled); deletes every session of uid. */
int ferry_meta_user_passwd(struct ferry_meta *m, int64_t uid, const char *pwhash);

struct ferry_device_info {
    int64_t uid;
    char user[FERRY_META_NAME_MAX + 1];
    char id[FERRY_ID_LEN + 1];
    char name[FERRY_META_NAME_MAX + 1];
    int64_t first_seen;      /* ns */
    int64_t last_seen;       /* ns */
    int session;             /* the device holds a session */
    int64_t session_created; /* ns, when session is set */
};
typedef int (*ferry_meta_device_fn)(void *arg, const struct ferry_device_info *d);
/*
 * Calls fn for the devices of uid (0: of every user, by user name), most
 * recently seen first, at most max of them (0: all).
 */
int ferry_meta_devices_list(struct ferry_meta *m, int64_t uid, size_t max, ferry_meta_device_fn fn,
                            void *arg);
int ferry_meta_devices_count(struct ferry_meta *m, int64_t uid, int64_t *n);
/* R-ADMIN-9: deletes uid's device and its session; FERRY_ENOTFOUND if uid has no such device. */
int ferry_meta_device_revoke(struct ferry_meta *m, int64_t uid, const char *device_id);
/* R-ADMIN-7: the session of token hash hash, with its device; FERRY_ENOTFOUND. */
int ferry_meta_session_info(struct ferry_meta *m, const uint8_t hash[static 32],
                            struct ferry_device_info *out);

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
 * R-QUOTA-1: the user's usage in its two parts: the sizes of its files and
 * the space (4 KiB blocks) of its chunks that no content refers to.
 */
int ferry_meta_usage(struct ferry_meta *m, int64_t uid, uint64_t *used, uint64_t *loose);
/*
 * R-QUOTA-2: 0 if space more bytes fit the user's quota (0: none) on top
 * of its whole usage, else FERRY_EQUOTA.
 */
int ferry_meta_quota_room(struct ferry_meta *m, int64_t uid, int64_t space, uint64_t quota);
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
 * R-PAGE-2: the same walk as ferry_meta_list (name order, a folder's entry
 * before its contents), one entry per call, in bounded memory: a folder's
 * children are read a batch at a time, whatever their number. Every call
 * of one walk must see one snapshot (an open read transaction on m).
 */
struct ferry_meta_cursor;
int ferry_meta_cursor_new(int64_t uid, int64_t dir_id, int recursive,
                          struct ferry_meta_cursor **out);
/*
 * 1: the next entry is in *n and *rel (its path relative to the listed
 * folder, valid until the next call); 0: the walk is over; < 0: an error
 * (FERRY_ETOOBIG for a path or depth past R-PATH's limits).
 */
int ferry_meta_cursor_next(struct ferry_meta *m, struct ferry_meta_cursor *c, const char **rel,
                           struct ferry_node *n);
void ferry_meta_cursor_free(struct ferry_meta_cursor *c);
/* Opens a read-only connection whose page cache holds at most cache_kib KiB. */
int ferry_meta_open_reader(const char *path, int cache_kib, struct ferry_meta **out);

/*
 * Collects content rows whose count fell to zero (dropping their chunk
 * references) and unreferenced chunks older than ttl_ns, deleting their
 * rows, and packs no chunk row refers to any more. fn gets, for each piece
 * of space to free once the transaction has committed, the data-dir
 * relative path of a file and either len 0 (unlink the file) or a
 * FERRY_PACK_ALIGN-aligned range [off, off + len) of a pack to punch out.
 */
typedef void (*ferry_meta_gc_fn)(void *arg, const char *relpath, int64_t off, int64_t len);
int ferry_meta_gc(struct ferry_meta *m, int64_t now, int64_t ttl_ns, ferry_meta_gc_fn fn,
                  void *arg);

/*
 * The chunk store (R-CHUNK-7). Chunks are per user; rows are the truth.
 * A chunk lives in a pack, packs/<uid>/<id>.pack: an append-only file in
 * which each chunk starts at a multiple of FERRY_PACK_ALIGN, so O_DIRECT
 * can write it and a hole punched over it frees whole blocks. Only bytes a
 * committed row points at are ever read: the bytes of a batch that never
 * committed sit past the pack's recorded end and are overwritten. Stores
 * from before packs (schema 2) keep their chunk files,
 * chunks/<uid>/<hh>/<64 hex>: a row with pack 0 is read from there.
 */
#define FERRY_PACK_ALIGN 4096
/* A pack takes no new chunks once this long; a batch may pass it. */
#define FERRY_PACK_MAX      (1ll << 30)
#define FERRY_PACK_ROUND(n) (((n) + FERRY_PACK_ALIGN - 1) & ~(int64_t)(FERRY_PACK_ALIGN - 1))

int ferry_meta_chunk_has(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32]);
/*
 * Where uid's chunk is: 1 with its pack (0: a chunk file of the old
 * layout), offset and size; 0 when uid does not hold it.
 */
int ferry_meta_chunk_loc(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                         int64_t *pack, int64_t *off, int64_t *size);
/*
 * Records a chunk stored at pack/off (unreferenced, TTL from now) and
 * returns 0; if uid already holds it, refreshes its TTL and returns 1: the
 * bytes at pack/off are then unused. The pack's row must exist.
 */
int ferry_meta_chunk_put(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                         int64_t size, int64_t pack, int64_t off, int64_t now);
/*
 * Adds (+1: FERRY_ENOTFOUND when a chunk is missing) or drops (-1: deleting
 * chunks left with no reference and last stored before cutoff, reporting
 * their space to fn) one reference per entry of an encoded chunk list.
 */
int ferry_meta_chunks_ref(struct ferry_meta *m, int64_t uid, const uint8_t *list, size_t len,
                          int delta, int64_t cutoff, ferry_meta_gc_fn fn, void *arg);
/*
 * The pack uid's next chunks go to: the newest one, at its recorded end,
 * while it is shorter than FERRY_PACK_MAX, else a new one (*fresh = 1, at
 * 0) with an id no pack of uid ever had.
 */
int ferry_meta_pack_next(struct ferry_meta *m, int64_t uid, int64_t *pack, int64_t *end,
                         int *fresh);
/* Records, before the chunk rows that point into it, that pack now ends at end. */
int ferry_meta_pack_grow(struct ferry_meta *m, int64_t uid, int64_t pack, int64_t end);

/* Longest relative path of a blob, chunk or pack file. */
#define FERRY_BLOB_RELPATH_MAX 160
/* Blob paths relative to the data dir: blobs/<uid>/<hh>/<64 hex>. */
int ferry_blob_relpath(int64_t uid, const char *cid, char *out, size_t cap);
/* Chunk paths of the old layout: chunks/<uid>/<hh>/<64 hex>. */
int ferry_chunk_relpath(int64_t uid, const uint8_t hash[static 32], char *out, size_t cap);
/* Pack paths relative to the data dir: packs/<uid>/<id>.pack. */
int ferry_pack_relpath(int64_t uid, int64_t pack, char *out, size_t cap);

/*
 * Pack file I/O (src/lib/store/pack.c). Writes go to whole aligned blocks:
 * each buffer is FERRY_PACK_ALIGN-aligned in memory and its length a
 * multiple of it (zero-padded by the caller). Errors are negative errno.
 */
/* Opens packs/<uid>/<id>.pack beneath datafd for appending; fresh truncates it. */
int ferry_pack_open(int datafd, int64_t uid, int64_t pack, int fresh);
/* Writes iov (aligned pieces) at off, O_DIRECT where the file system takes it. */
int ferry_pack_write(int fd, int64_t off, const struct iovec *iov, int n);
/* Frees [off, off + len) of a pack; the file keeps its length. */
int ferry_pack_punch(int fd, int64_t off, int64_t len);

/*
 * The operations of a metadata backend: ferry_meta_* above call through
 * the table of the handle they are given (its first member), so the server
 * works the same over any backend. SQLite (src/lib/store/meta.c,
 * chunks.c, list.c, meta_admin.c) is the one implementation today; a
 * backend fills every member.
 */
struct ferry_meta_ops {
    const char *name;
    void (*close)(struct ferry_meta *m);
    int (*begin)(struct ferry_meta *m);
    int (*read_begin)(struct ferry_meta *m);
    void (*read_end)(struct ferry_meta *m);
    int (*commit)(struct ferry_meta *m);
    void (*rollback)(struct ferry_meta *m);
    int (*savepoint)(struct ferry_meta *m);
    int (*release)(struct ferry_meta *m);
    void (*rollback_to)(struct ferry_meta *m);
    int (*check)(struct ferry_meta *m);
    int (*user_create)(struct ferry_meta *m, const char *name, const char *pwhash, int64_t now,
                       int64_t *uid);
    int (*user_get)(struct ferry_meta *m, const char *name, int64_t *uid, char *pwhash, size_t cap);
    int (*user_pwhash)(struct ferry_meta *m, int64_t uid, char *pwhash, size_t cap);
    int (*user_set_pwhash)(struct ferry_meta *m, int64_t uid, const char *pwhash);
    int (*user_pwhash_is)(struct ferry_meta *m, int64_t uid, const char *verified);
    int (*device_seen)(struct ferry_meta *m, int64_t uid, const char *device_id, const char *name,
                       int64_t now);
    int (*session_put)(struct ferry_meta *m, int64_t uid, const char *device_id,
                       const uint8_t hash[static 32], int64_t now);
    int (*session_get)(struct ferry_meta *m, const uint8_t hash[static 32], int64_t *uid,
                       char device_id[static FERRY_ID_LEN + 1], char *user, size_t usercap);
    int (*session_delete)(struct ferry_meta *m, const uint8_t hash[static 32]);
    int (*session_delete_user)(struct ferry_meta *m, int64_t uid, const uint8_t *keep);
    void (*busy_timeout)(struct ferry_meta *m, int ms);
    int (*admin_init)(struct ferry_meta *m);
    int (*admin_gen)(struct ferry_meta *m, int64_t *gen);
    int (*users_list)(struct ferry_meta *m, ferry_meta_user_fn fn, void *arg);
    int (*user_disabled)(struct ferry_meta *m, int64_t uid);
    int (*user_disable)(struct ferry_meta *m, int64_t uid, const char *lock_hash, int64_t now);
    int (*user_enable)(struct ferry_meta *m, int64_t uid);
    int (*user_passwd)(struct ferry_meta *m, int64_t uid, const char *pwhash);
    int (*devices_list)(struct ferry_meta *m, int64_t uid, size_t max, ferry_meta_device_fn fn,
                        void *arg);
    int (*devices_count)(struct ferry_meta *m, int64_t uid, int64_t *n);
    int (*device_revoke)(struct ferry_meta *m, int64_t uid, const char *device_id);
    int (*session_info)(struct ferry_meta *m, const uint8_t hash[static 32],
                        struct ferry_device_info *out);
    int (*lookup)(struct ferry_meta *m, int64_t uid, const char *path, struct ferry_node *out);
    int (*node_by_id)(struct ferry_meta *m, int64_t uid, int64_t id, struct ferry_node *out);
    int (*mkdirs)(struct ferry_meta *m, int64_t uid, const char *path, int64_t mtime, int64_t now,
                  int64_t *dir_id);
    int (*put_file)(struct ferry_meta *m, int64_t uid, const char *path, int64_t size,
                    const char *cid, int64_t mtime, int exec, int64_t now, const void *data,
                    const void *chunks, size_t chunks_len, uint64_t quota);
    int (*used)(struct ferry_meta *m, int64_t uid, uint64_t *used);
    int (*usage)(struct ferry_meta *m, int64_t uid, uint64_t *used, uint64_t *loose);
    int (*quota_room)(struct ferry_meta *m, int64_t uid, int64_t space, uint64_t quota);
    int (*content_inline)(struct ferry_meta *m, int64_t uid, const char *cid, void **data,
                          size_t *len);
    int (*remove)(struct ferry_meta *m, int64_t uid, const char *path, int recursive);
    int (*move)(struct ferry_meta *m, int64_t uid, const char *from, const char *to, int force,
                int64_t now);
    int (*op_done)(struct ferry_meta *m, int64_t uid, const char *msg_id);
    int (*op_record)(struct ferry_meta *m, int64_t uid, const char *msg_id, int64_t now);
    int (*content_has)(struct ferry_meta *m, int64_t uid, const char *cid);
    int (*list)(struct ferry_meta *m, int64_t uid, int64_t dir_id, int recursive,
                ferry_meta_list_fn fn, void *arg);
    int (*cursor_next)(struct ferry_meta *m, struct ferry_meta_cursor *c, const char **rel,
                       struct ferry_node *n);
    int (*gc)(struct ferry_meta *m, int64_t now, int64_t ttl_ns, ferry_meta_gc_fn fn, void *arg);
    int (*chunk_has)(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32]);
    int (*chunk_loc)(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                     int64_t *pack, int64_t *off, int64_t *size);
    int (*chunk_put)(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32], int64_t size,
                     int64_t pack, int64_t off, int64_t now);
    int (*chunks_ref)(struct ferry_meta *m, int64_t uid, const uint8_t *list, size_t len, int delta,
                      int64_t cutoff, ferry_meta_gc_fn fn, void *arg);
    int (*pack_next)(struct ferry_meta *m, int64_t uid, int64_t *pack, int64_t *end, int *fresh);
    int (*pack_grow)(struct ferry_meta *m, int64_t uid, int64_t pack, int64_t end);
};
/* The SQLite backend's table (ferry_meta_open, ferry_meta_open_reader). */
extern const struct ferry_meta_ops ferry_meta_sqlite_ops;

#endif
