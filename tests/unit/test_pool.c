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

struct run {
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

struct item {
    struct run *r;
    int i;
    int gated;
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

static void run_init(struct run *r, struct item *items)
{
    memset(r, 0, sizeof(*r));
    r->loop_thread = pthread_self();
    assert_int_equal(sem_init(&r->entered, 0, 0), 0);
    assert_int_equal(sem_init(&r->gate, 0, 0), 0);
    for (int i = 0; i < NTASK; i++)
        items[i] = (struct item){.r = r, .i = i};
}

static void run_fini(struct run *r)
{
    sem_destroy(&r->entered);
    sem_destroy(&r->gate);
}

static void test_bound_and_order(void **state)
{
    static const unsigned bounds[] = {1, 3};
    uv_loop_t loop;
    struct run r;
    struct item items[NTASK];

    (void)state;
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        assert_int_equal(uv_loop_init(&loop), 0);
        run_init(&r, items);
        assert_int_equal(ferry_pool_new(&loop, bounds[b], &r.pool), 0);
        for (int i = 0; i < NTASK; i++)
            assert_int_equal(ferry_pool_submit(r.pool, work, done, &items[i], NULL), 0);
        /* Nothing finished inside submit. */
        assert_int_equal(r.done_total, 0);
        assert_true(ferry_pool_running(r.pool) <= bounds[b]);
        assert_int_equal(ferry_pool_waiting(r.pool), NTASK - ferry_pool_running(r.pool));
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
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
        ferry_pool_close(r.pool, on_closed, &r);
        assert_int_equal(r.closed, 0); /* reported on a later turn, never inside close */
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(r.closed, 1);
        assert_int_equal(uv_loop_close(&loop), 0);
        run_fini(&r);
    }
}

/* Three gated tasks hold all three slots: the other three wait, in the pool, not in libuv. */
static void test_bound_holds(void **state)
{
    uv_loop_t loop;
    struct run r;
    struct item items[NTASK];

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    run_init(&r, items);
    assert_int_equal(ferry_pool_new(&loop, 3, &r.pool), 0);
    for (int i = 0; i < 6; i++) {
        items[i].gated = 1;
        assert_int_equal(ferry_pool_submit(r.pool, work, done, &items[i], NULL), 0);
    }
    for (int i = 0; i < 3; i++)
        sem_wait(&r.entered);
    assert_int_equal(ferry_pool_running(r.pool), 3);
    assert_int_equal(ferry_pool_waiting(r.pool), 3);
    assert_int_equal(__atomic_load_n(&r.order, __ATOMIC_SEQ_CST), 3);
    for (int i = 0; i < 6; i++)
        sem_post(&r.gate);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.done_total, 6);
    assert_int_equal(ferry_pool_peak(r.pool), 3);
    ferry_pool_close(r.pool, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    run_fini(&r);
}

/* A waiting task is cancelled (work never runs); a running one is not. */
static void test_cancel(void **state)
{
    uv_loop_t loop;
    struct run r;
    struct item items[NTASK];
    uint64_t id[3];

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    run_init(&r, items);
    items[0].gated = 1;
    assert_int_equal(ferry_pool_new(&loop, 1, &r.pool), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ferry_pool_submit(r.pool, work, done, &items[i], &id[i]), 0);
    assert_true(id[0] != id[1] && id[1] != id[2]);
    sem_wait(&r.entered); /* task 0 is inside work */
    assert_int_equal(ferry_pool_cancel(r.pool, id[0]), FERRY_ENOTFOUND);
    assert_int_equal(ferry_pool_cancel(r.pool, id[1]), 0);
    assert_int_equal(ferry_pool_cancel(r.pool, id[1]), FERRY_ENOTFOUND); /* once only */
    assert_int_equal(ferry_pool_cancel(r.pool, 9999), FERRY_ENOTFOUND);
    assert_int_equal(r.done_total, 0); /* cancel does not call done itself */
    sem_post(&r.gate);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.status[0], 1);
    assert_int_equal(r.status[1], FERRY_ECANCELED);
    assert_int_equal(r.status[2], 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.done_calls[i], 1);
    assert_int_equal(r.order, 2); /* task 1's work never ran */
    assert_int_equal(ferry_pool_cancel(r.pool, id[2]), FERRY_ENOTFOUND); /* over */
    ferry_pool_close(r.pool, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    run_fini(&r);
}

/* Close: waiting tasks are cancelled, the running one finishes, closed comes last. */
static void test_close_with_work(void **state)
{
    uv_loop_t loop;
    struct run r;
    struct item items[NTASK];

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    run_init(&r, items);
    items[0].gated = 1;
    assert_int_equal(ferry_pool_new(&loop, 1, &r.pool), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ferry_pool_submit(r.pool, work, done, &items[i], NULL), 0);
    sem_wait(&r.entered);
    ferry_pool_close(r.pool, on_closed, &r);
    assert_int_equal(r.done_total, 0);
    sem_post(&r.gate);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.closed, 1);
    assert_int_equal(r.done_total_at_close, 5);
    assert_int_equal(r.status[0], 1);
    for (int i = 1; i < 5; i++)
        assert_int_equal(r.status[i], FERRY_ECANCELED);
    assert_int_equal(r.order, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    run_fini(&r);
}

/* A done that submits the next task: a chain of NTASK, each after the last. */
static void chain_done(void *arg, int status)
{
    struct item *it = arg;
    struct run *r = it->r;

    done(arg, status);
    if (it->i + 1 < NTASK)
        assert_int_equal(ferry_pool_submit(r->pool, work, chain_done, it + 1, NULL), 0);
}

static void test_submit_from_done(void **state)
{
    uv_loop_t loop;
    struct run r;
    struct item items[NTASK];

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    run_init(&r, items);
    assert_int_equal(ferry_pool_new(&loop, 4, &r.pool), 0);
    assert_int_equal(ferry_pool_submit(r.pool, work, chain_done, &items[0], NULL), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    for (int i = 0; i < NTASK; i++) {
        assert_int_equal(r.done_calls[i], 1);
        assert_int_equal(r.started[i], i);
    }
    assert_int_equal(ferry_pool_peak(r.pool), 1);
    ferry_pool_close(r.pool, on_closed, &r);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    run_fini(&r);
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
    uv_loop_t loop;
    struct run r;
    struct item items[NTASK];

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    run_init(&r, items);
    assert_int_equal(ferry_pool_new(&loop, 2, &r.pool), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ferry_pool_submit(r.pool, work, closing_done, &items[i], NULL), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.closed, 1);
    assert_int_equal(r.done_total_at_close, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(r.done_calls[i], 1);
        assert_true(r.status[i] == i + 1 || r.status[i] == FERRY_ECANCELED);
    }
    assert_int_equal(r.status[0], 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    run_fini(&r);
}

static void test_usage(void **state)
{
    uv_loop_t loop;
    struct ferry_pool *p = (struct ferry_pool *)&loop;
    struct run r;
    struct item items[NTASK];

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    run_init(&r, items);
    assert_int_equal(ferry_pool_new(&loop, 0, &p), FERRY_EUSAGE);
    assert_null(p);
    assert_int_equal(ferry_pool_new(&loop, FERRY_POOL_MAX_INFLIGHT + 1, &p), FERRY_EUSAGE);
    assert_int_equal(ferry_pool_new(NULL, 1, &p), FERRY_EUSAGE);
    assert_int_equal(ferry_pool_new(&loop, FERRY_POOL_MAX_INFLIGHT, &p), 0);
    assert_int_equal(ferry_pool_submit(p, NULL, done, &items[0], NULL), FERRY_EUSAGE);
    assert_int_equal(ferry_pool_submit(p, work, NULL, &items[0], NULL), FERRY_EUSAGE);
    assert_int_equal(ferry_pool_submit(NULL, work, done, &items[0], NULL), FERRY_EUSAGE);
    ferry_pool_close(p, on_closed, &r);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.closed, 1);
    assert_int_equal(r.done_total, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    run_fini(&r);
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
