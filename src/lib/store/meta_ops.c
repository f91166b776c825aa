/* The metadata API: each call goes through its handle's table of operations (ferry/store.h). */
#include <stddef.h>

#include "ferry/store.h"

#include "meta_int.h"

void ferry_meta_close(struct ferry_meta *m)
{
    if (m != NULL)
        m->ops->close(m);
}

int ferry_meta_begin(struct ferry_meta *m)
{
    return m->ops->begin(m);
}

int ferry_meta_read_begin(struct ferry_meta *m)
{
    return m->ops->read_begin(m);
}

void ferry_meta_read_end(struct ferry_meta *m)
{
    m->ops->read_end(m);
}

int ferry_meta_commit(struct ferry_meta *m)
{
    return m->ops->commit(m);
}

void ferry_meta_rollback(struct ferry_meta *m)
{
    m->ops->rollback(m);
}

int ferry_meta_savepoint(struct ferry_meta *m)
{
    return m->ops->savepoint(m);
}

int ferry_meta_release(struct ferry_meta *m)
{
    return m->ops->release(m);
}

void ferry_meta_rollback_to(struct ferry_meta *m)
{
    m->ops->rollback_to(m);
}

int ferry_meta_check(struct ferry_meta *m)
{
    return m->ops->check(m);
}

int ferry_meta_user_create(struct ferry_meta *m, const char *name, const char *pwhash, int64_t now,
                           int64_t *uid)
{
    return m->ops->user_create(m, name, pwhash, now, uid);
}

int ferry_meta_user_get(struct ferry_meta *m, const char *name, int64_t *uid, char *pwhash,
                        size_t cap)
{
    return m->ops->user_get(m, name, uid, pwhash, cap);
}

int ferry_meta_user_pwhash(struct ferry_meta *m, int64_t uid, char *pwhash, size_t cap)
{
    return m->ops->user_pwhash(m, uid, pwhash, cap);
}

int ferry_meta_user_set_pwhash(struct ferry_meta *m, int64_t uid, const char *pwhash)
{
    return m->ops->user_set_pwhash(m, uid, pwhash);
}

int ferry_meta_user_pwhash_is(struct ferry_meta *m, int64_t uid, const char *verified)
{
    return m->ops->user_pwhash_is(m, uid, verified);
}

int ferry_meta_device_seen(struct ferry_meta *m, int64_t uid, const char *device_id,
                           const char *name, int64_t now)
{
    return m->ops->device_seen(m, uid, device_id, name, now);
}

int ferry_meta_session_put(struct ferry_meta *m, int64_t uid, const char *device_id,
                           const uint8_t hash[static 32], int64_t now)
{
    return m->ops->session_put(m, uid, device_id, hash, now);
}

int ferry_meta_session_get(struct ferry_meta *m, const uint8_t hash[static 32], int64_t *uid,
                           char device_id[static FERRY_ID_LEN + 1], char *user, size_t usercap)
{
    return m->ops->session_get(m, hash, uid, device_id, user, usercap);
}

int ferry_meta_session_delete(struct ferry_meta *m, const uint8_t hash[static 32])
{
    return m->ops->session_delete(m, hash);
}

int ferry_meta_session_delete_user(struct ferry_meta *m, int64_t uid, const uint8_t *keep)
{
    return m->ops->session_delete_user(m, uid, keep);
}

void ferry_meta_busy_timeout(struct ferry_meta *m, int ms)
{
    m->ops->busy_timeout(m, ms);
}

int ferry_meta_admin_init(struct ferry_meta *m)
{
    return m->ops->admin_init(m);
}

int ferry_meta_admin_gen(struct ferry_meta *m, int64_t *gen)
{
    return m->ops->admin_gen(m, gen);
}

int ferry_meta_users_list(struct ferry_meta *m, ferry_meta_user_fn fn, void *arg)
{
    return m->ops->users_list(m, fn, arg);
}

int ferry_meta_user_disabled(struct ferry_meta *m, int64_t uid)
{
    return m->ops->user_disabled(m, uid);
}

int ferry_meta_user_disable(struct ferry_meta *m, int64_t uid, const char *lock_hash, int64_t now)
{
    return m->ops->user_disable(m, uid, lock_hash, now);
}

int ferry_meta_user_enable(struct ferry_meta *m, int64_t uid)
{
    return m->ops->user_enable(m, uid);
}

int ferry_meta_user_passwd(struct ferry_meta *m, int64_t uid, const char *pwhash)
{
    return m->ops->user_passwd(m, uid, pwhash);
}

int ferry_meta_devices_list(struct ferry_meta *m, int64_t uid, size_t max, ferry_meta_device_fn fn,
                            void *arg)
{
    return m->ops->devices_list(m, uid, max, fn, arg);
}

int ferry_meta_devices_count(struct ferry_meta *m, int64_t uid, int64_t *n)
{
    return m->ops->devices_count(m, uid, n);
}

int ferry_meta_device_revoke(struct ferry_meta *m, int64_t uid, const char *device_id)
{
    return m->ops->device_revoke(m, uid, device_id);
}

int ferry_meta_session_info(struct ferry_meta *m, const uint8_t hash[static 32],
                            struct ferry_device_info *out)
{
    return m->ops->session_info(m, hash, out);
}

int ferry_meta_lookup(struct ferry_meta *m, int64_t uid, const char *path, struct ferry_node *out)
{
    return m->ops->lookup(m, uid, path, out);
}

int ferry_meta_node_by_id(struct ferry_meta *m, int64_t uid, int64_t id, struct ferry_node *out)
{
    return m->ops->node_by_id(m, uid, id, out);
}

int ferry_meta_mkdirs(struct ferry_meta *m, int64_t uid, const char *path, int64_t mtime,
                      int64_t now, int64_t *dir_id)
{
    return m->ops->mkdirs(m, uid, path, mtime, now, dir_id);
}

int ferry_meta_put_file(struct ferry_meta *m, int64_t uid, const char *path, int64_t size,
                        const char *cid, int64_t mtime, int exec, int64_t now, const void *data,
                        const void *chunks, size_t chunks_len, uint64_t quota)
{
    return m->ops->put_file(m, uid, path, size, cid, mtime, exec, now, data, chunks, chunks_len,
                            quota);
}

int ferry_meta_used(struct ferry_meta *m, int64_t uid, uint64_t *used)
{
    return m->ops->used(m, uid, used);
}

int ferry_meta_usage(struct ferry_meta *m, int64_t uid, uint64_t *used, uint64_t *loose)
{
    return m->ops->usage(m, uid, used, loose);
}

int ferry_meta_quota_room(struct ferry_meta *m, int64_t uid, int64_t space, uint64_t quota)
{
    return m->ops->quota_room(m, uid, space, quota);
}

int ferry_meta_content_inline(struct ferry_meta *m, int64_t uid, const char *cid, void **data,
                              size_t *len)
{
    return m->ops->content_inline(m, uid, cid, data, len);
}

int ferry_meta_remove(struct ferry_meta *m, int64_t uid, const char *path, int recursive)
{
    return m->ops->remove(m, uid, path, recursive);
}

int ferry_meta_move(struct ferry_meta *m, int64_t uid, const char *from, const char *to, int force,
                    int64_t now)
{
    return m->ops->move(m, uid, from, to, force, now);
}

int ferry_meta_op_done(struct ferry_meta *m, int64_t uid, const char *msg_id)
{
    return m->ops->op_done(m, uid, msg_id);
}

int ferry_meta_op_record(struct ferry_meta *m, int64_t uid, const char *msg_id, int64_t now)
{
    return m->ops->op_record(m, uid, msg_id, now);
}

int ferry_meta_content_has(struct ferry_meta *m, int64_t uid, const char *cid)
{
    return m->ops->content_has(m, uid, cid);
}

int ferry_meta_list(struct ferry_meta *m, int64_t uid, int64_t dir_id, int recursive,
                    ferry_meta_list_fn fn, void *arg)
{
    return m->ops->list(m, uid, dir_id, recursive, fn, arg);
}

int ferry_meta_cursor_next(struct ferry_meta *m, struct ferry_meta_cursor *c, const char **rel,
                           struct ferry_node *n)
{
    return m->ops->cursor_next(m, c, rel, n);
}

int ferry_meta_gc(struct ferry_meta *m, int64_t now, int64_t ttl_ns, ferry_meta_gc_fn fn, void *arg)
{
    return m->ops->gc(m, now, ttl_ns, fn, arg);
}

int ferry_meta_chunk_has(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32])
{
    return m->ops->chunk_has(m, uid, hash);
}

int ferry_meta_chunk_loc(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                         int64_t *pack, int64_t *off, int64_t *size)
{
    return m->ops->chunk_loc(m, uid, hash, pack, off, size);
}

int ferry_meta_chunk_put(struct ferry_meta *m, int64_t uid, const uint8_t hash[static 32],
                         int64_t size, int64_t pack, int64_t off, int64_t now)
{
    return m->ops->chunk_put(m, uid, hash, size, pack, off, now);
}

int ferry_meta_chunks_ref(struct ferry_meta *m, int64_t uid, const uint8_t *list, size_t len,
                          int delta, int64_t cutoff, ferry_meta_gc_fn fn, void *arg)
{
    return m->ops->chunks_ref(m, uid, list, len, delta, cutoff, fn, arg);
}

int ferry_meta_pack_next(struct ferry_meta *m, int64_t uid, int64_t *pack, int64_t *end, int *fresh)
{
    return m->ops->pack_next(m, uid, pack, end, fresh);
}

int ferry_meta_pack_grow(struct ferry_meta *m, int64_t uid, int64_t pack, int64_t end)
{
    return m->ops->pack_grow(m, uid, pack, end);
}
