/*
 * Blocking work off the loop thread, a bounded number at a time.
 *
 * A pool belongs to one libuv loop and to the one owner that made it (an
 * upload job, a download job, a server service). Work functions run on
 * libuv's thread pool and may block (read, write, fsync, SQLite, hashing);
 * done functions run on the loop thread, exactly once per submitted task,
 * in no promised order. At most max tasks of a pool run at once; the rest
 * wait in submission order, so one owner with a thousand files to hash
 * cannot take every worker thread from the others, and memory waiting on
 * the disk stays bounded by what the owner chose to submit.
 *
 * The loop thread never waits here: submitting, cancelling and closing
 * return at once; what they start finishes in later loop turns.
 */
#ifndef FERRY_POOL_H
#define FERRY_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Most tasks of one pool that may run at once (a bound on the caller's choice). */
#define FERRY_POOL_MAX_INFLIGHT 64

struct ferry_pool;

/* Runs on a worker thread; its return value is handed to done. */
typedef int (*ferry_pool_work_fn)(void *arg);
/*
 * Runs on the loop thread once the task is over: status is work's return
 * value, or FERRY_ECANCELED when the task was cancelled before it started
 * (work then never ran). arg is the caller's again.
 */
typedef void (*ferry_pool_done_fn)(void *arg, int status);

/* A pool on loop running at most max (1..FERRY_POOL_MAX_INFLIGHT) tasks at once. */
int ferry_pool_new(uv_loop_t *loop, unsigned max, struct ferry_pool **out);
/*
 * Queues work(arg), then done(arg, status) on the loop. *id (may be NULL)
 * names the task for ferry_pool_cancel; ids are never reused. done never
 * runs before this returns. FERRY_EUSAGE after ferry_pool_close or without
 * work and done; -ENOMEM.
 */
int ferry_pool_submit(struct ferry_pool *p, ferry_pool_work_fn work, ferry_pool_done_fn done,
                      void *arg, uint64_t *id);
/*
 * Cancels task id if no worker has started it: 0, and its done runs on a
 * later loop turn with FERRY_ECANCELED. FERRY_ENOTFOUND when it is already
 * running or over (its done then reports how it ended).
 */
int ferry_pool_cancel(struct ferry_pool *p, uint64_t id);
/* Tasks running now, and tasks waiting for a free slot. */
unsigned ferry_pool_running(const struct ferry_pool *p);
size_t ferry_pool_waiting(const struct ferry_pool *p);
/* The most tasks that ever ran at once (for tests and statistics). */
unsigned ferry_pool_peak(const struct ferry_pool *p);
/*
 * Stops the pool: waiting tasks are cancelled (done gets FERRY_ECANCELED),
 * running ones finish, and once every done has run the pool frees itself
 * and calls closed(arg) (closed may be NULL). The pool must not be used
 * after this call.
 */
void ferry_pool_close(struct ferry_pool *p, void (*closed)(void *arg), void *arg);

#endif
