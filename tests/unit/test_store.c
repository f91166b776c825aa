/* Unit tests for the metadata store: tree operations, reference counts, sessions. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry/core.h"
#include "ferry/manifest.h"
#include "ferry/store.h"

#define CID_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define CID_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct fx {
    char dir[64];
    struct ferry_meta *m;
    int64_t alice;
    int64_t bob;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char path[128];

    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/ferry.db", f->dir);
    if (ferry_meta_open(path, 0, &f->m) != 0)
        return -1;
    if (ferry_meta_begin(f->m) != 0 ||
        ferry_meta_user_create(f->m, "alice", "$argon2id$x", 1, &f->alice) != 0 ||
        ferry_meta_user_create(f->m, "bob", "$argon2id$y", 1, &f->bob) != 0 ||
        ferry_meta_commit(f->m) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    assert_int_equal(ferry_meta_check(f->m), 0); /* PRAGMA integrity_check */
    ferry_meta_close(f->m);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int count_refs(struct fx *f, const char *cid)
{
    return ferry_meta_content_has(f->m, f->alice, cid);
}

struct gc_seen {
    int n;
    char cids[8][80];
    char rel[8][80];
    int64_t off[8];
    int64_t len[8];
};

/* Blob files are named by the hex of their content id. */
static void on_gc(void *arg, const char *rel, int64_t off, int64_t len)
{
    struct gc_seen *g = arg;

    if (g->n < 8) {
        snprintf(g->rel[g->n], sizeof(g->rel[0]), "%s", rel);
        g->off[g->n] = off;
        g->len[g->n] = len;
        snprintf(g->cids[g->n++], sizeof(g->cids[0]), "sha256:%s", strrchr(rel, '/') + 1);
    }
}

static void test_users_unique(void **state)
{
    struct fx *f = *state;
    int64_t uid;
    char h[64];

    assert_int_equal(ferry_meta_user_create(f->m, "alice", "h", 2, &uid), FERRY_EEXIST);
    assert_int_equal(ferry_meta_user_get(f->m, "alice", &uid, h, sizeof(h)), 0);
    assert_int_equal(uid, f->alice);
    assert_string_equal(h, "$argon2id$x");
    assert_int_equal(ferry_meta_user_get(f->m, "carol", &uid, h, sizeof(h)), FERRY_ENOTFOUND);
}

/* R-STORE-4: the tree and the reference counts change together. */
static void test_put_replace_remove(void **state)
{
    struct fx *f = *state;
    struct ferry_node n;
    struct gc_seen g = {0};

    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "a/b/c.txt", 5, CID_A, 7, 1, 9, NULL, NULL, 0, 0), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "a/b", &n), 0);
    assert_true(n.is_dir);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "a/b/c.txt", &n), 0);
    assert_false(n.is_dir);
    assert_int_equal(n.size, 5);
    assert_int_equal(n.mtime, 7);
    assert_int_equal(n.exec, 1);
    assert_string_equal(n.cid, CID_A);
    /* Replacing points the name at new content; the old content loses its reference. */
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "a/b/c.txt", 6, CID_B, 8, 0, 10, NULL, NULL, 0, 0), 0);
    assert_int_equal(ferry_meta_gc(f->m, 0, 0, on_gc, &g), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.cids[0], CID_A);
    assert_int_equal(count_refs(f, CID_A), 0);
    assert_int_equal(count_refs(f, CID_B), 1);
    /* A directory in the way, a file in the way. */
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "a/b", 1, CID_A, 1, 0, 1, NULL, NULL, 0, 0),
        FERRY_EISDIR);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "a/b/c.txt/d", 1, CID_A, 1, 0, 1, NULL, NULL, 0, 0),
        FERRY_ENOTDIR);
    /* Remove needs -r for a folder, empty or not; the root is never removed. */
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "a", 0), FERRY_EISDIR);
    assert_int_equal(ferry_meta_mkdirs(f->m, f->alice, "empty", 1, 1, &n.id), 0);
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "empty", 0), FERRY_EISDIR);
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "empty", 1), 0);
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "", 1), FERRY_EPATH);
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "a", 1), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "a", &n), FERRY_ENOTFOUND);
    g.n = 0;
    assert_int_equal(ferry_meta_gc(f->m, 0, 0, on_gc, &g), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.cids[0], CID_B);
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

/* Dedup is per user: bob holding CID_A gives alice nothing (P3, R-STORE-7). */
static void test_per_user_content(void **state)
{
    struct fx *f = *state;
    struct ferry_node n;

    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_put_file(f->m, f->bob, "x", 5, CID_A, 1, 0, 1, NULL, NULL, 0, 0),
                     0);
    assert_int_equal(ferry_meta_content_has(f->m, f->bob, CID_A), 1);
    assert_int_equal(ferry_meta_content_has(f->m, f->alice, CID_A), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "x", &n), FERRY_ENOTFOUND);
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

/* R-STORE-9: small content lives in its row. */
static void test_inline_content(void **state)
{
    struct fx *f = *state;
    void *data = NULL;
    size_t len = 0;
    struct gc_seen g = {0};

    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "small", 5, CID_A, 1, 0, 1, "hello", NULL, 0, 0), 0);
    assert_int_equal(ferry_meta_content_inline(f->m, f->alice, CID_A, &data, &len), 1);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "hello", 5);
    ferry_free(data);
    assert_int_equal(ferry_meta_content_inline(f->m, f->alice, CID_B, &data, &len),
                     FERRY_ENOTFOUND);
    /* Inline content has no file to collect. */
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "small", 0), 0);
    assert_int_equal(ferry_meta_gc(f->m, 0, 0, on_gc, &g), 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(ferry_meta_content_has(f->m, f->alice, CID_A), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

static void test_move(void **state)
{
    struct fx *f = *state;
    struct ferry_node n;

    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "d/f1", 1, CID_A, 1, 0, 1, NULL, NULL, 0, 0), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "d/f2", 1, CID_B, 1, 0, 1, NULL, NULL, 0, 0), 0);
    assert_int_equal(ferry_meta_move(f->m, f->alice, "d/f1", "d/f2", 0, 2), FERRY_EEXIST);
    assert_int_equal(ferry_meta_move(f->m, f->alice, "d/f1", "d/f2", 1, 2), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "d/f2", &n), 0);
    assert_string_equal(n.cid, CID_A);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "d/f1", &n), FERRY_ENOTFOUND);
    /* Into its own subtree: refused. Into a missing parent: not found. */
    assert_int_equal(ferry_meta_move(f->m, f->alice, "d", "d/sub", 0, 2), FERRY_EPATH);
    assert_int_equal(ferry_meta_move(f->m, f->alice, "d", "nope/d", 0, 2), FERRY_ENOTFOUND);
    assert_int_equal(ferry_meta_move(f->m, f->alice, "d", "e", 0, 2), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "e/f2", &n), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

struct listed {
    int n;
    char names[16][64];
};

static int on_list(void *arg, const char *rel, const struct ferry_node *n)
{
    struct listed *l = arg;

    (void)n;
    if (l->n < 16)
        snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", rel);
    return 0;
}

static void test_list_recursive(void **state)
{
    struct fx *f = *state;
    struct listed l = {0};
    struct ferry_node root;
    int64_t id;

    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "t/b/z", 1, CID_A, 1, 0, 1, NULL, NULL, 0, 0), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "t/a", 1, CID_A, 1, 0, 1, NULL, NULL, 0, 0), 0);
    assert_int_equal(ferry_meta_mkdirs(f->m, f->alice, "t/c/empty", 5, 1, &id), 0);
    /* mkdir is idempotent; a file in the way is an error. */
    assert_int_equal(ferry_meta_mkdirs(f->m, f->alice, "t/c/empty", 5, 1, &id), 0);
    assert_int_equal(ferry_meta_mkdirs(f->m, f->alice, "t/a", 5, 1, &id), FERRY_EEXIST);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "t", &root), 0);
    assert_int_equal(ferry_meta_list(f->m, f->alice, root.id, 1, on_list, &l), 0);
    assert_int_equal(l.n, 5);
    assert_string_equal(l.names[0], "a");
    assert_string_equal(l.names[1], "b");
    assert_string_equal(l.names[2], "b/z");
    assert_string_equal(l.names[3], "c");
    assert_string_equal(l.names[4], "c/empty");
}

/* The walk ferry_meta_list makes, one line per entry ("rel id"), for comparing. */
struct walk_log {
    char *buf;
    size_t len;
    size_t cap;
};

static int on_walk(void *arg, const char *rel, const struct ferry_node *n)
{
    struct walk_log *w = arg;
    int k;

    if (w->cap - w->len < 4200) {
        w->cap = w->cap ? w->cap * 2 : 1 << 16;
        w->buf = realloc(w->buf, w->cap);
        assert_non_null(w->buf);
    }
    k = snprintf(w->buf + w->len, w->cap - w->len, "%s %lld\n", rel, (long long)n->id);
    w->len += (size_t)k;
    return 0;
}

/* Compares the cursor's walk of dir with ferry_meta_list's, both ways of recursion. */
static void cursor_matches(struct fx *f, int64_t dir)
{
    struct ferry_meta_cursor *c;
    struct ferry_node n;
    const char *rel;
    int rec, rc;

    for (rec = 0; rec < 2; rec++) {
        struct walk_log want = {0}, got = {0};

        assert_int_equal(ferry_meta_list(f->m, f->alice, dir, rec, on_walk, &want), 0);
        assert_int_equal(ferry_meta_cursor_new(f->alice, dir, rec, &c), 0);
        while ((rc = ferry_meta_cursor_next(f->m, c, &rel, &n)) == 1)
            on_walk(&got, rel, &n);
        assert_int_equal(rc, 0);
        /* Over, it stays over. */
        assert_int_equal(ferry_meta_cursor_next(f->m, c, &rel, &n), 0);
        ferry_meta_cursor_free(c);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.buf, want.buf, want.len);
        free(want.buf);
        free(got.buf);
    }
}

/*
 * R-PAGE-2: the cursor walks the tree as ferry_meta_list does, in batches:
 * folders of more entries than a batch (64), a folder entered in the
 * middle of a batch, folders deep and empty, another user's entries left
 * out.
 */
static void test_cursor_walk_r_page_2(void **state)
{
    struct fx *f = *state;
    struct ferry_node n;
    char path[FERRY_PATH_MAX + 1];
    int64_t id;
    int i, k;

    assert_int_equal(ferry_meta_begin(f->m), 0);
    for (i = 0; i < 150; i++) {
        snprintf(path, sizeof(path), "w/e%03d", i);
        if (i % 40 == 7) {
            /* Folders among the files, some with more than a batch inside. */
            for (k = 0; k < (i == 47 ? 130 : 3); k++) {
                snprintf(path, sizeof(path), "w/e%03d/in%03d", i, k);
                assert_int_equal(ferry_meta_mkdirs(f->m, f->alice, path, 1, 1, &id), 0);
            }
        } else {
            assert_int_equal(
                ferry_meta_put_file(f->m, f->alice, path, 1, CID_A, 1, 0, 1, NULL, NULL, 0, 0), 0);
        }
    }
    assert_int_equal(ferry_meta_mkdirs(f->m, f->alice, "w/deep/a/b/c/d/e/f/g", 1, 1, &id), 0);
    assert_int_equal(ferry_meta_mkdirs(f->m, f->alice, "w/empty", 1, 1, &id), 0);
    assert_int_equal(ferry_meta_mkdirs(f->m, f->bob, "w/bobs", 1, 1, &id), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    assert_int_equal(ferry_meta_read_begin(f->m), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "", &n), 0);
    cursor_matches(f, n.id);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "w/e047", &n), 0);
    cursor_matches(f, n.id);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "w/empty", &n), 0);
    cursor_matches(f, n.id);
    ferry_meta_read_end(f->m);
}

/*
 * Read transactions nest (the server's download pump holds one for a pass,
 * and a request it lets in may begin its own): the inner pair joins the
 * outer snapshot, and only the outer end lets a later commit be seen.
 */
static void test_read_nesting(void **state)
{
    struct fx *f = *state;
    struct ferry_meta *r;
    struct ferry_node n;
    char path[128];

    snprintf(path, sizeof(path), "%s/ferry.db", f->dir);
    assert_int_equal(ferry_meta_open(path, 1, &r), 0);
    assert_int_equal(ferry_meta_read_begin(r), 0);
    assert_int_equal(ferry_meta_lookup(r, f->alice, "late.txt", &n), FERRY_ENOTFOUND);
    assert_int_equal(ferry_meta_read_begin(r), 0);
    /* Committed by the writer while the reader's snapshot is open. */
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "late.txt", 1, CID_A, 1, 0, 1, NULL, NULL, 0, 0), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    assert_int_equal(ferry_meta_lookup(r, f->alice, "late.txt", &n), FERRY_ENOTFOUND);
    ferry_meta_read_end(r);
    /* The inner end kept the snapshot. */
    assert_int_equal(ferry_meta_lookup(r, f->alice, "late.txt", &n), FERRY_ENOTFOUND);
    ferry_meta_read_end(r);
    assert_int_equal(ferry_meta_lookup(r, f->alice, "late.txt", &n), 0);
    /* And a new pair starts from nothing. */
    assert_int_equal(ferry_meta_read_begin(r), 0);
    assert_int_equal(ferry_meta_lookup(r, f->alice, "late.txt", &n), 0);
    ferry_meta_read_end(r);
    ferry_meta_close(r);
}

/* R-AUTH-6, R-AUTH-7: one session per device; revocation by token or by user. */
static void test_sessions(void **state)
{
    struct fx *f = *state;
    uint8_t t1[32] = {1}, t2[32] = {2}, t3[32] = {3};
    char dev[FERRY_ID_LEN + 1], user[65];
    int64_t uid;

    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_session_put(f->m, f->alice, "DEV1", t1, 1), 0);
    assert_int_equal(ferry_meta_session_get(f->m, t1, &uid, dev, user, sizeof(user)), 0);
    assert_int_equal(uid, f->alice);
    assert_string_equal(dev, "DEV1");
    assert_string_equal(user, "alice");
    /* A new login from the same device replaces its session. */
    assert_int_equal(ferry_meta_session_put(f->m, f->alice, "DEV1", t2, 2), 0);
    assert_int_equal(ferry_meta_session_get(f->m, t1, &uid, dev, user, sizeof(user)),
                     FERRY_ENOTFOUND);
    assert_int_equal(ferry_meta_session_put(f->m, f->alice, "DEV2", t3, 2), 0);
    /* Everything but t3 goes (a password change from DEV2). */
    assert_int_equal(ferry_meta_session_delete_user(f->m, f->alice, t3), 0);
    assert_int_equal(ferry_meta_session_get(f->m, t2, &uid, dev, user, sizeof(user)),
                     FERRY_ENOTFOUND);
    assert_int_equal(ferry_meta_session_get(f->m, t3, &uid, dev, user, sizeof(user)), 0);
    assert_int_equal(ferry_meta_session_delete(f->m, t3), 0);
    assert_int_equal(ferry_meta_session_get(f->m, t3, &uid, dev, user, sizeof(user)),
                     FERRY_ENOTFOUND);
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

/*
 * R-AUTH-14: a password checked against one hash commits nothing once the
 * user's hash changed (a ChangePwd, `ferry serve user passwd|disable`).
 */
static void test_verified_hash_r_auth_14(void **state)
{
    struct fx *f = *state;

    assert_int_equal(ferry_meta_user_pwhash_is(f->m, f->alice, "$argon2id$x"), 0);
    assert_int_equal(ferry_meta_user_pwhash_is(f->m, f->alice, "$argon2id$y"), FERRY_EAUTH);
    assert_int_equal(ferry_meta_user_pwhash_is(f->m, f->alice, ""), FERRY_EAUTH);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_user_set_pwhash(f->m, f->alice, "$argon2id$new"), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    assert_int_equal(ferry_meta_user_pwhash_is(f->m, f->alice, "$argon2id$x"), FERRY_EAUTH);
    assert_int_equal(ferry_meta_user_pwhash_is(f->m, f->alice, "$argon2id$new"), 0);
    /* A user that is gone verifies nothing either. */
    assert_int_equal(ferry_meta_user_pwhash_is(f->m, 987654, "$argon2id$x"), FERRY_EAUTH);
}

/* A failed operation inside a batch undoes only itself. */
static void test_savepoints(void **state)
{
    struct fx *f = *state;
    struct ferry_node n;

    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_savepoint(f->m), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "keep", 1, CID_A, 1, 0, 1, NULL, NULL, 0, 0), 0);
    assert_int_equal(ferry_meta_release(f->m), 0);
    assert_int_equal(ferry_meta_savepoint(f->m), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "gone/x", 1, CID_B, 1, 0, 1, NULL, NULL, 0, 0), 0);
    ferry_meta_rollback_to(f->m);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "keep", &n), 0);
    assert_int_equal(ferry_meta_lookup(f->m, f->alice, "gone", &n), FERRY_ENOTFOUND);
    assert_int_equal(ferry_meta_content_has(f->m, f->alice, CID_B), 0);
}

static void test_blob_relpath(void **state)
{
    char p[160];

    (void)state;
    assert_int_equal(ferry_blob_relpath(12, CID_A, p, sizeof(p)), 0);
    assert_string_equal(
        p, "blobs/12/aa/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    /* A malformed id never becomes a path. */
    assert_int_equal(ferry_blob_relpath(12, "sha256:../../etc", p, sizeof(p)), FERRY_EPROTO);
    assert_int_equal(ferry_blob_relpath(12, "md5:abc", p, sizeof(p)), FERRY_EPROTO);
}

#define CID_C "chunks:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define SEC   1000000000ll

/* Two chunks, 0x11.. of 64 KiB and 0x22.. of 10 bytes: a list of 72 bytes. */
static void two_chunks(uint8_t list[72], uint8_t h1[32], uint8_t h2[32])
{
    struct ferry_chunk_ent e = {.len = 65536};

    memset(h1, 0x11, 32);
    memset(h2, 0x22, 32);
    memcpy(e.hash, h1, 32);
    ferry_chunk_ent_encode(list, &e);
    e.len = 10;
    memcpy(e.hash, h2, 32);
    ferry_chunk_ent_encode(list + 36, &e);
}

/* R-CHUNK-8: a file commits only when every chunk is held, and then refers to each. */
static void test_chunked_commit_r_chunk_8(void **state)
{
    struct fx *f = *state;
    struct gc_seen g = {0};
    uint8_t list[72], h1[32], h2[32];
    void *data;
    size_t len;

    two_chunks(list, h1, h2);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_chunk_put(f->m, f->alice, h1, 65536, 0, 0, 100 * SEC), 0);
    assert_int_equal(ferry_meta_chunk_has(f->m, f->alice, h1), 1);
    assert_int_equal(ferry_meta_chunk_has(f->m, f->alice, h2), 0);
    /* Missing chunk: refused, and the savepoint-free caller sees nothing half done. */
    assert_int_equal(ferry_meta_savepoint(f->m), 0);
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "c", 65546, CID_C, 1, 0, 100 * SEC, NULL,
                                         list, sizeof(list), 0),
                     FERRY_ENOTFOUND);
    ferry_meta_rollback_to(f->m);
    assert_int_equal(ferry_meta_chunk_put(f->m, f->alice, h2, 10, 0, 0, 100 * SEC), 0);
    /* Per user: bob holding nothing cannot point a file at alice's chunks. */
    assert_int_equal(ferry_meta_chunk_has(f->m, f->bob, h1), 0);
    assert_int_equal(ferry_meta_put_file(f->m, f->bob, "c", 65546, CID_C, 1, 0, 100 * SEC, NULL,
                                         list, sizeof(list), 0),
                     FERRY_ENOTFOUND);
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "c", 65546, CID_C, 1, 0, 100 * SEC, NULL,
                                         list, sizeof(list), 0),
                     0);
    assert_int_equal(ferry_meta_content_inline(f->m, f->alice, CID_C, &data, &len), 2);
    assert_int_equal(len, sizeof(list));
    assert_memory_equal(data, list, sizeof(list));
    ferry_free(data);
    /* Referenced chunks survive any TTL. */
    assert_int_equal(ferry_meta_gc(f->m, 1000 * SEC, 1 * SEC, on_gc, &g), 0);
    assert_int_equal(g.n, 0);
    /* R-CHUNK-11: stored within the TTL, they outlive their last reference... */
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "c", 0), 0);
    assert_int_equal(ferry_meta_gc(f->m, 101 * SEC, 10 * SEC, on_gc, &g), 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(ferry_meta_chunk_has(f->m, f->alice, h1), 1);
    /* ...and go with the TTL sweep. */
    assert_int_equal(ferry_meta_gc(f->m, 111 * SEC, 10 * SEC, on_gc, &g), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(ferry_meta_chunk_has(f->m, f->alice, h1), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

/* R-CHUNK-11: a chunk stored long ago goes in the commit that drops its last reference. */
static void test_chunk_unref_old_r_chunk_11(void **state)
{
    struct fx *f = *state;
    struct gc_seen g = {0};
    uint8_t list[72], h1[32], h2[32];

    two_chunks(list, h1, h2);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_chunk_put(f->m, f->alice, h1, 65536, 0, 0, 1 * SEC), 0);
    assert_int_equal(ferry_meta_chunk_put(f->m, f->alice, h2, 10, 0, 0, 1 * SEC), 0);
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "c", 65546, CID_C, 1, 0, 1 * SEC, NULL,
                                         list, sizeof(list), 0),
                     0);
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "d", 65546, CID_C, 1, 0, 1 * SEC, NULL,
                                         list, sizeof(list), 0),
                     0);
    /* One of two files gone: the content and its chunks stay. */
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "c", 0), 0);
    assert_int_equal(ferry_meta_gc(f->m, 5000 * SEC, 10 * SEC, on_gc, &g), 0);
    assert_int_equal(g.n, 0);
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "d", 0), 0);
    assert_int_equal(ferry_meta_gc(f->m, 5000 * SEC, 10 * SEC, on_gc, &g), 0);
    assert_int_equal(g.n, 2);
    assert_non_null(strstr(g.cids[0], "1111111111"));
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

/* R-CHUNK-9: the quota counts logical bytes, with a replaced file taken off. */
static void test_quota_r_chunk_9(void **state)
{
    struct fx *f = *state;
    uint64_t used = 1;

    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_used(f->m, f->alice, &used), 0);
    assert_int_equal(used, 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "a", 60, CID_A, 1, 0, 1, NULL, NULL, 0, 100), 0);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "b", 41, CID_B, 1, 0, 1, NULL, NULL, 0, 100),
        FERRY_EQUOTA);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "b", 40, CID_B, 1, 0, 1, NULL, NULL, 0, 100), 0);
    assert_int_equal(ferry_meta_used(f->m, f->alice, &used), 0);
    assert_int_equal(used, 100);
    /* Replacing a file: only the difference counts; shrinking is always allowed. */
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "a", 61, CID_B, 1, 0, 1, NULL, NULL, 0, 100),
        FERRY_EQUOTA);
    assert_int_equal(
        ferry_meta_put_file(f->m, f->alice, "a", 10, CID_B, 1, 0, 1, NULL, NULL, 0, 100), 0);
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "b", 0), 0);
    assert_int_equal(ferry_meta_used(f->m, f->alice, &used), 0);
    assert_int_equal(used, 10);
    /* Bob's usage is his own. */
    assert_int_equal(ferry_meta_used(f->m, f->bob, &used), 0);
    assert_int_equal(used, 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

/*
 * R-QUOTA-1..3: chunks no content refers to count, by their 4 KiB blocks,
 * from their insert until their first reference, again once their last
 * reference goes, and not after they are deleted.
 */
static void test_loose_chunks_r_quota_1(void **state)
{
    struct fx *f = *state;
    struct gc_seen g = {0};
    uint8_t list[72], h1[32], h2[32];
    uint64_t used = 1, loose = 1, quota = 65536 + 4096 + 65546;

    two_chunks(list, h1, h2);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_usage(f->m, f->alice, &used, &loose), 0);
    assert_true(used == 0 && loose == 0);
    /* 65536 and 10 bytes: 16 blocks and 1. */
    assert_int_equal(ferry_meta_chunk_put(f->m, f->alice, h1, 65536, 0, 0, 100 * SEC), 0);
    assert_int_equal(ferry_meta_chunk_put(f->m, f->alice, h2, 10, 0, 0, 100 * SEC), 0);
    /* Stored again: no new row, nothing more counts. */
    assert_int_equal(ferry_meta_chunk_put(f->m, f->alice, h2, 10, 0, 0, 100 * SEC), 1);
    assert_int_equal(ferry_meta_usage(f->m, f->alice, &used, &loose), 0);
    assert_int_equal(used, 0);
    assert_int_equal(loose, 65536 + 4096);
    /* R-QUOTA-2: the room left is the quota less both parts. */
    assert_int_equal(ferry_meta_quota_room(f->m, f->alice, 65546, quota), 0);
    assert_int_equal(ferry_meta_quota_room(f->m, f->alice, 65547, quota), FERRY_EQUOTA);
    assert_int_equal(ferry_meta_quota_room(f->m, f->alice, INT64_MAX, quota), FERRY_EQUOTA);
    assert_int_equal(ferry_meta_quota_room(f->m, f->alice, INT64_MAX, 0), 0);
    /* Bob's usage is his own. */
    assert_int_equal(ferry_meta_usage(f->m, f->bob, &used, &loose), 0);
    assert_true(used == 0 && loose == 0);
    /*
     * R-QUOTA-3: a file referring to them stops them counting before the
     * quota is checked, so its own chunks do not count twice.
     */
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "c", 65546, CID_C, 1, 0, 100 * SEC, NULL,
                                         list, sizeof(list), 65546),
                     0);
    assert_int_equal(ferry_meta_usage(f->m, f->alice, &used, &loose), 0);
    assert_int_equal(used, 65546);
    assert_int_equal(loose, 0);
    /* A second file of the same content takes no second count. */
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "d", 65546, CID_C, 1, 0, 100 * SEC, NULL,
                                         list, sizeof(list), 0),
                     0);
    assert_int_equal(ferry_meta_usage(f->m, f->alice, &used, &loose), 0);
    assert_int_equal(loose, 0);
    /* Both gone within the TTL: the chunks are loose again and count... */
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "c", 0), 0);
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "d", 0), 0);
    assert_int_equal(ferry_meta_gc(f->m, 101 * SEC, 10 * SEC, on_gc, &g), 0);
    assert_int_equal(ferry_meta_usage(f->m, f->alice, &used, &loose), 0);
    assert_int_equal(used, 0);
    assert_int_equal(loose, 65536 + 4096);
    /* ...against a file's commit too (R-QUOTA-3)... */
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "e", 65546, CID_A, 1, 0, 101 * SEC, NULL,
                                         NULL, 0, 65546 + 65536),
                     FERRY_EQUOTA);
    /* ...until the TTL sweep deletes them. */
    assert_int_equal(ferry_meta_gc(f->m, 111 * SEC, 10 * SEC, on_gc, &g), 0);
    assert_int_equal(ferry_meta_usage(f->m, f->alice, &used, &loose), 0);
    assert_int_equal(loose, 0);
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "e", 65546, CID_A, 1, 0, 111 * SEC, NULL,
                                         NULL, 0, 65546 + 65536),
                     0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
}

/* ---- Packs (R-CHUNK-7, R-CHUNK-11) ---- */

/* A chunk's bytes, zero-padded to whole blocks in an aligned buffer. */
static uint8_t *pack_buf(int fill, size_t len)
{
    size_t padded = (size_t)FERRY_PACK_ROUND((int64_t)len);
    uint8_t *b = ferry_malloc_aligned(FERRY_PACK_ALIGN, padded);

    assert_non_null(b);
    memset(b, fill, len);
    memset(b + len, 0, padded - len);
    return b;
}

/*
 * What one commit batch does: appends the chunks at the pack's end, makes
 * them durable, then records the pack's end and the rows. hashes[i] is
 * filled with the chunk's bytes' value, as in two_chunks.
 */
static void pack_batch(struct fx *f, const int *fill, const size_t *len, int n, int64_t *pack,
                       int64_t *offs, int commit)
{
    struct iovec iov[4];
    uint8_t *bufs[4], h[32];
    int64_t end;
    int fresh, fd, datafd, i;

    assert_true(n <= 4);
    datafd = open(f->dir, O_RDONLY | O_DIRECTORY);
    assert_true(datafd >= 0);
    assert_int_equal(ferry_meta_pack_next(f->m, f->alice, pack, &end, &fresh), 0);
    fd = ferry_pack_open(datafd, f->alice, *pack, fresh);
    assert_true(fd >= 0);
    for (i = 0; i < n; i++) {
        bufs[i] = pack_buf(fill[i], len[i]);
        iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = (size_t)FERRY_PACK_ROUND(len[i])};
        offs[i] = end;
        end += (int64_t)iov[i].iov_len;
    }
    assert_int_equal(ferry_pack_write(fd, offs[0], iov, n), 0);
    assert_int_equal(fdatasync(fd), 0);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_pack_grow(f->m, f->alice, *pack, end), 0);
    for (i = 0; i < n; i++) {
        memset(h, fill[i], sizeof(h));
        assert_int_equal(
            ferry_meta_chunk_put(f->m, f->alice, h, (int64_t)len[i], *pack, offs[i], 1 * SEC), 0);
    }
    if (commit)
        assert_int_equal(ferry_meta_commit(f->m), 0);
    for (i = 0; i < n; i++)
        ferry_free(bufs[i]);
    close(fd);
    close(datafd);
}

/* Reads uid's chunk through its row; 0 when the row says it is not held. */
static int pack_read(struct fx *f, int fill, uint8_t *out, size_t cap)
{
    char rel[FERRY_BLOB_RELPATH_MAX], path[256];
    int64_t pack, off, size;
    uint8_t h[32];
    int fd, rc;

    memset(h, fill, sizeof(h));
    if ((rc = ferry_meta_chunk_loc(f->m, f->alice, h, &pack, &off, &size)) != 1)
        return rc;
    assert_true((size_t)size <= cap);
    assert_int_equal(ferry_pack_relpath(f->alice, pack, rel, sizeof(rel)), 0);
    snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, out, (size_t)size, (off_t)off), size);
    close(fd);
    return 1;
}

/* R-CHUNK-7: chunks are appended at aligned offsets and read back through their rows. */
static void test_pack_append_read(void **state)
{
    static const int fill[] = {0x31, 0x32, 0x33};
    static const size_t len[] = {70000, 65536, 5};
    struct fx *f = *state;
    uint8_t got[70000], h[32];
    int64_t pack, pack2, offs[3], offs2[3], end;
    int fresh, i;

    pack_batch(f, fill, len, 2, &pack, offs, 1);
    assert_int_equal(pack, 1);
    assert_int_equal(offs[0], 0);
    assert_int_equal(offs[1], FERRY_PACK_ROUND(70000));
    /* The next batch appends to the same pack, where the last one ended. */
    pack_batch(f, fill + 2, len + 2, 1, &pack2, offs2, 1);
    assert_int_equal(pack2, pack);
    assert_int_equal(offs2[0], offs[1] + 65536);
    assert_int_equal(ferry_meta_pack_next(f->m, f->alice, &pack2, &end, &fresh), 0);
    assert_int_equal(end, offs2[0] + FERRY_PACK_ALIGN);
    assert_int_equal(fresh, 0);
    for (i = 0; i < 3; i++) {
        uint8_t want[70000];

        memset(want, fill[i], len[i]);
        assert_int_equal(pack_read(f, fill[i], got, sizeof(got)), 1);
        assert_memory_equal(got, want, len[i]);
    }
    /* Stored again: the row stays where it was and says the new bytes are unused. */
    memset(h, 0x31, sizeof(h));
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_chunk_put(f->m, f->alice, h, 70000, pack, 1 << 20, 2 * SEC), 1);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    assert_int_equal(pack_read(f, 0x31, got, sizeof(got)), 1);
    assert_int_equal(got[0], 0x31);
    /* Per user: bob has no pack and reads nothing of alice's. */
    assert_int_equal(ferry_meta_chunk_has(f->m, f->bob, h), 0);
    assert_int_equal(ferry_meta_pack_next(f->m, f->bob, &pack2, &end, &fresh), 0);
    assert_int_equal(fresh, 1);
    assert_int_equal(end, 0);
}

static int64_t file_blocks(struct fx *f, const char *rel)
{
    char path[256];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
    if (stat(path, &st) != 0)
        return -1;
    return (int64_t)st.st_blocks;
}

/* Applies what the GC reported, as the commit job does once committed. */
static void gc_apply(struct fx *f, const struct gc_seen *g)
{
    char path[256];
    int i, fd;

    for (i = 0; i < g->n; i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, g->rel[i]);
        if (g->len[i] == 0) {
            unlink(path);
            continue;
        }
        fd = open(path, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(ferry_pack_punch(fd, g->off[i], g->len[i]), 0);
        close(fd);
    }
}

/*
 * R-CHUNK-11: a deleted chunk's blocks become a hole (aligned: its
 * neighbours stay intact), and a pack no row points into is deleted; its
 * id never comes back.
 */
static void test_pack_punch_delete(void **state)
{
    static const int fill[] = {0x41, 0x42};
    static const size_t len[] = {65536 + 100, 65536};
    struct fx *f = *state;
    struct gc_seen g = {0};
    uint8_t list[2 * FERRY_CHUNK_ENT_LEN], got[70000], want[70000];
    struct ferry_chunk_ent e;
    char rel[FERRY_BLOB_RELPATH_MAX];
    int64_t pack, offs[2], before, end;
    int fresh;

    pack_batch(f, fill, len, 2, &pack, offs, 1);
    assert_int_equal(ferry_pack_relpath(f->alice, pack, rel, sizeof(rel)), 0);
    /* A file of the first chunk only, so the second's last reference goes first. */
    e.len = (uint32_t)len[0];
    memset(e.hash, 0x41, 32);
    ferry_chunk_ent_encode(list, &e);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_put_file(f->m, f->alice, "p", (int64_t)len[0], CID_C, 1, 0, 1 * SEC,
                                         NULL, list, FERRY_CHUNK_ENT_LEN, 0),
                     0);
    /* Past the TTL: the unreferenced second chunk goes, as a range of the pack. */
    assert_int_equal(ferry_meta_gc(f->m, 1000 * SEC, 10 * SEC, on_gc, &g), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.rel[0], rel);
    assert_int_equal(g.off[0], offs[1]);
    assert_int_equal(g.len[0], 65536);
    before = file_blocks(f, rel);
    gc_apply(f, &g);
    /* ext4 and tmpfs free the blocks; the first chunk reads as before. */
    assert_true(file_blocks(f, rel) <= before - 65536 / 512);
    memset(want, 0x41, len[0]);
    assert_int_equal(pack_read(f, 0x41, got, sizeof(got)), 1);
    assert_memory_equal(got, want, len[0]);
    /* The last row gone: its range and then the whole pack. */
    g.n = 0;
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_meta_remove(f->m, f->alice, "p", 0), 0);
    assert_int_equal(ferry_meta_gc(f->m, 1000 * SEC, 10 * SEC, on_gc, &g), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.off[0], 0);
    assert_int_equal(g.len[0], FERRY_PACK_ROUND(len[0]));
    assert_string_equal(g.rel[1], rel);
    assert_int_equal(g.len[1], 0);
    gc_apply(f, &g);
    assert_int_equal(file_blocks(f, rel), -1);
    assert_int_equal(pack_read(f, 0x41, got, sizeof(got)), 0);
    assert_int_equal(ferry_meta_pack_next(f->m, f->alice, &pack, &end, &fresh), 0);
    assert_int_equal(pack, 2);
    assert_int_equal(fresh, 1);
}

/*
 * R-CHUNK-7: a batch killed after writing its bytes and before its commit
 * leaves no row, so nothing reads those bytes; the next batch writes over
 * them from the committed end.
 */
static void test_pack_killed_batch(void **state)
{
    static const int fill[] = {0x51, 0x52};
    static const size_t len[] = {65536, 65536};
    struct fx *f = *state;
    char path[128];
    uint8_t got[65536], want[65536];
    int64_t pack, offs[2], end;
    int fresh, st;
    pid_t pid;

    pack_batch(f, fill, len, 1, &pack, offs, 1);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct ferry_meta *m = NULL;

        /* Its own connection, as a server would have; killed mid-transaction. */
        snprintf(path, sizeof(path), "%s/ferry.db", f->dir);
        if (ferry_meta_open(path, 0, &m) != 0)
            _exit(2);
        f->m = m;
        pack_batch(f, fill + 1, len + 1, 1, &pack, offs, 0);
        raise(SIGKILL);
        _exit(3);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(pack_read(f, 0x52, got, sizeof(got)), 0);
    assert_int_equal(ferry_meta_pack_next(f->m, f->alice, &pack, &end, &fresh), 0);
    assert_int_equal(end, 65536);
    /* Its bytes are past the recorded end: the next batch starts there. */
    pack_batch(f, fill + 1, len + 1, 1, &pack, offs, 1);
    assert_int_equal(offs[0], 65536);
    memset(want, 0x52, sizeof(want));
    assert_int_equal(pack_read(f, 0x52, got, sizeof(got)), 1);
    assert_memory_equal(got, want, sizeof(want));
    memset(want, 0x51, sizeof(want));
    assert_int_equal(pack_read(f, 0x51, got, sizeof(got)), 1);
    assert_memory_equal(got, want, sizeof(want));
}

/* A store of schema 2 keeps its chunk rows, read from the old files (pack 0). */
static void test_schema_v2_migrates(void **state)
{
    struct fx *f = *state;
    struct ferry_meta *m = NULL;
    char path[128], cmd[1024];
    int64_t pack = -1, off = -1, size = 0, end;
    uint8_t h[32];
    int fresh;

    snprintf(path, sizeof(path), "%s/v2.db", f->dir);
    snprintf(cmd, sizeof(cmd),
             "sqlite3 %s \"CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
             " pwhash TEXT NOT NULL, created INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0)"
             " STRICT; INSERT INTO users VALUES(1, 'u', 'h', 1, 0);"
             " CREATE TABLE chunks(user_id INTEGER NOT NULL, hash BLOB NOT NULL,"
             " size INTEGER NOT NULL, refs INTEGER NOT NULL, touched INTEGER NOT NULL,"
             " PRIMARY KEY(user_id, hash)) STRICT, WITHOUT ROWID;"
             " INSERT INTO chunks VALUES(1, zeroblob(32), 77, 0, 5);"
             " PRAGMA user_version=2;\"",
             path);
    if (system(cmd) != 0)
        skip(); /* no sqlite3 shell to make the old store with */
    assert_int_equal(ferry_meta_open(path, 0, &m), 0);
    memset(h, 0, sizeof(h));
    assert_int_equal(ferry_meta_chunk_loc(m, 1, h, &pack, &off, &size), 1);
    assert_int_equal(pack, 0);
    assert_int_equal(size, 77);
    assert_int_equal(ferry_meta_pack_next(m, 1, &pack, &end, &fresh), 0);
    assert_int_equal(pack, 1);
    assert_int_equal(fresh, 1);
    assert_int_equal(ferry_meta_check(m), 0);
    ferry_meta_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_users_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_replace_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_user_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_recursive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verified_hash_r_auth_14, setup, teardown),
        cmocka_unit_test_setup_teardown(test_savepoints, setup, teardown),
        cmocka_unit_test(test_blob_relpath),
        cmocka_unit_test_setup_teardown(test_chunked_commit_r_chunk_8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_unref_old_r_chunk_11, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota_r_chunk_9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_append_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_punch_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_killed_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_v2_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loose_chunks_r_quota_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_walk_r_page_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_nesting, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
