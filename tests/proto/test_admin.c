/*
 * Black-box tests of protocol 1.2's account view (Whoami, DeviceList,
 * DeviceRevoke: R-ADMIN-7..10) and of administrative revocation reaching
 * live connections (R-ADMIN-6), against a real ferry serve.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "harness.h"

/* Waits this long for the server's own Error after a revocation: it is due within a second. */
#define REVOKE_WAIT_MS 60000

/* Connect; returns the Accept's "version" (static copy) or NULL. */
static const char *hello_version(struct client *cl)
{
    static char v[32];
    struct ferry_cmd m;
    const char *s;

    if (client_send(cl, FERRY_MSG_CONNECT, json_pack("{s:s}", "client", "ferry-test")) != 0 ||
        client_expect(cl, FERRY_MSG_ACCEPT, &m) != 1)
        return NULL;
    s = json_string_value(json_object_get(m.body, "version"));
    snprintf(v, sizeof(v), "%s", s != NULL ? s : "");
    ferry_cmd_cleanup(&m);
    return v;
}

/* Connect + Login of an existing user as device name dev; 1 on success. */
static int client_login(struct client *cl, const char *user, const char *dev, char *token,
                        size_t cap)
{
    struct ferry_cmd m;
    int ok;

    if (client_hello(cl, NULL) != 1 ||
        client_send(cl, FERRY_MSG_LOGIN,
                    json_pack("{s:s, s:s, s:s}", "user", user, "password", "correct horse",
                              "device", dev)) != 0 ||
        client_recv(cl, &m, 20000) != 1)
        return 0;
    ok = m.type == FERRY_MSG_SESSION;
    if (ok && token != NULL)
        snprintf(token, cap, "%s", json_string_value(json_object_get(m.body, "token")));
    ferry_cmd_cleanup(&m);
    return ok;
}

/* Sends a request and returns its reply (type in *type), 1, or 0 on a close. */
static int call(struct client *cl, int32_t type, json_t *body, struct ferry_cmd *out)
{
    if (client_send(cl, type, body) != 0)
        return -1;
    return client_recv(cl, out, 20000);
}

/* The reply's error code after a request, -1 if it was not an Error. */
static int call_code(struct client *cl, int32_t type, json_t *body)
{
    struct ferry_cmd m;
    int code;

    if (call(cl, type, body, &m) != 1)
        return -2;
    code = err_code(&m);
    ferry_cmd_cleanup(&m);
    return code;
}

/* R-ADMIN-6, R-AUTH-7: the server's unsolicited Error 4 "session revoked", then the close. */
static int expect_revoked(struct client *cl)
{
    struct ferry_cmd m;
    const char *msg;
    int rc = client_recv(cl, &m, REVOKE_WAIT_MS), ok;

    if (rc != 1) {
        fprintf(stderr, "expected Error 4 (session revoked), got rc=%d\n", rc);
        return 0;
    }
    msg = json_string_value(json_object_get(m.body, "message"));
    ok = err_code(&m) == 4 && msg != NULL && strstr(msg, "session revoked") != NULL;
    if (!ok)
        fprintf(stderr, "expected Error 4 (session revoked), got type %d code %d (%s)\n", m.type,
                err_code(&m), msg != NULL ? msg : "");
    ferry_cmd_cleanup(&m);
    rc = client_recv(cl, &m, 10000);
    if (rc == 1)
        ferry_cmd_cleanup(&m);
    return ok && rc == 0;
}

/* Runs `ferry serve ARGS... --data DIR/data`; returns its exit status. */
static int admin(struct server *s, const char *a1, const char *a2, const char *a3, const char *a4)
{
    char data[300];
    pid_t pid;
    int st = 0;

    snprintf(data, sizeof(data), "%s/data", s->dir);
    if ((pid = fork()) < 0)
        return -1;
    if (pid == 0) {
        const char *argv[10] = {ferry_bin, "serve", a1, a2, "--data", data, a3, a4, NULL};
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0);
        dup2(fd, 1);
        execv(ferry_bin, (char **)(uintptr_t)argv);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* R-ADMIN-7, R-ADMIN-10: a 1.2 server, and Whoami about this connection's session. */
static void test_whoami_r_admin_7(void **state)
{
    struct server srv;
    struct client a;
    struct ferry_cmd m;
    json_int_t created, now;

    (void)state;
    server_start(&srv, NULL);
    assert_int_equal(client_open(&a, &srv), 0);
    assert_string_equal(hello_version(&a), FERRY_MSG_VERSION);
    /* R-SESS-2: before login it is Error 4 and a close. */
    assert_int_equal(client_send(&a, FERRY_MSG_WHOAMI, json_object()), 0);
    assert_true(expect_error_close(&a, 4));
    client_close(&a);

    assert_int_equal(client_open(&a, &srv), 0);
    assert_int_equal(client_signup(&a, "ann", NULL, 0), 1);
    assert_int_equal(call(&a, FERRY_MSG_WHOAMI, json_object(), &m), 1);
    assert_int_equal(m.type, FERRY_MSG_IDENTITY);
    assert_string_equal(json_string_value(json_object_get(m.body, "ref")), a.last_ref);
    assert_string_equal(json_string_value(json_object_get(m.body, "user")), "ann");
    assert_string_equal(json_string_value(json_object_get(m.body, "device_id")), a.id.id);
    assert_string_equal(json_string_value(json_object_get(m.body, "device_name")), "test");
    created = json_integer_value(json_object_get(m.body, "session_created"));
    now = json_integer_value(json_object_get(m.body, "now"));
    assert_true(created > 0 && now >= created);
    ferry_cmd_cleanup(&m);
    assert_true(ping_ok(&a));
    client_close(&a);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* Adds n devices of user uid with names that escape to twice their length. */
static void add_devices(struct server *s, int n)
{
    char path[300], sql[512], name[65];
    sqlite3 *db;
    int i;

    snprintf(path, sizeof(path), "%s/data/ferry.db", s->dir);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 30000);
    memset(name, '"', 64);
    name[64] = '\0';
    for (i = 0; i < n; i++) {
        char *q = sqlite3_mprintf("%q", name);
        /* Seen before the test's own devices, so those stay among the 64 newest. */
        snprintf(sql, sizeof(sql),
                 "INSERT INTO devices(user_id, device_id, name, first_seen, last_seen)"
                 " SELECT id, printf('%%052d', %d), '%s', %d, %d FROM users WHERE name = 'bea'",
                 i, q, i + 1, i + 1);
        sqlite3_free(q);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    sqlite3_close(db);
}

/* R-ADMIN-8: the devices, newest first, at most 64, in one frame whatever their names. */
static void test_device_list_r_admin_8(void **state)
{
    struct server srv;
    struct client a, b;
    struct ferry_cmd m;
    json_t *arr, *e;
    size_t i;
    int current = 0;

    (void)state;
    server_start(&srv, NULL);
    assert_int_equal(client_open(&a, &srv), 0);
    assert_int_equal(client_signup(&a, "bea", NULL, 0), 1);
    assert_int_equal(client_open(&b, &srv), 0);
    assert_int_equal(client_login(&b, "bea", "second", NULL, 0), 1);
    assert_int_equal(call(&a, FERRY_MSG_DEVICE_LIST, json_object(), &m), 1);
    assert_int_equal(m.type, FERRY_MSG_DEVICES);
    arr = json_object_get(m.body, "devices");
    assert_int_equal(json_array_size(arr), 2);
    assert_int_equal(json_integer_value(json_object_get(m.body, "total")), 2);
    /* The newest first: b logged in last. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "id")), b.id.id);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "name")),
                        "second");
    json_array_foreach(arr, i, e)
    {
        assert_true(json_is_true(json_object_get(e, "session")));
        if (json_is_true(json_object_get(e, "current"))) {
            current++;
            assert_string_equal(json_string_value(json_object_get(e, "id")), a.id.id);
        }
    }
    assert_int_equal(current, 1);
    ferry_cmd_cleanup(&m);

    /* 100 more, with names of 64 quotes: 64 listed, all counted, one frame. */
    add_devices(&srv, 100);
    assert_int_equal(call(&a, FERRY_MSG_DEVICE_LIST, json_object(), &m), 1);
    assert_int_equal(m.type, FERRY_MSG_DEVICES);
    arr = json_object_get(m.body, "devices");
    assert_int_equal(json_array_size(arr), FERRY_DEVICES_MAX);
    assert_int_equal(json_integer_value(json_object_get(m.body, "total")), 102);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "id")), a.id.id);
    e = json_array_get(arr, 2);
    assert_int_equal(strlen(json_string_value(json_object_get(e, "name"))), 64);
    assert_false(json_is_true(json_object_get(e, "session")));
    ferry_cmd_cleanup(&m);
    assert_true(ping_ok(&b));
    client_close(&a);
    client_close(&b);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* R-ADMIN-9: revoke another device: Ok, its live connection closed, its token refused. */
static void test_device_revoke_r_admin_9(void **state)
{
    char token[64];
    struct server srv;
    struct client a, b;
    struct ferry_cmd m;

    (void)state;
    server_start(&srv, NULL);
    assert_int_equal(client_open(&a, &srv), 0);
    assert_int_equal(client_signup(&a, "cid", token, sizeof(token)), 1);
    assert_int_equal(client_open(&b, &srv), 0);
    assert_int_equal(client_login(&b, "cid", "other", NULL, 0), 1);
    /* Refusals keep the connection. */
    assert_int_equal(call_code(&b, FERRY_MSG_DEVICE_REVOKE, json_pack("{s:s}", "device", b.id.id)),
                     17);
    assert_int_equal(call_code(&b, FERRY_MSG_DEVICE_REVOKE,
                               json_pack("{s:s}", "device",
                                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
                     5);
    assert_int_equal(
        call_code(&b, FERRY_MSG_DEVICE_REVOKE, json_pack("{s:s}", "device", "not an id")), 5);
    assert_int_equal(call_code(&b, FERRY_MSG_DEVICE_REVOKE, json_pack("{s:i}", "device", 7)), 1);
    assert_int_equal(call_code(&b, FERRY_MSG_DEVICE_REVOKE,
                               json_pack("{s:s}", "device",
                                         "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
                     1);
    assert_true(ping_ok(&b));
    /* R-PIPE-2: a DeviceList pipelined after the revoke sees it. */
    assert_int_equal(
        client_send(&b, FERRY_MSG_DEVICE_REVOKE, json_pack("{s:s}", "device", a.id.id)), 0);
    assert_int_equal(client_send(&b, FERRY_MSG_DEVICE_LIST, json_object()), 0);
    assert_int_equal(client_expect(&b, FERRY_MSG_OK, &m), 1);
    ferry_cmd_cleanup(&m);
    assert_int_equal(client_expect(&b, FERRY_MSG_DEVICES, &m), 1);
    assert_int_equal(json_integer_value(json_object_get(m.body, "total")), 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(m.body, "devices"), 0), "id")),
                        b.id.id);
    ferry_cmd_cleanup(&m);
    /* The revoked device's live connection goes, and its token is refused (R-SESS-6). */
    assert_true(expect_revoked(&a));
    ferry_client_close(&a.c);
    a.c = NULL;
    assert_int_equal(ferry_client_connect(&a.c, "127.0.0.1", srv.port, &a.id, srv.id, 5000), 0);
    assert_int_equal(client_hello(&a, token), 1);
    assert_int_equal(client_recv(&a, &m, 10000), 1);
    assert_int_equal(err_code(&m), 4);
    ferry_cmd_cleanup(&m);
    client_close(&a);
    assert_true(ping_ok(&b));
    client_close(&b);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

/* R-ADMIN-6: `ferry serve device revoke` and `user disable` reach live connections. */
static void test_admin_live_r_admin_6(void **state)
{
    struct server srv;
    struct client a, b, c, other;

    (void)state;
    server_start(&srv, NULL);
    assert_int_equal(client_open(&a, &srv), 0);
    assert_int_equal(client_signup(&a, "dan", NULL, 0), 1);
    assert_int_equal(client_open(&b, &srv), 0);
    assert_int_equal(client_login(&b, "dan", "second", NULL, 0), 1);
    assert_int_equal(client_open(&other, &srv), 0);
    assert_int_equal(client_signup(&other, "eve", NULL, 0), 1);

    /* The operator revokes device "second" while it is connected. */
    assert_int_equal(admin(&srv, "device", "revoke", "dan", "second"), 0);
    assert_true(expect_revoked(&b));
    client_close(&b);
    assert_true(ping_ok(&a));
    assert_true(ping_ok(&other));

    /* Disabled: every connection of the user goes; its login fails like a wrong password. */
    assert_int_equal(admin(&srv, "user", "disable", "dan", NULL), 0);
    assert_true(expect_revoked(&a));
    client_close(&a);
    assert_int_equal(client_open(&c, &srv), 0);
    assert_int_equal(client_login(&c, "dan", "third", NULL, 0), 0);
    client_close(&c);
    assert_true(ping_ok(&other));
    assert_int_equal(admin(&srv, "user", "enable", "dan", NULL), 0);
    assert_int_equal(client_open(&c, &srv), 0);
    assert_int_equal(client_login(&c, "dan", "third", NULL, 0), 1);
    assert_true(ping_ok(&c));
    client_close(&c);
    client_close(&other);
    assert_int_equal(server_stop(&srv), 0);
    server_cleanup(&srv);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whoami_r_admin_7),
        cmocka_unit_test(test_device_list_r_admin_8),
        cmocka_unit_test(test_device_revoke_r_admin_9),
        cmocka_unit_test(test_admin_live_r_admin_6),
    };
    int rc;

    if ((rc = harness_init(argc, argv)) != 0)
        return rc;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
