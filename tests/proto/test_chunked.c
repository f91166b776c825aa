/*
 * Black-box tests of chunked uploads (protocol 1.1, docs/protocol.md 7.1,
 * R-CHUNK-1..12) against a real ferry serve: the list as data frames, the
 * ChunkNeed round trips, chunk frames (type 3) out of order, per-user
 * deduplication, the quota, and every refusal, each of which must leave a
 * bystander session working.
 */
#include "chunk_harness.h"

/* R-CHUNK-6: chunks one connection may have begun and not finished (server.h). */
#define SRV_CHUNKS_OPEN_MAX_TEST 8

static struct server srv;  /* the main server */
static struct server qsrv; /* --quota 8M (R-CHUNK-9) */
static struct client bystander;
static struct acct alice, bob, mallory, faults, quser;
/* The happy path's file, reused by the deduplication tests. */
static struct sample happy;

static int group_setup(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    static const char *const qextra[] = {"--login-rate", "1000", "--quota", "8M", NULL};

    (void)state;
    server_start(&srv, extra);
    server_start(&qsrv, qextra);
    if (client_open(&bystander, &srv) != 0 || client_signup(&bystander, "bystander", NULL, 0) != 1)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    int rc, qrc;

    (void)state;
    client_close(&bystander);
    sample_free(&happy);
    rc = server_stop(&srv);
    qrc = server_stop(&qsrv);
    server_cleanup(&srv);
    server_cleanup(&qsrv);
    return rc == 0 && qrc == 0 ? 0 : -1;
}

/* After every hostile case, the other session still gets answers. */
static void bystander_ok(void)
{
    assert_true(ping_ok(&bystander));
}

/* ---- Happy path and deduplication ---- */

static void test_accounts_setup(void **state)
{
    (void)state;
    acct_signup(&srv, &alice, "alice");
    acct_signup(&srv, &bob, "bob");
    acct_signup(&srv, &mallory, "mallory");
    acct_signup(&srv, &faults, "faults");
    acct_signup(&qsrv, &quser, "quser");
}

/*
 * R-CHUNK-4..8, R-CHUNK-10: a 3 MiB file, its list in 7-byte pieces that
 * cross entry boundaries, its chunks last first with one sent twice; the
 * download gives the same bytes and the chunks: id.
 */
static void test_upload_out_of_order_r_chunk_6(void **state)
{
    json_int_t need[FERRY_NEED_GROUP];
    int counts[FERRY_NEED_GROUP] = {0};
    char hex[33], ref[37], xhash[80], dhash[80];
    struct client a;
    uint8_t tid[16], *got = NULL;
    size_t n, len = 0;
    uint32_t i, dup;

    (void)state;
    sample_cdc(&happy, 3u << 20);
    assert_true(happy.n >= 3);
    fprintf(stderr, "happy: %u chunks, %s\n", happy.n, happy.cid);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "dir/happy.bin", (json_int_t)happy.size, ref);
    send_list_range(&a, tid, happy.list, 0, happy.list_len, 7);
    /* R-CHUNK-5: one ChunkNeed for the group; alice holds none of these. */
    n = expect_need_groups(&a, ref, tid, happy.n, need, FERRY_NEED_GROUP);
    assert_int_equal(n, happy.n);
    /* Last chunk first, then the rest; one chunk goes twice (R-CHUNK-6). */
    dup = happy.n / 2;
    for (i = happy.n; i-- > 0;) {
        send_sample_chunk(&a, tid, &happy, i);
        if (i == dup)
            send_sample_chunk(&a, tid, &happy, i);
    }
    expect_stored(&a, tid, counts, happy.n, (int)happy.n + 1);
    for (i = 0; i < happy.n; i++) {
        assert_int_equal(counts[i], i == dup ? 2 : 1);
        /* R-CHUNK-7: ChunkStored is sent only once the chunk file is in place. */
        assert_true(chunk_file_exists(&srv, &happy, i));
    }
    send_complete(&a, tid, happy.cid);
    expect_committed(&a, tid);
    /* R-CHUNK-10: the same bytes come back, named by the chunks: id. */
    download_path(&a, "dir/happy.bin", &got, &len, xhash, dhash);
    assert_int_equal(len, happy.size);
    assert_memory_equal(got, happy.data, happy.size);
    assert_string_equal(xhash, happy.cid);
    assert_string_equal(dhash, happy.cid);
    free(got);
    assert_true(ping_ok(&a));
    client_close(&a);
}

/*
 * R-CHUNK-7, R-CHUNK-8: chunks are checked in parallel and may finish out of
 * order, yet a TransferComplete sent right behind the last chunk, with no
 * wait for ChunkStored, still finds them all: the server holds it until the
 * connection's checks are done. A bad chunk among them is refused in order.
 */
static void test_complete_right_after_chunks_r_chunk_8(void **state)
{
    json_int_t need[FERRY_NEED_GROUP];
    int counts[FERRY_NEED_GROUP] = {0};
    char hex[33], ref[37], xhash[80], dhash[80];
    struct sample big;
    struct client a;
    uint8_t tid[16], *got = NULL;
    size_t n, len = 0, i;

    (void)state;
    sample_cdc(&big, 12u << 20);
    assert_true(big.n >= 20 && big.n <= FERRY_NEED_GROUP);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "right-after.bin", (json_int_t)big.size, ref);
    send_list_range(&a, tid, big.list, 0, big.list_len, 4096);
    n = expect_need_groups(&a, ref, tid, big.n, need, FERRY_NEED_GROUP);
    assert_int_equal(n, big.n);
    for (i = 0; i < n; i++)
        send_sample_chunk(&a, tid, &big, (uint32_t)need[i]);
    send_complete(&a, tid, big.cid);
    expect_stored(&a, tid, counts, big.n, (int)big.n);
    for (i = 0; i < big.n; i++)
        assert_int_equal(counts[i], 1);
    expect_committed(&a, tid);
    download_path(&a, "right-after.bin", &got, &len, xhash, dhash);
    assert_int_equal(len, big.size);
    assert_memory_equal(got, big.data, big.size);
    free(got);
    assert_true(ping_ok(&a));
    client_close(&a);
    sample_free(&big);
}

/* R-CHUNK-5, R-CHUNK-12: the same content again needs nothing; only the list travels. */
static void test_dedup_ask_before_send_r_chunk_5(void **state)
{
    json_int_t need[FERRY_NEED_GROUP];
    char hex[33], ref[37], xhash[80], dhash[80];
    uint64_t tx0, tx1, rx;
    struct client a;
    uint8_t tid[16], *got = NULL;
    size_t len = 0;

    (void)state;
    assert_non_null(happy.data);
    acct_open(&srv, &alice, &a);
    ferry_client_wire_bytes(a.c, &tx0, &rx);
    new_tid(tid, hex);
    open_chunked(&a, tid, "copy/of/happy.bin", (json_int_t)happy.size, ref);
    send_list_range(&a, tid, happy.list, 0, happy.list_len, 36);
    assert_int_equal(expect_need_groups(&a, ref, tid, happy.n, need, FERRY_NEED_GROUP), 0);
    send_complete(&a, tid, happy.cid);
    expect_committed(&a, tid);
    ferry_client_wire_bytes(a.c, &tx1, &rx);
    /* Zero chunk bytes: a few commands and the list, far under one chunk. */
    assert_true(tx1 - tx0 < 4096);
    download_path(&a, "copy/of/happy.bin", &got, &len, xhash, dhash);
    assert_int_equal(len, happy.size);
    assert_memory_equal(got, happy.data, happy.size);
    assert_string_equal(dhash, happy.cid);
    free(got);
    client_close(&a);
}

/*
 * R-CHUNK-5: 300 entries are answered in groups of 16, 16, 32, 64, 128 (all
 * before the list ends, so the client can start sending), then the last 44.
 */
static void test_need_groups_r_chunk_5(void **state)
{
    const uint32_t n = 300;
    size_t list_len = (size_t)n * FERRY_CHUNK_ENT_LEN;
    uint8_t *list = malloc(list_len), tid[16];
    char hex[33], ref[37];
    struct client a;
    uint32_t i;

    (void)state;
    assert_non_null(list);
    for (i = 0; i < n; i++)
        put_entry(list, i, i + 1 < n ? FERRY_CHUNK_MIN : 1);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "groups.bin", (json_int_t)(n - 1) * FERRY_CHUNK_MIN + 1, ref);
    /* 15 entries and a piece of the next: nothing is answered yet. */
    send_list_range(&a, tid, list, 0, 15 * FERRY_CHUNK_ENT_LEN + 5, 1000);
    expect_quiet(&a);
    /* The 16th: the first group is answered at once. */
    send_list_range(&a, tid, list, 15 * FERRY_CHUNK_ENT_LEN + 5, 256 * FERRY_CHUNK_ENT_LEN + 5,
                    1000);
    expect_need_all(&a, ref, tid, 0, 16);
    expect_need_all(&a, ref, tid, 16, 16);
    expect_need_all(&a, ref, tid, 32, 32);
    expect_need_all(&a, ref, tid, 64, 64);
    expect_need_all(&a, ref, tid, 128, 128);
    send_list_range(&a, tid, list, 256 * FERRY_CHUNK_ENT_LEN + 5, list_len, 1000);
    expect_need_all(&a, ref, tid, 256, 44);
    send_cancel(&a, tid);
    expect_quiet(&a);
    client_close(&a);
    free(list);
}

/*
 * R-CHUNK-5 (1.5): a group also ends at the entry that brings its chunks to
 * 8 MiB. Twenty 1 MiB entries are answered 8, 8 and then the last 4 with
 * the end of the list, where counting entries alone would answer 16 and 4.
 * Seven entries and a piece of the eighth are not answered yet.
 */
static void test_need_groups_by_bytes_r_chunk_5(void **state)
{
    const uint32_t n = 20;
    size_t list_len = (size_t)n * FERRY_CHUNK_ENT_LEN;
    uint8_t *list = malloc(list_len), tid[16];
    char hex[33], ref[37];
    struct client a;
    uint32_t i;

    (void)state;
    assert_non_null(list);
    assert_int_equal(FERRY_NEED_GROUP_BYTES, 8u * FERRY_CHUNK_MAX);
    for (i = 0; i < n; i++)
        put_entry(list, i, i + 1 < n ? FERRY_CHUNK_MAX : 1000);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "bybytes.bin", (json_int_t)(n - 1) * FERRY_CHUNK_MAX + 1000, ref);
    send_list_range(&a, tid, list, 0, 7 * FERRY_CHUNK_ENT_LEN + 5, 1000);
    expect_quiet(&a);
    send_list_range(&a, tid, list, 7 * FERRY_CHUNK_ENT_LEN + 5, 17 * FERRY_CHUNK_ENT_LEN, 1000);
    expect_need_all(&a, ref, tid, 0, 8);
    expect_need_all(&a, ref, tid, 8, 8);
    expect_quiet(&a);
    send_list_range(&a, tid, list, 17 * FERRY_CHUNK_ENT_LEN, list_len, 1000);
    expect_need_all(&a, ref, tid, 16, 4);
    send_cancel(&a, tid);
    expect_quiet(&a);
    client_close(&a);
    free(list);
}

/*
 * R-CHUNK-5, R-STORE-7, R-CHUNK-8: bob presents alice's list; he is asked for
 * every chunk, his commit without them fails with Error 5 and his tid, and
 * nothing of alice's becomes his.
 */
static void test_per_user_dedup_r_chunk_5(void **state)
{
    char hex[33], ref[37];
    struct client b;
    struct ferry_cmd m;
    uint8_t tid[16];

    (void)state;
    assert_non_null(happy.data);
    acct_open(&srv, &bob, &b);
    new_tid(tid, hex);
    open_chunked(&b, tid, "stolen.bin", (json_int_t)happy.size, ref);
    send_list_range(&b, tid, happy.list, 0, happy.list_len, 100);
    expect_need_all(&b, ref, tid, 0, happy.n);
    send_complete(&b, tid, happy.cid);
    expect_error(&b, 5, ref, tid, -1);
    /* The connection is kept and nothing was committed for bob. */
    assert_true(ping_ok(&b));
    assert_int_equal(client_send(&b, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", "stolen.bin")),
                     0);
    recv_type(&b, FERRY_MSG_ERROR, &m);
    assert_int_equal(err_code(&m), 5);
    ferry_cmd_cleanup(&m);
    assert_int_equal(
        client_send(&b, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", "dir/happy.bin")), 0);
    recv_type(&b, FERRY_MSG_ERROR, &m);
    assert_int_equal(err_code(&m), 5);
    ferry_cmd_cleanup(&m);
    client_close(&b);
    bystander_ok();
}

/* R-CHUNK-4: a size of 0 has an empty list, no data frames and no ChunkNeed. */
static void test_empty_file_r_chunk_4(void **state)
{
    char hex[33], ref[37], cid[FERRY_CID_LEN + 1], xhash[80], dhash[80];
    struct ferry_cmd m;
    struct client a;
    uint8_t tid[16], none[1] = {0}, *got = NULL;
    size_t len = 1;
    int32_t type;

    (void)state;
    assert_int_equal(ferry_chunk_list_cid(none, 0, cid), 0);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "empty.bin", 0, ref);
    send_complete(&a, tid, cid);
    /* An empty list is still a list: the file commits like any other. */
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    type = m.type;
    if (type != FERRY_MSG_COMMITTED)
        fprintf(stderr, "empty chunked upload: got %d (code %d: %s)\n", type, err_code(&m),
                str_member(&m, "message"));
    ferry_cmd_cleanup(&m);
    if (type == FERRY_MSG_COMMITTED) {
        download_path(&a, "empty.bin", &got, &len, xhash, dhash);
        assert_int_equal(len, 0);
        assert_string_equal(dhash, cid);
        free(got);
    }
    client_close(&a);
    assert_int_equal(type, FERRY_MSG_COMMITTED);
}

/* ---- R-CHUNK-2: list validation ---- */

/* Opens a chunked upload of size on a fresh faults connection and sends list bytes. */
static void list_case(struct client *cl, uint8_t tid[16], char ref[37], json_int_t size,
                      const uint8_t *list, size_t list_len)
{
    char hex[33];

    acct_open(&srv, &faults, cl);
    new_tid(tid, hex);
    open_chunked(cl, tid, "list.bin", size, ref);
    if (list_len > 0)
        send_list_range(cl, tid, list, 0, list_len, 7);
}

static void test_chunk_list_len_zero_r_chunk_2(void **state)
{
    uint8_t list[FERRY_CHUNK_ENT_LEN], tid[16];
    char ref[37];
    struct client a;

    (void)state;
    put_entry(list, 0, 0);
    list_case(&a, tid, ref, 100, list, sizeof(list));
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    bystander_ok();
}

static void test_chunk_list_len_over_max_r_chunk_2(void **state)
{
    uint8_t list[FERRY_CHUNK_ENT_LEN], tid[16];
    char ref[37];
    struct client a;

    (void)state;
    put_entry(list, 0, FERRY_CHUNK_MAX + 1);
    list_case(&a, tid, ref, FERRY_CHUNK_MAX + 1, list, sizeof(list));
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    bystander_ok();
}

static void test_chunk_list_len_max_ok_r_chunk_2(void **state)
{
    uint8_t list[2 * FERRY_CHUNK_ENT_LEN], tid[16];
    char ref[37];
    struct client a;

    (void)state;
    /* FERRY_CHUNK_MAX is accepted, as the last entry and as an inner one. */
    put_entry(list, 0, FERRY_CHUNK_MAX);
    put_entry(list, 1, FERRY_CHUNK_MAX);
    list_case(&a, tid, ref, 2 * (json_int_t)FERRY_CHUNK_MAX, list, sizeof(list));
    expect_need_all(&a, ref, tid, 0, 2);
    send_cancel(&a, tid);
    expect_quiet(&a);
    client_close(&a);
}

static void test_chunk_list_short_inner_r_chunk_2(void **state)
{
    uint8_t list[2 * FERRY_CHUNK_ENT_LEN], tid[16];
    char ref[37];
    struct client a;

    (void)state;
    put_entry(list, 0, FERRY_CHUNK_MIN - 1);
    put_entry(list, 1, 10);
    list_case(&a, tid, ref, FERRY_CHUNK_MIN - 1 + 10, list, sizeof(list));
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    bystander_ok();
}

static void test_chunk_list_min_inner_ok_r_chunk_2(void **state)
{
    uint8_t list[2 * FERRY_CHUNK_ENT_LEN], tid[16];
    char ref[37];
    struct client a;

    (void)state;
    /* An inner entry of exactly the minimum, and a last entry of 1 byte. */
    put_entry(list, 0, FERRY_CHUNK_MIN);
    put_entry(list, 1, 1);
    list_case(&a, tid, ref, FERRY_CHUNK_MIN + 1, list, sizeof(list));
    expect_need_all(&a, ref, tid, 0, 2);
    send_cancel(&a, tid);
    expect_quiet(&a);
    client_close(&a);
}

static void test_chunk_list_sum_past_size_r_chunk_2(void **state)
{
    uint8_t list[2 * FERRY_CHUNK_ENT_LEN], tid[16];
    char ref[37];
    struct client a;

    (void)state;
    put_entry(list, 0, FERRY_CHUNK_MIN);
    put_entry(list, 1, 20);
    list_case(&a, tid, ref, FERRY_CHUNK_MIN + 10, list, sizeof(list));
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    /* A single entry longer than the whole file. */
    put_entry(list, 0, 200);
    list_case(&a, tid, ref, 100, list, FERRY_CHUNK_ENT_LEN);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    bystander_ok();
}

/* R-CHUNK-4, R-DATA-4: data after the list is complete is Error 2, in a later frame or the same. */
static void test_chunk_list_data_after_end_r_chunk_4(void **state)
{
    uint8_t list[2 * FERRY_CHUNK_ENT_LEN], tid[16];
    char ref[37];
    struct client a;

    (void)state;
    put_entry(list, 0, 100);
    put_entry(list, 1, 100);
    list_case(&a, tid, ref, 100, list, FERRY_CHUNK_ENT_LEN);
    expect_need_all(&a, ref, tid, 0, 1);
    queue_data(&a, tid, FERRY_CHUNK_ENT_LEN, list + FERRY_CHUNK_ENT_LEN, 1);
    flush(&a);
    assert_true(expect_error_close(&a, 2));
    client_close(&a);
    /* The completing entry and one byte more in one frame. */
    acct_open(&srv, &faults, &a);
    ferry_random(tid, 16);
    open_chunked(&a, tid, "list.bin", 100, ref);
    queue_data(&a, tid, 0, list, FERRY_CHUNK_ENT_LEN + 1);
    flush(&a);
    assert_true(expect_error_close(&a, 2));
    client_close(&a);
    bystander_ok();
}

/* R-CHUNK-4, R-DATA-2: list bytes travel in order. */
static void test_chunk_list_offset_order_r_chunk_4(void **state)
{
    uint8_t list[2 * FERRY_CHUNK_ENT_LEN], tid[16];
    char ref[37];
    struct client a;

    (void)state;
    put_entry(list, 0, FERRY_CHUNK_MIN);
    put_entry(list, 1, 10);
    list_case(&a, tid, ref, FERRY_CHUNK_MIN + 10, list, 10);
    queue_data(&a, tid, 20, list + 20, 10); /* a gap: 10..20 never sent */
    flush(&a);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    /* A frame that repeats bytes already received. */
    list_case(&a, tid, ref, FERRY_CHUNK_MIN + 10, list, 40);
    queue_data(&a, tid, 36, list + 36, 10);
    flush(&a);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    bystander_ok();
}

/* ---- R-CHUNK-6: chunk frames ---- */

/* A faults connection with a 3-chunk upload (64 KiB, 64 KiB, 100 B) whose list has arrived. */
static void chunk_case(struct client *cl, struct sample *s, uint8_t tid[16], char ref[37],
                       size_t list_bytes)
{
    char hex[33];

    sample_fixed(s, 3, FERRY_CHUNK_MIN, 100);
    acct_open(&srv, &faults, cl);
    new_tid(tid, hex);
    open_chunked(cl, tid, "chunks.bin", (json_int_t)s->size, ref);
    send_list_range(cl, tid, s->list, 0, list_bytes, 7);
    if (list_bytes == s->list_len)
        expect_need_all(cl, ref, tid, 0, 3);
}

static void test_chunk_index_unannounced_r_chunk_6(void **state)
{
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char ref[37];

    (void)state;
    /* Two entries have arrived; index 2 has not. */
    chunk_case(&a, &s, tid, ref, 2 * FERRY_CHUNK_ENT_LEN + 3);
    queue_chunk(&a, tid, 2, 0, s.data + 2 * FERRY_CHUNK_MIN, 10);
    flush(&a);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    sample_free(&s);
    /* An index far past the list. */
    chunk_case(&a, &s, tid, ref, s.list_len);
    queue_chunk(&a, tid, 0xffffffffu, 0, s.data, 10);
    flush(&a);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    sample_free(&s);
    bystander_ok();
}

static void test_chunk_first_offset_r_chunk_6(void **state)
{
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char ref[37];

    (void)state;
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    queue_chunk(&a, tid, 1, 100, s.data + FERRY_CHUNK_MIN + 100, 10);
    flush(&a);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    sample_free(&s);
    bystander_ok();
}

static void test_chunk_offset_gap_r_chunk_6(void **state)
{
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char ref[37];

    (void)state;
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    queue_chunk(&a, tid, 0, 0, s.data, 100);
    queue_chunk(&a, tid, 0, 200, s.data + 200, 100);
    flush(&a);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    sample_free(&s);
    /* Going back is out of order as well. */
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    queue_chunk(&a, tid, 0, 0, s.data, 100);
    queue_chunk(&a, tid, 0, 50, s.data + 50, 100);
    flush(&a);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    sample_free(&s);
    bystander_ok();
}

static void test_chunk_past_length_r_chunk_6(void **state)
{
    uint8_t tid[16], extra[200];
    struct sample s;
    struct client a;
    char ref[37];

    (void)state;
    /* Chunk 2 is 100 bytes long: 60 + 41 goes one past it. */
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    ferry_random(extra, sizeof(extra));
    queue_chunk(&a, tid, 2, 0, s.data + 2 * FERRY_CHUNK_MIN, 60);
    queue_chunk(&a, tid, 2, 60, extra, 41);
    flush(&a);
    assert_true(expect_error_close(&a, 2));
    client_close(&a);
    sample_free(&s);
    /* One first frame longer than the chunk. */
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    queue_chunk(&a, tid, 2, 0, extra, 101);
    flush(&a);
    assert_true(expect_error_close(&a, 2));
    client_close(&a);
    sample_free(&s);
    bystander_ok();
}

/* SRV_CHUNKS_OPEN_MAX (8) counts per connection, across its uploads, and only unfinished chunks. */
static void test_chunk_ninth_open_r_chunk_6(void **state)
{
    int counts[5] = {0};
    struct sample s1, s2;
    struct client a;
    uint8_t t1[16], t2[16];
    char hex[33], r1[37], r2[37];
    uint32_t i;

    (void)state;
    sample_fixed(&s1, 5, FERRY_CHUNK_MIN, FERRY_CHUNK_MIN);
    sample_fixed(&s2, 5, FERRY_CHUNK_MIN, FERRY_CHUNK_MIN);
    acct_open(&srv, &faults, &a);
    new_tid(t1, hex);
    new_tid(t2, hex);
    open_chunked(&a, t1, "nine1.bin", (json_int_t)s1.size, r1);
    open_chunked(&a, t2, "nine2.bin", (json_int_t)s2.size, r2);
    send_list_range(&a, t1, s1.list, 0, s1.list_len, 36);
    expect_need_all(&a, r1, t1, 0, 5);
    send_list_range(&a, t2, s2.list, 0, s2.list_len, 36);
    expect_need_all(&a, r2, t2, 0, 5);
    /* 5 + 3 chunks begun: allowed. */
    for (i = 0; i < 5; i++)
        queue_chunk(&a, t1, i, 0, s1.data + (size_t)i * FERRY_CHUNK_MIN, 1);
    for (i = 0; i < 3; i++)
        queue_chunk(&a, t2, i, 0, s2.data + (size_t)i * FERRY_CHUNK_MIN, 1);
    flush(&a);
    expect_quiet(&a);
    /* Finishing one frees its place: a new chunk may begin. */
    for (i = 1; i < FERRY_CHUNK_MIN; i += FERRY_DATA_MAX) {
        uint32_t n = FERRY_CHUNK_MIN - i < FERRY_DATA_MAX ? FERRY_CHUNK_MIN - i : FERRY_DATA_MAX;
        queue_chunk(&a, t1, 0, i, s1.data + i, n);
    }
    queue_chunk(&a, t2, 3, 0, s2.data + 3 * (size_t)FERRY_CHUNK_MIN, 1);
    flush(&a);
    expect_stored(&a, t1, counts, 5, 1);
    assert_int_equal(counts[0], 1);
    expect_quiet(&a);
    /* The ninth unfinished chunk of the connection. */
    queue_chunk(&a, t2, 4, 0, s2.data + 4 * (size_t)FERRY_CHUNK_MIN, 1);
    flush(&a);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    sample_free(&s1);
    sample_free(&s2);
    bystander_ok();
}

/* R-CHUNK-6, R-DATA-3: a tid that is not a chunked upload of this connection. */
static void test_chunk_unknown_tid_r_chunk_6(void **state)
{
    uint8_t tid[16], bytes[10] = {0};
    struct client a;
    char hex[33];

    (void)state;
    acct_open(&srv, &faults, &a);
    new_tid(tid, hex);
    queue_chunk(&a, tid, 0, 0, bytes, sizeof(bytes));
    flush(&a);
    assert_true(expect_error_close(&a, 5));
    client_close(&a);
    /* A plain Upload's tid is not a chunked upload. */
    acct_open(&srv, &faults, &a);
    new_tid(tid, hex);
    open_plain(&a, tid, "plain.bin", 100, NULL);
    queue_chunk(&a, tid, 0, 0, bytes, sizeof(bytes));
    flush(&a);
    assert_true(expect_error_close(&a, 5));
    client_close(&a);
    bystander_ok();
}

/* R-SESS-2, R-MSG-5: a chunk frame before login is Error 4 and a close. */
static void test_chunk_before_login_r_chunk_6(void **state)
{
    uint8_t tid[16], bytes[10] = {0};
    struct client a;
    char hex[33];

    (void)state;
    assert_int_equal(client_open(&a, &srv), 0);
    assert_int_equal(client_hello(&a, NULL), 1);
    new_tid(tid, hex);
    queue_chunk(&a, tid, 0, 0, bytes, sizeof(bytes));
    flush(&a);
    assert_true(expect_error_close(&a, 4));
    client_close(&a);
    bystander_ok();
}

/* R-CHUNK-7: a chunk whose bytes miss its hash: Error 14 with tid and index, connection kept. */
static void test_chunk_hash_mismatch_r_chunk_7(void **state)
{
    uint8_t tid[16], bad[100];
    struct sample s;
    struct client a;
    char ref[37];

    (void)state;
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    memcpy(bad, s.data + 2 * FERRY_CHUNK_MIN, sizeof(bad));
    bad[42] ^= 1;
    queue_chunk(&a, tid, 2, 0, bad, sizeof(bad));
    flush(&a);
    expect_error(&a, 14, ref, tid, 2);
    assert_true(ping_ok(&a));
    /* The dropped chunk is not held: a commit without it is Error 5 (R-CHUNK-8). */
    send_sample_chunk(&a, tid, &s, 0);
    send_sample_chunk(&a, tid, &s, 1);
    {
        int counts[3] = {0};
        expect_stored(&a, tid, counts, 3, 2);
    }
    send_complete(&a, tid, s.cid);
    expect_error(&a, 5, ref, tid, -1);
    assert_true(ping_ok(&a));
    client_close(&a);
    sample_free(&s);
    bystander_ok();
}

/*
 * R-CHUNK-6, R-CHUNK-13, R-DATA-3: another user's transfer id is unknown
 * (Error 5 and a close) whatever the frame or message; so are the list and
 * TransferComplete on the owner's other connection. The owner's upload is
 * unaffected and commits.
 */
static void test_foreign_tid_r_chunk_6(void **state)
{
    json_int_t need[8];
    int counts[8] = {0};
    struct sample s;
    struct client a, b;
    uint8_t tid[16], junk[36];
    char hex[33], ref[37];
    size_t i, n;

    (void)state;
    sample_fixed(&s, 3, FERRY_CHUNK_MIN, 1000);
    ferry_random(junk, sizeof(junk));
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "owned.bin", (json_int_t)s.size, ref);
    send_list_range(&a, tid, s.list, 0, 2 * FERRY_CHUNK_ENT_LEN, 7);
    assert_true(ping_ok(&a));
    /* Mallory: a chunk frame, a data frame (the list's next bytes), a TransferComplete. */
    acct_open(&srv, &mallory, &b);
    queue_chunk(&b, tid, 0, 0, junk, sizeof(junk));
    flush(&b);
    assert_true(expect_error_close(&b, 5));
    client_close(&b);
    acct_open(&srv, &mallory, &b);
    queue_data(&b, tid, 2 * FERRY_CHUNK_ENT_LEN, junk, sizeof(junk));
    flush(&b);
    assert_true(expect_error_close(&b, 5));
    client_close(&b);
    acct_open(&srv, &mallory, &b);
    send_complete(&b, tid, s.cid);
    assert_true(expect_error_close(&b, 5));
    client_close(&b);
    /*
     * R-CHUNK-13: alice's own second connection may carry chunks, but the
     * list and TransferComplete stay on the opening connection.
     */
    acct_open(&srv, &alice, &b);
    queue_data(&b, tid, 2 * FERRY_CHUNK_ENT_LEN, s.list + 2 * FERRY_CHUNK_ENT_LEN,
               FERRY_CHUNK_ENT_LEN);
    flush(&b);
    assert_true(expect_error_close(&b, 5));
    client_close(&b);
    acct_open(&srv, &alice, &b);
    send_complete(&b, tid, s.cid);
    assert_true(expect_error_close(&b, 5));
    client_close(&b);
    bystander_ok();
    /* The owner carries on: nothing arrived for her meanwhile. */
    send_list_range(&a, tid, s.list, 2 * FERRY_CHUNK_ENT_LEN, s.list_len, 7);
    n = expect_need(&a, ref, tid, 0, 3, need, 8);
    assert_int_equal(n, 3);
    for (i = 0; i < n; i++)
        send_sample_chunk(&a, tid, &s, (uint32_t)need[i]);
    expect_stored(&a, tid, counts, 3, 3);
    send_complete(&a, tid, s.cid);
    expect_committed(&a, tid);
    client_close(&a);
    sample_free(&s);
}

/*
 * R-CHUNK-13: chunks spread over two connections of one user; ChunkStored,
 * and a chunk's Error, go to the connection that carried the chunk.
 */
static void test_chunks_on_two_connections_r_chunk_13(void **state)
{
    char hex[33], ref[37], xhash[80], dhash[80];
    int counts[4] = {0};
    uint8_t tid[16], bad[200], *got = NULL;
    struct sample s;
    struct client a, b;
    size_t len = 0;

    (void)state;
    sample_fixed(&s, 4, FERRY_CHUNK_MIN, 200);
    acct_open(&srv, &alice, &a);
    acct_open(&srv, &alice, &b);
    new_tid(tid, hex);
    open_chunked(&a, tid, "spread.bin", (json_int_t)s.size, ref);
    send_list_range(&a, tid, s.list, 0, s.list_len, 7);
    expect_need_all(&a, ref, tid, 0, 4);
    /* B carries chunks 0 and 1, and a corrupt chunk 3; A carries chunk 2. */
    send_sample_chunk(&b, tid, &s, 1);
    send_sample_chunk(&b, tid, &s, 0);
    expect_stored(&b, tid, counts, 4, 2);
    memcpy(bad, s.data + 3 * (size_t)FERRY_CHUNK_MIN, sizeof(bad));
    bad[7] ^= 0x80;
    queue_chunk(&b, tid, 3, 0, bad, sizeof(bad));
    flush(&b);
    expect_error(&b, 14, ref, tid, 3);
    send_sample_chunk(&a, tid, &s, 2);
    expect_stored(&a, tid, counts, 4, 1);
    send_sample_chunk(&b, tid, &s, 3);
    expect_stored(&b, tid, counts, 4, 1);
    assert_int_equal(counts[0] + counts[1] + counts[2] + counts[3], 4);
    /* Nothing about B's chunks reached A. */
    expect_quiet(&a);
    send_complete(&a, tid, s.cid);
    expect_committed(&a, tid);
    expect_quiet(&b);
    download_path(&b, "spread.bin", &got, &len, xhash, dhash);
    assert_int_equal(len, s.size);
    assert_memory_equal(got, s.data, s.size);
    free(got);
    client_close(&a);
    client_close(&b);
    sample_free(&s);
}

/*
 * R-CHUNK-13: a chunk begun on another connection is finished and stored
 * after the opening connection is gone; no new chunk of that transfer can
 * begin (Error 5, close); a resume needs only the rest.
 */
static void test_opener_gone_r_chunk_13(void **state)
{
    json_int_t need[3];
    int counts[3] = {0};
    uint8_t tid[16];
    struct sample s;
    struct client a, b;
    struct ferry_cmd m;
    char hex[33], ref[37];
    size_t i;
    int rc;

    (void)state;
    sample_fixed(&s, 3, FERRY_CHUNK_MIN, 300);
    acct_open(&srv, &alice, &a);
    acct_open(&srv, &alice, &b);
    new_tid(tid, hex);
    open_chunked(&a, tid, "gone.bin", (json_int_t)s.size, ref);
    send_list_range(&a, tid, s.list, 0, s.list_len, 36);
    expect_need_all(&a, ref, tid, 0, 3);
    queue_chunk(&b, tid, 0, 0, s.data, 1000);
    flush(&b);
    expect_quiet(&b);
    /* The opener says goodbye and the server closes it. */
    assert_int_equal(ferry_client_send_cmd(a.c, FERRY_MSG_DISCONNECT, json_object()), 0);
    (void)ferry_client_pump(a.c, HARNESS_WAIT_MS, 1); /* the server may close before this returns */
    while ((rc = client_recv(&a, &m, HARNESS_WAIT_MS)) == 1)
        ferry_cmd_cleanup(&m);
    assert_int_equal(rc, 0);
    client_close(&a);
    usleep(50 * 1000);
    /* The rest of chunk 0 is still taken and stored. */
    for (i = 1000; i < FERRY_CHUNK_MIN; i += FERRY_DATA_MAX) {
        size_t k = FERRY_CHUNK_MIN - i < FERRY_DATA_MAX ? FERRY_CHUNK_MIN - i : FERRY_DATA_MAX;
        queue_chunk(&b, tid, 0, (uint32_t)i, s.data + i, k);
    }
    flush(&b);
    expect_stored(&b, tid, counts, 3, 1);
    assert_int_equal(counts[0], 1);
    /* A new chunk of the orphaned transfer cannot begin. */
    queue_chunk(&b, tid, 1, 0, s.data + FERRY_CHUNK_MIN, 10);
    flush(&b);
    assert_true(expect_error_close(&b, 5));
    client_close(&b);
    bystander_ok();
    /* Resuming needs chunks 1 and 2 only (R-CHUNK-12). */
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "gone.bin", (json_int_t)s.size, ref);
    send_list_range(&a, tid, s.list, 0, s.list_len, 36);
    assert_int_equal(expect_need(&a, ref, tid, 0, 3, need, 3), 2);
    assert_int_equal(need[0], 1);
    assert_int_equal(need[1], 2);
    send_cancel(&a, tid);
    client_close(&a);
    sample_free(&s);
}

/* R-XFER-1, R-CHUNK-4: a ChunkedUpload whose tid is already open is Error 1 and a close. */
static void test_chunked_tid_reused_r_xfer_1(void **state)
{
    struct client a;
    uint8_t tid[16];
    char hex[33], ref[37];

    (void)state;
    acct_open(&srv, &faults, &a);
    new_tid(tid, hex);
    open_plain(&a, tid, "reuse.bin", 100, NULL);
    open_chunked(&a, tid, "reuse2.bin", 100, ref);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    acct_open(&srv, &faults, &a);
    open_chunked(&a, tid, "reuse.bin", 100, NULL);
    open_chunked(&a, tid, "reuse2.bin", 100, ref);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    bystander_ok();
}

/*
 * R-CHUNK-4, R-CHUNK-30: a 40 MB list must be read whole. The upload is
 * refused up front for its size (disk space), so its list is read, checked
 * and dropped (R-XFER-4), no ChunkNeed comes, and nothing counts against
 * the 64 MiB of lists a user may hold.
 */
static void test_list_bytes_under_cap_r_chunk_4(void **state)
{
    const size_t n = 1100000; /* 39.6 MB of list, 268 GiB of file at 256 KiB a chunk */
    size_t list_len = n * FERRY_CHUNK_ENT_LEN, off, step = 4u << 20;
    uint8_t *list = malloc(list_len), tid[16];
    struct ferry_cmd m;
    struct client a;
    char hex[33], ref[37];
    int32_t type;
    size_t i;
    int rc = 0;

    (void)state;
    assert_non_null(list);
    for (i = 0; i < n; i++)
        put_entry(list, (uint32_t)i, FERRY_CHUNK_AVG);
    acct_open(&srv, &faults, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "big-list.bin", (json_int_t)n * FERRY_CHUNK_AVG, ref);
    /* Refused up front (8: not enough disk, or 2: over --max-file-size), connection kept. */
    recv_type(&a, FERRY_MSG_ERROR, &m);
    assert_true(err_code(&m) == 8 || err_code(&m) == 2);
    ferry_cmd_cleanup(&m);
    for (off = 0; off < list_len; off += step) {
        size_t k = list_len - off < step ? list_len - off : step;
        assert_int_equal(ferry_client_send_data(a.c, tid, off, list + off, k), 0);
        rc = ferry_client_pump(a.c, HARNESS_WAIT_MS, 1);
        if (rc != 0)
            break;
    }
    free(list);
    /* The cap is on the bytes held, not on how a buffer would grow. */
    if (ferry_client_send_cmd(a.c, FERRY_MSG_PING, json_object()) == 0)
        (void)ferry_client_pump(a.c, HARNESS_WAIT_MS, 1);
    rc = client_recv(&a, &m, HARNESS_WAIT_MS);
    type = rc == 1 ? m.type : -1;
    if (type != FERRY_MSG_PONG)
        fprintf(stderr, "list under the cap: got %d (rc %d, code %d: %s)%s\n", type, rc,
                rc == 1 ? err_code(&m) : 0, rc == 1 ? str_member(&m, "message") : "",
                rc == 0 ? ": closed (an Error before a reset may be lost)" : "");
    if (rc == 1)
        ferry_cmd_cleanup(&m);
    if (type == FERRY_MSG_PONG) {
        send_cancel(&a, tid);
        expect_quiet(&a);
    }
    client_close(&a);
    bystander_ok();
    assert_int_equal(type, FERRY_MSG_PONG);
}

/*
 * R-CHUNK-8: a list that names the same chunk twice needs its bytes once;
 * the commit counts both references and the download repeats the chunk.
 */
static void test_duplicate_entries_r_chunk_8(void **state)
{
    json_int_t need[3];
    int counts[3] = {0};
    char hex[33], ref[37], xhash[80], dhash[80];
    struct sample s;
    struct client a;
    uint8_t tid[16], *got = NULL;
    size_t len = 0;

    (void)state;
    sample_fixed(&s, 3, FERRY_CHUNK_MIN, 300);
    /* Chunk 1 becomes a copy of chunk 0, and so does its entry. */
    memcpy(s.data + FERRY_CHUNK_MIN, s.data, FERRY_CHUNK_MIN);
    memcpy(s.list + FERRY_CHUNK_ENT_LEN, s.list, FERRY_CHUNK_ENT_LEN);
    assert_int_equal(ferry_chunk_list_cid(s.list, s.list_len, s.cid), 0);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "twice.bin", (json_int_t)s.size, ref);
    send_list_range(&a, tid, s.list, 0, s.list_len, 36);
    assert_int_equal(expect_need(&a, ref, tid, 0, 3, need, 3), 3);
    send_sample_chunk(&a, tid, &s, 0);
    send_sample_chunk(&a, tid, &s, 2);
    expect_stored(&a, tid, counts, 3, 2);
    send_complete(&a, tid, s.cid);
    expect_committed(&a, tid);
    download_path(&a, "twice.bin", &got, &len, xhash, dhash);
    assert_int_equal(len, s.size);
    assert_memory_equal(got, s.data, s.size);
    assert_string_equal(dhash, s.cid);
    free(got);
    client_close(&a);
    sample_free(&s);
}

/*
 * R-CHUNK-8, R-XFER-5: list, chunks and TransferComplete pipelined without
 * waiting; the connection closes at once, yet the upload commits.
 */
static void test_pipelined_then_close_r_xfer_5(void **state)
{
    char hex[33], ref[37], xhash[80], dhash[80];
    struct sample s;
    struct client a;
    uint8_t tid[16], *got = NULL;
    size_t len = 0;
    uint32_t i;
    int tries;

    (void)state;
    sample_fixed(&s, 4, FERRY_CHUNK_MIN, 4321);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "pipelined.bin", (json_int_t)s.size, ref);
    for (i = 0; i < s.list_len; i += 36)
        queue_data(&a, tid, i, s.list + i, 36);
    for (i = 0; i < s.n; i++) {
        size_t off;
        uint32_t clen;

        sample_chunk(&s, i, &off, &clen);
        assert_int_equal(ferry_client_send_chunk(a.c, tid, i, s.data + off, clen), 0);
    }
    send_complete(&a, tid, s.cid);
    /*
     * A Pong is answered at once (R-PIPE-2), so once it is here the server
     * has read the TransferComplete; close without waiting for anything else.
     */
    {
        struct ferry_cmd m;

        assert_int_equal(client_send(&a, FERRY_MSG_PING, json_object()), 0);
        assert_int_equal(client_expect(&a, FERRY_MSG_PONG, &m), 1);
        ferry_cmd_cleanup(&m);
    }
    client_close(&a);
    /* Visible once its batch commits: poll a listing for a while. */
    acct_open(&srv, &alice, &a);
    for (tries = 0; tries < 250; tries++) {
        struct ferry_cmd m;
        int found;

        assert_int_equal(client_send(&a, FERRY_MSG_DIRINFO,
                                     json_pack("{s:s, s:b}", "path", "pipelined.bin", "stat", 1)),
                         0);
        assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
        found = m.type == FERRY_MSG_DIRPAGE;
        ferry_cmd_cleanup(&m);
        if (found)
            break;
        usleep(20 * 1000);
    }
    download_path(&a, "pipelined.bin", &got, &len, xhash, dhash);
    assert_int_equal(len, s.size);
    assert_memory_equal(got, s.data, s.size);
    assert_string_equal(dhash, s.cid);
    free(got);
    client_close(&a);
    sample_free(&s);
}

/* ---- R-CHUNK-8: TransferComplete ---- */

static void test_complete_before_list_r_chunk_8(void **state)
{
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char ref[37];

    (void)state;
    chunk_case(&a, &s, tid, ref, 2 * FERRY_CHUNK_ENT_LEN + 10);
    send_complete(&a, tid, s.cid);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    sample_free(&s);
    bystander_ok();
}

static void test_complete_wrong_hash_r_chunk_8(void **state)
{
    char wrong[FERRY_CID_LEN + 1], sha[FERRY_CID_LEN + 8];
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char ref[37];

    (void)state;
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    snprintf(wrong, sizeof(wrong), "%s", s.cid);
    wrong[FERRY_CID_LEN - 1] = wrong[FERRY_CID_LEN - 1] == '0' ? '1' : '0';
    send_complete(&a, tid, wrong);
    expect_error(&a, 14, ref, tid, -1);
    assert_true(ping_ok(&a));
    client_close(&a);
    sample_free(&s);
    /* The hex of a list's id under the other scheme is not its id either. */
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    snprintf(sha, sizeof(sha), "sha256:%s", s.cid + 7);
    send_complete(&a, tid, sha);
    expect_error(&a, 14, ref, tid, -1);
    assert_true(ping_ok(&a));
    client_close(&a);
    sample_free(&s);
}

static void test_complete_missing_chunk_r_chunk_8(void **state)
{
    int counts[3] = {0};
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char ref[37];

    (void)state;
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    send_sample_chunk(&a, tid, &s, 0);
    send_sample_chunk(&a, tid, &s, 2);
    expect_stored(&a, tid, counts, 3, 2);
    send_complete(&a, tid, s.cid);
    expect_error(&a, 5, ref, tid, -1);
    assert_true(ping_ok(&a));
    /* Asking again needs only what is missing (R-CHUNK-8, R-CHUNK-12). */
    {
        json_int_t need[3];
        char hex[33];

        new_tid(tid, hex);
        open_chunked(&a, tid, "chunks.bin", (json_int_t)s.size, ref);
        send_list_range(&a, tid, s.list, 0, s.list_len, 36);
        assert_int_equal(expect_need(&a, ref, tid, 0, 3, need, 3), 1);
        assert_int_equal(need[0], 1);
        send_sample_chunk(&a, tid, &s, 1);
        expect_stored(&a, tid, counts, 3, 1);
        send_complete(&a, tid, s.cid);
        expect_committed(&a, tid);
    }
    client_close(&a);
    sample_free(&s);
}

/* ---- R-XFER-4: TransferCancel ---- */

static void test_cancel_mid_list_r_xfer_4(void **state)
{
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char ref[37];

    (void)state;
    /* Mid-list: no reply; the list's next bytes are then for an unknown transfer. */
    chunk_case(&a, &s, tid, ref, FERRY_CHUNK_ENT_LEN + 5);
    send_cancel(&a, tid);
    expect_quiet(&a);
    queue_data(&a, tid, FERRY_CHUNK_ENT_LEN + 5, s.list + FERRY_CHUNK_ENT_LEN + 5, 10);
    flush(&a);
    assert_true(expect_error_close(&a, 5));
    client_close(&a);
    sample_free(&s);
    /* And a TransferComplete after the cancel. */
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    send_cancel(&a, tid);
    send_cancel(&a, tid); /* twice: still no reply (R-XFER-4 5) */
    expect_quiet(&a);
    send_complete(&a, tid, s.cid);
    assert_true(expect_error_close(&a, 5));
    client_close(&a);
    sample_free(&s);
    bystander_ok();
}

/* R-XFER-4, R-DATA-3: the rest of a chunk begun before TransferCancel is for an unknown transfer.
 */
static void test_chunk_after_cancel_r_xfer_4(void **state)
{
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char ref[37];
    int code;

    (void)state;
    chunk_case(&a, &s, tid, ref, 3 * FERRY_CHUNK_ENT_LEN);
    queue_chunk(&a, tid, 0, 0, s.data, 100);
    flush(&a);
    send_cancel(&a, tid);
    expect_quiet(&a);
    queue_chunk(&a, tid, 0, 100, s.data + 100, 100);
    flush(&a);
    /* R-DATA-3, R-XFER-4: a chunk begun here ends with its cancelled transfer. */
    code = next_code(&a, HARNESS_WAIT_MS);
    if (code == 5)
        code = next_code(&a, HARNESS_WAIT_MS) == -1 ? 5 : -3; /* and then the close */
    client_close(&a);
    sample_free(&s);
    bystander_ok();
    assert_int_equal(code, 5);
}

/*
 * R-CHUNK-11, R-CHUNK-6: TransferCancel drops the connection's state for the
 * transfer, its begun chunks included, so they no longer count among the 8
 * a connection may have begun and not finished.
 */
static void test_cancel_frees_chunk_slots_r_chunk_11(void **state)
{
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char hex[33], ref[37];
    int k, code;

    (void)state;
    sample_fixed(&s, 2, FERRY_CHUNK_MIN, 100);
    acct_open(&srv, &faults, &a);
    for (k = 0; k < SRV_CHUNKS_OPEN_MAX_TEST + 1; k++) {
        new_tid(tid, hex);
        open_chunked(&a, tid, "slots.bin", (json_int_t)s.size, ref);
        send_list_range(&a, tid, s.list, 0, s.list_len, 36);
        expect_need(&a, ref, tid, 0, 2, (json_int_t[2]){0}, 2);
        queue_chunk(&a, tid, 0, 0, s.data, 1);
        flush(&a);
        send_cancel(&a, tid);
    }
    /* Cancelling frees the slots (and buffers) of the transfer's begun chunks. */
    if (ferry_client_send_cmd(a.c, FERRY_MSG_PING, json_object()) == 0)
        (void)ferry_client_pump(a.c, HARNESS_WAIT_MS, 1);
    code = next_code(&a, HARNESS_WAIT_MS);
    client_close(&a);
    sample_free(&s);
    bystander_ok();
    assert_int_equal(code, 0); /* the Pong, not an Error */
}

/* ---- R-CHUNK-12, R-CHUNK-11: resuming and the lifetime of chunks ---- */

static void test_resume_r_chunk_12(void **state)
{
    json_int_t need[FERRY_NEED_GROUP];
    int counts[FERRY_NEED_GROUP] = {0};
    struct sample s;
    struct client a;
    uint8_t tid[16];
    char hex[33], ref[37];
    size_t i, n;

    (void)state;
    sample_cdc(&s, 2u << 20);
    assert_true(s.n >= 2);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "resume.bin", (json_int_t)s.size, ref);
    send_list_range(&a, tid, s.list, 0, s.list_len, 36);
    expect_need_all(&a, ref, tid, 0, s.n);
    send_sample_chunk(&a, tid, &s, 0);
    expect_stored(&a, tid, counts, s.n, 1);
    /* The connection dies mid-upload. */
    client_close(&a);
    acct_open(&srv, &alice, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "resume.bin", (json_int_t)s.size, ref);
    send_list_range(&a, tid, s.list, 0, s.list_len, 36);
    n = expect_need_groups(&a, ref, tid, s.n, need, FERRY_NEED_GROUP);
    assert_int_equal(n, s.n - 1);
    for (i = 0; i < n; i++) {
        assert_int_equal(need[i], (json_int_t)i + 1);
        send_sample_chunk(&a, tid, &s, (uint32_t)need[i]);
    }
    expect_stored(&a, tid, counts, s.n, (int)n);
    send_complete(&a, tid, s.cid);
    expect_committed(&a, tid);
    client_close(&a);
    sample_free(&s);
}

/* Asks for a sample on a new tid and returns how many of its chunks are needed; cancels. */
static size_t ask(struct client *cl, const struct sample *s, const char *path)
{
    json_int_t need[FERRY_NEED_GROUP];
    uint8_t tid[16];
    char hex[33], ref[37];
    size_t n;

    new_tid(tid, hex);
    open_chunked(cl, tid, path, (json_int_t)s->size, ref);
    send_list_range(cl, tid, s->list, 0, s->list_len, 36);
    n = expect_need_groups(cl, ref, tid, s->n, need, FERRY_NEED_GROUP);
    send_cancel(cl, tid);
    return n;
}

static int chunk_files(const struct server *sv, const struct sample *s)
{
    uint32_t i;
    int n = 0;

    for (i = 0; i < s->n; i++)
        n += chunk_file_exists(sv, s, i);
    return n;
}

/*
 * R-CHUNK-11 (with --partial-ttl 3): chunks without references stay for the
 * TTL from when they were stored, whether their upload was cancelled (A) or
 * their file removed (B), and the first commit after it deletes them; a
 * chunk stored longer ago goes in the commit that drops its last
 * reference (C).
 */
static void test_partial_ttl_r_chunk_11(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", "--partial-ttl", "3", NULL};
    int counts[3] = {0};
    struct sample sa, sb, sc;
    struct server tsrv;
    struct client a;
    struct ferry_cmd m;
    struct acct u;
    uint8_t tid[16];
    char hex[33], ref[37];
    uint32_t i;

    (void)state;
    server_start(&tsrv, extra);
    acct_signup(&tsrv, &u, "ttl");
    sample_fixed(&sa, 3, FERRY_CHUNK_MIN, 700);
    sample_fixed(&sb, 3, FERRY_CHUNK_MIN, 800);
    sample_fixed(&sc, 3, FERRY_CHUNK_MIN, 900);
    acct_open(&tsrv, &u, &a);
    /* C is stored first, so that it is older than the TTL below. */
    upload_sample(&a, &sc, "c.bin");
    /* A: stored, then cancelled. */
    new_tid(tid, hex);
    open_chunked(&a, tid, "a.bin", (json_int_t)sa.size, ref);
    send_list_range(&a, tid, sa.list, 0, sa.list_len, 36);
    expect_need_all(&a, ref, tid, 0, 3);
    for (i = 0; i < 3; i++)
        send_sample_chunk(&a, tid, &sa, i);
    expect_stored(&a, tid, counts, 3, 3);
    send_cancel(&a, tid);
    /* B: committed, then removed at once. */
    upload_sample(&a, &sb, "b.bin");
    assert_int_equal(client_send(&a, FERRY_MSG_REMOVE, json_pack("{s:s}", "path", "b.bin")), 0);
    recv_type(&a, FERRY_MSG_OK, &m);
    ferry_cmd_cleanup(&m);
    /* Within the TTL both stay: another transfer of them needs nothing. */
    assert_int_equal(ask(&a, &sa, "a.bin"), 0);
    assert_int_equal(ask(&a, &sb, "b.bin"), 0);
    assert_int_equal(chunk_files(&tsrv, &sa), 3);
    assert_int_equal(chunk_files(&tsrv, &sb), 3);
    /* Past the TTL, the commit that drops C's last reference sweeps A, B and C. */
    usleep(3300 * 1000);
    assert_int_equal(client_send(&a, FERRY_MSG_REMOVE, json_pack("{s:s}", "path", "c.bin")), 0);
    recv_type(&a, FERRY_MSG_OK, &m);
    ferry_cmd_cleanup(&m);
    assert_int_equal(chunk_files(&tsrv, &sa), 0);
    assert_int_equal(chunk_files(&tsrv, &sb), 0);
    assert_int_equal(chunk_files(&tsrv, &sc), 0);
    assert_int_equal(ask(&a, &sa, "a.bin"), 3);
    assert_int_equal(ask(&a, &sb, "b.bin"), 3);
    assert_int_equal(ask(&a, &sc, "c.bin"), 3);
    expect_quiet(&a);
    client_close(&a);
    sample_free(&sa);
    sample_free(&sb);
    sample_free(&sc);
    assert_int_equal(server_stop(&tsrv), 0);
    server_cleanup(&tsrv);
}

/* ---- R-CHUNK-9: declared sizes and the quota (server started with --quota 8M) ---- */

static void test_declared_sizes_r_chunk_9(void **state)
{
    struct client a;
    uint8_t tid[16];
    char hex[33], ref[37];

    (void)state;
    /* 2^63 - 1 passes --max-file-size: Error 2 up front, connection kept. */
    acct_open(&qsrv, &quser, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "huge.bin", INT64_MAX, ref);
    expect_error(&a, 2, ref, tid, -1);
    send_cancel(&a, tid);
    assert_true(ping_ok(&a));
    /* A negative size is malformed (R-MSG-5): Error 1 and a close. */
    new_tid(tid, hex);
    open_chunked(&a, tid, "neg.bin", -1, ref);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    acct_open(&qsrv, &quser, &a);
    assert_true(ping_ok(&a));
    client_close(&a);
}

static void test_quota_up_front_r_chunk_9(void **state)
{
    struct client a;
    uint8_t tid[16];
    char hex[33], ref[37];

    (void)state;
    acct_open(&qsrv, &quser, &a);
    new_tid(tid, hex);
    open_chunked(&a, tid, "nine.bin", 9 << 20, ref);
    /* The refusal is the very next message: no list byte was sent. */
    expect_error(&a, 20, ref, tid, -1);
    send_cancel(&a, tid);
    expect_quiet(&a);
    /*
     * R-XFER-4: a refused upload stays open until the client's last word: its
     * list and chunk frames are read and dropped, no ChunkNeed or ChunkStored
     * is sent, and its TransferComplete ends it without a further message.
     */
    {
        uint8_t list[9 * FERRY_CHUNK_ENT_LEN], bytes[100] = {0};
        uint32_t i;

        for (i = 0; i < 9; i++)
            put_entry(list, i, 1u << 20);
        new_tid(tid, hex);
        open_chunked(&a, tid, "nine.bin", 9 << 20, ref);
        expect_error(&a, 20, ref, tid, -1);
        send_list_range(&a, tid, list, 0, sizeof(list), 50);
        queue_chunk(&a, tid, 3, 0, bytes, sizeof(bytes));
        flush(&a);
        expect_quiet(&a);
        send_complete(&a, tid,
                      "chunks:0000000000000000000000000000000000000000000000000000000000000000");
        expect_quiet(&a);
        /* The tid is forgotten: more list bytes are for an unknown transfer. */
        queue_data(&a, tid, sizeof(list), bytes, 1);
        flush(&a);
        assert_true(expect_error_close(&a, 5));
        client_close(&a);
        acct_open(&qsrv, &quser, &a);
    }
    /* The old Upload is held to the same quota. */
    new_tid(tid, hex);
    open_plain(&a, tid, "nine.bin", 9 << 20, ref);
    expect_error(&a, 20, ref, tid, -1);
    send_cancel(&a, tid);
    expect_quiet(&a);
    client_close(&a);
}

static void test_quota_filled_r_chunk_9(void **state)
{
    struct sample five;
    struct client a;
    struct ferry_cmd m;
    uint8_t tid[16], tx[16], ty[16], tw[16], *three;
    char hex[33], ref[37], ry[37], rw[37], cid[80];
    struct ferry_sha256 sha;

    (void)state;
    three = malloc(3u << 20);
    assert_non_null(three);
    ferry_random(three, 3u << 20);
    sample_cdc(&five, 5u << 20);
    acct_open(&qsrv, &quser, &a);
    /* 5 MiB stored through a chunked upload counts toward the quota. */
    upload_sample(&a, &five, "a.bin");
    new_tid(tid, hex);
    open_chunked(&a, tid, "b.bin", 4 << 20, ref);
    expect_error(&a, 20, ref, tid, -1);
    send_cancel(&a, tid);
    new_tid(tid, hex);
    open_plain(&a, tid, "b.bin", 4 << 20, ref);
    expect_error(&a, 20, ref, tid, -1);
    send_cancel(&a, tid);
    expect_quiet(&a);
    /*
     * Three 3 MiB uploads each fit when they arrive (5 + 3 = 8 MiB); only
     * the first gets in: the chunked one's chunks are stored against the
     * usage (R-QUOTA-2), the other plain one's commit checks again
     * (R-QUOTA-3).
     */
    new_tid(tx, hex);
    open_plain(&a, tx, "x.bin", 3 << 20, NULL);
    new_tid(ty, hex);
    open_chunked(&a, ty, "y.bin", 3 << 20, ry);
    new_tid(tw, hex);
    open_plain(&a, tw, "w.bin", 3 << 20, rw);
    expect_quiet(&a);
    assert_int_equal(ferry_client_send_data(a.c, tx, 0, three, 3u << 20), 0);
    flush(&a);
    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, three, 3u << 20);
    ferry_sha256_final_cid(&sha, cid);
    send_complete(&a, tx, cid);
    expect_committed(&a, tx);
    {
        struct sample y;
        json_int_t need[64];
        size_t i, n;

        sample_cdc(&y, 3u << 20);
        send_list_range(&a, ty, y.list, 0, y.list_len, 36);
        n = expect_need_groups(&a, ry, ty, y.n, need, 64);
        for (i = 0; i < n; i++)
            send_sample_chunk(&a, ty, &y, (uint32_t)need[i]);
        /* R-QUOTA-2: each new chunk is refused in turn, none is kept. */
        expect_chunk_errors(&a, 20, ry, ty, need, n);
        for (i = 0; i < y.n; i++)
            assert_false(chunk_file_exists(&qsrv, &y, (uint32_t)i));
        /* So the file cannot complete: a chunk is missing (R-CHUNK-8). */
        send_complete(&a, ty, y.cid);
        expect_error(&a, 5, ry, ty, -1);
        sample_free(&y);
    }
    assert_int_equal(ferry_client_send_data(a.c, tw, 0, three, 3u << 20), 0);
    flush(&a);
    send_complete(&a, tw, cid);
    expect_error(&a, 20, rw, tw, -1);
    assert_true(ping_ok(&a));
    /*
     * Full: even a smaller replacement of a.bin is refused when it arrives,
     * because R-CHUNK-9 adds the declared size to what is stored.
     */
    new_tid(tid, hex);
    open_plain(&a, tid, "a.bin", 1 << 20, ref);
    expect_error(&a, 20, ref, tid, -1);
    send_cancel(&a, tid);
    /* Removing a file frees its bytes. */
    assert_int_equal(client_send(&a, FERRY_MSG_REMOVE, json_pack("{s:s}", "path", "x.bin")), 0);
    recv_type(&a, FERRY_MSG_OK, &m);
    ferry_cmd_cleanup(&m);
    upload_plain(&a, three, 3u << 20, "z.bin");
    client_close(&a);
    sample_free(&five);
    free(three);
}

/* ---- Resumable downloads (R-CHUNK-14) ---- */

/*
 * Download of path with offset and hash; returns the first data offset seen
 * (size when no data came) and checks every byte against want.
 */
static uint64_t download_from(struct client *cl, const char *path, json_int_t offset,
                              const char *hash, const uint8_t *want, size_t size)
{
    uint64_t deadline = ferry_now_ms() + 30000, first = UINT64_MAX, next = 0;
    uint8_t tid[16] = {0};
    int have_transfer = 0;

    assert_int_equal(
        client_send(cl, FERRY_MSG_DOWNLOAD,
                    json_pack("{s:s, s:I, s:s}", "path", path, "offset", offset, "hash", hash)),
        0);
    for (;;) {
        struct ferry_frame f;

        next_frame_by(cl, deadline, &f);
        if (f.type == FERRY_FRAME_DATA) {
            struct ferry_data d;

            assert_true(have_transfer);
            assert_int_equal(ferry_data_decode(f.payload, f.payload_len, &d), 0);
            assert_memory_equal(d.tid, tid, 16);
            if (first == UINT64_MAX)
                first = next = d.offset;
            assert_int_equal(d.offset, next);
            assert_true(d.len <= size - next);
            assert_memory_equal(d.bytes, want + next, d.len);
            next += d.len;
        } else if (f.type == FERRY_FRAME_COMMAND) {
            struct ferry_cmd m;

            assert_int_equal(ferry_cmd_decode(f.payload, f.payload_len, &m), 0);
            if (m.type == FERRY_MSG_TRANSFER) {
                have_transfer = 1;
                assert_int_equal(ferry_hex_decode(str_member(&m, "tid"), tid, 16), 0);
                /* Transfer always describes the whole file. */
                assert_int_equal(json_integer_value(json_object_get(m.body, "size")), size);
                ferry_cmd_cleanup(&m);
                continue;
            }
            assert_int_equal(m.type, FERRY_MSG_TRANSFER_COMPLETE);
            ferry_cmd_cleanup(&m);
            break;
        }
    }
    /* No data at all is right only when everything was already there. */
    if (first == UINT64_MAX) {
        assert_int_equal(offset, size);
        first = next = size;
    }
    assert_int_equal(next, size);
    return first;
}

static void test_download_offset_r_chunk_14(void **state)
{
    static const char other[] =
        "chunks:0000000000000000000000000000000000000000000000000000000000000000";
    struct client a;

    (void)state;
    assert_true(happy.size > 300000);
    acct_open(&srv, &alice, &a);
    /* The rest of the same content, from inside a chunk and from a boundary. */
    assert_int_equal(download_from(&a, "dir/happy.bin", 300000, happy.cid, happy.data, happy.size),
                     300000);
    assert_int_equal(download_from(&a, "dir/happy.bin", 1, happy.cid, happy.data, happy.size), 1);
    assert_int_equal(download_from(&a, "dir/happy.bin", (json_int_t)happy.size - 1, happy.cid,
                                   happy.data, happy.size),
                     happy.size - 1);
    /* Everything already there: Transfer and TransferComplete, no data. */
    assert_int_equal(download_from(&a, "dir/happy.bin", (json_int_t)happy.size, happy.cid,
                                   happy.data, happy.size),
                     happy.size);
    /* Other content, or an offset past the end: the whole file from 0. */
    assert_int_equal(download_from(&a, "dir/happy.bin", 300000, other, happy.data, happy.size), 0);
    assert_int_equal(download_from(&a, "dir/happy.bin", (json_int_t)happy.size + 1, happy.cid,
                                   happy.data, happy.size),
                     0);
    assert_true(ping_ok(&a));
    client_close(&a);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accounts_setup),
        cmocka_unit_test(test_upload_out_of_order_r_chunk_6),
        cmocka_unit_test(test_complete_right_after_chunks_r_chunk_8),
        cmocka_unit_test(test_dedup_ask_before_send_r_chunk_5),
        cmocka_unit_test(test_need_groups_r_chunk_5),
        cmocka_unit_test(test_need_groups_by_bytes_r_chunk_5),
        cmocka_unit_test(test_per_user_dedup_r_chunk_5),
        cmocka_unit_test(test_empty_file_r_chunk_4),
        cmocka_unit_test(test_chunk_list_len_zero_r_chunk_2),
        cmocka_unit_test(test_chunk_list_len_over_max_r_chunk_2),
        cmocka_unit_test(test_chunk_list_len_max_ok_r_chunk_2),
        cmocka_unit_test(test_chunk_list_short_inner_r_chunk_2),
        cmocka_unit_test(test_chunk_list_min_inner_ok_r_chunk_2),
        cmocka_unit_test(test_chunk_list_sum_past_size_r_chunk_2),
        cmocka_unit_test(test_chunk_list_data_after_end_r_chunk_4),
        cmocka_unit_test(test_chunk_list_offset_order_r_chunk_4),
        cmocka_unit_test(test_chunk_index_unannounced_r_chunk_6),
        cmocka_unit_test(test_chunk_first_offset_r_chunk_6),
        cmocka_unit_test(test_chunk_offset_gap_r_chunk_6),
        cmocka_unit_test(test_chunk_past_length_r_chunk_6),
        cmocka_unit_test(test_chunk_ninth_open_r_chunk_6),
        cmocka_unit_test(test_chunk_unknown_tid_r_chunk_6),
        cmocka_unit_test(test_chunk_before_login_r_chunk_6),
        cmocka_unit_test(test_chunk_hash_mismatch_r_chunk_7),
        cmocka_unit_test(test_foreign_tid_r_chunk_6),
        cmocka_unit_test(test_chunks_on_two_connections_r_chunk_13),
        cmocka_unit_test(test_opener_gone_r_chunk_13),
        cmocka_unit_test(test_chunked_tid_reused_r_xfer_1),
        cmocka_unit_test(test_list_bytes_under_cap_r_chunk_4),
        cmocka_unit_test(test_duplicate_entries_r_chunk_8),
        cmocka_unit_test(test_pipelined_then_close_r_xfer_5),
        cmocka_unit_test(test_complete_before_list_r_chunk_8),
        cmocka_unit_test(test_complete_wrong_hash_r_chunk_8),
        cmocka_unit_test(test_complete_missing_chunk_r_chunk_8),
        cmocka_unit_test(test_cancel_mid_list_r_xfer_4),
        cmocka_unit_test(test_chunk_after_cancel_r_xfer_4),
        cmocka_unit_test(test_cancel_frees_chunk_slots_r_chunk_11),
        cmocka_unit_test(test_resume_r_chunk_12),
        cmocka_unit_test(test_download_offset_r_chunk_14),
        cmocka_unit_test(test_partial_ttl_r_chunk_11),
        cmocka_unit_test(test_declared_sizes_r_chunk_9),
        cmocka_unit_test(test_quota_up_front_r_chunk_9),
        cmocka_unit_test(test_quota_filled_r_chunk_9),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
