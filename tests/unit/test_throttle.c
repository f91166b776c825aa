/*
 * Unit tests of ferry serve's throttle tables (src/server/throttle.c): the
 * per-name failure backoff (R-AUTH-4) and bucket (R-AUTH-11) and their
 * bounded table, where unknown or invalid names must never evict a real
 * user's entry (R-AUTH-13), driven at the table's cap-1, cap and cap+1
 * with an explicit clock; and the bounded table of source addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "server/server.h"

#define T0 1000000u /* an arbitrary start on the test's clock, in ms */

static struct srv *srv_new(void)
{
    struct srv *srv = ferry_calloc(1, sizeof(*srv));

    assert_non_null(srv);
    srv->cfg.login_rate = 10;
    srv->cfg.max_unauth_per_ip = 16;
    return srv;
}

static void srv_del(struct srv *srv)
{
    srv_throttle_cleanup(srv);
    ferry_free(srv);
}

/* Five failures put a name into backoff (R-AUTH-4). */
static void fail5(struct srv *srv, const char *name, int known, uint64_t now)
{
    uint64_t retry = 0;
    int i;

    for (i = 0; i < 5; i++) {
        assert_int_equal(srv_name_check(srv, name, known, now, &retry), 0);
        srv_name_failed(srv, name, known, now);
    }
}

static int in_backoff(struct srv *srv, const char *name, int known, uint64_t now)
{
    uint64_t retry = 0;

    return srv_name_check(srv, name, known, now, &retry) == FERRY_EBUSY && retry > 0;
}

/* R-AUTH-4: 5 failures, then 1 s doubling to 15 min; a success resets the count. */
static void test_backoff_schedule(void **state)
{
    struct srv *srv = srv_new();
    uint64_t now = T0, retry = 0;
    int i;

    (void)state;
    fail5(srv, "alice", 1, now);
    assert_int_equal(srv_name_check(srv, "alice", 1, now, &retry), FERRY_EBUSY);
    assert_int_equal(retry, 1000);
    assert_int_equal(srv_name_check(srv, "alice", 1, now + 1000, &retry), 0);
    srv_name_failed(srv, "alice", 1, now + 1000);
    assert_int_equal(srv_name_check(srv, "alice", 1, now + 1000, &retry), FERRY_EBUSY);
    assert_int_equal(retry, 2000);
    for (i = 0; i < 20; i++) {
        now += 15ull * 60 * 1000;
        srv_name_failed(srv, "alice", 1, now);
    }
    assert_int_equal(srv_name_check(srv, "alice", 1, now, &retry), FERRY_EBUSY);
    assert_int_equal(retry, 15ull * 60 * 1000);
    now += 15ull * 60 * 1000;
    srv_name_succeeded(srv, "alice", 1, now);
    /* After a success four failures are allowed again before any wait. */
    for (i = 0; i < 4; i++)
        srv_name_failed(srv, "alice", 1, now);
    assert_int_equal(srv_name_check(srv, "alice", 1, now, &retry), 0);
    srv_del(srv);
}

/*
 * R-AUTH-13: failing logins for many unknown names (the attack of issue 9,
 * item 14: 4,300 invalid names) must not reset a real user's backoff. The
 * table holds SRV_NAME_TABLE names; fill it to cap-1, cap and cap+1.
 */
static void unknown_flood(int entries)
{
    struct srv *srv = srv_new();
    char name[32];
    int i;

    fail5(srv, "victim", 1, T0);
    assert_true(in_backoff(srv, "victim", 1, T0));
    for (i = 0; i < entries - 1; i++) {
        snprintf(name, sizeof(name), "ghost%d", i);
        srv_name_failed(srv, name, 0, T0 + 1 + (uint64_t)i % 500);
    }
    /* Names that break R-AUTH-1 share one entry; they evict nothing either. */
    srv_name_failed(srv, "", 0, T0 + 600);
    assert_true(in_backoff(srv, "victim", 1, T0 + 700));
    srv_del(srv);
}

static void test_unknown_cap_minus_1(void **state)
{
    (void)state;
    unknown_flood(SRV_NAME_TABLE - 1);
}

static void test_unknown_cap(void **state)
{
    (void)state;
    unknown_flood(SRV_NAME_TABLE);
}

static void test_unknown_cap_plus_1(void **state)
{
    (void)state;
    unknown_flood(SRV_NAME_TABLE + 1);
}

/*
 * R-AUTH-13: real names compete among themselves for their part of the
 * table, and an entry with an active backoff is never the one evicted.
 */
static void known_flood(int entries)
{
    struct srv *srv = srv_new();
    char name[32];
    int i;

    fail5(srv, "victim", 1, T0);
    for (i = 0; i < entries - 1; i++) {
        snprintf(name, sizeof(name), "user%d", i);
        srv_name_failed(srv, name, 1, T0 + 1 + (uint64_t)i % 500);
    }
    assert_true(in_backoff(srv, "victim", 1, T0 + 700));
    /*
     * Past the cap the least recently used entry without a backoff made room:
     * user0 lost its one failure, so four more still leave it without a wait.
     */
    for (i = 0; i < 4; i++)
        srv_name_failed(srv, "user0", 1, T0 + 800);
    assert_int_equal(in_backoff(srv, "user0", 1, T0 + 800), entries > SRV_NAME_TABLE ? 0 : 1);
    srv_del(srv);
}

static void test_known_cap_minus_1(void **state)
{
    (void)state;
    known_flood(SRV_NAME_TABLE - 1);
}

static void test_known_cap(void **state)
{
    (void)state;
    known_flood(SRV_NAME_TABLE);
}

static void test_known_cap_plus_1(void **state)
{
    (void)state;
    known_flood(SRV_NAME_TABLE + 1);
}

/* R-AUTH-11: each name has its own bucket of --login-rate attempts a minute. */
static void test_name_bucket(void **state)
{
    struct srv *srv = srv_new();
    uint64_t retry = 0;
    int i;

    (void)state;
    srv->cfg.login_rate = 3;
    for (i = 0; i < 3; i++)
        assert_int_equal(srv_name_check(srv, "busy", 1, T0, &retry), 0);
    assert_int_equal(srv_name_check(srv, "busy", 1, T0, &retry), FERRY_EBUSY);
    /* One token every 20 s at 3 a minute. */
    assert_true(retry > 19000 && retry <= 20001);
    assert_int_equal(srv_name_check(srv, "busy", 1, T0 + 19000, &retry), FERRY_EBUSY);
    assert_int_equal(srv_name_check(srv, "busy", 1, T0 + 20001, &retry), 0);
    /* Another name, and the same name unknown, have buckets of their own. */
    assert_int_equal(srv_name_check(srv, "other", 1, T0, &retry), 0);
    assert_int_equal(srv_name_check(srv, "busy", 0, T0, &retry), 0);
    srv_del(srv);
}

/*
 * The address table holds every address with a connection plus
 * SRV_IP_TABLE more: past that an unused entry is reused (the fullest
 * bucket first), and with every entry in use a new address gets none.
 */
static void test_ip_table(void **state)
{
    struct srv *srv = srv_new();
    struct ip_slot *v, *first, *second;
    uint64_t retry = 0;
    char ip[64];
    int i, cap;

    (void)state;
    srv->cfg.max_conns = 10;
    cap = SRV_IP_TABLE + 10 + SRV_REFUSING_MAX;
    for (i = 0; i < cap; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 250, i % 250);
        assert_non_null(v = srv_ip_get(srv, ip, T0));
        /* A spent token keeps an entry: its history counts. */
        assert_int_equal(srv_ip_take_token(srv, v, T0, &retry), 0);
        if (i > 0)
            assert_int_equal(srv_ip_take_token(srv, v, T0, &retry), 0);
        v->conns = 1;
    }
    assert_int_equal(srv->thr.nips, cap);
    assert_null(srv_ip_get(srv, "192.0.2.1", T0));
    /* Free two: the one with the fuller bucket is reused first. */
    first = srv_ip_get(srv, "10.0.0.0", T0);
    second = srv_ip_get(srv, "10.0.0.1", T0);
    first->conns = second->conns = 0;
    srv_ip_put(srv, first, T0); /* both kept: their buckets are not full */
    srv_ip_put(srv, second, T0);
    assert_ptr_equal(srv_ip_get(srv, "192.0.2.1", T0), first);
    assert_int_equal(strcmp(first->ip, "192.0.2.1"), 0);
    assert_int_equal(srv->thr.nips, cap);
    /* The entry found again by name is the same one. */
    assert_ptr_equal(srv_ip_get(srv, "10.0.3.7", T0), srv_ip_get(srv, "10.0.3.7", T0 + 1));
    /* An entry nothing refers to goes once its bucket is full again (a minute at 10/min). */
    srv_ip_put(srv, second, T0 + 60000);
    assert_int_equal(srv->thr.nips, cap - 1);
    srv_del(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_schedule),  cmocka_unit_test(test_unknown_cap_minus_1),
        cmocka_unit_test(test_unknown_cap),       cmocka_unit_test(test_unknown_cap_plus_1),
        cmocka_unit_test(test_known_cap_minus_1), cmocka_unit_test(test_known_cap),
        cmocka_unit_test(test_known_cap_plus_1),  cmocka_unit_test(test_name_bucket),
        cmocka_unit_test(test_ip_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
