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

/* One gated server, two of alice's connections, and an upload of n random bytes begun on cl. */
struct stalled {
    struct server s;
    struct gate g;
    struct acct a;
    struct client cl, cl2;
    uint8_t *data, tid[16];
    size_t n;
    char hex[33], cid[80];
};

static void stalled_begin(struct stalled *t, size_t n, const char *path)
{
    start_gated(&t->s, &t->g, &t->a, &t->cl, &t->cl2);
    t->n = n;
    assert_non_null(t->data = malloc(n));
    ferry_random(t->data, n);
    cid_of(t->data, n, t->cid);
    new_tid(t->tid, t->hex);
    open_plain(&t->cl, t->tid, path, (json_int_t)n, NULL);
}

/*
 * Pumps cl until the server found its writer full or busy (bounded: 100 s
 * at most), sending the upload's next pieces as room allows while *sent <
 * the size (sent NULL: all was queued already); then the other connection
 * must be answered while the gate is still closed, and the gate opens.
 */
static void stalled_wait(struct stalled *t, size_t *sent, size_t piece)
{
    int rounds, rc;

    for (rounds = 0; !gate_waited(&t->g) && rounds < 2000; rounds++) {
        if (sent != NULL && *sent < t->n && ferry_client_pending(t->cl.c) < piece) {
            assert_int_equal(ferry_client_send_data(t->cl.c, t->tid, *sent, t->data + *sent, piece),
                             0);
            *sent += piece;
        }
        rc = ferry_client_pump(t->cl.c, 50, 0);
        assert_true(rc == 0 || rc == FERRY_ETIMEDOUT);
    }
    assert_true(gate_waited(&t->g));
    /* The loop is free: another connection of the same user is answered at once. */
    assert_true(ping_ok(&t->cl2));
    gate_open(&t->g);
}

/* The upload committed and reads back byte for byte; everything stops. */
static void stalled_end(struct stalled *t, const char *path)
{
    expect_committed(&t->cl, t->tid);
    expect_content(&t->cl2, path, t->data, t->n);
    client_close(&t->cl);
    client_close(&t->cl2);
    assert_int_equal(server_stop(&t->s), 0);
    server_cleanup(&t->s);
    gate_cleanup(&t->g);
    free(t->data);
}

/*
 * All 8 writer buffers stuck behind the gate: the ninth megabyte of the
 * upload is left unread (its connection stalls), while the other
 * connection is served. Once the disk moves again, the upload completes
 * byte for byte.
 */
static void test_full_writer_holds_one_connection(void **state)
{
    static const size_t piece = 256u << 10;
    struct stalled t;
    size_t sent = 0;

    (void)state;
    stalled_begin(&t, 12u << 20, "big.bin");
    stalled_wait(&t, &sent, piece);
    while (sent < t.n) {
        assert_int_equal(ferry_client_send_data(t.cl.c, t.tid, sent, t.data + sent, piece), 0);
        sent += piece;
        flush(&t.cl);
    }
    send_complete(&t.cl, t.tid, t.cid);
    stalled_end(&t, "big.bin");
}

/*
 * The TransferComplete of a large upload whose bytes are still behind the
 * gate waits unread; the other connection is served meanwhile; the commit
 * follows once the writer is done.
 */
static void test_complete_waits_for_writer(void **state)
{
    struct stalled t;

    (void)state;
    stalled_begin(&t, 2u << 20, "two.bin");
    assert_int_equal(ferry_client_send_data(t.cl.c, t.tid, 0, t.data, t.n), 0);
    send_complete(&t.cl, t.tid, t.cid);
    flush(&t.cl);
    stalled_wait(&t, NULL, 0);
    stalled_end(&t, "two.bin");
}

/*
 * An upload cancelled while its bytes are still behind the gate: the
 * writer is ended on the pool, not on the loop thread, so the other
 * connection is answered meanwhile; once the disk moves the upload is gone
 * (nothing committed), and the next large upload on the same connection
 * takes the writer again and commits byte for byte.
 */
static void test_cancel_ends_writer_off_loop(void **state)
{
    struct stalled t;
    struct ferry_cmd m;
    uint8_t tid2[16];
    char hex2[33];

    (void)state;
    stalled_begin(&t, 2u << 20, "gone.bin");
    assert_int_equal(ferry_client_send_data(t.cl.c, t.tid, 0, t.data, t.n), 0);
    send_cancel(&t.cl, t.tid);
    flush(&t.cl);
    stalled_wait(&t, NULL, 0);
    expect_quiet(&t.cl);
    assert_int_equal(
        client_send(&t.cl2, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", "/gone.bin")), 0);
    recv_type(&t.cl2, FERRY_MSG_ERROR, &m);
    ferry_cmd_cleanup(&m);
    new_tid(tid2, hex2);
    memcpy(t.tid, tid2, sizeof(tid2));
    open_plain(&t.cl, t.tid, "after.bin", (json_int_t)t.n, NULL);
    assert_int_equal(ferry_client_send_data(t.cl.c, t.tid, 0, t.data, t.n), 0);
    send_complete(&t.cl, t.tid, t.cid);
    stalled_end(&t, "after.bin");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_full_writer_holds_one_connection, harness_teardown),
        cmocka_unit_test_teardown(test_complete_waits_for_writer, harness_teardown),
        cmocka_unit_test_teardown(test_cancel_ends_writer_off_loop, harness_teardown),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
