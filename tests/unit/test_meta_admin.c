/*
 * Unit tests for the administration part of the metadata store
 * (src/lib/store/meta_admin.c): disabled users (R-ADMIN-5), the generation
 * that tells a server to re-check its sessions (R-ADMIN-6), devices and
 * their revocation (R-ADMIN-8, R-ADMIN-9), a session's own view (R-ADMIN-7).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry/core.h"
#include "ferry/store.h"

#define DEV_A "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define DEV_B "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
#define DEV_C "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"

struct fx {
    char dir[64];
    struct ferry_meta *m;
    int64_t alice;
    int64_t bob;
};

static const uint8_t tok_a[32] = {1};
static const uint8_t tok_b[32] = {2};
static const uint8_t tok_c[32] = {3};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char path[128];

    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-admin-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/ferry.db", f->dir);
    if (ferry_meta_open(path, 0, &f->m) != 0 || ferry_meta_admin_init(f->m) != 0 ||
        ferry_meta_admin_init(f->m) != 0) /* idempotent */
        return -1;
    /* alice: devices A (t=10) and B (t=30), both logged in; bob: C, logged out. */
    if (ferry_meta_begin(f->m) != 0 ||
        ferry_meta_user_create(f->m, "alice", "$argon2id$alice", 1, &f->alice) != 0 ||
        ferry_meta_user_create(f->m, "bob", "$argon2id$bob", 2, &f->bob) != 0 ||
        ferry_meta_device_seen(f->m, f->alice, DEV_A, "laptop", 10) != 0 ||
        ferry_meta_session_put(f->m, f->alice, DEV_A, tok_a, 10) != 0 ||
        ferry_meta_device_seen(f->m, f->alice, DEV_B, "desk", 30) != 0 ||
        ferry_meta_session_put(f->m, f->alice, DEV_B, tok_b, 30) != 0 ||
        ferry_meta_device_seen(f->m, f->bob, DEV_C, "phone", 20) != 0 ||
        ferry_meta_commit(f->m) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    assert_int_equal(ferry_meta_check(f->m), 0);
    ferry_meta_close(f->m);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int64_t gen(struct fx *f)
{
    int64_t g = -1;

    assert_int_equal(ferry_meta_admin_gen(f->m, &g), 0);
    return g;
}

static void pwhash(struct fx *f, const char *name, char *out, size_t cap)
{
    int64_t uid;

    assert_int_equal(ferry_meta_user_get(f->m, name, &uid, out, cap), 0);
}

static int sessions_of(struct fx *f, const uint8_t tok[32])
{
    char dev[FERRY_ID_LEN + 1], user[65];
    int64_t uid;

    return ferry_meta_session_get(f->m, tok, &uid, dev, user, sizeof(user)) == 0;
}

/* R-ADMIN-5, R-ADMIN-6: disable keeps the hash aside, ends sessions, bumps the generation. */
static void test_disable_enable_r_admin_5(void **state)
{
    struct fx *f = *state;
    char h[160];
    int64_t g0 = gen(f);

    assert_int_equal(ferry_meta_user_disabled(f->m, f->alice), 0);
    assert_int_equal(ferry_meta_user_disable(f->m, f->alice, "$argon2id$lock", 99), 0);
    assert_int_equal(ferry_meta_user_disabled(f->m, f->alice), 1);
    pwhash(f, "alice", h, sizeof(h));
    assert_string_equal(h, "$argon2id$lock");
    assert_false(sessions_of(f, tok_a));
    assert_false(sessions_of(f, tok_b));
    assert_int_equal(gen(f), g0 + 1);
    /* A login verified before the disable cannot commit a session after it. */
    assert_true(ferry_meta_session_put(f->m, f->alice, DEV_A, tok_c, 99) < 0);
    assert_false(sessions_of(f, tok_c));
    /* Twice: nothing changes, the kept hash is not overwritten by the lock. */
    assert_int_equal(ferry_meta_user_disable(f->m, f->alice, "$argon2id$lock2", 100), 1);
    assert_int_equal(gen(f), g0 + 1);
    /* Bob is untouched. */
    assert_int_equal(ferry_meta_user_disabled(f->m, f->bob), 0);
    assert_int_equal(ferry_meta_user_enable(f->m, f->alice), 0);
    pwhash(f, "alice", h, sizeof(h));
    assert_string_equal(h, "$argon2id$alice");
    assert_int_equal(ferry_meta_user_disabled(f->m, f->alice), 0);
    assert_int_equal(ferry_meta_user_enable(f->m, f->alice), 1);
    assert_int_equal(ferry_meta_session_put(f->m, f->alice, DEV_A, tok_c, 101), 0);
    /* Unknown users. */
    assert_int_equal(ferry_meta_user_disable(f->m, 12345, "$argon2id$lock", 1), FERRY_ENOTFOUND);
}

/* R-ADMIN-5: passwd ends sessions; while disabled it changes the kept hash. */
static void test_passwd_r_admin_5(void **state)
{
    struct fx *f = *state;
    char h[160];
    int64_t g0 = gen(f);

    assert_int_equal(ferry_meta_user_passwd(f->m, f->alice, "$argon2id$new"), 0);
    pwhash(f, "alice", h, sizeof(h));
    assert_string_equal(h, "$argon2id$new");
    assert_false(sessions_of(f, tok_a));
    assert_int_equal(gen(f), g0 + 1);
    assert_int_equal(ferry_meta_user_disable(f->m, f->alice, "$argon2id$lock", 5), 0);
    assert_int_equal(ferry_meta_user_passwd(f->m, f->alice, "$argon2id$newer"), 0);
    pwhash(f, "alice", h, sizeof(h));
    assert_string_equal(h, "$argon2id$lock");
    assert_int_equal(ferry_meta_user_enable(f->m, f->alice), 0);
    pwhash(f, "alice", h, sizeof(h));
    assert_string_equal(h, "$argon2id$newer");
}

struct seen {
    int n;
    char ids[8][FERRY_ID_LEN + 1];
    char users[8][65];
    int session[8];
};

static int collect(void *arg, const struct ferry_device_info *d)
{
    struct seen *s = arg;

    if (s->n < 8) {
        snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", d->id);
        snprintf(s->users[s->n], sizeof(s->users[0]), "%s", d->user);
        s->session[s->n] = d->session;
    }
    s->n++;
    return 0;
}

static int count_user(void *arg, const struct ferry_user_info *u)
{
    int *n = arg;

    (*n)++;
    if (strcmp(u->name, "alice") == 0) {
        assert_int_equal(u->devices, 2);
        assert_int_equal(u->sessions, 2);
        assert_int_equal(u->disabled, 0);
    } else {
        assert_string_equal(u->name, "bob");
        assert_int_equal(u->sessions, 0);
    }
    return 0;
}

/* R-ADMIN-8: per user, newest first, bounded; every user by name; users listed. */
static void test_devices_list_r_admin_8(void **state)
{
    struct fx *f = *state;
    struct seen s = {0};
    int64_t n = 0;
    int users = 0;

    assert_int_equal(ferry_meta_devices_list(f->m, f->alice, 0, collect, &s), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[0], DEV_B);
    assert_string_equal(s.ids[1], DEV_A);
    assert_int_equal(s.session[0], 1);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ferry_meta_devices_list(f->m, f->alice, 1, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], DEV_B);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ferry_meta_devices_list(f->m, 0, 0, collect, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.users[2], "bob");
    assert_int_equal(s.session[2], 0);
    assert_int_equal(ferry_meta_devices_count(f->m, f->alice, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ferry_meta_devices_count(f->m, 0, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ferry_meta_users_list(f->m, count_user, &users), 0);
    assert_int_equal(users, 2);
}

/* R-ADMIN-9: a revoke takes the session and the record, of that user only. */
static void test_device_revoke_r_admin_9(void **state)
{
    struct fx *f = *state;
    struct seen s = {0};
    int64_t g0 = gen(f);

    /* bob's device is not alice's to revoke. */
    assert_int_equal(ferry_meta_device_revoke(f->m, f->alice, DEV_C), FERRY_ENOTFOUND);
    assert_int_equal(gen(f), g0);
    assert_int_equal(ferry_meta_device_revoke(f->m, f->alice, DEV_A), 0);
    assert_int_equal(gen(f), g0 + 1);
    assert_false(sessions_of(f, tok_a));
    assert_true(sessions_of(f, tok_b));
    assert_int_equal(ferry_meta_devices_list(f->m, f->alice, 0, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(ferry_meta_device_revoke(f->m, f->alice, DEV_A), FERRY_ENOTFOUND);
    /* A device without a session (logged out) is revoked too. */
    assert_int_equal(ferry_meta_device_revoke(f->m, f->bob, DEV_C), 0);
}

/* R-ADMIN-7: the session's device, name and start. */
static void test_session_info_r_admin_7(void **state)
{
    struct fx *f = *state;
    struct ferry_device_info d;

    assert_int_equal(ferry_meta_session_info(f->m, tok_b, &d), 0);
    assert_int_equal(d.uid, f->alice);
    assert_string_equal(d.user, "alice");
    assert_string_equal(d.id, DEV_B);
    assert_string_equal(d.name, "desk");
    assert_int_equal(d.session_created, 30);
    assert_int_equal(ferry_meta_session_info(f->m, tok_c, &d), FERRY_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_disable_enable_r_admin_5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passwd_r_admin_5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_list_r_admin_8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_revoke_r_admin_9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_info_r_admin_7, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
