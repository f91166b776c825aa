/*
 * The server's loop thread never waits for the disk (docs/architecture.md,
 * "Threads"; R-PIPE-3): when a large upload's writer has all its buffers in
 * flight, or has not finished writing when the TransferComplete arrives,
 * the server stops reading that one connection and goes on serving every
 * other. The disk is stalled on purpose: with FERRY_TEST_WRITER_GATE set,
 * the writer holds each buffer while the gate file exists, and marks
 * "<gate>.waited" when its owner found it full or busy. A loop thread that
 * waited there would leave the second client's Ping unanswered until the
 * gate opened, and the test would fail on its timeout.
 */
#include <sys/stat.h>

#include "chunk_harness.h"

static const char *const extra[] = {"--login-rate", "1000", NULL};

struct gate {
    char dir[64];
    char path[128];
    char waited[160];
};

static void gate_close(struct gate *g)
{
    int fd = open(g->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    close(fd);
    unlink(g->waited);
}

static void gate_open(struct gate *g)
{
    assert_int_equal(unlink(g->path), 0);
}

static int gate_waited(const struct gate *g)
{
    struct stat st;

    return stat(g->waited, &st) == 0;
}

/* A server whose writers stall at a closed gate, alice signed up, two of her connections. */
static void start_gated(struct server *s, struct gate *g, struct acct *a, struct client *cl,
                        struct client *cl2)
{
    snprintf(g->dir, sizeof(g->dir), "/tmp/ferry-gate-XXXXXX");
    assert_non_null(mkdtemp(g->dir));
    snprintf(g->path, sizeof(g->path), "%s/gate", g->dir);
    snprintf(g->waited, sizeof(g->waited), "%s.waited", g->path);
    gate_close(g);
    assert_int_equal(setenv("FERRY_TEST_WRITER_GATE", g->path, 1), 0);
    server_start(s, extra);
    unsetenv("FERRY_TEST_WRITER_GATE");
    acct_signup(s, a, "alice");
    acct_open(s, a, cl);
    acct_open(s, a, cl2);
}

static void gate_cleanup(struct gate *g)
{
    unlink(g->path);
    unlink(g->waited);
    rmdir(g->dir);
}

static void cid_of(const uint8_t *data, size_t n, char cid[80])
{
    struct ferry_sha256 sha;

    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, data, n);
    ferry_sha256_final_cid(&sha, cid);
}

/* path reads back as exactly n bytes of data. */
static void expect_content(struct client *cl, const char *path, const uint8_t *data, size_t n)
{
    char xhash[80], dhash[80];
    uint8_t *got = NULL;
    size_t len = 0;

    download_path(cl, path, &got, &len, xhash, dhash);
    assert_int_equal(len, n);
    assert_memory_equal(got, data, n);
    free(got);
}

/*
 * All 8 writer buffers stuck behind the gate: the ninth megabyte of the
 * upload is left unread (its connection stalls), while the other
 * connection is served. Once the disk moves again, the upload completes
 * byte for byte.
 */
static void test_full_writer_holds_one_connection(void **state)
{
    static const size_t n = 12u << 20, piece = 256u << 10;
    struct server s;
    struct gate g;
    struct acct a;
    struct client cl, cl2;
    uint8_t *data, tid[16];
    char hex[33], cid[80];
    size_t sent = 0;
    int rounds;

    (void)state;
    start_gated(&s, &g, &a, &cl, &cl2);
    assert_non_null(data = malloc(n));
    ferry_random(data, n);
    cid_of(data, n, cid);
    new_tid(tid, hex);
    open_plain(&cl, tid, "big.bin", (json_int_t)n, NULL);
    /* Feed the upload until the server finds its writer full (bounded: 100 s at most). */
    for (rounds = 0; !gate_waited(&g) && rounds < 2000; rounds++) {
        if (sent < n && ferry_client_pending(cl.c) < piece) {
            assert_int_equal(ferry_client_send_data(cl.c, tid, sent, data + sent, piece), 0);
            sent += piece;
        }
        int rc = ferry_client_pump(cl.c, 50, 0);
        assert_true(rc == 0 || rc == FERRY_ETIMEDOUT);
    }
    assert_true(gate_waited(&g));
    /* The loop is free: another connection of the same user is answered at once. */
    assert_true(ping_ok(&cl2));
    gate_open(&g);
    while (sent < n) {
        assert_int_equal(ferry_client_send_data(cl.c, tid, sent, data + sent, piece), 0);
        sent += piece;
        flush(&cl);
    }
    send_complete(&cl, tid, cid);
    expect_committed(&cl, tid);
    expect_content(&cl2, "big.bin", data, n);
    client_close(&cl);
    client_close(&cl2);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
    gate_cleanup(&g);
    free(data);
}

/*
 * The TransferComplete of a large upload whose bytes are still behind the
 * gate waits unread; the other connection is served meanwhile; the commit
 * follows once the writer is done.
 */
static void test_complete_waits_for_writer(void **state)
{
    static const size_t n = 2u << 20;
    struct server s;
    struct gate g;
    struct acct a;
    struct client cl, cl2;
    uint8_t *data, tid[16];
    char hex[33], cid[80];
    int rounds;

    (void)state;
    start_gated(&s, &g, &a, &cl, &cl2);
    assert_non_null(data = malloc(n));
    ferry_random(data, n);
    cid_of(data, n, cid);
    new_tid(tid, hex);
    open_plain(&cl, tid, "two.bin", (json_int_t)n, NULL);
    assert_int_equal(ferry_client_send_data(cl.c, tid, 0, data, n), 0);
    send_complete(&cl, tid, cid);
    flush(&cl);
    for (rounds = 0; !gate_waited(&g) && rounds < 2000; rounds++) {
        int rc = ferry_client_pump(cl.c, 50, 0);
        assert_true(rc == 0 || rc == FERRY_ETIMEDOUT);
    }
    assert_true(gate_waited(&g));
    assert_true(ping_ok(&cl2));
    gate_open(&g);
    expect_committed(&cl, tid);
    expect_content(&cl2, "two.bin", data, n);
    client_close(&cl);
    client_close(&cl2);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
    gate_cleanup(&g);
    free(data);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_full_writer_holds_one_connection, harness_teardown),
        cmocka_unit_test_teardown(test_complete_waits_for_writer, harness_teardown),
    };

    if (argc < 2) {
        fprintf(stderr, "usage: %s FERRY_BINARY\n", argv[0]);
        return 2;
    }
    ferry_bin = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
