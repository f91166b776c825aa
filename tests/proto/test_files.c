/*
 * Black-box tests of file frames (protocol 1.4, docs/protocol.md R-XFER-7
 * and R-FILE) against a real ferry serve: a small whole file goes to a 1.4
 * client as one frame carrying everything a Transfer and TransferComplete
 * would, and is acknowledged like any download; a larger file, a resumed
 * one, and any file to a 1.3 client still go as Transfer, data and
 * TransferComplete; a client that sends a file frame is refused.
 */
#include "chunk_harness.h"

static struct server srv;
static struct client bystander;
static struct acct alice;

/* The files uploaded once: name, size, mtime, exec, and their content id. */
struct fixture {
    const char *name;
    size_t size;
    json_int_t mtime;
    int exec;
    char cid[80];
};

static struct fixture files[] = {
    {"empty.bin", 0, 1, 0, ""},
    {"one.bin", 1, -5, 1, ""},
    {"max.bin", FERRY_FILE_DATA_MAX, 1700000000123456789LL, 0, ""},
    {"over.bin", FERRY_FILE_DATA_MAX + 1, 42, 1, ""},
};
#define NFILES (sizeof(files) / sizeof(files[0]))

static uint8_t content[FERRY_FILE_DATA_MAX + 1];

static int group_setup(void **state)
{
    static const char *const extra[] = {"--login-rate", "1000", NULL};
    struct client cl;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(content); i++)
        content[i] = (uint8_t)(i * 7 + 3);
    server_start(&srv, extra);
    if (client_open(&bystander, &srv) != 0 || client_signup(&bystander, "bystander", NULL, 0) != 1)
        return -1;
    acct_signup(&srv, &alice, "alice");
    acct_open(&srv, &alice, &cl);
    for (i = 0; i < NFILES; i++)
        upload_meta(&cl, content, files[i].size, files[i].name, files[i].mtime, files[i].exec,
                    files[i].cid);
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

static void bystander_fine(void)
{
    struct ferry_cmd m;

    assert_int_equal(client_send(&bystander, FERRY_MSG_PING, json_object()), 0);
    assert_int_equal(client_expect(&bystander, FERRY_MSG_PONG, &m), 1);
    ferry_cmd_cleanup(&m);
}

/* What one download brought: by file frame or by Transfer, data and TransferComplete. */
struct got {
    int file_frame;
    char tid[33];
    size_t len;
    json_int_t mtime;
    int exec;
    char cid[80];
    uint8_t bytes[FERRY_FILE_DATA_MAX + 1];
};

/* Sends body as a Download and reads its whole answer into g. */
static void download(struct client *cl, json_t *body, struct got *g)
{
    uint64_t deadline = ferry_now_ms() + HARNESS_WAIT_MS;
    uint8_t ref[16];
    int have_transfer = 0;

    memset(g, 0, sizeof(*g));
    assert_int_equal(client_send(cl, FERRY_MSG_DOWNLOAD, body), 0);
    assert_int_equal(ferry_uuid_to_bytes(cl->last_ref, ref), 0);
    for (;;) {
        struct ferry_frame f;
        struct ferry_cmd m;
        struct ferry_data d;
        struct ferry_file_frame ff;

        next_frame_by(cl, deadline, &f);
        if (f.type == FERRY_FRAME_FILE) {
            assert_false(have_transfer);
            assert_int_equal(ferry_file_frame_decode(f.payload, f.payload_len, &ff), 0);
            assert_memory_equal(ff.ref, ref, 16);
            g->file_frame = 1;
            ferry_hex_encode(ff.tid, 16, g->tid);
            g->len = ff.len;
            g->mtime = ff.mtime;
            g->exec = ff.exec;
            memcpy(g->cid, "sha256:", 7);
            ferry_hex_encode(ff.sha256, 32, g->cid + 7);
            memcpy(g->bytes, ff.bytes, ff.len);
            return;
        }
        if (f.type == FERRY_FRAME_DATA) {
            assert_true(have_transfer);
            assert_int_equal(ferry_data_decode(f.payload, f.payload_len, &d), 0);
            assert_true(d.offset + d.len <= sizeof(g->bytes));
            memcpy(g->bytes + d.offset, d.bytes, d.len);
            g->len = (size_t)(d.offset + d.len);
            continue;
        }
        assert_int_equal(f.type, FERRY_FRAME_COMMAND);
        assert_int_equal(ferry_cmd_decode(f.payload, f.payload_len, &m), 0);
        if (m.type == FERRY_MSG_ERROR)
            fprintf(stderr, "download: Error %d %s\n", err_code(&m), str_member(&m, "message"));
        if (m.type == FERRY_MSG_TRANSFER) {
            assert_string_equal(str_member(&m, "ref"), cl->last_ref);
            have_transfer = 1;
            snprintf(g->tid, sizeof(g->tid), "%s", str_member(&m, "tid"));
            g->mtime = json_integer_value(json_object_get(m.body, "mtime"));
            g->exec = json_is_true(json_object_get(m.body, "exec"));
            snprintf(g->cid, sizeof(g->cid), "%s", str_member(&m, "hash"));
            ferry_cmd_cleanup(&m);
            continue;
        }
        assert_int_equal(m.type, FERRY_MSG_TRANSFER_COMPLETE);
        assert_true(have_transfer);
        assert_string_equal(str_member(&m, "tid"), g->tid);
        ferry_cmd_cleanup(&m);
        return;
    }
}

static json_t *by_path(const char *name)
{
    return json_pack("{s:s}", "path", name);
}

/*
 * R-XFER-7, R-FILE: to a 1.4 client, files of 0, 1 and 32695 bytes come as
 * one file frame each (the Download's id as ref, mtime, exec, SHA-256 and
 * the bytes as stored); 32696 bytes come as Transfer, data and
 * TransferComplete. Each is acknowledged with its tid, one at a time and
 * many at once (R-XFER-3, R-XFER-6), and the connection stays open.
 */
static void test_file_frames_r_xfer_7(void **state)
{
    static struct got g;
    char tids[NFILES][33], *all[NFILES];
    struct client cl;
    size_t i;

    (void)state;
    acct_open_as(&srv, &alice, &cl, "1.4");
    for (i = 0; i < NFILES; i++) {
        download(&cl, by_path(files[i].name), &g);
        assert_int_equal(g.file_frame, files[i].size <= FERRY_FILE_DATA_MAX);
        assert_int_equal(g.len, files[i].size);
        assert_memory_equal(g.bytes, content, files[i].size);
        assert_int_equal(g.mtime, files[i].mtime);
        assert_int_equal(g.exec, files[i].exec);
        assert_string_equal(g.cid, files[i].cid);
        snprintf(tids[i], sizeof(tids[i]), "%s", g.tid);
        all[i] = tids[i];
    }
    assert_int_equal(client_send(&cl, FERRY_MSG_TRANSFER_COMPLETE,
                                 json_pack("{s:s, s:s}", "tid", tids[0], "hash", files[0].cid)),
                     0);
    {
        json_t *a = json_array();

        for (i = 0; i < NFILES; i++)
            json_array_append_new(a, json_string(all[i]));
        assert_int_equal(
            client_send(&cl, FERRY_MSG_TRANSFER_COMPLETE, json_pack("{s:o}", "tids", a)), 0);
    }
    still_open(&cl);
    client_close(&cl);
    bystander_fine();
}

/*
 * R-FILE-1: a client that connected as 1.3 gets no file frame, and a
 * Download that resumes (offset) or asks for a list gets none either.
 */
static void test_no_file_frames_r_file_1(void **state)
{
    static struct got g;
    struct client cl;

    (void)state;
    acct_open_as(&srv, &alice, &cl, "1.3");
    download(&cl, by_path("one.bin"), &g);
    assert_false(g.file_frame);
    assert_int_equal(g.len, 1);
    assert_string_equal(g.cid, files[1].cid);
    client_close(&cl);

    acct_open_as(&srv, &alice, &cl, "1.4");
    download(&cl,
             json_pack("{s:s, s:I, s:s}", "path", "max.bin", "offset", (json_int_t)100, "hash",
                       files[2].cid),
             &g);
    assert_false(g.file_frame);
    assert_int_equal(g.len, files[2].size);
    assert_memory_equal(g.bytes + 100, content + 100, files[2].size - 100);
    still_open(&cl);
    client_close(&cl);
}

/* R-FILE-1, R-MSG-5: a file frame from a client is Error 1 and a close. */
static void test_client_file_frame_r_file_1(void **state)
{
    uint8_t frame[FERRY_FRAME_HDR_LEN + FERRY_FILE_HDR_LEN + 4] = {0};
    uint8_t ref[16] = {1}, tid[16] = {2}, sha[32] = {3};
    struct client cl;

    (void)state;
    acct_open_as(&srv, &alice, &cl, "1.4");
    ferry_frame_header_encode(frame, FERRY_FRAME_FILE, FERRY_FILE_HDR_LEN + 4);
    ferry_file_frame_header_encode(frame + FERRY_FRAME_HDR_LEN, ref, tid, 7, 0, sha);
    queue_bytes(&cl, frame, sizeof(frame));
    flush(&cl);
    assert_true(expect_error_close(&cl, 1));
    client_close(&cl);
    bystander_fine();
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_frames_r_xfer_7),
        cmocka_unit_test(test_no_file_frames_r_file_1),
        cmocka_unit_test(test_client_file_frame_r_file_1),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
