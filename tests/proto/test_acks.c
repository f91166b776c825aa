/*
 * Black-box tests of download acknowledgements (protocol 1.3, docs/protocol.md
 * R-XFER-3 and R-XFER-6) against a real ferry serve: the memory of the last
 * 1024 finished downloads, announced in Accept; TransferComplete with many
 * tids; and every refusal of a malformed or unknown one (Error and close),
 * while a bystander session keeps working.
 */
#include "chunk_harness.h"

/* What the server announces and remembers (SRV_DONE_TIDS). */
#define ACKS 1024

static struct server srv;
static struct client bystander;
static struct acct alice;

static int group_setup(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    struct client cl;

    (void)state;
    server_start(&srv, extra);
    if (client_open(&bystander, &srv) != 0 || client_signup(&bystander, "bystander", NULL, 0) != 1)
        return -1;
    acct_signup(&srv, &alice, "alice");
    acct_open(&srv, &alice, &cl);
    upload_plain(&cl, (const uint8_t *)"acknowledge me\n", 15, "f.txt");
    client_close(&cl);
    return 0;
}

static int group_teardown(void **state)
{
    int rc;

    (void)state;
    client_close(&bystander);
    rc = server_stop(&srv);
    server_cleanup(&srv);
    return rc == 0 ? 0 : -1;
}

/* The bystander's session still answers a Ping. */
static void bystander_fine(void)
{
    struct ferry_cmd m;

    assert_int_equal(client_send(&bystander, FERRY_MSG_PING, json_object()), 0);
    assert_int_equal(client_expect(&bystander, FERRY_MSG_PONG, &m), 1);
    ferry_cmd_cleanup(&m);
}

/*
 * Downloads f.txt n times, at most 64 outstanding (R-PIPE-1); the tids of
 * the TransferCompletes, in the order the server finished them, go to tids.
 */
static void download_n(struct client *cl, size_t n, char (*tids)[33])
{
    uint64_t deadline = ferry_now_ms() + 120000;
    size_t sent = 0, done = 0;

    while (done < n) {
        struct ferry_frame f;
        struct ferry_cmd m;

        if (sent < n && sent - done < 64) {
            for (; sent < n && sent - done < 64; sent++)
                assert_int_equal(ferry_client_send_cmd(cl->c, FERRY_MSG_DOWNLOAD,
                                                       json_pack("{s:s}", "path", "f.txt")),
                                 0);
            flush(cl);
        }
        next_frame_by(cl, deadline, &f);
        if (f.type != FERRY_FRAME_COMMAND)
            continue;
        assert_int_equal(ferry_cmd_decode(f.payload, f.payload_len, &m), 0);
        if (m.type == FERRY_MSG_ERROR)
            fprintf(stderr, "download: Error %d %s\n", err_code(&m), str_member(&m, "message"));
        assert_true(m.type == FERRY_MSG_TRANSFER || m.type == FERRY_MSG_TRANSFER_COMPLETE);
        if (m.type == FERRY_MSG_TRANSFER_COMPLETE)
            snprintf(tids[done++], 33, "%s", str_member(&m, "tid"));
        ferry_cmd_cleanup(&m);
    }
}

static void ack_one(struct client *cl, const char *tid)
{
    assert_int_equal(client_send(cl, FERRY_MSG_TRANSFER_COMPLETE,
                                 json_pack("{s:s, s:s}", "tid", tid, "hash", "sha256:ignored")),
                     0);
}

/* TransferComplete {tids: [...]} of these n tids. */
static void ack_many(struct client *cl, char(*const *tids), size_t n)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; i < n; i++)
        json_array_append_new(a, json_string(tids[i]));
    assert_int_equal(client_send(cl, FERRY_MSG_TRANSFER_COMPLETE, json_pack("{s:o}", "tids", a)),
                     0);
}

/* R-XFER-3: a 1.3 server says how many acknowledgements it remembers. */
static void test_announced_r_xfer_3(void **state)
{
    struct client cl;
    struct ferry_cmd m;
    json_t *limits;

    (void)state;
    open_device(&cl, &srv, alice.dev);
    assert_int_equal(
        client_send(&cl, FERRY_MSG_CONNECT,
                    json_pack("{s:s, s:s}", "client", "ferry-test", "token", alice.token)),
        0);
    recv_type(&cl, FERRY_MSG_ACCEPT, &m);
    assert_string_equal(str_member(&m, "version"), FERRY_MSG_VERSION);
    assert_string_equal(FERRY_MSG_VERSION, "1.5");
    limits = json_object_get(m.body, "limits");
    assert_int_equal(json_integer_value(json_object_get(limits, "acks")), ACKS);
    ferry_cmd_cleanup(&m);
    client_close(&cl);
}

/*
 * R-XFER-3: the acknowledgement of each of the last 1024 finished downloads
 * is taken, one by one or many at once (R-XFER-6); the 1025th from the end
 * is forgotten: Error 5 and a close.
 */
static void test_memory_r_xfer_3(void **state)
{
    static char tids[ACKS + 40][33];
    const size_t n = ACKS + 40;
    char *some[3];
    struct client cl;

    (void)state;
    acct_open(&srv, &alice, &cl);
    download_n(&cl, n, tids);
    /* The oldest still remembered, then the newest, in any order. */
    ack_one(&cl, tids[n - ACKS]);
    ack_one(&cl, tids[n - 1]);
    some[0] = tids[n - 2];
    some[1] = tids[n - ACKS + 1];
    some[2] = tids[n - 3];
    ack_many(&cl, some, 3);
    /* An acknowledgement twice is still an acknowledgement. */
    ack_many(&cl, some, 1);
    still_open(&cl);
    ack_one(&cl, tids[n - ACKS - 1]);
    assert_true(expect_error_close(&cl, 5));
    client_close(&cl);
    bystander_fine();
}

/* R-XFER-6: one unknown or forgotten tid among known ones is Error 5 and a close. */
static void test_tids_unknown_r_xfer_6(void **state)
{
    static char tids[ACKS + 2][33];
    char unknown[33] = "00112233445566778899aabbccddeeff", *some[3];
    struct client cl;

    (void)state;
    acct_open(&srv, &alice, &cl);
    download_n(&cl, 2, tids);
    some[0] = tids[0];
    some[1] = unknown;
    some[2] = tids[1];
    ack_many(&cl, some, 3);
    assert_true(expect_error_close(&cl, 5));
    client_close(&cl);

    acct_open(&srv, &alice, &cl);
    download_n(&cl, ACKS + 2, tids);
    some[0] = tids[ACKS + 1];
    some[1] = tids[0]; /* forgotten: 1025 downloads finished after it */
    ack_many(&cl, some, 2);
    assert_true(expect_error_close(&cl, 5));
    client_close(&cl);
    bystander_fine();
}

/*
 * R-XFER-6, R-MSG-5: tids that is not an array of 1 to 256 well-formed
 * tids, or comes with tid, is Error 1 and a close; 256 are taken.
 */
static void test_tids_malformed_r_xfer_6(void **state)
{
    static char tids[300][33];
    char *all[300];
    struct client cl;
    size_t i;
    int k;

    (void)state;
    acct_open(&srv, &alice, &cl);
    download_n(&cl, 300, tids);
    for (i = 0; i < 300; i++)
        all[i] = tids[i];
    /* The cap: 256 at once (the last 256 finished are all remembered). */
    ack_many(&cl, all + 300 - FERRY_ACK_TIDS_MAX, FERRY_ACK_TIDS_MAX);
    still_open(&cl);
    /* One more than the cap. */
    ack_many(&cl, all + 300 - FERRY_ACK_TIDS_MAX - 1, FERRY_ACK_TIDS_MAX + 1);
    assert_true(expect_error_close(&cl, 1));
    client_close(&cl);

    for (k = 0; k < 5; k++) {
        json_t *body;

        acct_open(&srv, &alice, &cl);
        download_n(&cl, 1, tids);
        switch (k) {
        case 0:
            body = json_pack("{s:[]}", "tids");
            break;
        case 1:
            body = json_pack("{s:s, s:[s]}", "tid", tids[0], "tids", tids[0]);
            break;
        case 2:
            body = json_pack("{s:s}", "tids", tids[0]);
            break;
        case 3:
            body = json_pack("{s:[i]}", "tids", 7);
            break;
        default:
            body = json_pack("{s:[s]}", "tids", "0011");
            break;
        }
        assert_int_equal(client_send(&cl, FERRY_MSG_TRANSFER_COMPLETE, body), 0);
        if (!expect_error_close(&cl, 1))
            fail_msg("malformed tids case %d was not Error 1 and a close", k);
        client_close(&cl);
    }
    bystander_fine();
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_announced_r_xfer_3),
        cmocka_unit_test(test_memory_r_xfer_3),
        cmocka_unit_test(test_tids_unknown_r_xfer_6),
        cmocka_unit_test(test_tids_malformed_r_xfer_6),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
