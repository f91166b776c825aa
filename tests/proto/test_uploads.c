/*
 * Black-box tests of plain uploads open side by side on one connection
 * (docs/protocol.md R-XFER-1, R-XFER-2) against a real ferry serve. The first
 * large upload of a connection is hashed and written by the connection's
 * writer thread; the others, while it is busy, a megabyte at a time by tasks
 * on the thread pool, so the loop never writes to the disk itself. Both paths
 * must store every byte in order, check the hash, and refuse a wrong one.
 */
#include "chunk_harness.h"

#define UPLOADS   4
#define FILE_LEN  ((3u << 20) + 12345) /* several pool flushes, and a partial last one */
#define PIECE_LEN (64u << 10)

static struct server srv;
static struct acct alice;

static int group_setup(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};

    (void)state;
    server_start(&srv, extra);
    acct_signup(&srv, &alice, "alice");
    return 0;
}

static int group_teardown(void **state)
{
    int rc;

    (void)state;
    rc = server_stop(&srv);
    server_cleanup(&srv);
    return rc == 0 ? 0 : -1;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t k = 0; k < n; k++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[k] = (uint8_t)x;
    }
}

static void cid_of(const uint8_t *p, size_t n, char cid[80])
{
    struct ferry_sha256 sha;

    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, p, n);
    ferry_sha256_final_cid(&sha, cid);
}

/* Committed for each of tids[0..n), in as many messages as the group commits took. */
static void expect_committed_all(struct client *cl, uint8_t (*tids)[16], int n)
{
    int seen[64] = {0}, left = n, i;
    struct ferry_cmd m;
    json_t *v;
    size_t k;
    char hex[33];

    while (left > 0) {
        recv_type(cl, FERRY_MSG_COMMITTED, &m);
        json_array_foreach(json_object_get(m.body, "tids"), k, v)
        {
            for (i = 0; i < n; i++) {
                ferry_hex_encode(tids[i], 16, hex);
                if (json_is_string(v) && strcmp(json_string_value(v), hex) == 0) {
                    assert_int_equal(seen[i], 0); /* once each */
                    seen[i] = 1;
                    left--;
                }
            }
        }
        ferry_cmd_cleanup(&m);
    }
}

/*
 * R-XFER-1, R-XFER-2: four large uploads open at once on one connection, their
 * data frames interleaved piece by piece; each is committed and reads back
 * byte for byte.
 */
static void test_interleaved_r_xfer_2(void **state)
{
    struct client cl;
    uint8_t *data[UPLOADS], tid[UPLOADS][16];
    char hex[33], cid[80], path[32];
    size_t off;
    int i;

    (void)state;
    acct_open(&srv, &alice, &cl);
    for (i = 0; i < UPLOADS; i++) {
        assert_non_null(data[i] = malloc(FILE_LEN));
        fill(data[i], FILE_LEN, (uint32_t)i + 1);
        new_tid(tid[i], hex);
        snprintf(path, sizeof(path), "side-%d.bin", i);
        open_plain(&cl, tid[i], path, FILE_LEN, NULL);
    }
    for (off = 0; off < FILE_LEN; off += PIECE_LEN) {
        size_t k = FILE_LEN - off < PIECE_LEN ? FILE_LEN - off : PIECE_LEN;

        for (i = 0; i < UPLOADS; i++)
            assert_int_equal(ferry_client_send_data(cl.c, tid[i], off, data[i] + off, k), 0);
        if ((off & ((1u << 20) - 1)) == 0)
            flush(&cl);
    }
    for (i = 0; i < UPLOADS; i++) {
        cid_of(data[i], FILE_LEN, cid);
        send_complete(&cl, tid[i], cid);
    }
    flush(&cl);
    expect_committed_all(&cl, tid, UPLOADS);
    for (i = 0; i < UPLOADS; i++) {
        snprintf(path, sizeof(path), "side-%d.bin", i);
        expect_content(&cl, path, data[i], FILE_LEN);
        free(data[i]);
    }
    client_close(&cl);
}

/*
 * R-XFER-2: beside an upload that holds the writer, one whose hash does not
 * match is refused with Error 14 and leaves nothing; the connection and the
 * other upload go on.
 */
static void test_wrong_hash_beside_r_xfer_2(void **state)
{
    struct client cl;
    uint8_t *a, *b, ta[16], tb[16];
    char hex[33], cid[80], ref_b[37];
    size_t off;

    (void)state;
    acct_open(&srv, &alice, &cl);
    assert_non_null(a = malloc(FILE_LEN));
    assert_non_null(b = malloc(FILE_LEN));
    fill(a, FILE_LEN, 101);
    fill(b, FILE_LEN, 202);
    new_tid(ta, hex);
    new_tid(tb, hex);
    open_plain(&cl, ta, "holder.bin", FILE_LEN, NULL);
    open_plain(&cl, tb, "wrong.bin", FILE_LEN, ref_b);
    for (off = 0; off < FILE_LEN; off += PIECE_LEN) {
        size_t k = FILE_LEN - off < PIECE_LEN ? FILE_LEN - off : PIECE_LEN;

        assert_int_equal(ferry_client_send_data(cl.c, ta, off, a + off, k), 0);
        assert_int_equal(ferry_client_send_data(cl.c, tb, off, b + off, k), 0);
        if ((off & ((1u << 20) - 1)) == 0)
            flush(&cl);
    }
    cid_of(a, FILE_LEN, cid); /* the holder's hash for the other: a mismatch */
    send_complete(&cl, tb, cid);
    send_complete(&cl, ta, cid);
    flush(&cl);
    expect_error(&cl, 14, ref_b, tb, -1);
    expect_committed(&cl, ta);
    expect_content(&cl, "holder.bin", a, FILE_LEN);
    /* Nothing of the refused one became visible: a Download finds no file (code 5). */
    assert_int_equal(client_send(&cl, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", "wrong.bin")),
                     0);
    expect_error(&cl, 5, cl.last_ref, NULL, -1);
    free(a);
    free(b);
    client_close(&cl);
}

/*
 * R-XFER-1, R-XFER-4: beside an upload that holds the writer, 200 uploads
 * are opened, sent a megabyte and more (so a flush is on its way to the
 * disk) and cancelled at once. Their flushes finish after they are gone;
 * meanwhile they count among the 64 open uploads, so no Upload is refused
 * for them, and afterwards every place is free again: 63 uploads open
 * beside the holder and all commit.
 */
static void test_cancel_with_flush_r_xfer_4(void **state)
{
    struct client cl;
    uint8_t *a, *b, ta[16], tb[16], (*many)[16];
    char hex[33], cid[80], path[32];
    size_t off;
    int i;

    (void)state;
    acct_open(&srv, &alice, &cl);
    assert_non_null(a = malloc(FILE_LEN));
    assert_non_null(b = malloc((1u << 20) + PIECE_LEN));
    assert_non_null(many = calloc(64, sizeof(*many)));
    fill(a, FILE_LEN, 303);
    fill(b, (1u << 20) + PIECE_LEN, 404);
    new_tid(ta, hex);
    open_plain(&cl, ta, "holder2.bin", FILE_LEN, NULL);
    assert_int_equal(ferry_client_send_data(cl.c, ta, 0, a, PIECE_LEN), 0);
    for (i = 0; i < 200; i++) {
        new_tid(tb, hex);
        open_plain(&cl, tb, "gone.bin", FILE_LEN, NULL);
        for (off = 0; off < (1u << 20) + PIECE_LEN; off += PIECE_LEN)
            assert_int_equal(ferry_client_send_data(cl.c, tb, off, b + off, PIECE_LEN), 0);
        assert_int_equal(
            client_send(&cl, FERRY_MSG_TRANSFER_CANCEL, json_pack("{s:s}", "tid", hex)), 0);
        if (i % 16 == 0)
            flush(&cl);
    }
    for (off = PIECE_LEN; off < FILE_LEN; off += PIECE_LEN) {
        size_t k = FILE_LEN - off < PIECE_LEN ? FILE_LEN - off : PIECE_LEN;

        assert_int_equal(ferry_client_send_data(cl.c, ta, off, a + off, k), 0);
    }
    cid_of(a, FILE_LEN, cid);
    send_complete(&cl, ta, cid);
    flush(&cl);
    expect_committed(&cl, ta);
    /* Every place is free again: 63 more beside a new holder, none refused. */
    new_tid(many[63], hex);
    open_plain(&cl, many[63], "holder3.bin", FILE_LEN, NULL);
    for (i = 0; i < 63; i++) {
        new_tid(many[i], hex);
        snprintf(path, sizeof(path), "tiny-%d.txt", i);
        open_plain(&cl, many[i], path, 1, NULL);
        assert_int_equal(ferry_client_send_data(cl.c, many[i], 0, (const uint8_t *)"x", 1), 0);
        cid_of((const uint8_t *)"x", 1, cid);
        send_complete(&cl, many[i], cid);
    }
    for (off = 0; off < FILE_LEN; off += PIECE_LEN) {
        size_t k = FILE_LEN - off < PIECE_LEN ? FILE_LEN - off : PIECE_LEN;

        assert_int_equal(ferry_client_send_data(cl.c, many[63], off, a + off, k), 0);
    }
    cid_of(a, FILE_LEN, cid);
    send_complete(&cl, many[63], cid);
    flush(&cl);
    expect_committed_all(&cl, many, 64);
    expect_content(&cl, "holder3.bin", a, FILE_LEN);
    expect_content(&cl, "tiny-62.txt", (const uint8_t *)"x", 1);
    free(a);
    free(b);
    free(many);
    client_close(&cl);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interleaved_r_xfer_2),
        cmocka_unit_test(test_wrong_hash_beside_r_xfer_2),
        cmocka_unit_test(test_cancel_with_flush_r_xfer_4),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
