/*
 * Black-box tests of the server's download reads, which run on its thread
 * pool (docs/architecture.md, "Threads"): more connections downloading at
 * once than the server reads for each get every byte in order, in turn,
 * while another connection is answered; a download cancelled, or a
 * connection closed, while its bytes are being read leaves the server and
 * the connection whole (R-XFER-4, R-XFER-3).
 */
#include "chunk_harness.h"

/* More than the server reads for at once (SRV_DL_READS_MAX in server.h is 2). */
#define DL_CONNS 5
#define DL_SIZE  ((size_t)5 << 20)

static const char *const extra[] = {"--login-rate", "1000", NULL};

static uint8_t *random_bytes(size_t n)
{
    uint8_t *p = malloc(n);

    assert_non_null(p);
    ferry_random(p, n);
    return p;
}

/*
 * Reads the download the Download just sent on cl asked for: its Transfer,
 * then data frames in order that must be data's n bytes, then its
 * TransferComplete.
 */
static void read_download(struct client *cl, const uint8_t *data, size_t n)
{
    char xhash[80], dhash[80];
    uint8_t *got = NULL;
    size_t len = 0;

    assert_int_equal(read_download_frames(cl, &got, &len, xhash, dhash), 0);
    assert_int_equal(len, n);
    assert_memory_equal(got, data, n);
    free(got);
}

static void send_download(struct client *cl, const char *path)
{
    assert_int_equal(client_send(cl, FERRY_MSG_DOWNLOAD, json_pack("{s:s}", "path", path)), 0);
    assert_int_equal(ferry_client_pump(cl->c, 0, 1), 0);
}

/*
 * Five connections ask for a large file each at once (one of them chunked,
 * read chunk by chunk from its pack), more than the server reads for at
 * once: each gets its bytes in order, the waiting ones in turn, and a
 * connection that only pings is answered meanwhile.
 */
static void test_reads_in_turn(void **state)
{
    struct client cl[DL_CONNS], other;
    struct server s;
    struct acct a;
    struct sample sm;
    uint8_t *data;
    int i;

    (void)state;
    server_start(&s, extra);
    acct_signup(&s, &a, "alice");
    acct_open(&s, &a, &other);
    data = random_bytes(DL_SIZE);
    upload_plain(&other, data, DL_SIZE, "big.bin");
    sample_cdc(&sm, 3 << 20);
    upload_sample(&other, &sm, "chunked.bin");
    for (i = 0; i < DL_CONNS; i++)
        acct_open(&s, &a, &cl[i]);
    for (i = 0; i < DL_CONNS; i++)
        send_download(&cl[i], i == 2 ? "chunked.bin" : "big.bin");
    still_open(&other);
    /* Each connection's output stops at the high mark until it is read, then goes on. */
    for (i = DL_CONNS - 1; i >= 0; i--) {
        if (i == 2)
            read_download(&cl[i], sm.data, sm.size);
        else
            read_download(&cl[i], data, DL_SIZE);
        still_open(&cl[i]);
    }
    /* A second round on every connection: the waiting list empties and fills again. */
    for (i = 0; i < DL_CONNS; i++)
        send_download(&cl[i], "big.bin");
    for (i = 0; i < DL_CONNS; i++)
        read_download(&cl[i], data, DL_SIZE);
    for (i = 0; i < DL_CONNS; i++)
        client_close(&cl[i]);
    client_close(&other);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
    sample_free(&sm);
    free(data);
}

/*
 * R-XFER-4: a download cancelled as soon as its Transfer arrives, with its
 * first pieces being read or read and not yet sent, ends there: no Error,
 * and the connection's next download is whole. A connection closed in the
 * middle of downloads leaves the server serving others (and, under the
 * sanitizers, nothing leaked or used after it was freed).
 */
static void test_cancel_and_close_during_reads(void **state)
{
    struct client cl, gone;
    struct server s;
    struct acct a;
    struct ferry_cmd m;
    uint8_t *data, tid[16];
    int i;

    (void)state;
    server_start(&s, extra);
    acct_signup(&s, &a, "alice");
    acct_open(&s, &a, &cl);
    data = random_bytes(DL_SIZE);
    upload_plain(&cl, data, DL_SIZE, "big.bin");
    for (i = 0; i < 3; i++) {
        send_download(&cl, "big.bin");
        recv_type(&cl, FERRY_MSG_TRANSFER, &m);
        assert_int_equal(ferry_hex_decode(str_member(&m, "tid"), tid, 16), 0);
        ferry_cmd_cleanup(&m);
        send_cancel(&cl, tid);
        /*
         * Data frames already queued may still come, even its
         * TransferComplete if it was all sent first; then the Pong, and
         * no Error.
         */
        assert_int_equal(client_send(&cl, FERRY_MSG_PING, json_object()), 0);
        for (;;) {
            assert_int_equal(client_recv(&cl, &m, HARNESS_WAIT_MS), 1);
            if (m.type == FERRY_MSG_PONG)
                break;
            assert_int_equal(m.type, FERRY_MSG_TRANSFER_COMPLETE);
            ferry_cmd_cleanup(&m);
        }
        ferry_cmd_cleanup(&m);
    }
    send_download(&cl, "big.bin");
    read_download(&cl, data, DL_SIZE);
    for (i = 0; i < 3; i++) {
        acct_open(&s, &a, &gone);
        send_download(&gone, "big.bin");
        send_download(&gone, "big.bin");
        client_close(&gone);
    }
    send_download(&cl, "big.bin");
    read_download(&cl, data, DL_SIZE);
    client_close(&cl);
    assert_int_equal(server_stop(&s), 0);
    server_cleanup(&s);
    free(data);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reads_in_turn, harness_teardown),
        cmocka_unit_test_teardown(test_cancel_and_close_during_reads, harness_teardown),
    };

    if (argc < 2) {
        fprintf(stderr, "usage: %s FERRY_BINARY\n", argv[0]);
        return 2;
    }
    ferry_bin = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
