/*
 * Black-box tests of ferry serve against hostile bytes (reliability.md 3.3, 3.4):
 * each malformed input earns an Error and the close of that connection only,
 * while a bystander session keeps working.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "harness.h"

static struct server srv;
static struct client bystander;

static int group_setup(void **state)
{
    /*
     * The bystander only speaks when a test asks it to, and one test may
     * take minutes on a loaded machine: the idle timeout (R-SESS-4, tested
     * on its own elsewhere) must not be what ends it.
     */
    static const char *const extra[] = {
        "--auth-timeout", "2", "--login-rate", "1000", "--idle-timeout", "3600", NULL};

    (void)state;
    server_start(&srv, extra);
    if (client_open(&bystander, &srv) != 0 || client_signup(&bystander, "bystander", NULL, 0) != 1)
        return -1;
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

/* After every hostile case, the other session still gets answers. */
static void bystander_ok(void)
{
    assert_true(ping_ok(&bystander));
}

static void open_hello(struct client *cl)
{
    assert_int_equal(client_open(cl, &srv), 0);
    assert_int_equal(client_hello(cl, NULL), 1);
}

static void open_user(struct client *cl, const char *user)
{
    static int n;
    char name[64];

    assert_int_equal(client_open(cl, &srv), 0);
    snprintf(name, sizeof(name), "%s%d", user, n++);
    assert_int_equal(client_signup(cl, name, NULL, 0), 1);
}

static void send_header(struct client *cl, uint8_t version, uint8_t type, uint32_t len)
{
    uint8_t h[6] = {version, type};

    ferry_put_be32(h + 2, len);
    assert_int_equal(client_raw(cl, h, sizeof(h)), 0);
}

/* R-FRAME-3: lengths over 32 KiB are refused from the header alone. */
static void test_length_caps(void **state)
{
    static const uint32_t lens[] = {32769, 65536, 0x7fffffffu, 0x80000000u, 0xffffffffu};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct client cl;
        open_hello(&cl);
        send_header(&cl, 1, FERRY_FRAME_COMMAND, lens[i]);
        assert_true(expect_error_close(&cl, 2));
        client_close(&cl);
        bystander_ok();
    }
}

/* R-FRAME-1: unknown versions get Error 3, unknown types Error 1, then close. */
static void test_version_and_type(void **state)
{
    static const uint8_t versions[] = {0, 2, 255};
    static const uint8_t types[] = {4, 5, 127, 255};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(versions); i++) {
        struct client cl;
        open_hello(&cl);
        send_header(&cl, versions[i], FERRY_FRAME_COMMAND, 4);
        assert_true(expect_error_close(&cl, 3));
        client_close(&cl);
    }
    for (i = 0; i < sizeof(types); i++) {
        struct client cl;
        open_hello(&cl);
        send_header(&cl, 1, types[i], 4);
        assert_true(expect_error_close(&cl, 1));
        client_close(&cl);
    }
    bystander_ok();
}

/* R-CMD-1: a command shorter than its 4-byte type. */
static void test_short_command(void **state)
{
    uint32_t len;

    (void)state;
    for (len = 0; len < 4; len++) {
        struct client cl;
        uint8_t junk[3] = {0, 0, 0};
        open_hello(&cl);
        send_header(&cl, 1, FERRY_FRAME_COMMAND, len);
        if (len > 0)
            assert_int_equal(client_raw(&cl, junk, len), 0);
        assert_true(expect_error_close(&cl, 1));
        client_close(&cl);
    }
    bystander_ok();
}

static void send_json(struct client *cl, int32_t type, const char *json)
{
    size_t n = strlen(json);
    uint8_t *buf = malloc(6 + 4 + n);

    assert_non_null(buf);
    ferry_frame_header_encode(buf, FERRY_FRAME_COMMAND, (uint32_t)(4 + n));
    ferry_put_be32(buf + 6, (uint32_t)type);
    memcpy(buf + 10, json, n);
    assert_int_equal(client_raw(cl, buf, 10 + n), 0);
    free(buf);
}

/* R-CMD-2, R-CMD-3, R-CMD-4: malformed JSON and unknown types close the connection. */
static void test_bad_json(void **state)
{
    static const char *cases[] = {
        "{",
        "[]",
        "\"x\"",
        "{\"version\":\"1.0\"}",
        "{\"id\":\"not-a-uuid\",\"version\":\"1.0\"}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\"}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\",\"a\":1,\"a\":2}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\",\"x\":\"\\u0000\"}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\",\"n\":1e400}",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\"} trailing",
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\",\"s\":\"\xc0\xaf\"}",
        "{\"id\":7,\"version\":\"1.0\"}",
    };
    char deep[200];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client cl;
        open_hello(&cl);
        send_json(&cl, FERRY_MSG_PING, cases[i]);
        assert_true(expect_error_close(&cl, 1));
        client_close(&cl);
    }
    /* Depth 33 (R-CMD-3). */
    snprintf(deep, sizeof(deep),
             "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\",\"d\":");
    for (i = 0; i < 32; i++)
        strcat(deep, "[");
    for (i = 0; i < 32; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    {
        struct client cl;
        open_hello(&cl);
        send_json(&cl, FERRY_MSG_PING, deep);
        assert_true(expect_error_close(&cl, 1));
        client_close(&cl);
    }
    /* Unknown and negative message types (R-CMD-4). */
    {
        struct client cl;
        open_hello(&cl);
        send_json(&cl, 77777,
                  "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\"}");
        assert_true(expect_error_close(&cl, 1));
        client_close(&cl);
        open_hello(&cl);
        send_json(&cl, -1, "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\"}");
        assert_true(expect_error_close(&cl, 1));
        client_close(&cl);
    }
    /* Wrong field types in a known message (R-CMD-2). */
    {
        struct client cl;
        open_user(&cl, "types");
        send_json(&cl, FERRY_MSG_UPLOAD,
                  "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"version\":\"1.0\","
                  "\"tid\":\"00112233445566778899aabbccddeeff\",\"path\":\"x\",\"size\":\"10\"}");
        assert_true(expect_error_close(&cl, 1));
        client_close(&cl);
    }
    bystander_ok();
}

/* R-SESS-1: the first command must be Connect. */
static void test_connect_first(void **state)
{
    struct client cl;

    (void)state;
    assert_int_equal(client_open(&cl, &srv), 0);
    assert_int_equal(client_send(&cl, FERRY_MSG_PING, json_object()), 0);
    assert_true(expect_error_close(&cl, 1));
    client_close(&cl);
    bystander_ok();
}

/* R-SESS-2: no file command and no data before login. */
static void test_before_login(void **state)
{
    struct client cl;
    uint8_t frame[6 + 24 + 4] = {0};

    (void)state;
    open_hello(&cl);
    assert_int_equal(client_send(&cl, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", "/")), 0);
    assert_true(expect_error_close(&cl, 4));
    client_close(&cl);

    open_hello(&cl);
    ferry_frame_header_encode(frame, FERRY_FRAME_DATA, 28);
    assert_int_equal(client_raw(&cl, frame, sizeof(frame)), 0);
    assert_true(expect_error_close(&cl, 4));
    client_close(&cl);
    bystander_ok();
}

/* R-SESS-3: a connection that does not log in is closed after --auth-timeout (2 s here). */
static void test_auth_timeout(void **state)
{
    struct client cl;

    (void)state;
    open_hello(&cl);
    /*
     * Error 15 names the deadline: the idle timeout (R-SESS-4) closes
     * without an Error, so no clock is needed to tell the two apart.
     */
    assert_true(expect_error_close(&cl, 15));
    client_close(&cl);
    bystander_ok();
}

static void send_data(struct client *cl, const uint8_t tid[16], uint64_t off, size_t len)
{
    uint8_t *buf = calloc(1, 6 + 24 + len);

    assert_non_null(buf);
    ferry_frame_header_encode(buf, FERRY_FRAME_DATA, (uint32_t)(24 + len));
    ferry_data_header_encode(buf + 6, tid, off);
    assert_int_equal(client_raw(cl, buf, 6 + 24 + len), 0);
    free(buf);
}

static void send_upload(struct client *cl, const uint8_t tid[16], const char *path, json_int_t size)
{
    char hex[33];

    ferry_hex_encode(tid, 16, hex);
    assert_int_equal(
        client_send(cl, FERRY_MSG_UPLOAD,
                    json_pack("{s:s, s:s, s:I}", "tid", hex, "path", path, "size", size)),
        0);
}

/* Sends len bytes of data for tid, then TransferComplete with their hash; waits for Committed. */
static void finish_upload(struct client *cl, const uint8_t tid[16], const uint8_t *data, size_t len)
{
    struct ferry_sha256 sha;
    struct ferry_cmd m;
    char hex[33], cid[80];

    assert_int_equal(ferry_client_send_data(cl->c, tid, 0, data, len), 0);
    ferry_sha256_init(&sha);
    ferry_sha256_update(&sha, data, len);
    ferry_sha256_final_cid(&sha, cid);
    ferry_hex_encode(tid, 16, hex);
    assert_int_equal(client_send(cl, FERRY_MSG_TRANSFER_COMPLETE,
                                 json_pack("{s:s, s:s}", "tid", hex, "hash", cid)),
                     0);
    assert_int_equal(client_expect(cl, FERRY_MSG_COMMITTED, &m), 1);
    ferry_cmd_cleanup(&m);
}

/* R-DATA-1, R-DATA-3, R-DATA-4: offsets, overflow, unknown and foreign transfers. */
static void test_data_faults(void **state)
{
    static const uint8_t tid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct client a, b;
    uint8_t payload[100];

    (void)state;
    /* Offset + length overflowing 2^64 (R-DATA-1). */
    open_user(&a, "ovf");
    send_upload(&a, tid, "ovf.bin", 100);
    send_data(&a, tid, UINT64_MAX, 1);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    /* Data for a transfer nobody opened (R-DATA-3). */
    open_user(&a, "unk");
    send_data(&a, tid, 0, 10);
    assert_true(expect_error_close(&a, 5));
    client_close(&a);
    /* An offset >= 2^32 is legal in itself but beyond this declared size (R-DATA-4). */
    open_user(&a, "big");
    send_upload(&a, tid, "big.bin", 100);
    send_data(&a, tid, 1ull << 32, 10);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    /* More than declared (R-DATA-4). */
    open_user(&a, "more");
    send_upload(&a, tid, "more.bin", 10);
    send_data(&a, tid, 0, 11);
    assert_true(expect_error_close(&a, 2));
    client_close(&a);
    /* Another user's transfer id: B cannot write into A's open upload (R-DATA-3). */
    open_user(&a, "owner");
    open_user(&b, "thief");
    send_upload(&a, tid, "mine.bin", sizeof(payload));
    send_data(&b, tid, 0, 10);
    assert_true(expect_error_close(&b, 5));
    client_close(&b);
    /* A's upload is untouched and completes. */
    memset(payload, 'a', sizeof(payload));
    finish_upload(&a, tid, payload, sizeof(payload));
    client_close(&a);
    bystander_ok();
}

/* Declared sizes are refused before anything is allocated; the connection lives on. */
static void test_declared_sizes(void **state)
{
    static const uint8_t tid[16] = {9, 9, 9};
    struct client a;
    struct ferry_cmd m;

    (void)state;
    open_user(&a, "sizes");
    send_upload(&a, tid, "huge.bin", INT64_MAX);
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 2);
    ferry_cmd_cleanup(&m);
    assert_true(ping_ok(&a));
    client_close(&a);
    /* A negative size is a malformed message. */
    open_user(&a, "neg");
    send_upload(&a, tid, "neg.bin", -1);
    assert_true(expect_error_close(&a, 1));
    client_close(&a);
    bystander_ok();
}

/* JSON-quotes raw bytes: control characters escaped, other bytes sent as they are. */
static void json_quote(char *out, size_t cap, const char *in)
{
    size_t o = 0;

    out[o++] = '"';
    for (; *in && o + 8 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (c < 0x20 || c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        else
            out[o++] = (char)c;
    }
    out[o++] = '"';
    out[o] = '\0';
}

static void send_path_cmd(struct client *cl, int32_t type, const char *key, const char *path,
                          const char *extra)
{
    char q[9000], json[9400], id[37];

    json_quote(q, sizeof(q), path);
    ferry_uuid_new(id);
    snprintf(json, sizeof(json), "{\"id\":\"%s\",\"version\":\"1.0\",\"%s\":%s%s}", id, key, q,
             extra != NULL ? extra : "");
    send_json(cl, type, json);
}

/* R-PATH-1..3: hostile names are refused with Error 7 and create nothing. */
static void test_hostile_paths(void **state)
{
    /* Valid UTF-8, refused by the path rules: Error 7, connection kept. */
    static const char *paths[] = {
        "..",
        "../x",
        "a/../../x",
        "a/./b",
        "./a",
        "a/..",
        "//x",
        "a//b",
        "a\\..\\..\\x",
        "C:\\x",
        "\\\\srv\\share",
        ".",
        "/./",
        "x/./",
        "a/b/../../..",
        "\x1b[2J",
        "a\nb",
        "\t",
        "a\rb",
        "x\x7f",
        "..\\x",
        "a/\x01",
        "/..",
        "../../etc/passwd",
        "a/../b",
        "...//..",
        "x/../../../../../../tmp/evil",
        "\x1f",
        "ok/\x1b",
        "a/./../b",
        "\\",
        "a\\b",
    };
    /* Invalid UTF-8 never parses as JSON: Error 1 and a close (R-CMD-3). */
    static const char *bad_utf8[] = {
        "\xff",
        "\x80",
        "\xc3",
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc0\xaf",
        "\xc0\xae\xc0\xae",
        "\xed\xa0\x80",
        "\xf4\x90\x80\x80",
        "a/\xfe/b",
    };
    char longp[4200], longname[300], tidx[80];
    struct client a;
    struct ferry_cmd m;
    size_t i;
    int ops;

    (void)state;
    open_user(&a, "paths");
    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        for (ops = 0; ops < 5; ops++) {
            switch (ops) {
            case 0:
                snprintf(tidx, sizeof(tidx), ",\"tid\":\"%032zx\",\"size\":0", i + 1);
                send_path_cmd(&a, FERRY_MSG_UPLOAD, "path", paths[i], tidx);
                break;
            case 1:
                send_path_cmd(&a, FERRY_MSG_MKDIR, "path", paths[i], NULL);
                break;
            case 2:
                send_path_cmd(&a, FERRY_MSG_DIRINFO, "path", paths[i], NULL);
                break;
            case 3:
                send_path_cmd(&a, FERRY_MSG_REMOVE, "path", paths[i], NULL);
                break;
            default:
                send_path_cmd(&a, FERRY_MSG_MOVE, "to", paths[i], ",\"from\":\"x\"");
            }
            assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
            if (err_code(&m) != 7)
                fprintf(stderr, "path case %zu op %d: got %d\n", i, ops, err_code(&m));
            assert_int_equal(err_code(&m), 7);
            ferry_cmd_cleanup(&m);
        }
    }
    /* A 4,097-byte path and a 256-byte name (R-PATH-2). */
    memset(longp, 'a', sizeof(longp));
    for (i = 1; i < 4097; i += 2)
        longp[i] = '/';
    longp[4097] = '\0';
    memset(longname, 'b', 256);
    longname[256] = '\0';
    send_path_cmd(&a, FERRY_MSG_MKDIR, "path", longp, NULL);
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    assert_true(err_code(&m) == 7 || err_code(&m) == 1);
    ferry_cmd_cleanup(&m);
    if (err_code(&m) == 1) {
        client_close(&a);
        open_user(&a, "paths");
    }
    send_path_cmd(&a, FERRY_MSG_MKDIR, "path", longname, NULL);
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 7);
    ferry_cmd_cleanup(&m);
    /* A leading '/' means the user's root, not the server's (R-PATH-1). */
    send_path_cmd(&a, FERRY_MSG_MKDIR, "path", "/etc/passwd", NULL);
    assert_int_equal(client_expect(&a, FERRY_MSG_OK, &m), 1);
    ferry_cmd_cleanup(&m);
    assert_true(ping_ok(&a));
    client_close(&a);
    for (i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
        open_user(&a, "utf8");
        send_path_cmd(&a, FERRY_MSG_MKDIR, "path", bad_utf8[i], NULL);
        assert_true(expect_error_close(&a, 1));
        client_close(&a);
    }
    /* Nothing was created outside the data directory's own layout (R-PATH-5). */
    {
        char cmd[600];
        snprintf(cmd, sizeof(cmd),
                 "cd %s/data && test -z \"$(ls -A | grep -vxE "
                 "'blobs|packs|tmp|identity|lock|ferry.db|ferry.db-wal|ferry.db-shm')\" && "
                 "test ! -e /etc/passwd/x && ! find . -name '*passwd*' | grep -q . && "
                 "test ! -e /tmp/evil",
                 srv.dir);
        assert_int_equal(system(cmd), 0);
    }
    bystander_ok();
}

/* R-MSG-4: seed 000's remote Command is refused, the connection kept. */
static void test_remote_command_refused(void **state)
{
    struct client a;
    struct ferry_cmd m;

    (void)state;
    open_user(&a, "cmd");
    assert_int_equal(client_send(&a, FERRY_MSG_COMMAND, json_pack("{s:s}", "cmd", "rm -rf /")), 0);
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 17);
    ferry_cmd_cleanup(&m);
    assert_true(ping_ok(&a));
    client_close(&a);
}

/* Another user's file id is not found (P3/P5: each user sees only their tree). */
static void test_foreign_file_id(void **state)
{
    struct client a, b;
    struct ferry_cmd m;
    json_int_t id;

    (void)state;
    open_user(&a, "fa");
    open_user(&b, "fb");
    assert_int_equal(client_send(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "secret")), 0);
    assert_int_equal(client_expect(&a, FERRY_MSG_OK, &m), 1);
    ferry_cmd_cleanup(&m);
    assert_int_equal(
        client_send(&a, FERRY_MSG_DIRINFO, json_pack("{s:s, s:b}", "path", "secret", "stat", 1)),
        0);
    assert_int_equal(client_expect(&a, FERRY_MSG_DIRPAGE, &m), 1);
    id = json_integer_value(
        json_object_get(json_array_get(json_object_get(m.body, "entries"), 0), "id"));
    ferry_cmd_cleanup(&m);
    assert_true(id > 0);
    assert_int_equal(client_send(&b, FERRY_MSG_DOWNLOAD, json_pack("{s:I}", "file_id", id)), 0);
    assert_int_equal(client_recv(&b, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 5);
    ferry_cmd_cleanup(&m);
    assert_int_equal(client_send(&b, FERRY_MSG_DIRINFO, json_pack("{s:s}", "path", "secret")), 0);
    assert_int_equal(client_recv(&b, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 5);
    ferry_cmd_cleanup(&m);
    client_close(&a);
    client_close(&b);
}

/* Sends a command with the caller's id, as a client retrying a request does. */
static int send_with_id(struct client *cl, int32_t type, json_t *body)
{
    int rc;

    if ((rc = ferry_client_send_cmd(cl->c, type, body)) != 0)
        return rc;
    return ferry_client_pump(cl->c, 5000, 1);
}

/* R-STORE-10: a Remove or Move sent again with the same id (a retry) is Ok again. */
static void test_idempotent_by_id_r_store_10(void **state)
{
    static const char rm_id[] = "6b1d2a4e-0c1f-4a53-9d0e-7f2b3c4d5e6f";
    static const char mv_id[] = "7c2e3b5f-1d2a-4b64-8e1f-8a3c4d5e6f70";
    struct client a, b;
    struct ferry_cmd m;
    int round;

    (void)state;
    open_user(&a, "ia");
    open_user(&b, "ib");
    assert_int_equal(client_send(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "d1")), 0);
    assert_int_equal(client_expect(&a, FERRY_MSG_OK, &m), 1);
    ferry_cmd_cleanup(&m);
    assert_int_equal(client_send(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "d2")), 0);
    assert_int_equal(client_expect(&a, FERRY_MSG_OK, &m), 1);
    ferry_cmd_cleanup(&m);
    for (round = 0; round < 2; round++) {
        assert_int_equal(
            send_with_id(&a, FERRY_MSG_REMOVE,
                         json_pack("{s:s, s:s, s:b}", "id", rm_id, "path", "d1", "recursive", 1)),
            0);
        assert_int_equal(client_expect(&a, FERRY_MSG_OK, &m), 1);
        ferry_cmd_cleanup(&m);
        assert_int_equal(
            send_with_id(&a, FERRY_MSG_MOVE,
                         json_pack("{s:s, s:s, s:s}", "id", mv_id, "from", "d2", "to", "d3")),
            0);
        assert_int_equal(client_expect(&a, FERRY_MSG_OK, &m), 1);
        ferry_cmd_cleanup(&m);
    }
    /* A new id is a new request: d1 is gone now. */
    assert_int_equal(
        client_send(&a, FERRY_MSG_REMOVE, json_pack("{s:s, s:b}", "path", "d1", "recursive", 1)),
        0);
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 5);
    ferry_cmd_cleanup(&m);
    /* Ids are per user: the same id from another user is that user's own request. */
    assert_int_equal(
        send_with_id(&b, FERRY_MSG_REMOVE,
                     json_pack("{s:s, s:s, s:b}", "id", rm_id, "path", "d1", "recursive", 1)),
        0);
    assert_int_equal(client_recv(&b, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(err_code(&m), 5);
    ferry_cmd_cleanup(&m);
    client_close(&a);
    client_close(&b);
}

/* R-FRAME-4: 10,000 heartbeats and 2,000 pings in single writes: all handled, nothing dropped. */
static void test_floods(void **state)
{
    struct client a;
    struct ferry_cmd m;
    uint8_t *hb = malloc(20000);
    int i, pongs = 0;

    (void)state;
    assert_non_null(hb);
    for (i = 0; i < 10000; i++) {
        hb[2 * i] = 1;
        hb[2 * i + 1] = 0;
    }
    open_user(&a, "flood");
    assert_int_equal(client_raw(&a, hb, 20000), 0);
    free(hb);
    for (i = 0; i < 2000; i++) {
        char id[37];
        ferry_uuid_new(id);
        assert_int_equal(ferry_client_send_cmd(a.c, FERRY_MSG_PING, json_pack("{s:s}", "id", id)),
                         0);
    }
    assert_int_equal(ferry_client_pump(a.c, HARNESS_WAIT_MS, 1), 0);
    while (pongs < 2000 && client_recv(&a, &m, HARNESS_WAIT_MS) == 1) {
        if (m.type == FERRY_MSG_PONG)
            pongs++;
        ferry_cmd_cleanup(&m);
    }
    assert_int_equal(pongs, 2000);
    client_close(&a);
    bystander_ok();
}

/* A truncated header or payload followed by EOF: the server just closes. */
static void test_truncated_then_eof(void **state)
{
    static const uint8_t part[] = {1, 1, 0, 0, 0, 40, 0, 0};
    size_t cut;

    (void)state;
    for (cut = 1; cut <= sizeof(part); cut++) {
        struct client a;
        open_hello(&a);
        assert_int_equal(client_raw(&a, part, cut), 0);
        client_close(&a);
    }
    bystander_ok();
}

/* ---- TLS input split at random points, through a pacing relay. ---- */

struct relay {
    int lfd;
    int port;
    const char *target_port;
    unsigned seed;
};

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int cfd = accept(r->lfd, NULL, NULL), sfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    uint8_t buf[65536];

    sa.sin_port = htons((uint16_t)atoi(r->target_port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (cfd < 0 || sfd < 0 || connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return NULL;
    setsockopt(sfd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
    for (;;) {
        struct pollfd p[2] = {{.fd = cfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        int k;
        if (poll(p, 2, 20000) <= 0)
            break;
        for (k = 0; k < 2; k++) {
            int from = k == 0 ? cfd : sfd, to = k == 0 ? sfd : cfd;
            ssize_t n, off = 0;
            if (!(p[k].revents & (POLLIN | POLLHUP)))
                continue;
            n = read(from, buf, sizeof(buf));
            if (n <= 0)
                goto done;
            /* Client-to-server bytes go out in random small pieces. */
            while (off < n) {
                ssize_t piece = k == 0 ? 1 + (ssize_t)(rand_r(&r->seed) % 97) : n - off;
                if (piece > n - off)
                    piece = n - off;
                if (write(to, buf + off, (size_t)piece) != piece)
                    goto done;
                off += piece;
                if (k == 0 && rand_r(&r->seed) % 4 == 0)
                    usleep(200); /* pacing, so pieces reach the server as separate reads */
            }
        }
    }
done:
    close(cfd);
    close(sfd);
    return NULL;
}

/* R-FRAME-4: TLS bytes cut at random points (through the relay) still make whole frames. */
static void test_tls_split(void **state)
{
    struct relay r = {.target_port = srv.port, .seed = 12345};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    struct client a;
    pthread_t th;
    char port[16];
    uint8_t tid[16] = {42}, data[50000];
    size_t off;

    (void)state;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(r.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(r.lfd, 1), 0);
    getsockname(r.lfd, (struct sockaddr *)&sa, &sl);
    snprintf(port, sizeof(port), "%d", ntohs(sa.sin_port));
    assert_int_equal(pthread_create(&th, NULL, relay_main, &r), 0);
    memset(&a, 0, sizeof(a));
    assert_int_equal(ferry_identity_load_or_create("/tmp/ferry-proto-split-dev", &a.id), 0);
    assert_int_equal(ferry_client_connect(&a.c, "127.0.0.1", port, &a.id, srv.id, 10000), 0);
    assert_int_equal(client_signup(&a, "splitter", NULL, 0), 1);
    for (off = 0; off < sizeof(data); off++)
        data[off] = (uint8_t)(off * 7);
    send_upload(&a, tid, "split.bin", sizeof(data));
    finish_upload(&a, tid, data, sizeof(data));
    assert_true(ping_ok(&a));
    client_close(&a);
    pthread_join(th, NULL);
    close(r.lfd);
    assert_int_equal(system("rm -rf /tmp/ferry-proto-split-dev"), 0);
}

static long server_rss_kib(void)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)srv.pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* R-PIPE-3: requests whose replies are never read stop being read themselves. */
static void test_unread_replies_bounded(void **state)
{
    struct client a;
    struct ferry_cmd m;
    long before, after;
    int i, last_pages = 0;
    char name[64];

    (void)state;
    open_user(&a, "hoarder");
    for (i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "d/sub%03d/with-a-rather-long-folder-name-%03d", i, i);
        assert_int_equal(
            ferry_client_send_cmd(a.c, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", name)), 0);
    }
    assert_int_equal(ferry_client_pump(a.c, HARNESS_WAIT_MS, 1), 0);
    for (i = 0; i < 300; i++) {
        assert_int_equal(client_expect(&a, FERRY_MSG_OK, &m), 1);
        ferry_cmd_cleanup(&m);
    }
    before = server_rss_kib();
    /* 800 recursive listings of ~600 entries each (~70 MB), none read for now. */
    for (i = 0; i < 800; i++)
        assert_int_equal(
            ferry_client_send_cmd(a.c, FERRY_MSG_DIRINFO,
                                  json_pack("{s:s, s:b}", "path", "d", "recursive", 1)),
            0);
    assert_int_equal(ferry_client_pump(a.c, HARNESS_WAIT_MS, 1), 0);
    /* Poll until the server has stopped making progress on our requests. */
    for (i = 0; i < 20; i++) {
        long now = server_rss_kib();
        if (now > before + 512 * 1024)
            break;
        assert_int_equal(ferry_client_pump(a.c, 100, 0), 0);
    }
    after = server_rss_kib();
    fprintf(stderr, "server RSS %ld KiB before, %ld KiB with unread replies\n", before, after);
    /* Tens of MiB of replies were asked for; the server holds only a few. */
    assert_true(after - before < 32 * 1024);
    /* Every listing still arrives once we read. */
    while (last_pages < 800 && client_recv(&a, &m, HARNESS_WAIT_MS) == 1) {
        if (m.type == FERRY_MSG_DIRPAGE && json_is_true(json_object_get(m.body, "last")))
            last_pages++;
        ferry_cmd_cleanup(&m);
    }
    assert_int_equal(last_pages, 800);
    client_close(&a);
    bystander_ok();
}

/* R-PIPE-2: a request pipelined right behind Signup runs as the new user. */
static void test_pipelined_after_signup(void **state)
{
    struct client a;
    struct ferry_cmd m;

    (void)state;
    assert_int_equal(client_open(&a, &srv), 0);
    assert_int_equal(client_hello(&a, NULL), 1);
    assert_int_equal(ferry_client_send_cmd(a.c, FERRY_MSG_SIGNUP,
                                           json_pack("{s:s, s:s, s:s}", "user", "eager", "password",
                                                     "correct horse", "device", "t")),
                     0);
    assert_int_equal(client_send(&a, FERRY_MSG_MKDIR, json_pack("{s:s}", "path", "early")), 0);
    assert_int_equal(client_expect(&a, FERRY_MSG_SESSION, &m), 1);
    ferry_cmd_cleanup(&m);
    assert_int_equal(client_recv(&a, &m, HARNESS_WAIT_MS), 1);
    assert_int_equal(m.type, FERRY_MSG_OK);
    ferry_cmd_cleanup(&m);
    client_close(&a);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_caps),
        cmocka_unit_test(test_version_and_type),
        cmocka_unit_test(test_short_command),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_connect_first),
        cmocka_unit_test(test_before_login),
        cmocka_unit_test(test_auth_timeout),
        cmocka_unit_test(test_data_faults),
        cmocka_unit_test(test_declared_sizes),
        cmocka_unit_test(test_hostile_paths),
        cmocka_unit_test(test_remote_command_refused),
        cmocka_unit_test(test_foreign_file_id),
        cmocka_unit_test(test_idempotent_by_id_r_store_10),
        cmocka_unit_test(test_floods),
        cmocka_unit_test(test_truncated_then_eof),
        cmocka_unit_test(test_tls_split),
        cmocka_unit_test(test_unread_replies_bounded),
        cmocka_unit_test(test_pipelined_after_signup),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
