/*
 * The group commit against a disk that fails (R-STORE-1, R-STORE-5,
 * R-CHUNK-7): ferry serve runs on the fault-injecting content store
 * (FERRY_TEST_BLOB_FAULTS, ferry/blob.h), which fails chosen calls with
 * EIO, ENOSPC or a write that stops half way. Whatever fails, every upload
 * and chunk the server acknowledged reads back byte for byte, also after a
 * restart; every one it refused is reported to its client with an Error
 * and leaves nothing visible (no row, no listing entry, no bytes); and the
 * batches after a failure work.
 */
#include <dirent.h>

#include "chunk_harness.h"

/* Wire codes of the errors a failed disk call becomes (docs/protocol.md). */
#define CODE_NOTFOUND 5
#define CODE_NOSPACE  8
#define CODE_INTERNAL 10

static const char *const extra[] = {"--login-rate", "1000", NULL};

/* Starts a server whose content store fails as spec says. */
/* A server on a store failing as spec says, with alice signed up and cl logged in as her. */
static void start_faulty(struct server *s, const char *spec, struct acct *a, struct client *cl)
{
    assert_int_equal(setenv("FERRY_TEST_BLOB_FAULTS", spec, 1), 0);
    server_start(s, extra);
    unsetenv("FERRY_TEST_BLOB_FAULTS");
    acct_signup(s, a, "alice");
    acct_open(s, a, cl);
}

/* Stops s and starts it again on the same data, with no faults: what was acknowledged stays. */
static void restart_clean(struct server *s)
{
    assert_int_equal(server_stop(s), 0);
    server_launch(s, extra);
}

static void fill_random(uint8_t **p, size_t n)
{
    *p = malloc(n);
    assert_non_null(*p);
    ferry_random(*p, n);
}

static void cid_of(const uint8_t *data, size_t n, char cid[80])
{
    struct ferry_sha256 sha;

    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, data, n);
    ferry_sha256_final_cid(&sha, cid);
}

/* A plain Upload of n bytes (R-XFER-2); 0 when Committed, else the Error's code. */
static int upload_plain_rc(struct client *cl, const uint8_t *data, size_t n, const char *path)
{
    struct ferry_cmd m;
    uint8_t tid[16];
    char hex[33], cid[80];
    int code = 0;

    new_tid(tid, hex);
    open_plain(cl, tid, path, (json_int_t)n, NULL);
    assert_int_equal(ferry_client_send_data(cl->c, tid, 0, data, n), 0);
    flush(cl);
    cid_of(data, n, cid);
    send_complete(cl, tid, cid);
    for (;;) {
        assert_int_equal(client_recv(cl, &m, HARNESS_WAIT_MS), 1);
        if (m.type == FERRY_MSG_COMMITTED) {
            assert_string_equal(
                json_string_value(json_array_get(json_object_get(m.body, "tids"), 0)), hex);
            break;
        }
        if (m.type == FERRY_MSG_ERROR) {
            assert_string_equal(str_member(&m, "tid"), hex);
            code = err_code(&m);
            break;
        }
        ferry_cmd_cleanup(&m);
    }
    ferry_cmd_cleanup(&m);
    return code;
}

/*
 * Sends chunk i of s and waits for its answer: 0 for ChunkStored, else the
 * Error's code (naming the chunk's tid and index).
 */
static int chunk_rc(struct client *cl, const uint8_t tid[16], const struct sample *s, uint32_t i)
{
    struct ferry_cmd m;
    char hex[33];
    int code = 0;

    ferry_hex_encode(tid, 16, hex);
    send_sample_chunk(cl, tid, s, i);
    assert_int_equal(client_recv(cl, &m, HARNESS_WAIT_MS), 1);
    assert_true(m.type == FERRY_MSG_CHUNK_STORED || m.type == FERRY_MSG_ERROR);
    assert_string_equal(str_member(&m, "tid"), hex);
    assert_int_equal(json_integer_value(json_object_get(m.body, "index")), i);
    if (m.type == FERRY_MSG_ERROR)
        code = err_code(&m);
    ferry_cmd_cleanup(&m);
    return code;
}

/* Opens a chunked upload of s at path and sends its list; needs every chunk. */
static void chunked_begin(struct client *cl, const struct sample *s, const char *path,
                          uint8_t tid[16], json_int_t *need)
{
    char hex[33], ref[37];

    new_tid(tid, hex);
    open_chunked(cl, tid, path, (json_int_t)s->size, ref);
    send_list_range(cl, tid, s->list, 0, s->list_len, 4096);
    assert_int_equal(expect_need_groups(cl, ref, tid, s->n, need, FERRY_NEED_GROUP), s->n);
}

/* A COUNT(*) over the server's database with one text or blob parameter. */
static long db_count(const struct server *s, const char *sql, const void *arg, int blob_len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char path[600];
    long n = -1;

    snprintf(path, sizeof(path), "%s/data/ferry.db", s->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (blob_len > 0)
        sqlite3_bind_blob(st, 1, arg, blob_len, SQLITE_STATIC);
    else
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Files beneath dir (recursively). */
static int count_files(const char *dir)
{
    char sub[1024];
    struct dirent *e;
    DIR *d = opendir(dir);
    int n = 0;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR)
            n += count_files(sub);
        else
            n++;
    }
    closedir(d);
    return n;
}

static int data_files(const struct server *s, const char *sub)
{
    char dir[600];

    snprintf(dir, sizeof(dir), "%s/data/%s", s->dir, sub);
    return count_files(dir);
}

/* A Download of path is refused as not found: no row names it. */
static void expect_absent(struct client *cl, const struct server *s, const char *path,
                          const char *cid)
{
    struct ferry_cmd m;
    const char *name = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;

    assert_int_equal(client_send(cl, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", path)), 0);
    recv_type(cl, FERRY_MSG_ERROR, &m);
    assert_int_equal(err_code(&m), CODE_NOTFOUND);
    ferry_cmd_cleanup(&m);
    assert_int_equal(db_count(s, "SELECT COUNT(*) FROM nodes WHERE name = ?1", name, 0), 0);
    if (cid != NULL)
        assert_int_equal(db_count(s, "SELECT COUNT(*) FROM content WHERE cid = ?1", cid, 0), 0);
}

/* Whether uid's chunk i of s has a row (the rows are what exists, R-CHUNK-7). */
static long chunk_rows(const struct server *s, const struct sample *sm, uint32_t i)
{
    struct ferry_chunk_ent e;

    ferry_chunk_ent_decode(sm->list + (size_t)i * FERRY_CHUNK_ENT_LEN, &e);
    return db_count(s, "SELECT COUNT(*) FROM chunks WHERE hash = ?1", e.hash, 32);
}

/*
 * R-STORE-5: a put that fails (EIO for a whole file, ENOSPC for a chunk)
 * fails only its own upload or chunk, which leaves no row, no spool and no
 * blob; the next puts succeed, and what they stored survives a restart.
 */
static void test_put_fails_r_store_5(void **state)
{
    static const size_t n = 200 << 10;
    json_int_t need[FERRY_NEED_GROUP];
    struct server s;
    struct acct a;
    struct client cl;
    struct sample sm;
    uint8_t *p1, *p2, tid[16];
    char cid1[80];
    uint32_t i;

    (void)state;
    start_faulty(&s, "put:1:eio,put:3:enospc", &a, &cl);
    fill_random(&p1, n);
    fill_random(&p2, n);
    cid_of(p1, n, cid1);
    /* Put 1: the whole file's spool fails to go into place. */
    assert_int_equal(upload_plain_rc(&cl, p1, n, "one.bin"), CODE_INTERNAL);
    expect_absent(&cl, &s, "one.bin", cid1);
    assert_int_equal(data_files(&s, "blobs"), 0);
    assert_int_equal(data_files(&s, "tmp"), 0);
    /* Put 2: the next one is stored. */
    assert_int_equal(upload_plain_rc(&cl, p2, n, "two.bin"), 0);
    expect_content(&cl, "two.bin", p2, n);
    /* Put 3, the first chunk: refused alone; sent again, it is stored. */
    sample_cdc(&sm, 2u << 20);
    assert_true(sm.n >= 2);
    chunked_begin(&cl, &sm, "three.bin", tid, need);
    assert_int_equal(chunk_rc(&cl, tid, &sm, (uint32_t)need[0]), CODE_NOSPACE);
    assert_int_equal(chunk_rows(&s, &sm, (uint32_t)need[0]), 0);
    for (i = 1; i < sm.n; i++)
        assert_int_equal(chunk_rc(&cl, tid, &sm, (uint32_t)need[i]), 0);
    assert_int_equal(chunk_rc(&cl, tid, &sm, (uint32_t)need[0]), 0);
    send_complete(&cl, tid, sm.cid);
    expect_committed(&cl, tid);
    expect_content(&cl, "three.bin", sm.data, sm.size);
    client_close(&cl);
    /* Acknowledged means durable: all of it is there after a restart. */
    restart_clean(&s);
    acct_open(&s, &a, &cl);
    expect_content(&cl, "two.bin", p2, n);
    expect_content(&cl, "three.bin", sm.data, sm.size);
    expect_absent(&cl, &s, "one.bin", cid1);
    client_close(&cl);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
    sample_free(&sm);
    free(p1);
    free(p2);
}

/*
 * R-CHUNK-7: a pack write that stops half way (and then finds the disk
 * full) fails the chunks of its batch and leaves half of their bytes past
 * the pack's recorded end: none of them is ever read. The chunks sent
 * again, and the next file's, go where those bytes were and read back
 * exactly, before and after a restart.
 */
static void test_short_write_r_chunk_7(void **state)
{
    json_int_t need[FERRY_NEED_GROUP];
    struct server s;
    struct acct a;
    struct client cl;
    struct sample sm, sm2;
    struct ferry_cmd m;
    uint8_t tid[16];
    char hex[33];
    int failed[FERRY_NEED_GROUP] = {0}, nfailed = 0, stored = 0;
    uint32_t i;

    (void)state;
    start_faulty(&s, "write:2:short", &a, &cl);
    sample_cdc(&sm, 3u << 20);
    assert_true(sm.n >= 3);
    chunked_begin(&cl, &sm, "cut.bin", tid, need);
    ferry_hex_encode(tid, 16, hex);
    /* Write 1: the first chunk alone. */
    assert_int_equal(chunk_rc(&cl, tid, &sm, (uint32_t)need[0]), 0);
    /* Write 2 is the next batch's, cut short: its chunks fail, any later batch's are stored. */
    for (i = 1; i < sm.n; i++) {
        uint32_t idx = (uint32_t)need[i];
        size_t off;
        uint32_t len;

        sample_chunk(&sm, idx, &off, &len);
        assert_int_equal(ferry_client_send_chunk(cl.c, tid, idx, sm.data + off, len), 0);
    }
    flush(&cl);
    for (i = 1; i < sm.n; i++) {
        json_int_t idx;

        assert_int_equal(client_recv(&cl, &m, HARNESS_WAIT_MS), 1);
        assert_true(m.type == FERRY_MSG_CHUNK_STORED || m.type == FERRY_MSG_ERROR);
        assert_string_equal(str_member(&m, "tid"), hex);
        idx = json_integer_value(json_object_get(m.body, "index"));
        assert_true(idx >= 0 && idx < (json_int_t)sm.n);
        if (m.type == FERRY_MSG_ERROR) {
            assert_int_equal(err_code(&m), CODE_NOSPACE);
            failed[idx] = 1;
            nfailed++;
        } else {
            stored++;
        }
        ferry_cmd_cleanup(&m);
    }
    assert_true(nfailed >= 1);
    assert_int_equal(nfailed + stored, (int)sm.n - 1);
    /* Nothing half-written has a row; what was acknowledged has one. */
    for (i = 0; i < sm.n; i++)
        assert_int_equal(chunk_rows(&s, &sm, i), failed[i] ? 0 : 1);
    /* The file cannot complete without them; sent again, they are stored. */
    for (i = 0; i < sm.n; i++)
        if (failed[i])
            assert_int_equal(chunk_rc(&cl, tid, &sm, i), 0);
    send_complete(&cl, tid, sm.cid);
    expect_committed(&cl, tid);
    expect_content(&cl, "cut.bin", sm.data, sm.size);
    /* A later file's batches work too. */
    sample_cdc(&sm2, 1u << 20);
    upload_sample(&cl, &sm2, "after.bin");
    expect_content(&cl, "after.bin", sm2.data, sm2.size);
    client_close(&cl);
    restart_clean(&s);
    acct_open(&s, &a, &cl);
    expect_content(&cl, "cut.bin", sm.data, sm.size);
    expect_content(&cl, "after.bin", sm2.data, sm2.size);
    client_close(&cl);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
    sample_free(&sm);
    sample_free(&sm2);
}

/*
 * R-STORE-5: when making a batch durable fails (an fsync error; the bytes
 * were written), every upload of the batch fails, whole files and chunks
 * alike: none is acknowledged, none becomes visible. Sent again, they are
 * stored over what the failed batch left.
 */
static void test_sync_fails_r_store_5(void **state)
{
    static const size_t n = 300 << 10;
    json_int_t need[FERRY_NEED_GROUP];
    struct server s;
    struct acct a;
    struct client cl;
    struct sample sm;
    uint8_t *p1, *p2, tid[16];
    char cid2[80];
    uint32_t i;

    (void)state;
    start_faulty(&s, "sync:2:eio,sync:4:enospc", &a, &cl);
    fill_random(&p1, n);
    fill_random(&p2, n);
    cid_of(p2, n, cid2);
    assert_int_equal(upload_plain_rc(&cl, p1, n, "first.bin"), 0); /* sync 1 */
    assert_int_equal(upload_plain_rc(&cl, p2, n, "second.bin"), CODE_INTERNAL);
    expect_absent(&cl, &s, "second.bin", cid2);
    assert_int_equal(data_files(&s, "tmp"), 0);
    assert_int_equal(upload_plain_rc(&cl, p2, n, "second.bin"), 0); /* sync 3 */
    expect_content(&cl, "second.bin", p2, n);
    /* Sync 4: the first chunk's batch; the pack's end stays where it was. */
    sample_cdc(&sm, 2u << 20);
    chunked_begin(&cl, &sm, "third.bin", tid, need);
    assert_int_equal(chunk_rc(&cl, tid, &sm, (uint32_t)need[0]), CODE_NOSPACE);
    assert_int_equal(chunk_rows(&s, &sm, (uint32_t)need[0]), 0);
    for (i = 0; i < sm.n; i++)
        assert_int_equal(chunk_rc(&cl, tid, &sm, (uint32_t)need[i]), 0);
    send_complete(&cl, tid, sm.cid);
    expect_committed(&cl, tid);
    expect_content(&cl, "third.bin", sm.data, sm.size);
    client_close(&cl);
    restart_clean(&s);
    acct_open(&s, &a, &cl);
    expect_content(&cl, "first.bin", p1, n);
    expect_content(&cl, "second.bin", p2, n);
    expect_content(&cl, "third.bin", sm.data, sm.size);
    client_close(&cl);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
    sample_free(&sm);
    free(p1);
    free(p2);
}

/* Downloads path expecting its Transfer and then an Error with code (no TransferComplete). */
static void expect_download_error(struct client *cl, const char *path, int code)
{
    uint64_t deadline = ferry_now_ms() + HARNESS_WAIT_MS;
    int have_transfer = 0;

    assert_int_equal(client_send(cl, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", path)), 0);
    for (;;) {
        struct ferry_frame f;
        struct ferry_cmd m;

        next_frame_by(cl, deadline, &f);
        if (f.type != FERRY_FRAME_COMMAND)
            continue;
        assert_int_equal(ferry_cmd_decode(f.payload, f.payload_len, &m), 0);
        if (m.type == FERRY_MSG_TRANSFER) {
            have_transfer = 1;
            ferry_cmd_cleanup(&m);
            continue;
        }
        assert_int_equal(m.type, FERRY_MSG_ERROR);
        assert_int_equal(err_code(&m), code);
        ferry_cmd_cleanup(&m);
        break;
    }
    assert_true(have_transfer);
}

/*
 * A content read that fails or comes back short ends that download with an
 * Error, never with wrong bytes; the connection and the next download work.
 * A spool the disk has no room for refuses its upload at once.
 */
static void test_read_and_spool_fail(void **state)
{
    static const size_t n = 600 << 10;
    struct server s;
    struct acct a;
    struct client cl;
    uint8_t *p1, tid[16];
    char hex[33];

    (void)state;
    start_faulty(&s, "read:1:eio,read:2:short,spool:1:enospc", &a, &cl);
    fill_random(&p1, n);
    /* Spool 1: no room for the upload's temporary file. */
    new_tid(tid, hex);
    open_plain(&cl, tid, "late.bin", (json_int_t)n, NULL);
    expect_error(&cl, CODE_NOSPACE, NULL, tid, -1);
    send_cancel(&cl, tid);
    assert_true(ping_ok(&cl));
    assert_int_equal(upload_plain_rc(&cl, p1, n, "data.bin"), 0);
    expect_download_error(&cl, "data.bin", CODE_INTERNAL);
    expect_download_error(&cl, "data.bin", CODE_INTERNAL);
    assert_true(ping_ok(&cl));
    expect_content(&cl, "data.bin", p1, n);
    client_close(&cl);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
    free(p1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_put_fails_r_store_5, harness_teardown),
        cmocka_unit_test_teardown(test_short_write_r_chunk_7, harness_teardown),
        cmocka_unit_test_teardown(test_sync_fails_r_store_5, harness_teardown),
        cmocka_unit_test_teardown(test_read_and_spool_fail, harness_teardown),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
