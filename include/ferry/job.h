/*
 * Transfer jobs: what an upload job (ferry/upload.h) and a download job
 * (ferry/download.h) tell their owner.
 *
 * A job is one command line's worth of transfer (files and folders, a
 * tree) run on a loop over a hub's session (ferry/hub.h). It owns no
 * socket and no thread: blocking work (reads, hashing, fsync, the state
 * store) runs on the loop's thread pool, and the loop thread never waits
 * for it. Life cycle:
 *
 *   new (spec copied, nothing sent) -> start -> planning (asks the server
 *   what the sources are) -> moving (requests in flight, frames routed to
 *   it by the hub; a lost link requeues what was not acknowledged and the
 *   session's redial carries on) -> finishing (what was verified becomes
 *   durable, acknowledgements sent) -> on_done, exactly once.
 *
 * ferry_*_job_cancel() stops it: work in flight finishes or is undone,
 * partial files keep what is durable for a rerun, and on_done runs with
 * FERRY_ECANCELED (or the error that came first). The owner frees the job
 * after on_done, never inside other callbacks.
 *
 * Every callback runs on the loop thread; every member is optional.
 */
#ifndef FERRY_JOB_H
#define FERRY_JOB_H

#include <stdint.h>

/* Where a job stands, for a progress line. */
struct ferry_job_progress {
    uint64_t bytes_total;
    uint64_t bytes_done;    /* includes bytes_skipped */
    uint64_t bytes_skipped; /* done without travelling: already there, resumed, reused */
    uint64_t files_total;
    uint64_t files_done;
    const char *name;  /* the file being moved (raw, the owner escapes it), or NULL */
    const char *state; /* what it waits for ("verifying"), or NULL */
};

/* Figures for --stats, final after on_done. */
struct ferry_job_stats {
    uint64_t files_done, files_failed;
    uint64_t bytes_total, bytes_moved;
    uint64_t bytes_resumed; /* taken from partial files (a download's part files, an upload's
                               chunks the server held) */
    uint64_t bytes_reused;  /* taken from files already at the destination */
};

struct ferry_job_ops {
    /* Called as bytes move (the owner rate-limits what it shows). */
    void (*on_progress)(void *arg, const struct ferry_job_progress *p);
    /*
     * One item failed and the job goes on with the others: label names it
     * (raw), why says why in words for people. rc is the error.
     */
    void (*on_item)(void *arg, const char *label, int rc, const char *why);
    /* A notice for the user that is not an item's failure (a changed file retried...). */
    void (*on_note)(void *arg, const char *text);
    /*
     * The job is over: 0 when every item was done or failed on its own
     * (on_item said which), < 0 when the job as a whole stopped (a lost
     * session, a protocol fault, cancelled). Runs exactly once.
     */
    void (*on_done)(void *arg, int rc);
};

#endif
