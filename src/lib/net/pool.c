/*
 * A bounded pool over libuv's worker threads (include/ferry/pool.h).
 *
 * libuv's own queue (uv_queue_work) has no bound per owner: whoever queues
 * most takes every thread. Here a task is handed to libuv only while its
 * pool runs fewer than max; the others wait in a FIFO owned by the loop
 * thread, so no lock guards any of this state. Tasks cancelled while
 * waiting, and the rare task libuv refuses, get their done from a
 * zero-delay timer: done never runs inside submit, cancel or close, which
 * would surprise a caller in the middle of changing its own state.
 */
#include <errno.h>
#include <stdlib.h>

#include "ferry/core.h"
#include "ferry/pool.h"

struct task {
    uv_work_t req; /* first: the request libuv hands back is the task */
    struct ferry_pool *pool;
    struct task *next, *prev; /* the list the task is on */
    ferry_pool_work_fn work;
    ferry_pool_done_fn done;
    void *arg;
    uint64_t id;
    int status; /* written by the worker, read once libuv reports it over */
};

struct list {
    struct task *head, *tail;
    size_t n;
};

struct ferry_pool {
    uv_loop_t *loop;
    uv_timer_t timer; /* delivers the done of tasks that never ran */
    struct list waiting;
    struct list running;
    struct list over; /* cancelled or refused: done is due */
    unsigned max, peak;
    uint64_t next_id;
    size_t unfinished; /* tasks whose done has not run yet */
    int depth;         /* done callbacks on the stack: no freeing under them */
    int closing;
    void (*closed)(void *arg);
    void *closed_arg;
};

static void list_push(struct list *l, struct task *t)
{
    t->next = NULL;
    t->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    l->n++;
}

static void list_unlink(struct list *l, struct task *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        l->head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        l->tail = t->prev;
    t->next = t->prev = NULL;
    l->n--;
}

static struct task *list_find(const struct list *l, uint64_t id)
{
    struct task *t;

    for (t = l->head; t != NULL; t = t->next)
        if (t->id == id)
            return t;
    return NULL;
}

static void timer_closed(uv_handle_t *h)
{
    struct ferry_pool *p = h->data;
    void (*closed)(void *) = p->closed;
    void *arg = p->closed_arg;

    ferry_free(p);
    if (closed != NULL)
        closed(arg);
}

/* Once closing and every done has run, the timer goes and then the pool. */
static void maybe_finish(struct ferry_pool *p)
{
    if (!p->closing || p->unfinished > 0 || p->depth > 0 || uv_is_closing((uv_handle_t *)&p->timer))
        return;
    uv_close((uv_handle_t *)&p->timer, timer_closed);
}

static void finish(struct ferry_pool *p, struct task *t, int status)
{
    p->depth++;
    t->done(t->arg, status);
    p->depth--;
    ferry_free(t);
    p->unfinished--;
}

static void deliver_over(uv_timer_t *h)
{
    struct ferry_pool *p = h->data;
    struct task *t;

    /* A done that cancels more lands on the list and is delivered here too. */
    while ((t = p->over.head) != NULL) {
        list_unlink(&p->over, t);
        finish(p, t, t->status);
    }
    maybe_finish(p);
}

static void to_over(struct ferry_pool *p, struct task *t, int status)
{
    t->status = status;
    list_push(&p->over, t);
    (void)uv_timer_start(&p->timer, deliver_over, 0, 0);
}

static void work_cb(uv_work_t *req)
{
    struct task *t = (struct task *)req;

    t->status = t->work(t->arg);
}

static void start_more(struct ferry_pool *p);

static void after_work(uv_work_t *req, int status)
{
    struct task *t = (struct task *)req;
    struct ferry_pool *p = t->pool;

    list_unlink(&p->running, t);
    finish(p, t, status == UV_ECANCELED ? FERRY_ECANCELED : t->status);
    start_more(p);
    maybe_finish(p);
}

static void start_more(struct ferry_pool *p)
{
    struct task *t;

    while (!p->closing && p->running.n < p->max && (t = p->waiting.head) != NULL) {
        list_unlink(&p->waiting, t);
        list_push(&p->running, t);
        if (p->running.n > p->peak)
            p->peak = (unsigned)p->running.n;
        if (uv_queue_work(p->loop, &t->req, work_cb, after_work) != 0) {
            /* Only a malformed request is refused; report it, never drop it. */
            list_unlink(&p->running, t);
            to_over(p, t, FERRY_EINTERNAL);
        }
    }
}

int ferry_pool_new(uv_loop_t *loop, unsigned max, struct ferry_pool **out)
{
    struct ferry_pool *p;

    *out = NULL;
    if (loop == NULL || max == 0 || max > FERRY_POOL_MAX_INFLIGHT)
        return FERRY_EUSAGE;
    if ((p = ferry_calloc(1, sizeof(*p))) == NULL)
        return -ENOMEM;
    p->loop = loop;
    p->max = max;
    if (uv_timer_init(loop, &p->timer) != 0) {
        ferry_free(p);
        return FERRY_EINTERNAL;
    }
    p->timer.data = p;
    *out = p;
    return 0;
}

int ferry_pool_submit(struct ferry_pool *p, ferry_pool_work_fn work, ferry_pool_done_fn done,
                      void *arg, uint64_t *id)
{
    struct task *t;

    if (p == NULL || p->closing || work == NULL || done == NULL)
        return FERRY_EUSAGE;
    if ((t = ferry_calloc(1, sizeof(*t))) == NULL)
        return -ENOMEM;
    t->pool = p;
    t->work = work;
    t->done = done;
    t->arg = arg;
    t->id = ++p->next_id;
    if (id != NULL)
        *id = t->id;
    p->unfinished++;
    list_push(&p->waiting, t);
    start_more(p);
    return 0;
}

int ferry_pool_cancel(struct ferry_pool *p, uint64_t id)
{
    struct task *t;

    if ((t = list_find(&p->waiting, id)) != NULL) {
        list_unlink(&p->waiting, t);
        to_over(p, t, FERRY_ECANCELED);
        return 0;
    }
    /* Handed to libuv but not yet taken by a worker: libuv can still drop it. */
    if ((t = list_find(&p->running, id)) != NULL && uv_cancel((uv_req_t *)&t->req) == 0)
        return 0;
    return FERRY_ENOTFOUND;
}

unsigned ferry_pool_running(const struct ferry_pool *p)
{
    return (unsigned)p->running.n;
}

size_t ferry_pool_waiting(const struct ferry_pool *p)
{
    return p->waiting.n;
}

unsigned ferry_pool_peak(const struct ferry_pool *p)
{
    return p->peak;
}

void ferry_pool_close(struct ferry_pool *p, void (*closed)(void *arg), void *arg)
{
    struct task *t;

    if (p == NULL || p->closing)
        return;
    p->closing = 1;
    p->closed = closed;
    p->closed_arg = arg;
    while ((t = p->waiting.head) != NULL) {
        list_unlink(&p->waiting, t);
        to_over(p, t, FERRY_ECANCELED);
    }
    maybe_finish(p);
}
