/*
 * The bounded pool (src/lib/net/pool.c): never more tasks at once than its
 * bound, started in submission order, every done exactly once on the loop
 * thread with work's status, cancellation of waiting tasks (and not of
 * running ones), and a close that cancels what waits, lets what runs
 * finish, and reports itself last.
 */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include "ferry/core.h"
#include "ferry/pool.h"

#define NTASK 40

struct item {
    struct run *r;
    int i;
    int gated;
};

struct run {
    uv_loop_t loop;
    struct item items[NTASK];
    pthread_t loop_thread;
    int now;  /* tasks inside work right now (atomic) */
    int most; /* the most seen inside work at once (atomic) */
    int started[NTASK];
    int order; /* next start position (atomic) */
    int done_calls[NTASK];
    int status[NTASK];
    int done_off_loop;
    sem_t entered; /* a gated task has started */
    sem_t gate;    /* lets a gated task finish */
    int closed;
    int done_total_at_close;
    int done_total;
    struct ferry_pool *pool;
    int chain_left;
};

static void spin_a_little(void)
{
    /* Real work takes time; give other workers a chance to overlap with this one. */
    struct timespec ts = {0, 300 * 1000};

    nanosleep(&ts, NULL);
}

static int work(void *arg)
{
    struct item *it = arg;
    struct run *r = it->r;
    int now = __atomic_add_fetch(&r->now, 1, __ATOMIC_SEQ_CST), most;

    r->started[it->i] = __atomic_fetch_add(&r->order, 1, __ATOMIC_SEQ_CST);
    while (
        (most = __atomic_load_n(&r->most, __ATOMIC_SEQ_CST)) < now &&
        !__atomic_compare_exchange_n(&r->most, &most, now, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    if (it->gated) {
        sem_post(&r->entered);
        sem_wait(&r->gate);
    } else {
        spin_a_little();
    }
    __atomic_sub_fetch(&r->now, 1, __ATOMIC_SEQ_CST);
    return it->i + 1;
}

static void done(void *arg, int status)
{
    struct item *it = arg;
    struct run *r = it->r;

    if (!pthread_equal(pthread_self(), r->loop_thread))
        r->done_off_loop++;
    r->done_calls[it->i]++;
    r->status[it->i] = status;
    r->done_total++;
}

static void on_closed(void *arg)
{
    struct run *r = arg;

    r->closed++;
    r->done_total_at_close = r->done_total;
}

/* A fresh loop and a pool of max on it; every item's index set. */
static void run_init(struct run *r, unsigned max)
{
    memset(r, 0, sizeof(*r));
    r->loop_thread = pthread_self();
    assert_int_equal(sem_init(&r->entered, 0, 0), 0);
    assert_int_equal(sem_init(&r->gate, 0, 0), 0);
    for (int i = 0; i < NTASK; i++)
        r->items[i] = (struct item){.r = r, .i = i};
    assert_int_equal(uv_loop_init(&r->loop), 0);
    assert_int_equal(ferry_pool_new(&r->loop, max, &r->pool), 0);
}

static void submit(struct run *r, int i, ferry_pool_done_fn fn, uint64_t *id)
{
    assert_int_equal(ferry_pool_submit(r->pool, work, fn, &r->items[i], id), 0);
}

static void run_loop(struct run *r)
{
    assert_int_equal(uv_run(&r->loop, UV_RUN_DEFAULT), 0);
}

/* Closes the pool unless it was closed already, runs the loop dry, checks closed came once. */
static void run_fini(struct run *r, int close)
{
    if (close) {
        ferry_pool_close(r->pool, on_closed, r);
        assert_int_equal(r->closed, 0); /* reported on a later turn, never inside close */
    }
    run_loop(r);
    assert_int_equal(r->closed, 1);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    sem_destroy(&r->entered);
    sem_destroy(&r->gate);
}

static void test_bound_and_order(void **state)
{
    static const unsigned bounds[] = {1, 3};
    struct run r;

    (void)state;
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        run_init(&r, bounds[b]);
        for (int i = 0; i < NTASK; i++)
            submit(&r, i, done, NULL);
        /* Nothing finished inside submit. */
        assert_int_equal(r.done_total, 0);
        assert_true(ferry_pool_running(r.pool) <= bounds[b]);
        assert_int_equal(ferry_pool_waiting(r.pool), NTASK - ferry_pool_running(r.pool));
        run_loop(&r);
        for (int i = 0; i < NTASK; i++) {
            assert_int_equal(r.done_calls[i], 1);
            assert_int_equal(r.status[i], i + 1);
        }
        assert_int_equal(r.done_off_loop, 0);
        assert_true(r.most <= (int)bounds[b]);
        assert_true(ferry_pool_peak(r.pool) <= bounds[b]);
        /* One at a time: the starts follow the submissions exactly. */
        if (bounds[b] == 1)
            for (int i = 0; i < NTASK; i++)
                assert_int_equal(r.started[i], i);
        run_fini(&r, 1);
    }
}

/* Three gated tasks hold all three slots: the other three wait, in the pool, not in libuv. */
static void test_bound_holds(void **state)
{
    struct run r;

    (void)state;
    run_init(&r, 3);
    for (int i = 0; i < 6; i++) {
        r.items[i].gated = 1;
        submit(&r, i, done, NULL);
    }
    for (int i = 0; i < 3; i++)
        sem_wait(&r.entered);
    assert_int_equal(ferry_pool_running(r.pool), 3);
    assert_int_equal(ferry_pool_waiting(r.pool), 3);
    assert_int_equal(__atomic_load_n(&r.order, __ATOMIC_SEQ_CST), 3);
    for (int i = 0; i < 6; i++)
        sem_post(&r.gate);
    run_loop(&r);
    assert_int_equal(r.done_total, 6);
    assert_int_equal(ferry_pool_peak(r.pool), 3);
    run_fini(&r, 1);
}

/* A waiting task is cancelled (work never runs); a running one is not. */
static void test_cancel(void **state)
{
    struct run r;
    uint64_t id[3];

    (void)state;
    run_init(&r, 1);
    r.items[0].gated = 1;
    for (int i = 0; i < 3; i++)
        submit(&r, i, done, &id[i]);
    assert_true(id[0] != id[1] && id[1] != id[2]);
    sem_wait(&r.entered); /* task 0 is inside work */
    assert_int_equal(ferry_pool_cancel(r.pool, id[0]), FERRY_ENOTFOUND);
    assert_int_equal(ferry_pool_cancel(r.pool, id[1]), 0);
    assert_int_equal(ferry_pool_cancel(r.pool, id[1]), FERRY_ENOTFOUND); /* once only */
    assert_int_equal(ferry_pool_cancel(r.pool, 9999), FERRY_ENOTFOUND);
    assert_int_equal(r.done_total, 0); /* cancel does not call done itself */
    sem_post(&r.gate);
    run_loop(&r);
    assert_int_equal(r.status[0], 1);
    assert_int_equal(r.status[1], FERRY_ECANCELED);
    assert_int_equal(r.status[2], 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.done_calls[i], 1);
    assert_int_equal(r.order, 2); /* task 1's work never ran */
    assert_int_equal(ferry_pool_cancel(r.pool, id[2]), FERRY_ENOTFOUND); /* over */
    run_fini(&r, 1);
}

/* Close: waiting tasks are cancelled, the running one finishes, closed comes last. */
static void test_close_with_work(void **state)
{
    struct run r;

    (void)state;
    run_init(&r, 1);
    r.items[0].gated = 1;
    for (int i = 0; i < 5; i++)
        submit(&r, i, done, NULL);
    sem_wait(&r.entered);
    ferry_pool_close(r.pool, on_closed, &r);
    assert_int_equal(r.done_total, 0);
    sem_post(&r.gate);
    run_fini(&r, 0);
    assert_int_equal(r.done_total_at_close, 5);
    assert_int_equal(r.status[0], 1);
    for (int i = 1; i < 5; i++)
        assert_int_equal(r.status[i], FERRY_ECANCELED);
    assert_int_equal(r.order, 1);
}

/* A done that submits the next task: a chain of NTASK, each after the last. */
static void chain_done(void *arg, int status)
{
    struct item *it = arg;

    done(arg, status);
    if (it->i + 1 < NTASK)
        submit(it->r, it->i + 1, chain_done, NULL);
}

static void test_submit_from_done(void **state)
{
    struct run r;

    (void)state;
    run_init(&r, 4);
    submit(&r, 0, chain_done, NULL);
    run_loop(&r);
    for (int i = 0; i < NTASK; i++) {
        assert_int_equal(r.done_calls[i], 1);
        assert_int_equal(r.started[i], i);
    }
    assert_int_equal(ferry_pool_peak(r.pool), 1);
    run_fini(&r, 1);
}

/* A done that closes the pool while others still wait and run. */
static void closing_done(void *arg, int status)
{
    struct item *it = arg;

    done(arg, status);
    if (it->i == 0)
        ferry_pool_close(it->r->pool, on_closed, it->r);
}

static void test_close_from_done(void **state)
{
    struct run r;

    (void)state;
    run_init(&r, 2);
    for (int i = 0; i < 10; i++)
        submit(&r, i, closing_done, NULL);
    run_fini(&r, 0);
    assert_int_equal(r.done_total_at_close, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r.done_calls[i], 1);
        assert_true(r.status[i] == i + 1 || r.status[i] == FERRY_ECANCELED);
    }
    assert_int_equal(r.status[0], 1);
}

static void test_usage(void **state)
{
    struct run r;
    struct ferry_pool *p = (struct ferry_pool *)&r;

    (void)state;
    run_init(&r, FERRY_POOL_MAX_INFLIGHT);
    assert_int_equal(ferry_pool_new(&r.loop, 0, &p), FERRY_EUSAGE);
    assert_null(p);
    assert_int_equal(ferry_pool_new(&r.loop, FERRY_POOL_MAX_INFLIGHT + 1, &p), FERRY_EUSAGE);
    assert_int_equal(ferry_pool_new(NULL, 1, &p), FERRY_EUSAGE);
    assert_int_equal(ferry_pool_submit(r.pool, NULL, done, &r.items[0], NULL), FERRY_EUSAGE);
    assert_int_equal(ferry_pool_submit(r.pool, work, NULL, &r.items[0], NULL), FERRY_EUSAGE);
    assert_int_equal(ferry_pool_submit(NULL, work, done, &r.items[0], NULL), FERRY_EUSAGE);
    run_fini(&r, 1);
    assert_int_equal(r.done_total, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_and_order),
        cmocka_unit_test(test_bound_holds),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_close_with_work),
        cmocka_unit_test(test_submit_from_done),
        cmocka_unit_test(test_close_from_done),
        cmocka_unit_test(test_usage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
