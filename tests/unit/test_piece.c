/*
 * The piece store (src/lib/transfer/piece.c, ferry/piece.h): a file
 * received by chunks (R-CHUNK-15, R-CHUNK-16), on real files in a
 * temporary folder with a real state store, against a hostile or broken
 * server: the list's cap at -1, exactly and +1, every truncated list, a
 * list that is not the content's, chunk frames out of order, past a
 * chunk's end or with bad bytes; and the good path: reuse of an old file,
 * the bitmap kept across a restart, the file placed whole. Then the local
 * rules of R-RECV: resume records bound to the part file's identity, the
 * part file re-read before it is placed; and what the swarm reads of a
 * file still arriving (ferry_piece_read, ferry_piece_has): held chunks
 * only, re-verified.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "ferry/core.h"
#include "ferry/crypto.h"
#include "ferry/manifest.h"
#include "ferry/part.h"
#include "ferry/piece.h"
#include "ferry/state.h"

static char tmpdir[] = "/tmp/ferry-test-piece.XXXXXX";
/* The state store the piece stores keep their records in, in the test's folder. */
static struct ferry_state *state_store;

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

/* A piece store with the whole list received. */
static struct ferry_piece *piece_with_list(const struct file *f)
{
    struct ferry_piece *p;

    assert_int_equal(ferry_piece_new(state_store, f->cid, f->size, f->list_len, &p), 0);
    assert_int_equal(ferry_piece_list_data(p, 0, f->list, f->list_len), 0);
    return p;
}

/* Sends every requested chunk as 16 KiB frames; returns the bytes sent. */
static uint64_t serve_ranges(struct ferry_piece *p, const struct file *f)
{
    json_t *r = ferry_piece_ranges(p), *v;
    uint64_t sent = 0, fresh;
    size_t i, k;

    assert_non_null(r);
    json_array_foreach(r, i, v)
    {
        json_int_t first = json_integer_value(json_array_get(v, 0));
        json_int_t count = json_integer_value(json_array_get(v, 1));

        for (k = (size_t)first; k < (size_t)(first + count); k++) {
            struct ferry_chunk_frame fr = {.index = (uint32_t)k};
            uint32_t len = ferry_piece_len(p, k), o;

            for (o = 0; o < len; o += FERRY_DATA_MAX) {
                fr.offset = o;
                fr.bytes = f->data + ferry_piece_off(p, k) + o;
                fr.len = len - o < FERRY_DATA_MAX ? len - o : FERRY_DATA_MAX;
                assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), 0);
            }
            sent += len;
        }
    }
    json_decref(r);
    return sent;
}

static int group_setup(void **state)
{
    char path[256];

    (void)state;
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    /* A real state store (index, part records), here in the test's directory. */
    snprintf(path, sizeof(path), "%s/state.db", tmpdir);
    return ferry_state_open(path, &state_store, NULL, 0) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[300];

    (void)state;
    ferry_state_close(state_store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* R-CHUNK-15: the list length's cap, and lengths that are not whole entries. */
static void test_list_len_cap_r_chunk_15(void **state)
{
    static const char cid[] =
        "chunks:0000000000000000000000000000000000000000000000000000000000000000";
    struct ferry_piece *p = NULL;
    uint64_t cap = FERRY_CHUNK_LIST_MAX - FERRY_CHUNK_LIST_MAX % FERRY_CHUNK_ENT_LEN;

    (void)state;
    assert_int_equal(ferry_piece_new(state_store, cid, 0, cap - FERRY_CHUNK_ENT_LEN, &p), 0);
    ferry_piece_free(p);
    assert_int_equal(ferry_piece_new(state_store, cid, 0, cap, &p), 0);
    ferry_piece_free(p);
    assert_int_equal(ferry_piece_new(state_store, cid, 0, cap + FERRY_CHUNK_ENT_LEN, &p),
                     FERRY_EPROTO);
    assert_null(p);
    assert_int_equal(ferry_piece_new(state_store, cid, 0, UINT64_MAX - 35, &p), FERRY_EPROTO);
    assert_int_equal(ferry_piece_new(state_store, cid, 0, 37, &p), FERRY_EPROTO);
    assert_int_equal(ferry_piece_new(state_store, "sha256:00", 0, 36, &p), FERRY_EPROTO);
}

/* R-CHUNK-15: list data in order and within its length; every truncated list refused. */
static void test_list_truncated_r_chunk_15(void **state)
{
    static uint8_t data[3u << 20];
    struct ferry_piece *p;
    struct file f;
    size_t cut;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    assert_int_equal(ferry_piece_new(state_store, f.cid, f.size, f.list_len, &p), 0);
    assert_int_equal(ferry_piece_list_data(p, 1, f.list, 1), FERRY_EPROTO);
    assert_int_equal(ferry_piece_list_data(p, 0, f.list, f.list_len + 1), FERRY_EPROTO);
    ferry_piece_free(p);
    for (cut = 0; cut < f.list_len; cut++) {
        assert_int_equal(ferry_piece_new(state_store, f.cid, f.size, f.list_len, &p), 0);
        assert_int_equal(ferry_piece_list_data(p, 0, f.list, cut), 0);
        assert_int_equal(ferry_piece_plan(p, dfd, "t.bin", ".t.part", 0644, 0), FERRY_EPROTO);
        ferry_piece_free(p);
    }
    /* A whole list that is not the one the id names. */
    f.list[5] ^= 1;
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "t.bin", ".t.part", 0644, 0), FERRY_EPROTO);
    ferry_piece_free(p);
    /* Lengths that do not add up to the size. */
    f.list[5] ^= 1;
    assert_int_equal(ferry_piece_new(state_store, f.cid, f.size + 1, f.list_len, &p), 0);
    assert_int_equal(ferry_piece_list_data(p, 0, f.list, f.list_len), 0);
    assert_int_equal(ferry_piece_plan(p, dfd, "t.bin", ".t.part", 0644, 0), FERRY_EPROTO);
    ferry_piece_free(p);
    free(f.list);
    close(dfd);
}

/* R-CHUNK-16: frames out of order, past a chunk's end, or of bad bytes. */
static void test_hostile_frames_r_chunk_16(void **state)
{
    static uint8_t data[2u << 20];
    struct ferry_chunk_frame fr = {0};
    struct ferry_piece *p;
    struct file f;
    json_t *r;
    uint64_t fresh;
    uint8_t junk[FERRY_DATA_MAX] = {0};
    uint32_t len0;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "h.bin", ".h.part", 0644, 0), 0);
    assert_false(ferry_piece_complete(p));
    r = ferry_piece_ranges(p);
    assert_int_equal(json_array_size(r), 1);
    json_decref(r);
    len0 = ferry_piece_len(p, 0);
    /* Not the chunk expected next, then not from offset 0. */
    fr.index = 1;
    fr.bytes = data;
    fr.len = 10;
    assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), FERRY_EPROTO);
    fr.index = 0;
    fr.offset = 5;
    assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), FERRY_EPROTO);
    /* Up to one byte short of the chunk's end, then one byte past it. */
    fr.offset = 0;
    fr.len = len0 - 1;
    fr.bytes = data;
    assert_true(fr.len > FERRY_DATA_MAX); /* the receiver is not what caps frames */
    assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), 0);
    fr.offset = len0 - 1;
    fr.len = 2;
    fr.bytes = data + len0 - 1;
    assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), FERRY_EPROTO);
    ferry_piece_free(p);
    /* Bytes that do not hash right: refused, and the chunk is not done. */
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "h.bin", ".h.part", 0644, 0), 0);
    json_decref(ferry_piece_ranges(p));
    memcpy(junk, data, sizeof(junk));
    junk[100] ^= 0xff;
    for (fr.offset = 0; fr.offset + FERRY_DATA_MAX < len0; fr.offset += FERRY_DATA_MAX) {
        fr.bytes = fr.offset == 0 ? junk : data + fr.offset;
        fr.len = FERRY_DATA_MAX;
        assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), 0);
    }
    fr.bytes = data + fr.offset;
    fr.len = len0 - fr.offset;
    assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), FERRY_EHASH);
    assert_int_equal(ferry_piece_state(p, 0), 0);
    assert_int_equal(ferry_piece_held(p), 0);
    ferry_piece_discard(p);
    ferry_piece_free(p);
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
    struct ferry_piece *p;
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

    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "r.bin", ".r.part", 0644, 0), 0);
    reused1 = ferry_piece_reused(p, &kept);
    assert_int_equal(kept, 0);
    /*
     * The edit costs the chunks it touches, and at most one chunk (1 MiB
     * max) on each side before the boundaries fall in step again.
     */
    assert_true(reused1 >= (3u << 20) && reused1 < sizeof(data));
    /* Stop half way through what is missing: the first run's chunks are synced. */
    {
        json_t *r = ferry_piece_ranges(p);
        json_int_t first = json_integer_value(json_array_get(json_array_get(r, 0), 0));
        struct ferry_chunk_frame fr = {.index = (uint32_t)first};
        uint32_t len = ferry_piece_len(p, (size_t)first), o;
        uint64_t fresh;

        for (o = 0; o < len; o += FERRY_DATA_MAX) {
            fr.offset = o;
            fr.bytes = data + ferry_piece_off(p, first) + o;
            fr.len = len - o < FERRY_DATA_MAX ? len - o : FERRY_DATA_MAX;
            assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), 0);
        }
        assert_int_equal(fresh, len);
        json_decref(r);
        assert_int_equal(ferry_piece_sync(p), 0);
        ferry_piece_free(p);
        /* A restart: the bitmap and the old file together leave less to fetch. */
        p = piece_with_list(&f);
        assert_int_equal(ferry_piece_plan(p, dfd, "r.bin", ".r.part", 0644, 0), 0);
        reused = ferry_piece_reused(p, &kept);
        assert_int_equal(kept, reused1 + len);
        assert_int_equal(reused, 0);
    }
    sent = serve_ranges(p, &f);
    assert_true(sent > 0 && sent <= (3u << 20));
    assert_true(ferry_piece_complete(p));
    assert_int_equal(ferry_piece_place(p, "r.bin", 0640, 1500000000123456789ll), 0);
    ferry_piece_free(p);
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
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "r.bin", ".r2.part", 0600, 1600000000000000007ll),
                     FERRY_PIECE_ALREADY);
    ferry_piece_free(p);
    snprintf(path, sizeof(path), "%s/r.bin", tmpdir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_mtim.tv_sec, 1600000000);
    assert_int_equal(st.st_mtim.tv_nsec, 7);
    snprintf(path, sizeof(path), "%s/.r2.part", tmpdir);
    assert_int_equal(stat(path, &st), -1);
    /* Known again after that (its ctime moved): and a change with mtime put back is not. */
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "r.bin", ".r2.part", 0600, 1600000000000000007ll),
                     FERRY_PIECE_ALREADY);
    ferry_piece_free(p);
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
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "r.bin", ".r2.part", 0600, 1600000000000000007ll), 0);
    assert_false(ferry_piece_complete(p));
    assert_true(ferry_piece_reused(p, &kept) >= sizeof(data) - FERRY_CHUNK_MAX);
    ferry_piece_discard(p);
    ferry_piece_free(p);
    free(f.list);
    close(dfd);
}

/* A part file that is a symlink or has a second link is refused (a planted name). */
static void test_planted_part_r_path_4(void **state)
{
    static uint8_t data[1u << 20];
    char target[256], lpath[256];
    struct ferry_piece *p;
    struct file f;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    snprintf(target, sizeof(target), "%s/victim", tmpdir);
    snprintf(lpath, sizeof(lpath), "%s/.planted.part", tmpdir);
    write_file("victim", (const uint8_t *)"keep", 4);
    assert_int_equal(symlink(target, lpath), 0);
    p = piece_with_list(&f);
    assert_true(ferry_piece_plan(p, dfd, "x.bin", ".planted.part", 0644, 0) < 0);
    ferry_piece_free(p);
    unlink(lpath);
    assert_int_equal(link(target, lpath), 0);
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "x.bin", ".planted.part", 0644, 0), -EPERM);
    ferry_piece_free(p);
    {
        struct stat st;
        assert_int_equal(stat(target, &st), 0);
        assert_int_equal(st.st_size, 4);
    }
    free(f.list);
    close(dfd);
}

/* Reads a file of the test directory whole into a malloc'd buffer. */
static uint8_t *read_back(const char *name, size_t size)
{
    char path[256];
    uint8_t *back = malloc(size + 1);
    FILE *in;

    assert_non_null(back);
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    in = fopen(path, "rb");
    assert_non_null(in);
    assert_int_equal(fread(back, 1, size + 1, in), size);
    fclose(in);
    return back;
}

/* Receives the first missing chunk only, makes it durable (its bitmap saved), and stops. */
static void receive_one_and_stop(struct ferry_piece *p, const struct file *f)
{
    json_t *r = ferry_piece_ranges(p);
    json_int_t first = json_integer_value(json_array_get(json_array_get(r, 0), 0));
    struct ferry_chunk_frame fr = {.index = (uint32_t)first};
    uint32_t len = ferry_piece_len(p, (size_t)first), o;
    uint64_t fresh;

    for (o = 0; o < len; o += FERRY_DATA_MAX) {
        fr.offset = o;
        fr.bytes = f->data + ferry_piece_off(p, first) + o;
        fr.len = len - o < FERRY_DATA_MAX ? len - o : FERRY_DATA_MAX;
        assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), 0);
    }
    json_decref(r);
    assert_int_equal(ferry_piece_sync(p), 0);
}

static int64_t record_count(const char *table)
{
    char sql[100];
    sqlite3_stmt *st;
    int64_t n = -1;

    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s", table);
    assert_int_equal(sqlite3_prepare_v2(ferry_state_db(state_store), sql, -1, &st, NULL),
                     SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/*
 * R-RECV-2 (issue 9 item 1): a bitmap whose part file was deleted, or
 * replaced by another file of the same size, is not trusted: the chunks it
 * names are fetched again, the stale record is deleted, and the file
 * placed is the content, not zeros.
 */
static void test_stale_bitmap_r_recv_2(void **state)
{
    static uint8_t data[3u << 20];
    char path[256];
    struct ferry_piece *p;
    struct file f;
    uint64_t kept;
    uint8_t *back;
    int round, dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    snprintf(path, sizeof(path), "%s/.s.part", tmpdir);
    for (round = 0; round < 2; round++) {
        p = piece_with_list(&f);
        assert_int_equal(ferry_piece_plan(p, dfd, "s.bin", ".s.part", 0644, 0), 0);
        receive_one_and_stop(p, &f);
        ferry_piece_free(p);
        assert_int_equal(record_count("partial_chunks"), 1);
        if (round == 0) {
            /* Deleted by the user: the next get re-creates it, empty. */
            assert_int_equal(unlink(path), 0);
        } else {
            /* Replaced by another file of the same size (a new inode). */
            char other[256];
            uint8_t *junk = calloc(1, sizeof(data));
            assert_non_null(junk);
            snprintf(other, sizeof(other), "%s/.s.other", tmpdir);
            write_file(".s.other", junk, sizeof(data));
            free(junk);
            assert_int_equal(rename(other, path), 0);
        }
        p = piece_with_list(&f);
        assert_int_equal(ferry_piece_plan(p, dfd, "s.bin", ".s.part", 0644, 0), 0);
        assert_int_equal(ferry_piece_reused(p, &kept), 0);
        assert_int_equal(kept, 0);
        assert_int_equal(ferry_piece_held(p), 0);
        /* The stale bitmap is gone from the state database. */
        assert_int_equal(record_count("partial_chunks"), 0);
        serve_ranges(p, &f);
        assert_true(ferry_piece_complete(p));
        assert_int_equal(ferry_piece_place(p, "s.bin", 0644, 0), 0);
        ferry_piece_free(p);
        back = read_back("s.bin", sizeof(data));
        assert_memory_equal(back, data, sizeof(data));
        free(back);
        /* Gone again, so that the next round is not served from the local index. */
        snprintf(path, sizeof(path), "%s/s.bin", tmpdir);
        assert_int_equal(unlink(path), 0);
        snprintf(path, sizeof(path), "%s/.s.part", tmpdir);
    }
    free(f.list);
    close(dfd);
}

/*
 * R-RECV-2: a streamed download's durable prefix recorded for another
 * inode than the part file now there is not taken, and its record goes.
 */
static void test_stale_prefix_r_recv_2(void **state)
{
    static uint8_t data[2u << 20];
    struct ferry_part_id other = {0};
    struct ferry_piece *p;
    struct file f;
    uint64_t kept;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    /* The first half as a streamed download left it, then recorded for an inode gone since. */
    write_file(".q.part", data, sizeof(data) / 2);
    other.ino = 1;
    other.born = 42;
    ferry_part_record(state_store, dfd, ".q.part", f.cid, &other, sizeof(data) / 2);
    assert_int_equal(record_count("partials"), 1);
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "q.bin", ".q.part", 0644, 0), 0);
    ferry_piece_reused(p, &kept);
    assert_int_equal(kept, 0);
    assert_int_equal(record_count("partials"), 0);
    ferry_piece_discard(p);
    ferry_piece_free(p);
    /* Recorded for the part file itself, the same prefix is taken (each chunk re-hashed). */
    {
        struct ferry_part_id id;
        uint64_t size, alloc;
        write_file(".q.part", data, sizeof(data) / 2);
        assert_int_equal(ferry_part_stat(dfd, ".q.part", &id, &size, &alloc), 0);
        ferry_part_record(state_store, dfd, ".q.part", f.cid, &id, sizeof(data) / 2);
        assert_int_equal(ferry_part_durable(state_store, dfd, ".q.part", f.cid, &id),
                         sizeof(data) / 2);
    }
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "q.bin", ".q.part", 0644, 0), 0);
    ferry_piece_reused(p, &kept);
    assert_true(kept > 0 && kept <= sizeof(data) / 2);
    ferry_piece_discard(p);
    ferry_piece_free(p);
    assert_int_equal(record_count("partials"), 0);
    assert_int_equal(record_count("partial_chunks"), 0);
    free(f.list);
    close(dfd);
}

/*
 * R-RECV-3: the part file is read back before the rename. Bytes changed on
 * disk after their chunk was checked (here: by another writer) fail the
 * file; nothing is placed and the part file and its records are removed by
 * the caller's discard.
 */
static void test_verify_before_place_r_recv_3(void **state)
{
    static uint8_t data[3u << 20];
    char path[256];
    struct ferry_piece *p;
    struct file f;
    struct stat st;
    int wfd, dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "v.bin", ".v.part", 0644, 0), 0);
    serve_ranges(p, &f);
    assert_true(ferry_piece_complete(p));
    snprintf(path, sizeof(path), "%s/.v.part", tmpdir);
    wfd = open(path, O_WRONLY);
    assert_true(wfd >= 0);
    assert_int_equal(pwrite(wfd, "\0\0\0\0", 4, (off_t)sizeof(data) - 100), 4);
    close(wfd);
    assert_int_equal(ferry_piece_place(p, "v.bin", 0644, 0), FERRY_EHASH);
    snprintf(path, sizeof(path), "%s/v.bin", tmpdir);
    assert_int_equal(stat(path, &st), -1);
    ferry_piece_discard(p);
    ferry_piece_free(p);
    snprintf(path, sizeof(path), "%s/.v.part", tmpdir);
    assert_int_equal(stat(path, &st), -1);
    free(f.list);
    close(dfd);
}

/*
 * Sends chunk k (the next one expected) as 16 KiB frames of bytes, which
 * may differ from the content's; returns the last frame's result.
 */
static int send_chunk(struct ferry_piece *p, size_t k, const uint8_t *bytes)
{
    struct ferry_chunk_frame fr = {.index = (uint32_t)k};
    uint32_t len = ferry_piece_len(p, k), o;
    uint64_t fresh;
    int rc = 0;

    for (o = 0; o < len && rc == 0; o += FERRY_DATA_MAX) {
        fr.offset = o;
        fr.bytes = bytes + o;
        fr.len = len - o < FERRY_DATA_MAX ? len - o : FERRY_DATA_MAX;
        rc = ferry_piece_chunk(p, &fr, &fresh);
    }
    return rc;
}

/* The chunk bitmap recorded for part file `part` (R-CHUNK-16), malloc'd; NULL if none. */
static uint8_t *recorded_bitmap(const char *part, size_t *nb)
{
    static const char sql[] = "SELECT bitmap FROM partial_chunks WHERE name = ?1";
    sqlite3_stmt *st;
    uint8_t *bits = NULL;

    *nb = 0;
    assert_int_equal(sqlite3_prepare_v2(ferry_state_db(state_store), sql, -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, part, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *nb = (size_t)sqlite3_column_bytes(st, 0);
        bits = malloc(*nb + 1);
        assert_non_null(bits);
        memcpy(bits, sqlite3_column_blob(st, 0), *nb);
    }
    sqlite3_finalize(st);
    return bits;
}

static int bit(const uint8_t *bits, size_t i)
{
    return (bits[i / 8] >> (i % 8)) & 1;
}

/*
 * R-CHUNK-16: a chunk whose bytes hash right is taken (written, then
 * durable once synced and recorded); one whose bytes do not is refused
 * with FERRY_EHASH before it is written, and neither held nor recorded.
 */
static void test_good_taken_bad_refused_r_chunk_16(void **state)
{
    static uint8_t data[3u << 20], bad[FERRY_CHUNK_MAX];
    struct ferry_piece *p;
    struct file f;
    uint8_t *bits;
    size_t nb;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    assert_true(f.list_len / FERRY_CHUNK_ENT_LEN >= 3);
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "g.bin", ".g.part", 0644, 0), 0);
    json_decref(ferry_piece_ranges(p));
    /* Chunk 0, right: taken, written but not yet durable. */
    assert_int_equal(send_chunk(p, 0, data), 0);
    assert_int_equal(ferry_piece_state(p, 0), FERRY_PIECE_WRITTEN);
    assert_true(ferry_piece_has(p, 0));
    /* Chunk 1 with one bit flipped: refused, and the part file holds none of it. */
    memcpy(bad, data + ferry_piece_off(p, 1), ferry_piece_len(p, 1));
    bad[ferry_piece_len(p, 1) / 2] ^= 0x10;
    assert_int_equal(send_chunk(p, 1, bad), FERRY_EHASH);
    assert_int_equal(ferry_piece_state(p, 1), FERRY_PIECE_MISSING);
    assert_false(ferry_piece_has(p, 1));
    assert_int_equal(ferry_piece_held(p), 1);
    assert_int_equal(ferry_piece_sync(p), 0);
    assert_int_equal(ferry_piece_state(p, 0), FERRY_PIECE_DURABLE);
    /* The record names chunk 0 only. */
    bits = recorded_bitmap(".g.part", &nb);
    assert_non_null(bits);
    assert_int_equal(nb, (ferry_piece_count(p) + 7) / 8);
    assert_true(bit(bits, 0));
    assert_false(bit(bits, 1));
    free(bits);
    {
        uint8_t *back = read_back(".g.part", sizeof(data));
        /* Where chunk 1 goes, nothing was written (the part file is sparse there). */
        uint8_t zero[64] = {0};
        assert_memory_equal(back + ferry_piece_off(p, 1), zero, sizeof(zero));
        free(back);
    }
    ferry_piece_discard(p);
    ferry_piece_free(p);
    free(f.list);
    close(dfd);
}

/*
 * R-RECV-2: the bitmap outlives the piece store and is taken again by the
 * next one on the same part file; it is bound to that file's identity, so
 * the same name given to another file, even one with the very same bytes,
 * gets nothing from it.
 */
static void test_bitmap_bound_to_identity_r_recv_2(void **state)
{
    static uint8_t data[3u << 20];
    char path[256], other[256];
    struct ferry_part_id id;
    struct ferry_piece *p;
    struct file f;
    uint64_t size, alloc;
    uint8_t *copy;
    size_t held;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "b.bin", ".b.part", 0644, 0), 0);
    receive_one_and_stop(p, &f);
    held = ferry_piece_held(p);
    assert_true(held >= 1);
    ferry_piece_free(p);
    /* Reopened: the same chunks are held, durable, without a byte fetched. */
    assert_int_equal(ferry_part_stat(dfd, ".b.part", &id, &size, &alloc), 0);
    assert_true(ferry_piece_has_bitmap(state_store, dfd, ".b.part", f.cid, &id));
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "b.bin", ".b.part", 0644, 0), 0);
    assert_int_equal(ferry_piece_held(p), held);
    assert_int_equal(ferry_piece_state(p, 0), FERRY_PIECE_DURABLE);
    ferry_piece_free(p);
    /* Replaced by a copy of itself: another inode at the name, the record is ignored. */
    copy = read_back(".b.part", sizeof(data));
    write_file(".b.copy", copy, sizeof(data));
    free(copy);
    snprintf(path, sizeof(path), "%s/.b.part", tmpdir);
    snprintf(other, sizeof(other), "%s/.b.copy", tmpdir);
    assert_int_equal(rename(other, path), 0);
    assert_int_equal(ferry_part_stat(dfd, ".b.part", &id, &size, &alloc), 0);
    assert_false(ferry_piece_has_bitmap(state_store, dfd, ".b.part", f.cid, &id));
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "b.bin", ".b.part", 0644, 0), 0);
    assert_int_equal(ferry_piece_held(p), 0);
    assert_int_equal(ferry_piece_state(p, 0), FERRY_PIECE_MISSING);
    ferry_piece_discard(p);
    ferry_piece_free(p);
    free(f.list);
    close(dfd);
}

/*
 * ferry_piece_read, for another reader (the swarm): held chunks come back
 * byte for byte, missing ones are refused, a buffer one byte short is
 * refused before anything is read, and a chunk changed on disk after it
 * was verified is caught by its hash (the rule of R-RECV-3 applied to
 * every read): it is missing again and the bitmap no longer claims it.
 */
static void test_read_held_only_r_recv_3(void **state)
{
    static uint8_t data[3u << 20], buf[FERRY_CHUNK_MAX + 1];
    struct ferry_piece *p;
    struct file f;
    uint8_t *bits;
    uint32_t len0;
    size_t nb, held;
    int wfd, dfd = dirfd_open();
    char path[256];

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    p = piece_with_list(&f);
    /* Nothing is held before the plan: there is no list to read by. */
    assert_int_equal(ferry_piece_read(p, 0, buf, sizeof(buf)), FERRY_ENOTFOUND);
    assert_int_equal(ferry_piece_plan(p, dfd, "d.bin", ".d.part", 0644, 0), 0);
    assert_int_equal(ferry_piece_read(p, 0, buf, sizeof(buf)), FERRY_ENOTFOUND);
    json_decref(ferry_piece_ranges(p));
    assert_int_equal(send_chunk(p, 0, data), 0);
    assert_int_equal(send_chunk(p, 1, data + ferry_piece_off(p, 1)), 0);
    len0 = ferry_piece_len(p, 0);
    /* Held (written, not yet durable): read back whole, at cap = len and cap + 1. */
    assert_int_equal(ferry_piece_read(p, 0, buf, len0), (ssize_t)len0);
    assert_memory_equal(buf, data, len0);
    assert_int_equal(ferry_piece_read(p, 0, buf, len0 + 1), (ssize_t)len0);
    assert_int_equal(ferry_piece_read(p, 0, buf, len0 - 1), FERRY_ETOOBIG);
    /* Chunk 2 was never received. */
    assert_int_equal(ferry_piece_read(p, 2, buf, sizeof(buf)), FERRY_ENOTFOUND);
    assert_int_equal(ferry_piece_sync(p), 0);
    assert_int_equal(ferry_piece_read(p, 1, buf, sizeof(buf)), (ssize_t)ferry_piece_len(p, 1));
    assert_memory_equal(buf, data + ferry_piece_off(p, 1), ferry_piece_len(p, 1));
    /* One byte of chunk 1 changed behind the store's back. */
    snprintf(path, sizeof(path), "%s/.d.part", tmpdir);
    wfd = open(path, O_WRONLY);
    assert_true(wfd >= 0);
    buf[0] = (uint8_t)(data[ferry_piece_off(p, 1) + 7] ^ 1);
    assert_int_equal(pwrite(wfd, buf, 1, (off_t)ferry_piece_off(p, 1) + 7), 1);
    close(wfd);
    held = ferry_piece_held(p);
    assert_int_equal(ferry_piece_read(p, 1, buf, sizeof(buf)), FERRY_EHASH);
    assert_false(ferry_piece_has(p, 1));
    assert_int_equal(ferry_piece_held(p), held - 1);
    assert_int_equal(ferry_piece_read(p, 1, buf, sizeof(buf)), FERRY_ENOTFOUND);
    bits = recorded_bitmap(".d.part", &nb);
    assert_non_null(bits);
    assert_true(bit(bits, 0));
    assert_false(bit(bits, 1));
    free(bits);
    /* Chunk 0 is untouched and still served. */
    assert_int_equal(ferry_piece_read(p, 0, buf, sizeof(buf)), (ssize_t)len0);
    assert_memory_equal(buf, data, len0);
    /* The next request asks for chunk 1 again. */
    {
        json_t *r = ferry_piece_ranges(p);
        assert_int_equal(json_integer_value(json_array_get(json_array_get(r, 0), 0)), 1);
        json_decref(r);
    }
    ferry_piece_discard(p);
    ferry_piece_free(p);
    free(f.list);
    close(dfd);
}

/*
 * R-RECV-3: one bit flipped in the part file of a complete file, after
 * every chunk was verified and made durable: place reads it all back,
 * refuses with FERRY_EHASH and renames nothing; the part file stays for
 * the caller to discard.
 */
static void test_place_refuses_flipped_bit_r_recv_3(void **state)
{
    static uint8_t data[3u << 20];
    char path[256];
    struct ferry_piece *p;
    struct file f;
    struct stat st;
    uint8_t b;
    off_t at;
    int fd, dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "w.bin", ".w.part", 0644, 0), 0);
    serve_ranges(p, &f);
    assert_int_equal(ferry_piece_sync(p), 0);
    assert_true(ferry_piece_complete(p));
    snprintf(path, sizeof(path), "%s/.w.part", tmpdir);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    at = (off_t)sizeof(data) / 2 + 12345;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x01;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
    assert_int_equal(ferry_piece_place(p, "w.bin", 0644, 0), FERRY_EHASH);
    snprintf(path, sizeof(path), "%s/w.bin", tmpdir);
    assert_int_equal(stat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/.w.part", tmpdir);
    assert_int_equal(stat(path, &st), 0);
    ferry_piece_discard(p);
    assert_int_equal(stat(path, &st), -1);
    ferry_piece_free(p);
    free(f.list);
    close(dfd);
}

/*
 * The chunk index's cap is the list's length n: n - 1 is a chunk, n and
 * n + 1 are not, for every reader (has, state, len, read) and for a chunk
 * frame from the server (R-CHUNK-16: only the chunks asked for).
 */
static void test_chunk_index_cap_r_chunk_16(void **state)
{
    static uint8_t data[2u << 20], buf[FERRY_CHUNK_MAX];
    struct ferry_chunk_frame fr = {0};
    struct ferry_piece *p;
    struct file f;
    uint64_t fresh;
    size_t n;
    int dfd = dirfd_open();

    (void)state;
    ferry_random(data, sizeof(data));
    file_make(&f, data, sizeof(data));
    n = f.list_len / FERRY_CHUNK_ENT_LEN;
    p = piece_with_list(&f);
    assert_int_equal(ferry_piece_plan(p, dfd, "i.bin", ".i.part", 0644, 0), 0);
    assert_int_equal(ferry_piece_count(p), n);
    serve_ranges(p, &f);
    assert_true(ferry_piece_complete(p));
    assert_int_equal(ferry_piece_held(p), n);
    assert_true(ferry_piece_has(p, n - 1));
    assert_int_equal(ferry_piece_state(p, n - 1), FERRY_PIECE_WRITTEN);
    assert_true(ferry_piece_len(p, n - 1) > 0);
    assert_int_equal(ferry_piece_read(p, n - 1, buf, sizeof(buf)),
                     (ssize_t)ferry_piece_len(p, n - 1));
    assert_memory_equal(buf, data + ferry_piece_off(p, n - 1), ferry_piece_len(p, n - 1));
    for (size_t i = n; i <= n + 1; i++) {
        assert_false(ferry_piece_has(p, i));
        assert_int_equal(ferry_piece_state(p, i), FERRY_PIECE_MISSING);
        assert_int_equal(ferry_piece_len(p, i), 0);
        assert_int_equal(ferry_piece_off(p, i), 0);
        assert_int_equal(ferry_piece_read(p, i, buf, sizeof(buf)), FERRY_ENOTFOUND);
    }
    assert_int_equal(ferry_piece_read(p, SIZE_MAX, buf, sizeof(buf)), FERRY_ENOTFOUND);
    /* Frames of chunk n - 1 again, then of n and n + 1: none was asked for now. */
    fr.bytes = data;
    fr.len = 1;
    for (size_t i = n - 1; i <= n + 1; i++) {
        fr.index = (uint32_t)i;
        assert_int_equal(ferry_piece_chunk(p, &fr, &fresh), FERRY_EPROTO);
    }
    ferry_piece_discard(p);
    ferry_piece_free(p);
    free(f.list);
    close(dfd);
}

/*
 * Records that chunks of part file `part` in dfd are durable: the odd
 * ones of n (as a run that was killed would have left them).
 */
static void record_odd_chunks(int dfd, const char *part, const char *cid, size_t n)
{
    static const char sql[] =
        "INSERT OR REPLACE INTO partial_chunks(dev, ino, name, cid, bitmap, fino, fborn)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    struct ferry_part_id id;
    sqlite3_stmt *st;
    uint64_t dev, ino;
    uint8_t *bits = calloc((n + 7) / 8, 1);
    size_t i;
    int fd;

    assert_non_null(bits);
    for (i = 1; i < n; i += 2)
        bits[i / 8] |= (uint8_t)(1u << (i % 8));
    assert_true((fd = ferry_part_open(dfd, part, &id)) >= 0);
    close(fd);
    assert_int_equal(ferry_part_key(dfd, &dev, &ino), 0);
    assert_int_equal(sqlite3_prepare_v2(ferry_state_db(state_store), sql, -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)dev);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)ino);
    sqlite3_bind_text(st, 3, part, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, cid, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, bits, (int)((n + 7) / 8), SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)id.ino);
    sqlite3_bind_int64(st, 7, id.born);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    free(bits);
}

/*
 * R-CHUNK-16: one Download asks for at most FERRY_DL_RANGES_MAX runs.
 * Missing runs of cap - 1, cap and cap + 1 (every other chunk held, from
 * a recorded bitmap): the first request carries min(runs, cap), and the
 * next one the run left over. The list is made up (its hashes are not of
 * any bytes): only its shape matters before chunks arrive.
 */
static void test_ranges_cap_r_chunk_16(void **state)
{
    static const size_t runs[] = {FERRY_DL_RANGES_MAX - 1, FERRY_DL_RANGES_MAX,
                                  FERRY_DL_RANGES_MAX + 1};
    struct ferry_chunk_ent e = {.len = FERRY_CHUNK_MIN};
    struct ferry_piece *p;
    char cid[FERRY_CID_LEN + 1], part[32];
    uint8_t *list;
    size_t k, i, n;
    json_t *r;
    int dfd = dirfd_open();

    (void)state;
    for (k = 0; k < sizeof(runs) / sizeof(runs[0]); k++) {
        n = 2 * runs[k] - 1; /* missing at every even index: runs[k] runs */
        list = malloc(n * FERRY_CHUNK_ENT_LEN);
        assert_non_null(list);
        for (i = 0; i < n; i++) {
            ferry_random(e.hash, sizeof(e.hash));
            ferry_chunk_ent_encode(list + i * FERRY_CHUNK_ENT_LEN, &e);
        }
        assert_int_equal(ferry_chunk_list_cid(list, n * FERRY_CHUNK_ENT_LEN, cid), 0);
        snprintf(part, sizeof(part), ".rc%zu.part", k);
        record_odd_chunks(dfd, part, cid, n);
        assert_int_equal(ferry_piece_new(state_store, cid, (uint64_t)n * FERRY_CHUNK_MIN,
                                         n * FERRY_CHUNK_ENT_LEN, &p),
                         0);
        assert_int_equal(ferry_piece_list_data(p, 0, list, n * FERRY_CHUNK_ENT_LEN), 0);
        assert_int_equal(ferry_piece_plan(p, dfd, "rc.bin", part, 0644, 0), 0);
        assert_int_equal(ferry_piece_held(p), n / 2);
        r = ferry_piece_ranges(p);
        assert_int_equal(json_array_size(r),
                         runs[k] < FERRY_DL_RANGES_MAX ? runs[k] : FERRY_DL_RANGES_MAX);
        assert_int_equal(json_integer_value(json_array_get(json_array_get(r, 0), 0)), 0);
        assert_int_equal(json_integer_value(json_array_get(json_array_get(r, 0), 1)), 1);
        json_decref(r);
        ferry_piece_discard(p);
        ferry_piece_free(p);
        free(list);
    }
    close(dfd);
}

/*
 * R-RECV-6: the free-space rule at its boundary (need = free - margin fits,
 * one byte more does not), the margin (1/32 of a small file system, else
 * FERRY_PART_FREE_MARGIN), and on the real disk: nothing needed fits, 2^63 - 1
 * bytes do not.
 */
static void test_free_space_r_recv_6(void **state)
{
    const uint64_t gib = 1ull << 30, mib = 1ull << 20;
    uint64_t avail;
    int dfd = dirfd_open();

    (void)state;
    /* A big file system: the margin is FERRY_PART_FREE_MARGIN. */
    assert_int_equal(ferry_part_space_fits(10 * gib - FERRY_PART_FREE_MARGIN, 10 * gib, 100 * gib),
                     0);
    assert_int_equal(
        ferry_part_space_fits(10 * gib - FERRY_PART_FREE_MARGIN + 1, 10 * gib, 100 * gib), -ENOSPC);
    /* A 32 MiB one: 1 MiB. */
    assert_int_equal(ferry_part_space_fits(9 * mib, 10 * mib, 32 * mib), 0);
    assert_int_equal(ferry_part_space_fits(9 * mib + 1, 10 * mib, 32 * mib), -ENOSPC);
    /* Less free than the margin: nothing fits, not even nothing. */
    assert_int_equal(ferry_part_space_fits(0, mib - 1, 32 * mib), -ENOSPC);
    assert_int_equal(ferry_part_space_fits(UINT64_MAX, 10 * gib, 100 * gib), -ENOSPC);
    assert_int_equal(ferry_part_space_check(dfd, 0, &avail), 0);
    assert_true(avail > 0);
    assert_int_equal(ferry_part_space_check(dfd, (uint64_t)INT64_MAX, &avail), -ENOSPC);
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
        cmocka_unit_test(test_stale_bitmap_r_recv_2),
        cmocka_unit_test(test_stale_prefix_r_recv_2),
        cmocka_unit_test(test_verify_before_place_r_recv_3),
        cmocka_unit_test(test_free_space_r_recv_6),
        cmocka_unit_test(test_good_taken_bad_refused_r_chunk_16),
        cmocka_unit_test(test_bitmap_bound_to_identity_r_recv_2),
        cmocka_unit_test(test_read_held_only_r_recv_3),
        cmocka_unit_test(test_place_refuses_flipped_bit_r_recv_3),
        cmocka_unit_test(test_chunk_index_cap_r_chunk_16),
        cmocka_unit_test(test_ranges_cap_r_chunk_16),
    };

    if (sodium_init() < 0)
        return 2;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
