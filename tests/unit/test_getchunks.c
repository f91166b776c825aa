/*
 * The client's receiver of downloads by chunks (src/cli/getchunks.c,
 * R-CHUNK-15, R-CHUNK-16) against a hostile or broken server: the list's
 * cap at -1, exactly and +1, every truncated list, a list that is not the
 * content's, chunk frames out of order, past a chunk's end or with bad
 * bytes; and the good path: reuse of an old file, the bitmap kept across a
 * restart, the file placed whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <sodium.h>

/* The unit under test and the local index it uses, compiled in. */
#include "cli/getchunks.c" /* NOLINT(bugprone-suspicious-include) */
#include "cli/index.c"     /* NOLINT(bugprone-suspicious-include) */

static char tmpdir[] = "/tmp/ferry-test-getchunks.XXXXXX";

/* The CLI's state database, here in the test's directory. */
int cli_state_open(sqlite3 **db)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/state.db", tmpdir);
    if (sqlite3_open(path, db) != SQLITE_OK)
        return FERRY_EINTERNAL;
    sqlite3_exec(*db,
                 "CREATE TABLE IF NOT EXISTS file_index(dev INTEGER NOT NULL,"
                 " ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,"
                 " ctime INTEGER NOT NULL, recorded INTEGER NOT NULL, list BLOB NOT NULL,"
                 " PRIMARY KEY(dev, ino))",
                 NULL, NULL, NULL);
    return 0;
}

struct file {
    uint8_t *data;
    size_t size;
    uint8_t *list;
    size_t list_len;
    char cid[FERRY_CID_LEN + 1];
};

static int collect(void *arg, uint64_t off, const struct ferry_chunk_ent *e)
{
    struct file *f = arg;

    (void)off;
    f->list = realloc(f->list, f->list_len + FERRY_CHUNK_ENT_LEN);
    assert_non_null(f->list);
    ferry_chunk_ent_encode(f->list + f->list_len, e);
    f->list_len += FERRY_CHUNK_ENT_LEN;
    return 0;
}

/* Chunks data with R-CHUNK-1 into f's list and content id. */
static void file_make(struct file *f, uint8_t *data, size_t size)
{
    struct ferry_cdc_stream *cs;

    memset(f, 0, sizeof(*f));
    f->data = data;
    f->size = size;
    assert_int_equal(ferry_cdc_stream_new(collect, f, &cs), 0);
    assert_int_equal(ferry_cdc_stream_feed(cs, data, size), 0);
    assert_int_equal(ferry_cdc_stream_finish(cs), 0);
    ferry_cdc_stream_free(cs);
    assert_int_equal(ferry_chunk_list_cid(f->list, f->list_len, f->cid), 0);
}

static int dirfd_open(void)
{
    int fd = open(tmpdir, O_RDONLY | O_DIRECTORY);

    assert_true(fd >= 0);
    return fd;
}

static void write_file(const char *name, const uint8_t *p, size_t n)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A patch with the whole list received. */
static struct cli_patch *patch_with_list(const struct file *f)
{
    struct cli_patch *p;

    assert_int_equal(cli_patch_new(f->cid, f->size, f->list_len, &p), 0);
    assert_int_equal(cli_patch_list_data(p, 0, f->list, f->list_len), 0);
    return p;
}

/* Sends every requested chunk as 16 KiB frames; returns the bytes sent. */
static uint64_t serve_ranges(struct cli_patch *p, const struct file *f)
{
    json_t *r = cli_patch_ranges(p), *v;
    uint64_t sent = 0, fresh;
    size_t i, k;

    assert_non_null(r);
    json_array_foreach(r, i, v)
    {
        json_int_t first = json_integer_value(json_array_get(v, 0));
        json_int_t count = json_integer_value(json_array_get(v, 1));

        for (k = (size_t)first; k < (size_t)(first + count); k++) {
            struct ferry_chunk_frame fr = {.index = (uint32_t)k};
            uint32_t len = ent_len(p, k), o;

            for (o = 0; o < len; o += FERRY_DATA_MAX) {
                fr.offset = o;
                fr.bytes = f->data + p->offs[k] + o;
                fr.len = len - o < FERRY_DATA_MAX ? len - o : FERRY_DATA_MAX;
                assert_int_equal(cli_patch_chunk(p, &fr, &fresh), 0);
            }
            sent += len;
        }
    }
    json_decref(r);
    return sent;
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[300];

    (void)state;
    cli_index_close();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* R-CHUNK-15: the list length's cap, and lengths that are not whole entries. */
static void test_list_len_cap_r_chunk_15(void **state)
{
    static const char cid[] =
        "chunks:0000000000000000000000000000000000000000000000000000000000000000";
    struct cli_patch *p = NULL;
    uint64_t cap = FERRY_CHUNK_LIST_MAX - FERRY_CHUNK_LIST_MAX % FERRY_CHUNK_ENT_LEN;

    (void)state;
    assert_int_equal(cli_patch_new(cid, 0, cap - FERRY_CHUNK_ENT_LEN, &p), 0);
    cli_patch_free(p);
    assert_int_equal(cli_patch_new(cid, 0, cap, &p), 0);
    cli_patch_free(p);
    assert_int_equal(cli_patch_new(cid, 0, cap + FERRY_CHUNK_ENT_LEN, &p), FERRY_EPROTO);
    assert_null(p);
    assert_int_equal(cli_patch_new(cid, 0, UINT64_MAX - 35, &p), FERRY_EPROTO);
    assert_int_equal(cli_patch_new(cid, 0, 37, &p), FERRY_EPROTO);
    assert_int_equal(cli_patch_new("sha256:00", 0, 36, &p), FERRY_EPROTO);
}

/* R-CHUNK-15: list data in order and within its length; every truncated list refused. */
static void test_list_truncated_r_chunk_15(void **state)
{
    static uint8_t data[3u << 20];
    struct cli_patch *p;
    struct file f;
    size_t cut;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    assert_int_equal(cli_patch_new(f.cid, f.size, f.list_len, &p), 0);
    assert_int_equal(cli_patch_list_data(p, 1, f.list, 1), FERRY_EPROTO);
    assert_int_equal(cli_patch_list_data(p, 0, f.list, f.list_len + 1), FERRY_EPROTO);
    cli_patch_free(p);
    for (cut = 0; cut < f.list_len; cut++) {
        assert_int_equal(cli_patch_new(f.cid, f.size, f.list_len, &p), 0);
        assert_int_equal(cli_patch_list_data(p, 0, f.list, cut), 0);
        assert_int_equal(cli_patch_plan(p, dfd, "t.bin", ".t.part", 0, 0644, 0), FERRY_EPROTO);
        cli_patch_free(p);
    }
    /* A whole list that is not the one the id names. */
    f.list[5] ^= 1;
    p = patch_with_list(&f);
    assert_int_equal(cli_patch_plan(p, dfd, "t.bin", ".t.part", 0, 0644, 0), FERRY_EPROTO);
    cli_patch_free(p);
    /* Lengths that do not add up to the size. */
    f.list[5] ^= 1;
    assert_int_equal(cli_patch_new(f.cid, f.size + 1, f.list_len, &p), 0);
    assert_int_equal(cli_patch_list_data(p, 0, f.list, f.list_len), 0);
    assert_int_equal(cli_patch_plan(p, dfd, "t.bin", ".t.part", 0, 0644, 0), FERRY_EPROTO);
    cli_patch_free(p);
    free(f.list);
    close(dfd);
}

/* R-CHUNK-16: frames out of order, past a chunk's end, or of bad bytes. */
static void test_hostile_frames_r_chunk_16(void **state)
{
    static uint8_t data[2u << 20];
    struct ferry_chunk_frame fr = {0};
    struct cli_patch *p;
    struct file f;
    json_t *r;
    uint64_t fresh;
    uint8_t junk[FERRY_DATA_MAX] = {0};
    uint32_t len0;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    p = patch_with_list(&f);
    assert_int_equal(cli_patch_plan(p, dfd, "h.bin", ".h.part", 0, 0644, 0), 0);
    assert_false(cli_patch_complete(p));
    r = cli_patch_ranges(p);
    assert_int_equal(json_array_size(r), 1);
    json_decref(r);
    len0 = ent_len(p, 0);
    /* Not the chunk expected next, then not from offset 0. */
    fr.index = 1;
    fr.bytes = data;
    fr.len = 10;
    assert_int_equal(cli_patch_chunk(p, &fr, &fresh), FERRY_EPROTO);
    fr.index = 0;
    fr.offset = 5;
    assert_int_equal(cli_patch_chunk(p, &fr, &fresh), FERRY_EPROTO);
    /* Up to one byte short of the chunk's end, then one byte past it. */
    fr.offset = 0;
    fr.len = len0 - 1;
    fr.bytes = data;
    assert_true(fr.len > FERRY_DATA_MAX); /* the receiver is not what caps frames */
    assert_int_equal(cli_patch_chunk(p, &fr, &fresh), 0);
    fr.offset = len0 - 1;
    fr.len = 2;
    fr.bytes = data + len0 - 1;
    assert_int_equal(cli_patch_chunk(p, &fr, &fresh), FERRY_EPROTO);
    cli_patch_free(p);
    /* Bytes that do not hash right: refused, and the chunk is not done. */
    p = patch_with_list(&f);
    assert_int_equal(cli_patch_plan(p, dfd, "h.bin", ".h.part", 0, 0644, 0), 0);
    json_decref(cli_patch_ranges(p));
    memcpy(junk, data, sizeof(junk));
    junk[100] ^= 0xff;
    for (fr.offset = 0; fr.offset + FERRY_DATA_MAX < len0; fr.offset += FERRY_DATA_MAX) {
        fr.bytes = fr.offset == 0 ? junk : data + fr.offset;
        fr.len = FERRY_DATA_MAX;
        assert_int_equal(cli_patch_chunk(p, &fr, &fresh), 0);
    }
    fr.bytes = data + fr.offset;
    fr.len = len0 - fr.offset;
    assert_int_equal(cli_patch_chunk(p, &fr, &fresh), FERRY_EHASH);
    assert_int_equal(p->done[0], 0);
    assert_int_equal(p->ndone, 0);
    cli_patch_discard(p);
    cli_patch_free(p);
    free(f.list);
    close(dfd);
}

/*
 * The good path: an old version supplies the unchanged chunks, the rest
 * arrives, a restart keeps what was made durable, and the placed file is
 * the new content.
 */
static void test_reuse_and_resume_r_chunk_16(void **state)
{
    static uint8_t data[6u << 20], old[6u << 20];
    char path[256];
    struct cli_patch *p;
    struct file f;
    uint64_t kept, reused, reused1, sent;
    struct stat st;
    uint8_t *back;
    int dfd = dirfd_open();
    FILE *in;

    (void)state;
    ferry_random(data, sizeof(data));
    memcpy(old, data, sizeof(old));
    ferry_random(old + (3u << 20), 1u << 20); /* 1 MiB differs in the old file */
    write_file("r.bin", old, sizeof(old));
    file_make(&f, data, sizeof(data));

    p = patch_with_list(&f);
    assert_int_equal(cli_patch_plan(p, dfd, "r.bin", ".r.part", 0, 0644, 0), 0);
    reused1 = cli_patch_reused(p, &kept);
    assert_int_equal(kept, 0);
    /*
     * The edit costs the chunks it touches, and at most one chunk (1 MiB
     * max) on each side before the boundaries fall in step again.
     */
    assert_true(reused1 >= (3u << 20) && reused1 < sizeof(data));
    /* Stop half way through what is missing: the first run's chunks are synced. */
    {
        json_t *r = cli_patch_ranges(p);
        json_int_t first = json_integer_value(json_array_get(json_array_get(r, 0), 0));
        struct ferry_chunk_frame fr = {.index = (uint32_t)first};
        uint32_t len = ent_len(p, (size_t)first), o;
        uint64_t fresh;

        for (o = 0; o < len; o += FERRY_DATA_MAX) {
            fr.offset = o;
            fr.bytes = data + p->offs[first] + o;
            fr.len = len - o < FERRY_DATA_MAX ? len - o : FERRY_DATA_MAX;
            assert_int_equal(cli_patch_chunk(p, &fr, &fresh), 0);
        }
        assert_int_equal(fresh, len);
        json_decref(r);
        assert_int_equal(cli_patch_sync(p), 0);
        cli_patch_free(p);
        /* A restart: the bitmap and the old file together leave less to fetch. */
        p = patch_with_list(&f);
        assert_int_equal(cli_patch_plan(p, dfd, "r.bin", ".r.part", 0, 0644, 0), 0);
        reused = cli_patch_reused(p, &kept);
        assert_int_equal(kept, reused1 + len);
        assert_int_equal(reused, 0);
    }
    sent = serve_ranges(p, &f);
    assert_true(sent > 0 && sent <= (3u << 20));
    assert_true(cli_patch_complete(p));
    assert_int_equal(cli_patch_place(p, "r.bin", 0640, 1500000000123456789ll), 0);
    cli_patch_free(p);
    snprintf(path, sizeof(path), "%s/r.bin", tmpdir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, sizeof(data));
    assert_int_equal(st.st_mtim.tv_sec, 1500000000);
    assert_int_equal(st.st_mtim.tv_nsec, 123456789);
    back = malloc(sizeof(data));
    assert_non_null(back);
    in = fopen(path, "rb");
    assert_non_null(in);
    assert_int_equal(fread(back, 1, sizeof(data), in), sizeof(data));
    fclose(in);
    assert_memory_equal(back, data, sizeof(data));
    free(back);
    snprintf(path, sizeof(path), "%s/.r.part", tmpdir);
    assert_int_equal(stat(path, &st), -1);
    /* Placed and indexed: the same content again is known without a read; only mode and mtime
     * change. */
    p = patch_with_list(&f);
    assert_int_equal(cli_patch_plan(p, dfd, "r.bin", ".r2.part", 0, 0600, 1600000000000000007ll),
                     CLI_PATCH_ALREADY);
    cli_patch_free(p);
    snprintf(path, sizeof(path), "%s/r.bin", tmpdir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_mtim.tv_sec, 1600000000);
    assert_int_equal(st.st_mtim.tv_nsec, 7);
    snprintf(path, sizeof(path), "%s/.r2.part", tmpdir);
    assert_int_equal(stat(path, &st), -1);
    /* Known again after that (its ctime moved): and a change with mtime put back is not. */
    p = patch_with_list(&f);
    assert_int_equal(cli_patch_plan(p, dfd, "r.bin", ".r2.part", 0, 0600, 1600000000000000007ll),
                     CLI_PATCH_ALREADY);
    cli_patch_free(p);
    {
        struct timespec ts[2] = {{1600000000, 7}, {1600000000, 7}};
        int wfd;
        snprintf(path, sizeof(path), "%s/r.bin", tmpdir);
        wfd = open(path, O_WRONLY);
        assert_true(wfd >= 0);
        assert_int_equal(pwrite(wfd, "X", 1, 5), 1);
        assert_int_equal(futimens(wfd, ts), 0);
        close(wfd);
    }
    p = patch_with_list(&f);
    assert_int_equal(cli_patch_plan(p, dfd, "r.bin", ".r2.part", 0, 0600, 1600000000000000007ll),
                     0);
    assert_false(cli_patch_complete(p));
    assert_true(cli_patch_reused(p, &kept) >= sizeof(data) - FERRY_CHUNK_MAX);
    cli_patch_discard(p);
    cli_patch_free(p);
    free(f.list);
    close(dfd);
}

/* A part file that is a symlink or has a second link is refused (a planted name). */
static void test_planted_part_r_path_4(void **state)
{
    static uint8_t data[1u << 20];
    char target[256], lpath[256];
    struct cli_patch *p;
    struct file f;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    snprintf(target, sizeof(target), "%s/victim", tmpdir);
    snprintf(lpath, sizeof(lpath), "%s/.planted.part", tmpdir);
    write_file("victim", (const uint8_t *)"keep", 4);
    assert_int_equal(symlink(target, lpath), 0);
    p = patch_with_list(&f);
    assert_true(cli_patch_plan(p, dfd, "x.bin", ".planted.part", 0, 0644, 0) < 0);
    cli_patch_free(p);
    unlink(lpath);
    assert_int_equal(link(target, lpath), 0);
    p = patch_with_list(&f);
    assert_int_equal(cli_patch_plan(p, dfd, "x.bin", ".planted.part", 0, 0644, 0), -EPERM);
    cli_patch_free(p);
    {
        struct stat st;
        assert_int_equal(stat(target, &st), 0);
        assert_int_equal(st.st_size, 4);
    }
    free(f.list);
    close(dfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_len_cap_r_chunk_15),
        cmocka_unit_test(test_list_truncated_r_chunk_15),
        cmocka_unit_test(test_hostile_frames_r_chunk_16),
        cmocka_unit_test(test_reuse_and_resume_r_chunk_16),
        cmocka_unit_test(test_planted_part_r_path_4),
    };

    if (sodium_init() < 0)
        return 2;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
