/* Unit tests for the content stores (ferry/blob.h): the pack-file store and the fault-injecting
 * one. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry/blob.h"
#include "ferry/core.h"
#include "ferry/crypto.h"

struct fx {
    char dir[64];
    int datafd;
    struct ferry_meta *m;
    int64_t uid;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char path[128];

    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-blob-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/ferry.db", f->dir);
    if ((f->datafd = open(f->dir, O_RDONLY | O_DIRECTORY)) < 0 ||
        ferry_meta_open(path, 0, &f->m) != 0 || ferry_meta_begin(f->m) != 0 ||
        ferry_meta_user_create(f->m, "alice", "$argon2id$x", 1, &f->uid) != 0 ||
        ferry_meta_commit(f->m) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    ferry_meta_close(f->m);
    close(f->datafd);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* An aligned chunk buffer of len bytes of fill, with room for the padding. */
static uint8_t *chunk_buf(int fill, size_t len)
{
    uint8_t *b = ferry_malloc_aligned(FERRY_PACK_ALIGN, (size_t)FERRY_PACK_ROUND((int64_t)len));

    assert_non_null(b);
    memset(b, fill, len);
    return b;
}

/* Reads all of ref's content through a reader; returns how many bytes came. */
static ssize_t read_all(struct ferry_blob_store *st, const struct ferry_blob_ref *ref, uint8_t *out,
                        size_t cap)
{
    struct ferry_blob_reader *r = NULL;
    struct iovec v = {.iov_base = out, .iov_len = cap};
    ssize_t got;

    if (ferry_blob_reader_open(st, ref, &r) != 0)
        return -1;
    got = ferry_blob_read(st, r, 0, &v, 1);
    ferry_blob_reader_close(st, r);
    return got;
}

/* Puts two chunks and a whole file, makes them durable, records and reads them back. */
static void test_pack_put_read(void **state)
{
    struct fx *f = *state;
    struct ferry_blob_store *st = NULL;
    struct ferry_blob_batch *b = NULL;
    struct ferry_blob_spool sp;
    struct ferry_blob_ref r1, r2, rf, back;
    struct ferry_blob_reader *rd = NULL;
    uint8_t h1[32], h2[32], *c1 = chunk_buf(0x11, 70000), *c2 = chunk_buf(0x22, 5), got[70000];
    uint8_t whole[9000];
    char cid[FERRY_CID_LEN + 1];
    struct ferry_sha256 sha;
    int s1 = -1, s2 = -1, sf = -1;
    int64_t loc, off, size;
    struct iovec v = {.iov_base = got, .iov_len = 5};

    memset(h1, 1, 32);
    memset(h2, 2, 32);
    memset(whole, 0x33, sizeof(whole));
    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, whole, sizeof(whole));
    ferry_sha256_final_cid(&sha, cid);
    assert_int_equal(ferry_blob_pack_open(f->datafd, &st), 0);
    /* A spool is a temp file the caller writes; put, it becomes the whole file. */
    assert_int_equal(ferry_blob_spool_open(st, &sp), 0);
    assert_int_equal(write(sp.fd, whole, sizeof(whole)), (ssize_t)sizeof(whole));
    assert_int_equal(ferry_blob_batch_begin(st, f->m, &b), 0);
    assert_int_equal(ferry_blob_put_chunk(st, b, f->uid, h1, c1, 70000, &r1, &s1), 0);
    assert_int_equal(ferry_blob_put_chunk(st, b, f->uid, h2, c2, 5, &r2, &s2), 0);
    assert_int_equal(ferry_blob_put_spool(st, b, f->uid, cid, &sp, &rf, &sf), 0);
    assert_int_equal(sp.fd, -1);
    assert_int_equal(ferry_blob_durable(st, b), 0);
    assert_int_equal(s1 | s2 | sf, 0);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_blob_record(st, b), 0);
    assert_int_equal(ferry_meta_chunk_put(f->m, f->uid, h1, 70000, r1.loc, r1.off, 1), 0);
    assert_int_equal(ferry_meta_chunk_put(f->m, f->uid, h2, 5, r2.loc, r2.off, 1), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    ferry_blob_batch_end(st, b);
    /* The row gives back the reference the put made. */
    assert_int_equal(ferry_meta_chunk_loc(f->m, f->uid, h2, &loc, &off, &size), 1);
    ferry_blob_ref_chunk(&back, f->uid, h2, loc, off, size);
    assert_true(ferry_blob_ref_same(&back, &r2));
    assert_false(ferry_blob_ref_same(&r1, &r2));
    assert_int_equal(read_all(st, &r1, got, 70000), 70000);
    assert_int_equal(got[0], 0x11);
    assert_int_equal(got[69999], 0x11);
    assert_int_equal(ferry_blob_ref_file(&rf, f->uid, cid, sizeof(whole)), 0);
    assert_int_equal(read_all(st, &rf, got, sizeof(got)), (ssize_t)sizeof(whole));
    assert_memory_equal(got, whole, sizeof(whole));
    /* A reader moves from chunk to chunk; pack ranges may become holes, files do not. */
    assert_int_equal(ferry_blob_reader_open(st, &r1, &rd), 0);
    assert_int_equal(ferry_blob_reader_move(st, rd, &r2), 0);
    assert_int_equal(ferry_blob_read(st, rd, 0, &v, 1), 5);
    assert_int_equal(got[4], 0x22);
    ferry_blob_reader_close(st, rd);
    assert_int_equal(ferry_blob_may_vanish(st, &r1), 1);
    assert_int_equal(ferry_blob_may_vanish(st, &rf), 0);
    ferry_blob_close(st);
    ferry_free(c1);
    ferry_free(c2);
}

static void on_garbage(void *arg, const char *rel, int64_t off, int64_t len)
{
    struct ferry_blob_garbage *g = arg;

    g->name = strdup(rel);
    g->off = off;
    g->len = len;
}

/* R-CHUNK-11: an unused put is reported as garbage, and freeing it punches its blocks. */
static void test_pack_unused_free(void **state)
{
    struct fx *f = *state;
    struct ferry_blob_store *st = NULL;
    struct ferry_blob_batch *b = NULL;
    struct ferry_blob_ref r;
    struct ferry_blob_garbage g = {0};
    uint8_t h[32], *c = chunk_buf(0x44, 1 << 20);
    char path[256];
    struct stat sb;
    int s = -1;

    memset(h, 4, 32);
    assert_int_equal(ferry_blob_pack_open(f->datafd, &st), 0);
    assert_int_equal(ferry_blob_batch_begin(st, f->m, &b), 0);
    assert_int_equal(ferry_blob_put_chunk(st, b, f->uid, h, c, 1 << 20, &r, &s), 0);
    assert_int_equal(ferry_blob_durable(st, b), 0);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_blob_record(st, b), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    ferry_blob_batch_end(st, b);
    assert_int_equal(ferry_blob_unused(st, &r, on_garbage, &g), 0);
    assert_non_null(g.name);
    assert_int_equal(g.off, r.off);
    assert_int_equal(g.len, 1 << 20);
    snprintf(path, sizeof(path), "%s/%s", f->dir, g.name);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_blocks >= (1 << 20) / 512);
    ferry_blob_free(st, &g, 1);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_blocks < (1 << 20) / 512);
    free(g.name);
    ferry_blob_close(st);
    ferry_free(c);
}

static void test_fault_spec(void **state)
{
    static const char *const bad[] = {"put",        "put:1",      "put:0:eio", "put:1:oops",
                                      "nope:1:eio", "put:1:eio,", "put:x:eio", "put:1:eio:2"};
    struct fx *f = *state;
    struct ferry_blob_store *pack = NULL, *st = NULL;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ferry_blob_pack_open(f->datafd, &pack), 0);
        assert_int_equal(ferry_blob_fault_open(pack, bad[i], &st), -EINVAL);
        ferry_blob_close(pack);
    }
    assert_int_equal(ferry_blob_pack_open(f->datafd, &pack), 0);
    assert_int_equal(ferry_blob_fault_open(pack, "put:2:eio,write:1:short,sync:3:enospc", &st), 0);
    ferry_blob_close(st); /* closes pack too */
}

/*
 * A write cut short fails every chunk of its pack and records nothing: the
 * pack's end stays, so the next batch writes over the half-written bytes.
 */
static void test_fault_short_write(void **state)
{
    struct fx *f = *state;
    struct ferry_blob_store *pack = NULL, *st = NULL;
    struct ferry_blob_batch *b = NULL;
    struct ferry_blob_ref r1, r2;
    uint8_t h1[32], h2[32], *c1 = chunk_buf(0x55, 1 << 16), *c2 = chunk_buf(0x66, 1 << 16);
    uint8_t got[1 << 16];
    int64_t pk, end;
    int s1 = -1, s2 = -1, fresh;

    memset(h1, 5, 32);
    memset(h2, 6, 32);
    assert_int_equal(ferry_blob_pack_open(f->datafd, &pack), 0);
    assert_int_equal(ferry_blob_fault_open(pack, "write:1:short,put:3:eio", &st), 0);
    assert_int_equal(ferry_blob_batch_begin(st, f->m, &b), 0);
    assert_int_equal(ferry_blob_put_chunk(st, b, f->uid, h1, c1, 1 << 16, &r1, &s1), 0);
    assert_int_equal(ferry_blob_put_chunk(st, b, f->uid, h2, c2, 1 << 16, &r2, &s2), 0);
    assert_int_equal(ferry_blob_durable(st, b), 0);
    assert_int_equal(s1, -ENOSPC);
    assert_int_equal(s2, -ENOSPC);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_blob_record(st, b), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    ferry_blob_batch_end(st, b);
    assert_int_equal(ferry_meta_pack_next(f->m, f->uid, &pk, &end, &fresh), 0);
    assert_int_equal(end, 0);
    /* Put 3 fails at once; put 4 goes where the cut write began, and reads back. */
    assert_int_equal(ferry_blob_batch_begin(st, f->m, &b), 0);
    assert_int_equal(ferry_blob_put_chunk(st, b, f->uid, h2, c2, 1 << 16, &r2, &s2), -EIO);
    assert_int_equal(s2, -EIO);
    assert_int_equal(ferry_blob_put_chunk(st, b, f->uid, h2, c2, 1 << 16, &r2, &s2), 0);
    assert_int_equal(r2.off, 0);
    assert_int_equal(ferry_blob_durable(st, b), 0);
    assert_int_equal(s2, 0);
    assert_int_equal(ferry_meta_begin(f->m), 0);
    assert_int_equal(ferry_blob_record(st, b), 0);
    assert_int_equal(ferry_meta_commit(f->m), 0);
    ferry_blob_batch_end(st, b);
    assert_int_equal(read_all(st, &r2, got, sizeof(got)), (ssize_t)sizeof(got));
    assert_int_equal(got[0], 0x66);
    assert_int_equal(got[sizeof(got) - 1], 0x66);
    ferry_blob_close(st);
    ferry_free(c1);
    ferry_free(c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pack_put_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_unused_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_spec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_short_write, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
