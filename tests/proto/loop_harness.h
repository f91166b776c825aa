/*
 * A libuv loop for the tests that drive library jobs and sessions
 * (test_jobs.c, test_upload.c, test_session.c): the loop, a guard timer that
 * bounds every wait so a hang fails the test instead of stalling it, and the
 * session settings of a test device.
 */
#ifndef FERRY_TEST_LOOP_HARNESS_H
#define FERRY_TEST_LOOP_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "ferry/session.h"
#include "harness.h"

struct loop_harness {
    uv_loop_t loop;
    uv_timer_t guard;
    int guard_fired;
};

/* A condition the loop runs until: ctx is the test's record, arg its own. */
typedef int (*loop_harness_cond)(void *ctx, void *arg);

static inline void loop_harness_guard_cb(uv_timer_t *t)
{
    struct loop_harness *lh = t->data;

    lh->guard_fired = 1;
    uv_stop(&lh->loop);
}

static inline void loop_harness_init(struct loop_harness *lh)
{
    memset(lh, 0, sizeof(*lh));
    assert_int_equal(uv_loop_init(&lh->loop), 0);
    uv_timer_init(&lh->loop, &lh->guard);
    lh->guard.data = lh;
}

/*
 * Runs the loop until cond holds (checked after each pass) or guard_ms pass;
 * the guard failing the test is a bound against a hang, not a timing check.
 */
static inline void loop_harness_run(struct loop_harness *lh, uint64_t guard_ms,
                                    loop_harness_cond cond, void *ctx, void *arg)
{
    uv_timer_start(&lh->guard, loop_harness_guard_cb, guard_ms, 0);
    while (!cond(ctx, arg) && !lh->guard_fired)
        uv_run(&lh->loop, UV_RUN_ONCE);
    uv_timer_stop(&lh->guard);
    assert_false(lh->guard_fired);
}

/* Closes the guard, lets every handle and task end, and checks none is left. */
static inline void loop_harness_end(struct loop_harness *lh)
{
    uv_close((uv_handle_t *)&lh->guard, NULL);
    uv_run(&lh->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&lh->loop), 0);
}

/* A device's session to srv on this loop, pinned to srv's identity, no redial. */
static inline struct ferry_session_cfg loop_harness_cfg(struct loop_harness *lh, SSL_CTX *ctx,
                                                        const struct server *srv, const char *token)
{
    return (struct ferry_session_cfg){
        .loop = &lh->loop,
        .ctx = ctx,
        .host = "127.0.0.1",
        .port = srv->port,
        .pin = srv->id,
        .token = token,
        .client = "ferry-test",
        .need_user = 1,
        .retry_for_ms = 0,
        .heartbeat_ms = 30000,
        .idle_ms = 90000,
        .connect_ms = 10000,
    };
}

#endif
